"""gpu-check step 7: the CUDA probes, what tests/test_ops_*.py check on the CPU only, checked on
the GPU.

Every native op with non-contiguous inputs (against the float64 reference on the CPU),
gradcheck, opcheck, half storage, a grid-stride launch, empty tensors, device-mismatch errors,
a side stream and CUDA-graph capture (a kernel launched on any stream but the current one fails
the capture). The tests skip their CUDA cases without a GPU, so nothing else runs these until a
GPU machine does. A probe that fails does not stop the others.

Usage: python probes.py [cuda|cpu]   (cpu: gpu-check's plumbing mode; the CUDA-only probes skip)
One line per probe, then a count; exit 1 if any failed.
"""
import sys
import time

import torch

import plugkit.ops as ops
from plugkit.ops import _backend
from plugkit.ops import gan as G
from plugkit.ops import lstm as L
from plugkit.ops import reparam as R

dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
CUDA = dev.type == "cuda"
P = torch.ops.plugkit
torch.backends.cuda.matmul.allow_tf32 = False  # float32 GEMMs compared at 1e-5
torch.manual_seed(0)
results = {}


def probe(fn):
    """Runs fn at once; records ok / FAIL with the first line of the error."""
    if getattr(fn, "skip", None):
        print(f"skip {fn.__name__} ({fn.skip})", flush=True)
        return fn
    start = time.perf_counter()
    try:
        fn()
        if CUDA:
            torch.cuda.synchronize()  # an asynchronous fault belongs to this probe
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        results[fn.__name__] = False
        print(f"FAIL {fn.__name__}: {type(exc).__name__}: {first}", flush=True)
    else:
        results[fn.__name__] = True
        print(f"ok   {fn.__name__} ({time.perf_counter() - start:.2f} s)", flush=True)
    return fn


def cuda_only(fn):
    if not CUDA:
        fn.skip = "needs CUDA"
    return fn


def rel(actual, expected):
    a = actual.detach().double()
    b = expected.detach().double().to(a.device)
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def close(actual, expected, tol, what):
    err = rel(actual, expected)
    assert err < tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


def leaf(t):
    return t.detach().requires_grad_()


def cpu64(ts):
    return [leaf(t.detach().double().cpu()) for t in ts]


def compare(outs, grads, ref_outs, ref_grads, tol, names):
    for name, a, b in zip(names, [*outs, *grads], [*ref_outs, *ref_grads], strict=True):
        close(a, b, tol, name)


@probe
def native_kernels_registered_for_device():
    assert _backend.native_for(dev), ops.backend().reason
    key = "CUDA" if CUDA else "CPU"
    names = ["reparameterize_kl", "reparameterize_kl_backward", "philox4x32", "gan_d_loss",
             "gan_d_loss_backward", "gan_g_loss", "gan_g_loss_backward", "lstm_cell",
             "lstm_cell_backward", "lstm_layer", "lstm_layer_backward"]
    absent = [n for n in names
              if not torch._C._dispatch_has_kernel_for_dispatch_key(f"plugkit::{n}", key)]
    assert not absent, f"no {key} kernel for {absent}"


@probe
def reparam_noncontiguous_inputs():
    mu = leaf(torch.randn(33, 40, device=dev).t())  # [40, 33] transposed
    lv = leaf(torch.randn(40, 66, device=dev)[:, ::2])  # strided
    eps = torch.randn(33, device=dev).expand(40, 33)  # stride 0
    z, kl = ops.reparameterize_kl(mu, lv, eps=eps)
    go = [torch.randn_like(z), torch.randn_like(kl)]
    grads = torch.autograd.grad((z, kl), (mu, lv), go)
    m64, l64 = cpu64([mu, lv])
    z64, kl64 = R.reference(m64, l64, eps.double().cpu())
    grads64 = torch.autograd.grad((z64, kl64), (m64, l64), [g.double().cpu() for g in go])
    compare((z, kl), grads, (z64, kl64), grads64, 1e-5, ("z", "kl", "dmu", "dlogvar"))


@probe
def reparam_philox_strided_and_half():
    mu, lv = torch.randn(64, 37, device=dev), 0.1 * torch.randn(64, 37, device=dev)
    key = torch.tensor([7, (1 << 32) - 3], device=dev)
    z, kl = P.reparameterize_kl(mu, lv, None, key)
    z2, kl2 = P.reparameterize_kl(mu.t().contiguous().t(), lv.t().contiguous().t(), None, key)
    assert torch.equal(z, z2) and torch.equal(kl, kl2), "layout changed the draws"
    if CUDA:
        for dtype, tol in ((torch.float16, 2e-3), (torch.bfloat16, 2e-2)):
            zh, klh = P.reparameterize_kl(mu.to(dtype), lv.to(dtype), None, key)
            zf, klf = P.reparameterize_kl(mu.to(dtype).float(), lv.to(dtype).float(), None, key)
            assert zh.dtype == klh.dtype == dtype
            close(zh, zf, tol, f"z {dtype}")
            close(klh, klf, tol, f"kl {dtype}")


@probe
def gan_noncontiguous_inputs_every_kind():
    r = leaf(3 * torch.randn(64, 6, device=dev)[:, ::2])
    f = leaf(3 * torch.randn(8, 50, device=dev).t())
    for kind, s in (("bce", 0.1), ("hinge", 0.0), ("wasserstein", 0.0)):
        d = ops.gan_d_loss(r, f, kind=kind, label_smoothing=s)
        g = ops.gan_g_loss(f, kind=kind)
        grads = torch.autograd.grad(d + 0.5 * g, (r, f))
        r64, f64 = cpu64([r, f])
        d64, g64 = G.d_loss_reference(r64, f64, kind, s), G.g_loss_reference(f64, kind)
        grads64 = torch.autograd.grad(d64 + 0.5 * g64, (r64, f64))
        compare((d, g), grads, (d64, g64), grads64, 1e-5,
                [f"{kind} {n}" for n in ("d", "g", "dreal", "dfake")])


@probe
def lstm_cell_noncontiguous_and_half():
    B, H = 33, 157
    dtypes = [(torch.float32, 1e-5)] + ([(torch.float16, 3e-2), (torch.bfloat16, 3e-2)] * CUDA)
    for dtype, tol in dtypes:
        gates = leaf(2 * torch.randn(4 * H, B, device=dev).t().to(dtype))  # [B, 4H] transposed
        c0 = leaf(torch.randn(B, 2 * H, device=dev)[:, ::2].to(dtype))
        h, c = ops.lstm_cell(gates, c0)
        go = [torch.randn_like(h), torch.randn_like(c)]
        grads = torch.autograd.grad((h, c), (gates, c0), go)
        g64, c64 = cpu64([gates, c0])
        h64, cc64 = L.cell_reference(g64, c64)
        grads64 = torch.autograd.grad((h64, cc64), (g64, c64), [g.double().cpu() for g in go])
        assert h.dtype == c.dtype == dtype
        compare((h, c), grads, (h64, cc64), grads64, tol,
                [f"{dtype} {n}" for n in ("h", "c", "dgates", "dc_prev")])


@probe
def lstm_layer_noncontiguous_inputs():
    T, B, D, H = 6, 5, 7, 19
    inputs = [
        leaf(torch.randn(B, T, D, device=dev).transpose(0, 1)),  # x [T, B, D]
        leaf(torch.randn(B, 2 * H, device=dev)[:, ::2]),  # h0
        leaf(torch.randn(B, 2 * H, device=dev)[:, 1::2]),  # c0
        leaf(0.3 * torch.randn(D, 4 * H, device=dev).t()),  # w_ih [4H, D]
        leaf(0.3 * torch.randn(H, 4 * H, device=dev).t()),  # w_hh [4H, H]
        leaf(torch.randn(8 * H, device=dev)[::2]),  # b_ih
        leaf(torch.randn(4 * H, device=dev)),  # b_hh
    ]
    y, (hn, cn) = ops.lstm_layer(*inputs)
    go = [torch.randn_like(t) for t in (y, hn, cn)]
    grads = torch.autograd.grad((y, hn, cn), inputs, go)
    in64 = cpu64(inputs)
    y64, (hn64, cn64) = L.layer_reference(*in64)
    grads64 = torch.autograd.grad((y64, hn64, cn64), in64, [g.double().cpu() for g in go])
    compare((y, hn, cn), grads, (y64, hn64, cn64), grads64, 1e-5,
            ("y", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"))


def flat_layer(*args):
    y, (h_n, c_n) = ops.lstm_layer(*args)
    return y, h_n, c_n


@probe
def gradcheck_float64():
    def t(*shape):
        return torch.randn(*shape, dtype=torch.float64, device=dev, requires_grad=True)

    eps = torch.randn(3, 5, dtype=torch.float64, device=dev)
    checks = [
        (lambda m, lv: ops.reparameterize_kl(m, lv, eps=eps), (t(3, 5), t(3, 5))),
        (lambda r, f: ops.gan_d_loss(r, f, label_smoothing=0.1), (t(6, 2), t(5))),
        (lambda f: ops.gan_g_loss(f), (t(7),)),
        (ops.lstm_cell, (t(3, 16), t(3, 4))),
        (lambda *a: flat_layer(*a), (t(3, 2, 3), t(2, 4), t(2, 4), t(16, 3), t(16, 4), t(16),
                                     t(16))),
    ]
    for fn, args in checks:
        assert torch.autograd.gradcheck(fn, args)


@probe
def opcheck_on_device():
    def t(*shape, grad=True):
        return torch.randn(*shape, device=dev, requires_grad=grad)

    key = R.draw_key(dev)
    cell = (t(3, 20), t(3, 5))
    layer = (t(4, 3, 5), t(3, 6), t(3, 6), t(24, 5), t(24, 6), t(24), t(24))
    cases = [
        (P.reparameterize_kl.default, (t(4, 6), t(4, 6), t(4, 6, grad=False), None)),
        (P.reparameterize_kl.default, (t(6, 4).t(), t(6, 4).t(), None, key)),
        (P.philox4x32.default, (torch.arange(8, device=dev).view(2, 4), key)),
        (P.gan_d_loss.default, (t(3, 8).t(), t(11), "bce", 0.1)),
        (P.gan_g_loss.default, (t(11), "hinge")),
        (P.lstm_cell.default, cell),
        (P.lstm_layer.default, layer),
    ]
    with torch.no_grad():
        h, c, act = P.lstm_cell(*cell)
        y, h_n, c_n, act_seq, cs = P.lstm_layer(*layer)
    cases += [
        (P.lstm_cell_backward.default,
         (torch.randn_like(h), torch.randn_like(c), act, cell[1].detach(), c)),
        (P.lstm_layer_backward.default,
         (torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n),
          *(x.detach() for x in layer[:5]), y, act_seq, cs)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


@probe
def empty_tensors():
    z, kl = ops.reparameterize_kl(torch.zeros(0, 4, device=dev), torch.zeros(0, 4, device=dev))
    assert z.shape == (0, 4) and kl.shape == (0,)
    mu = torch.zeros(4, 0, device=dev, requires_grad=True)
    z, kl = ops.reparameterize_kl(mu, torch.zeros(4, 0, device=dev))
    assert z.shape == (4, 0) and kl.shape == (4,) and not kl.any()
    (kl.sum() + z.sum()).backward()
    assert mu.grad.shape == (4, 0)
    h, c = ops.lstm_cell(torch.zeros(0, 20, device=dev), torch.zeros(0, 5, device=dev))
    assert h.shape == c.shape == (0, 5)
    for T, B in ((0, 3), (4, 0)):
        y, (hn, cn) = ops.lstm_layer(
            torch.zeros(T, B, 3, device=dev), torch.zeros(B, 5, device=dev),
            torch.zeros(B, 5, device=dev), torch.zeros(20, 3, device=dev),
            torch.zeros(20, 5, device=dev), torch.zeros(20, device=dev),
            torch.zeros(20, device=dev))
        assert y.shape == (T, B, 5) and hn.shape == cn.shape == (B, 5)
    try:
        ops.gan_g_loss(torch.zeros(0, device=dev))
    except ValueError:
        pass
    else:
        raise AssertionError("gan_g_loss on empty logits did not raise")


@probe
@cuda_only
def device_mismatch_raises_before_launch():
    x = torch.randn(8, device=dev)
    mu, key = torch.randn(2, 3, device=dev), torch.tensor([1, 2])
    gates, c0 = torch.randn(2, 8, device=dev), torch.randn(2, 2, device=dev)
    layer = [torch.randn(2, 2, 3, device=dev), torch.randn(2, 2, device=dev),
             torch.randn(2, 2, device=dev), torch.randn(8, 3, device=dev),
             torch.randn(8, 2, device=dev), torch.randn(8, device=dev), torch.randn(8, device=dev)]
    calls = {
        "gan_d_loss fake on cpu": lambda: P.gan_d_loss(x, x.cpu(), "bce", 0.0),
        "reparameterize_kl key on cpu": lambda: P.reparameterize_kl(mu, mu, None, key),
        "philox4x32 key on cpu": lambda: P.philox4x32(torch.zeros(1, 4, dtype=torch.long,
                                                                  device=dev), key),
        "lstm_cell c_prev on cpu": lambda: P.lstm_cell(gates, c0.cpu()),
        "lstm_layer h0 on cpu": lambda: P.lstm_layer(layer[0], layer[1].cpu(), *layer[2:]),
    }
    silent = []
    for name, call in calls.items():
        try:
            call()
        except (ValueError, RuntimeError) as exc:
            assert "cpu" in str(exc), f"{name}: {exc}"
        else:
            silent.append(name)
        torch.cuda.synchronize()  # raises here if a kernel ran on a host pointer
    assert not silent, f"no error for {silent}"


def all_ops(t):
    """Every native op once, called directly (no autograd), on the tensors of `t`."""
    with torch.no_grad():
        z, kl = P.reparameterize_kl(t["mu"], t["lv"], None, t["key"])
        out = [z, kl, *P.reparameterize_kl_backward(t["gz"], t["gk"], t["mu"], t["lv"], z)]
        out += [P.gan_d_loss(t["r"], t["f"], "bce", 0.1), P.gan_g_loss(t["f"], "hinge"),
                *P.gan_d_loss_backward(t["one"], t["r"], t["f"], "bce", 0.1),
                P.gan_g_loss_backward(t["one"], t["f"], "hinge")]
        h, c, act = P.lstm_cell(t["gates"], t["c_prev"])
        out += [h, c, *P.lstm_cell_backward(t["gh"], t["gc"], act, t["c_prev"], c)]
        layer = [t[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")]
        y, h_n, c_n, act_seq, cs = P.lstm_layer(*layer)
        out += [y, h_n, c_n, *P.lstm_layer_backward(t["gy"], t["gh"], t["gc"], *layer[:5], y,
                                                    act_seq, cs)]
        out.append(P.philox4x32(t["counters"], t["key"]))
    return out


def op_inputs():
    B, H, T, D = 16, 32, 5, 12
    t = {"mu": torch.randn(300, 37), "lv": 0.1 * torch.randn(300, 37), "gz": torch.randn(300, 37),
         "gk": torch.randn(300), "r": torch.randn(5000), "f": torch.randn(7000),
         "one": torch.ones(()), "gates": torch.randn(B, 4 * H), "c_prev": torch.randn(B, H),
         "gh": torch.randn(B, H), "gc": torch.randn(B, H), "x": torch.randn(T, B, D),
         "h0": torch.randn(B, H), "c0": torch.randn(B, H), "w_ih": 0.3 * torch.randn(4 * H, D),
         "w_hh": 0.3 * torch.randn(4 * H, H), "b_ih": torch.randn(4 * H),
         "b_hh": torch.randn(4 * H), "gy": torch.randn(T, B, H)}
    t = {k: v.to(dev) for k, v in t.items()}
    t["key"] = torch.tensor([123, 456], device=dev)
    t["counters"] = torch.randint(0, 2**32, (64, 4), device=dev)
    return t


def assert_all_close(got, want, what):
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: output {i} shape/dtype"
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6), (
            f"{what}: output {i} differs by {(a.double() - b.double()).abs().max().item():.2e}")


@probe
@cuda_only
def side_stream():
    t = op_inputs()
    expected = all_ops(t)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = all_ops(t)
    torch.cuda.current_stream().wait_stream(stream)
    assert_all_close(got, expected, "side stream")


@probe
@cuda_only
def cuda_graph_capture_and_replay():
    t = op_inputs()
    warm = torch.cuda.Stream()
    warm.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(warm):  # cuBLAS handles and workspaces before the capture
        all_ops(t)
    torch.cuda.current_stream().wait_stream(warm)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = all_ops(t)
    fresh = op_inputs()  # new values into the captured inputs: the replay must read them
    for k, v in fresh.items():
        t[k].copy_(v)
    graph.replay()
    torch.cuda.synchronize()
    assert_all_close(captured, all_ops(fresh), "graph replay")


@probe
@cuda_only
def lstm_cell_grid_stride():
    B, H = 2048, 8200  # B*H > 65536 blocks x 256 threads: every thread loops
    gates = leaf(torch.randn(B, 4 * H, device=dev))
    c0 = leaf(torch.randn(B, H, device=dev))
    h, c = ops.lstm_cell(gates, c0)
    go = [torch.randn_like(h), torch.randn_like(c)]
    grads = torch.autograd.grad((h, c), (gates, c0), go)
    with ops.use_backend("torch"):
        hr, cr = ops.lstm_cell(gates, c0)
    grads_r = torch.autograd.grad((hr, cr), (gates, c0), go)
    compare((h, c), grads, (hr, cr), grads_r, 1e-5, ("h", "c", "dgates", "dc_prev"))


failed = [name for name, ok in results.items() if not ok]
print(f"{len(results) - len(failed)} probes ok, {len(failed)} failed{': ' if failed else ''}"
      + ", ".join(failed))
sys.exit(1 if failed else 0)
