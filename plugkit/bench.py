"""Kernel benchmark: forward+backward time of every op (the forward alone for ddim_step, which
runs under no_grad), side by side in one process, at the shapes docs/operators.md lists.

Each case is timed four ways: the native op, the pure-PyTorch fallback (eager), torch.compile of
that fallback, and PyTorch's own way of writing the same computation. Every row carries the
median time, how many times faster native is than that row, and the achieved GB/s (pointwise
ops) or GFLOP/s (the LSTM layer) next to the copy bandwidth and GEMM peak measured in the same run.

    rows = run_kernels()                 # list of dicts, no printing
    rich.print(format_table(rows))
    print(main_json(rows))
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from rich import box
from rich.table import Table
from torch import nn

import plugkit.ops as ops

Inputs = dict[str, Any]  # tensors (grad leaves have requires_grad) and the baselines' modules
Impl = Callable[..., Any]  # called as impl(**inputs); returns a tensor or nested tuples of them
F32 = 4  # bytes per element: every case runs in float32


# --- the ops under test: inputs, the plugkit call, PyTorch's own version, work done --------------


def _leaf(device: str, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, device=device) * scale).requires_grad_()


def _reparam_inputs(device: str, B: int, D: int) -> Inputs:
    return {"mu": _leaf(device, B, D), "logvar": _leaf(device, B, D, scale=0.5)}


def _reparam_plugkit(mu, logvar):
    return ops.reparameterize_kl(mu, logvar)


def _reparam_torch(mu, logvar):
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    kl = 0.5 * (torch.exp(logvar) + mu * mu - 1 - logvar).sum(-1)
    return z, kl


def _gan_inputs(device: str, B: int) -> Inputs:
    # D and G get different fake logits, as in a training step (D sees fake.detach(), G a fresh
    # forward); this also keeps autograd's gradient accumulation out of the timing.
    real, fake, fake_g = (_leaf(device, B) for _ in range(3))
    ones, zeros = torch.ones(B, device=device), torch.zeros(B, device=device)
    return {"real": real, "fake": fake, "fake_g": fake_g, "ones": ones, "zeros": zeros}


def _gan_plugkit(real, fake, fake_g, **_):
    return ops.gan_d_loss(real, fake), ops.gan_g_loss(fake_g)


def _gan_torch(real, fake, fake_g, ones, zeros):
    bce = F.binary_cross_entropy_with_logits
    return bce(real, ones) + bce(fake, zeros), bce(fake_g, ones)


def _tbih(dims: dict[str, int]) -> tuple[int, int, int, int]:
    return dims["T"], dims["B"], dims["I"], dims["H"]  # "I" is the shape's name, not a variable's


def _lstm_layer_inputs(device: str, **dims: int) -> Inputs:
    # The leaves are nn.LSTM's own parameters, so on CUDA they stay in the flat buffer cuDNN wants;
    # the LSTMCell shares the very same Parameters.
    T, B, n_in, H = _tbih(dims)
    lstm = nn.LSTM(n_in, H).to(device)
    cell = nn.LSTMCell(n_in, H).to(device)
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    for name in names:
        setattr(cell, name, getattr(lstm, f"{name}_l0"))
    params = (getattr(cell, n) for n in names)
    weights = dict(zip(("w_ih", "w_hh", "b_ih", "b_hh"), params, strict=True))
    h0, c0 = torch.randn(B, H, device=device), torch.randn(B, H, device=device)
    x = _leaf(device, T, B, n_in)
    return {"x": x, "h0": h0, "c0": c0, **weights, "lstm": lstm, "cell": cell}


def _lstm_layer_plugkit(x, h0, c0, w_ih, w_hh, b_ih, b_hh, **_):
    return ops.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh)


def _nn_lstm(x, h0, c0, lstm, **_):  # cuDNN on CUDA
    y, (h_n, c_n) = lstm(x, (h0[None], c0[None]))
    return y, (h_n[0], c_n[0])


def _lstm_cell_loop(x, h0, c0, cell, **_):
    h, c, ys = h0, c0, []
    for x_t in x:
        h, c = cell(x_t, (h, c))
        ys.append(h)
    return torch.stack(ys), (h, c)


def _lstm_cell_inputs(device: str, B: int, H: int) -> Inputs:
    return {"gates": _leaf(device, B, 4 * H), "c_prev": _leaf(device, B, H)}


def _lstm_cell_plugkit(gates, c_prev):
    return ops.lstm_cell(gates, c_prev)


def _lstm_cell_torch(gates, c_prev):  # nn.LSTMCell's pointwise math, gate order i, f, g, o
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _diffusion_inputs(device: str, B: int, D: int) -> Inputs:
    abar = torch.rand(B, device=device, dtype=torch.float64)  # abar[t] of each row's step
    return {"x0": _leaf(device, B, D), "pred": _leaf(device, B, D), "abar": abar}


def _diffusion_plugkit(x0, pred, abar):
    # a training step's noise and loss around the denoiser (pred stands for its output)
    key = ops.draw_key(x0.device)
    return ops.diffusion_noise(x0, abar, key=key), ops.diffusion_loss(pred, key=key)


def _diffusion_torch(x0, pred, abar):  # as plugkit/families/diffusion/ writes it
    eps = torch.randn_like(x0)
    kept = abar[:, None].float()
    return kept.sqrt() * x0 + (1 - kept).sqrt() * eps, F.mse_loss(pred, eps)


def _ddim_inputs(device: str, B: int, D: int) -> Inputs:
    # sampling runs under no_grad: no grad leaves, so the bench times the forward alone
    abar_t, abar_s = torch.tensor([0.4, 0.5], device=device, dtype=torch.float64)
    return {"x_t": torch.randn(B, D, device=device), "eps": torch.randn(B, D, device=device),
            "abar_t": abar_t, "abar_s": abar_s}


def _ddim_plugkit(x_t, eps, abar_t, abar_s):
    return ops.ddim_step(x_t, eps, abar_t, abar_s, clip=1.0)


def _ddim_torch(x_t, eps, abar_t, abar_s):  # the family's ddim_step (which reads floats)
    abar_t, abar_s = 0.4, 0.5  # float(abar[t]): a host sync per step on a GPU, not timed here
    x0 = ((x_t - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)).clamp(-1, 1)
    eps = (x_t - math.sqrt(abar_t) * x0) / math.sqrt(1 - abar_t)
    return math.sqrt(abar_s) * x0 + math.sqrt(1 - abar_s) * eps


@dataclass(frozen=True)
class Op:
    name: str
    inputs: Callable[..., Inputs]  # (device, **dims) -> Inputs
    plugkit: Impl  # the public plugkit op(s); the backend in effect picks native or fallback
    baselines: dict[str, Impl]  # PyTorch's own way to write it
    # Minimal bytes fwd+bwd must read and write (pointwise ops), or GEMM flops (LSTM layer).
    bytes: Callable[..., int] | None = None
    flops: Callable[..., int] | None = None
    needs: tuple[str, ...] = ()  # plugkit.ops functions this op calls (LSTM: landing separately)


REPARAM = Op(
    "reparameterize_kl",
    _reparam_inputs,
    _reparam_plugkit,
    {"torch.randn": _reparam_torch},
    # fwd reads mu, logvar, writes z, kl; bwd reads dz, dkl, mu, logvar, writes dmu, dlogvar
    # (eps regenerated from the key, or z - mu: not counted, z is not a required read).
    bytes=lambda B, D: (6 * B * D + 2 * B) * F32,
)
GAN = Op(
    "gan_d_loss+gan_g_loss",
    _gan_inputs,
    _gan_plugkit,
    {"F.bce_with_logits": _gan_torch},
    # Per op: read the logits in fwd, again in bwd, write their grads: D 6B, G 3B elements.
    bytes=lambda B: 9 * B * F32,
)
DIFFUSION = Op(
    "diffusion_noise+diffusion_loss",
    _diffusion_inputs,
    _diffusion_plugkit,
    {"torch.randn + mse": _diffusion_torch},
    # fwd reads x0, writes x_t, reads pred; bwd reads dx_t, writes dx0, reads pred, writes
    # dpred: 7 BD elements (eps is drawn twice and never stored) plus abar.
    bytes=lambda B, D: 7 * B * D * F32 + 16 * B,
)
DDIM = Op(
    "ddim_step",
    _ddim_inputs,
    _ddim_plugkit,
    {"torch pointwise": _ddim_torch},
    bytes=lambda B, D: 3 * B * D * F32,  # forward only: reads x_t and eps, writes x_s
)


def _lstm_forward_flops(T: int, B: int, n_in: int, H: int) -> int:
    return 2 * T * B * 4 * H * (n_in + H)


LSTM_LAYER = Op(
    "lstm_layer",
    _lstm_layer_inputs,
    _lstm_layer_plugkit,
    {"nn.LSTM": _nn_lstm, "nn.LSTMCell loop": _lstm_cell_loop},
    # GEMMs only: forward 2*T*B*4H*(I+H); backward (dx/dh and dW) twice that.
    flops=lambda **dims: 3 * _lstm_forward_flops(*_tbih(dims)),
    needs=("lstm_layer",),
)
LSTM_CELL = Op(
    "lstm_cell",
    _lstm_cell_inputs,
    _lstm_cell_plugkit,
    {"torch pointwise": _lstm_cell_torch},
    # fwd reads gates (4BH), c_prev, writes h, c (7BH); bwd reads dh, dc, gates, c_prev (the
    # activations recomputed), writes dgates, dc_prev (12BH).
    bytes=lambda B, H: 19 * B * H * F32,
    needs=("lstm_cell",),
)


@dataclass(frozen=True)
class Case:
    op: Op
    dims: dict[str, int]
    quick: dict[str, int]  # tiny sizes for tests
    devices: tuple[str, ...] = ("cpu", "cuda")


CASES: tuple[Case, ...] = (
    Case(REPARAM, {"B": 4096, "D": 256}, {"B": 64, "D": 32}),
    Case(REPARAM, {"B": 65536, "D": 512}, {"B": 256, "D": 64}),
    Case(GAN, {"B": 256}, {"B": 64}),  # overhead-bound
    Case(GAN, {"B": 1 << 20}, {"B": 4096}),  # 12 MB of logits: beyond a CPU's L2
    # On a GPU 2^20 logits fit in L2; 2^26 moves 2.4 GB, so it measures HBM.
    Case(GAN, {"B": 1 << 26}, {"B": 1 << 14}, devices=("cuda",)),
    Case(LSTM_LAYER, {"T": 64, "B": 64, "I": 128, "H": 256}, {"T": 4, "B": 4, "I": 8, "H": 16}),
    Case(LSTM_CELL, {"B": 64, "H": 512}, {"B": 4, "H": 16}),
    Case(DIFFUSION, {"B": 64, "D": 6}, {"B": 8, "D": 6}),  # a table batch (adult: 6 numbers)
    Case(DIFFUSION, {"B": 128, "D": 784}, {"B": 16, "D": 784}),  # 28x28 images
    Case(DIFFUSION, {"B": 1024, "D": 3072}, {"B": 32, "D": 3072}),  # 3x32x32: past the L2
    Case(DIFFUSION, {"B": 8192, "D": 3072}, {"B": 64, "D": 3072}, devices=("cuda",)),  # 700 MB
    Case(DDIM, {"B": 128, "D": 784}, {"B": 16, "D": 784}),
    Case(DDIM, {"B": 1024, "D": 3072}, {"B": 32, "D": 3072}),
    Case(DDIM, {"B": 8192, "D": 3072}, {"B": 64, "D": 3072}, devices=("cuda",)),
)
PLUGKIT_IMPLS = ("native", "fallback", "compile")


def cases(device: str = "cpu") -> list[Case]:
    return [c for c in CASES if torch.device(device).type in c.devices]


def impl_names(case: Case) -> tuple[str, ...]:
    return PLUGKIT_IMPLS + tuple(case.op.baselines)


# --- timing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    warmup: int  # untimed calls before timing (a compiled impl compiles in the first one)
    max_samples: int
    min_samples: int  # even when one sample exceeds `seconds` (slow fallbacks at big shapes)
    seconds: float  # time to spend sampling one impl
    sample_s: float  # a sample repeats the step until it lasts this long (amortizes the sync)


FULL = Budget(warmup=3, max_samples=101, min_samples=3, seconds=1.5, sample_s=2e-3)
QUICK = Budget(warmup=1, max_samples=3, min_samples=3, seconds=0.0, sample_s=0.0)


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def _timed(step: Callable[[], Any], calls: int, sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        step()
    sync()
    return (time.perf_counter() - start) / calls


class Timing(NamedTuple):
    seconds: float  # median per call
    other_cpu_pct: float | None  # CPU share other processes took while sampling (None: unknown)


def _cpu_ticks() -> tuple[int, float] | None:
    """(ticks all CPUs were busy, ticks this process used), or None without Linux's /proc."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    own = os.times()
    return sum(ticks) - ticks[3] - ticks[4], (own.user + own.system) * os.sysconf("SC_CLK_TCK")


def _other_cpu_pct(before: tuple[int, float] | None, wall: float) -> float | None:
    # The machine may be shared (builds, tests): a busy one makes every number here meaningless,
    # so each row says how much CPU others took while it was sampled.
    after = _cpu_ticks()
    if before is None or after is None or wall < 0.1:  # /proc/stat counts in 10 ms ticks
        return None
    others = (after[0] - before[0]) - (after[1] - before[1])
    capacity = wall * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1)
    return round(min(100.0, max(0.0, 100 * others / capacity)), 1)


def _median_s(step: Callable[[], Any], budget: Budget, sync: Callable[[], None]) -> Timing:
    """Median seconds per call of `step` after warm-up, and how busy the machine was meanwhile."""
    spent = 0.0
    for i in range(budget.warmup):
        estimate = _timed(step, 1, sync)  # the last warm-up call sizes the samples
        spent += estimate
        if i >= 1 and spent > budget.seconds:  # a slow step: two warm-up calls are enough
            break
    inner = max(1, math.ceil(budget.sample_s / max(estimate, 1e-9)))
    n = min(max(int(budget.seconds / (estimate * inner)), budget.min_samples), budget.max_samples)
    ticks, start = _cpu_ticks(), time.perf_counter()
    median = statistics.median([_timed(step, inner, sync) for _ in range(n)])
    return Timing(median, _other_cpu_pct(ticks, time.perf_counter() - start))


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _tensors(o)]


def _fwd_bwd(impl: Impl, inputs: Inputs) -> Callable[[], None]:
    """One training step's work: the forward, then the gradients of every grad leaf.

    autograd.grad (not .backward) so no step pays for accumulating into .grad; the output
    gradients are fixed random tensors made once (same seed for every impl). An op whose
    inputs have no grad leaves (ddim_step: sampling) is timed as it runs, forward under no_grad.
    """
    leaves = [v for v in inputs.values() if isinstance(v, torch.Tensor) and v.requires_grad]
    if not leaves:
        def forward() -> None:
            with torch.no_grad():
                impl(**inputs)

        return forward
    outs = _tensors(impl(**inputs))
    gen = torch.Generator(device=outs[0].device).manual_seed(0)
    grads = [torch.randn(o.shape, generator=gen, device=o.device, dtype=o.dtype) for o in outs]

    def step() -> None:
        torch.autograd.grad(_tensors(impl(**inputs)), leaves, grads)

    return step


# --- torch.compile of the fallback ---------------------------------------------------------------


def _is_plugkit_op(target: Any) -> bool:
    custom = (torch._ops.OpOverload, torch._ops.OpOverloadPacket)
    return isinstance(target, custom) and str(target).startswith("plugkit.")


def _inductor_on_fallback(gm: torch.fx.GraphModule, example_inputs: list) -> Callable:
    """torch.compile backend: inductor, once the graph is shown to hold no native plugkit op.

    The compile column must time the compiled fallback; a plugkit custom op in the graph would
    mean dynamo traced the native path (use_backend("torch") not in effect).
    """
    native = sorted({str(n.target) for n in gm.graph.nodes if _is_plugkit_op(n.target)})
    if native:
        raise RuntimeError(f"compiled graph calls native ops {native}, expected the fallback")
    from torch._inductor.compile_fx import compile_fx

    return compile_fx(gm, example_inputs)


def _compiled(impl: Impl) -> Impl:
    # Traced and called under use_backend("torch") (see _try_time), and the backend refuses a
    # graph holding a native op. dynamic=False: one graph per case, specialized to its shape.
    return torch.compile(impl, backend=_inductor_on_fallback, dynamic=False)


# --- rows ----------------------------------------------------------------------------------------


def _fmt_dim(v: int) -> str:
    return f"2^{v.bit_length() - 1}" if v >= 1 << 16 and v & (v - 1) == 0 else str(v)


def _row(case: str, shape: str, impl: str, device: str, timing: Timing | None = None,
         note: str | None = None, **figures: float) -> dict:
    return {"case": case, "shape": shape, "impl": impl, "device": device,
            "median_ms": None if timing is None else timing.seconds * 1e3,
            "native_speedup": None, "gbps": None, "gflops": None, "pct_peak": None,
            "other_cpu_pct": None if timing is None else timing.other_cpu_pct,
            "note": note, **figures}


def _skip_note(case: Case, impl: str, device: str, with_compile: bool) -> str | None:
    """Why this impl of this case is not timed, or None when it is."""
    if impl in PLUGKIT_IMPLS and not all(hasattr(ops, name) for name in case.op.needs):
        return "lstm ops not available"
    if impl == "native":
        report = ops.backend()
        if not report.native_loaded:
            return f"native core off: {report.reason}"
        if torch.device(device).type == "cuda" and not report.cuda_compiled:
            return "no CUDA kernels compiled"
    if impl == "compile" and not with_compile:
        return "torch.compile off (slow to compile)"
    return None


def _impls(case: Case) -> Iterator[tuple[str, str, Impl]]:
    """(name, backend, impl); baselines do not call plugkit, the backend does not matter to them."""
    yield "native", "native", case.op.plugkit
    yield "fallback", "torch", case.op.plugkit
    yield "compile", "torch", _compiled(case.op.plugkit)
    for name, impl in case.op.baselines.items():
        yield name, "torch", impl


def _time_case(case: Case, dims: dict[str, int], device: str, budget: Budget,
               with_compile: bool, progress: Callable[[str], None]) -> list[dict]:
    shape = " ".join(f"{k}={_fmt_dim(v)}" for k, v in dims.items())
    inputs = case.op.inputs(device, **dims)
    rows = []
    for name, backend, impl in _impls(case):
        note, timing = _skip_note(case, name, device, with_compile), None
        if note is None:
            progress(f"{case.op.name} {shape}: {name}")
            timing, note = _try_time(impl, inputs, backend, device, budget)
        rows.append(_row(case.op.name, shape, name, device, timing, note))
    _add_figures(rows, case, dims)
    return rows


def _try_time(impl: Impl, inputs: Inputs, backend: str, device: str,
              budget: Budget) -> tuple[Timing | None, str | None]:
    """(timing, None), or (None, why) when the impl fails: one broken op or a failed
    compile should cost its row, not the whole multi-minute run."""
    try:
        with ops.use_backend(backend):  # around the whole loop: not paid per call
            return _median_s(_fwd_bwd(impl, inputs), budget, _sync(device)), None
    except Exception as exc:  # reported in the row
        first_line = (str(exc).strip().splitlines() or [""])[0][:120]
        return None, f"failed: {type(exc).__name__}: {first_line}"


def _add_figures(rows: list[dict], case: Case, dims: dict[str, int]) -> None:
    """Speed-up of native over each row, and achieved GB/s or GFLOP/s (ratios from this run)."""
    native_ms = next(r["median_ms"] for r in rows if r["impl"] == "native")
    for r in rows:
        ms = r["median_ms"]
        if ms is None:
            continue
        if native_ms is not None:
            r["native_speedup"] = ms / native_ms
        if case.op.bytes is not None:
            r["gbps"] = case.op.bytes(**dims) / (ms * 1e-3) / 1e9
        if case.op.flops is not None:
            r["gflops"] = case.op.flops(**dims) / (ms * 1e-3) / 1e9


# --- machine peaks -------------------------------------------------------------------------------


def _copy_row(device: str, quick: bool, budget: Budget) -> dict:
    mb = 16 if quick else 256  # far beyond any CPU cache or GPU L2
    src = torch.rand(mb * 2**20 // F32, device=device)
    dst = torch.empty_like(src)
    timing = _median_s(lambda: dst.copy_(src), budget, _sync(device))
    gbps = 2 * src.nbytes / timing.seconds / 1e9  # read + write
    return _row("machine", f"{mb} MB", "copy_", device, timing, gbps=gbps)


def _gemm_row(device: str, quick: bool, budget: Budget) -> dict:
    n = 256 if quick else 4096 if torch.device(device).type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    timing = _median_s(lambda: torch.mm(a, b, out=out), budget, _sync(device))
    return _row("machine", f"{n}x{n} @ {n}x{n}", "torch.mm", device, timing,
                gflops=2 * n**3 / timing.seconds / 1e9)


def _add_pct_peak(rows: list[dict], copy_gbps: float, gemm_gflops: float) -> None:
    for r in rows:
        if r["gbps"] is not None:
            r["pct_peak"] = 100 * r["gbps"] / copy_gbps
        elif r["gflops"] is not None:
            r["pct_peak"] = 100 * r["gflops"] / gemm_gflops


# --- entry points --------------------------------------------------------------------------------


def run_kernels(quick: bool = False, device: str = "cpu", *, with_compile: bool | None = None,
                progress: Callable[[str], None] | None = None) -> list[dict]:
    """Time every case of docs/operators.md's benchmark shapes on `device`; returns rows (the
    machine's first).

    quick: tiny shapes and repetition counts, torch.compile off (a smoke test in seconds).
    with_compile: time torch.compile(fallback) (default: unless quick; compiling is slow).
    progress: called with a line before each timing (the CLI's status display).
    """
    budget = QUICK if quick else FULL
    with_compile = not quick if with_compile is None else with_compile
    progress = progress or (lambda _: None)
    progress("machine: copy bandwidth, GEMM peak")
    copy, gemm = _copy_row(device, quick, budget), _gemm_row(device, quick, budget)
    rows = [copy, gemm]
    for case in cases(device):
        dims = case.quick if quick else case.dims
        rows += _time_case(case, dims, device, budget, with_compile, progress)
    _add_pct_peak(rows[2:], copy["gbps"], gemm["gflops"])
    return rows


BUSY_PCT = 10.0  # rows sampled while others took more CPU than this are flagged


def machine(results: list[dict]) -> dict[str, float | None]:
    """The measured copy bandwidth (GB/s) and GEMM peak (GFLOP/s) of a run, and the most CPU
    other processes took while any row was sampled (%)."""
    rows = {r["impl"]: r for r in results if r["case"] == "machine"}
    busy = [r["other_cpu_pct"] for r in results if r["other_cpu_pct"] is not None]
    return {"copy_gbps": rows["copy_"]["gbps"], "gemm_gflops": rows["torch.mm"]["gflops"],
            "other_cpu_pct_max": max(busy, default=None)}


def main_json(results: list[dict]) -> str:
    """What `plugkit bench --json` prints: the environment, the machine's peaks, the rows."""
    report = ops.backend()
    doc = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "backend": {"native_loaded": report.native_loaded, "reason": report.reason},
        "machine": machine(results),
        "rows": [r for r in results if r["case"] != "machine"],
    }
    return json.dumps(doc, indent=2)


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def _note(row: dict) -> str:
    busy = row["other_cpu_pct"]
    flag = f"busy machine: others took {busy:.0f}% CPU" if busy and busy > BUSY_PCT else ""
    return "; ".join(n for n in (row["note"], flag) if n)


def _cells(row: dict) -> list[str]:
    achieved = _fmt(row["gbps"], ".1f", " GB/s") or _fmt(row["gflops"], ".1f", " GFLOP/s")
    return [row["impl"], _fmt(row["median_ms"], ".3f"), _fmt(row["native_speedup"], ".2f", "×"),
            achieved, _fmt(row["pct_peak"], ".0f", "%")]


def format_table(results: list[dict]) -> Table:
    """A rich table: one section per case, the machine's peaks in the caption."""
    peaks = machine(results)
    table = Table(
        box=box.SIMPLE_HEAD,  # no vertical rules: fits more on a narrow terminal
        title=f"plugkit kernels: forward+backward, median ({results[0]['device']}, "
        f"{torch.get_num_threads()} threads)",
        caption=f"machine: copy {peaks['copy_gbps']:.1f} GB/s, GEMM {peaks['gemm_gflops']:.0f} "
        "GFLOP/s (% peak is against these); native ×: how many times faster native is"
        + "".join(f"\n{_note(r)} while measuring {r['impl']}" for r in results
                  if r["case"] == "machine" and _note(r)),
    )
    rows = [r for r in results if r["case"] != "machine"]
    cells = [_cells(r) for r in rows]
    # Numbers are never cut: on a narrow terminal the case and note columns wrap instead.
    table.add_column("case", min_width=10, overflow="fold")
    table.add_column("impl", min_width=8, overflow="fold")
    for j, header in enumerate(("ms", "native ×", "achieved", "% peak"), start=1):
        width = max([len(header)] + [len(c[j]) for c in cells])
        table.add_column(header, justify="right", no_wrap=True, min_width=width)
    table.add_column("note", min_width=10, overflow="fold")
    for i, (r, c) in enumerate(zip(rows, cells, strict=True)):
        key = (r["case"], r["shape"])
        # The first row of a section names the case, the second its shape.
        label = r["case"] if i == 0 or key != _key(rows[i - 1]) else (
            r["shape"] if i == 1 or key != _key(rows[i - 2]) else "")
        last = i + 1 == len(rows) or key != _key(rows[i + 1])
        table.add_row(label, *c, _note(r), end_section=last)
    return table


def _key(row: dict) -> tuple[str, str]:
    return row["case"], row["shape"]
