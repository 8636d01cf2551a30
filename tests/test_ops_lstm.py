"""plugkit.ops.lstm_cell and lstm_layer (docs/operators.md) on the native and the torch backend.

Every numeric test records which plugkit ops ran (a TorchDispatchMode sees the custom ops below
autograd), so a native run that silently fell back to the reference fails.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch._inductor.compile_fx import compile_fx
from torch.utils._python_dispatch import TorchDispatchMode

import plugkit.ops as ops
from plugkit.ops import lstm as lstm_ops

NATIVE = ops.backend().native_loaded
BACKENDS = [
    pytest.param("native", marks=pytest.mark.skipif(not NATIVE, reason=ops.backend().reason)),
    "torch",
]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])]
needs_native = pytest.mark.skipif(not NATIVE, reason=ops.backend().reason)

CELL_OPS = ("plugkit::lstm_cell", "plugkit::lstm_cell_backward")
LAYER_OPS = ("plugkit::lstm_layer", "plugkit::lstm_layer_backward")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class _PlugkitCalls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "plugkit":
            self.names.add(func.name())
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def running(backend: str, native_ops: tuple[str, ...]):
    """Runs the body on `backend` and checks that exactly `native_ops` ran iff it is native."""
    with ops.use_backend(backend), _PlugkitCalls() as calls:
        yield
    assert calls.names == (set(native_ops) if backend == "native" else set())


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """|actual - expected| / |expected| in float64 norms (0 for empty tensors)."""
    diff = (actual.double() - expected.double()).norm()
    return (diff / expected.double().norm().clamp_min(1e-30)).item()


def cell_inputs(batch, hidden, dtype=torch.float32, device="cpu"):
    gates = 2 * torch.randn(batch, 4 * hidden, dtype=dtype, device=device)  # [B, 4H] saturates some
    c_prev = torch.randn(batch, hidden, dtype=dtype, device=device)  # [B, H]
    return [gates.requires_grad_(), c_prev.requires_grad_()]


def layer_inputs(steps, batch, inputs, hidden, dtype=torch.float32, device="cpu"):
    def rand(*shape, scale=1.0):
        return (scale * torch.randn(*shape, dtype=dtype, device=device)).requires_grad_()

    return [
        rand(steps, batch, inputs),  # x
        rand(batch, hidden),  # h0
        rand(batch, hidden),  # c0
        rand(4 * hidden, inputs, scale=0.5),  # w_ih
        rand(4 * hidden, hidden, scale=0.5),  # w_hh
        rand(4 * hidden, scale=0.5),  # b_ih
        rand(4 * hidden, scale=0.5),  # b_hh
    ]


def flat(out) -> list[torch.Tensor]:
    """[h, c] or [y, h_n, c_n] from lstm_cell's or lstm_layer's result."""
    return [out[0], *out[1]] if isinstance(out[1], tuple) else list(out)


def outputs_and_grads(fn, inputs):
    """fn's outputs (flattened) and the gradients of every input for random output gradients."""
    outs = flat(fn(*inputs))
    grads_out = [torch.randn_like(t) for t in outs]
    grads = torch.autograd.grad(outs, inputs, grads_out, allow_unused=True, materialize_grads=True)
    return outs, list(grads), grads_out


def float64_reference(reference, inputs, grads_out):
    inputs64 = [t.detach().double().requires_grad_() for t in inputs]
    outs = flat(reference(*inputs64))
    grads = torch.autograd.grad(outs, inputs64, [g.double() for g in grads_out],
                                allow_unused=True, materialize_grads=True)
    return outs, list(grads)


# --- values and gradients -------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 5), (33, 157)])  # tails; >1 task, split mid-row
def test_cell_matches_float64_reference(backend, device, shape):
    inputs = cell_inputs(*shape, device=device)
    with running(backend, CELL_OPS):
        out, grads, grads_out = outputs_and_grads(ops.lstm_cell, inputs)
    ref_out, ref_grads = float64_reference(lstm_ops.cell_reference, inputs, grads_out)
    for name, a, e in zip(("h", "c", "dgates", "dc_prev"), out + grads, ref_out + ref_grads,
                          strict=True):
        assert a.dtype == torch.float32 and a.shape == e.shape, name
        assert rel_err(a, e) < 1e-5, name


LAYER_NAMES = ("y", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
# (T, B, I, H); the last has T * B >= 512, where the CPU kernel copies w_hh transposed (in tiles
# of 16, so H = 19 leaves partial ones)
@pytest.mark.parametrize("shape", [(7, 3, 5, 19), (3, 20, 8, 130), (9, 64, 5, 19)])
def test_layer_matches_float64_reference(backend, device, shape):
    inputs = layer_inputs(*shape, device=device)
    with running(backend, LAYER_OPS):
        out, grads, grads_out = outputs_and_grads(ops.lstm_layer, inputs)
    ref_out, ref_grads = float64_reference(lstm_ops.layer_reference, inputs, grads_out)
    for name, a, e in zip(LAYER_NAMES, out + grads, ref_out + ref_grads, strict=True):
        assert a.dtype == torch.float32 and a.shape == e.shape, name
        assert rel_err(a, e) < 1e-5, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_matches_nn_lstm(backend):
    steps, batch, inputs, hidden = 6, 4, 5, 7
    lstm = torch.nn.LSTM(inputs, hidden).double()
    x = torch.randn(steps, batch, inputs, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(batch, hidden, dtype=torch.float64, requires_grad=True) for _ in "hc")
    params = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]
    wrt = [x, h0, c0, *params]
    with running(backend, LAYER_OPS):
        y, (h_n, c_n) = ops.lstm_layer(x, h0, c0, *params)
        grads_out = [torch.randn_like(t) for t in (y, h_n, c_n)]
        grads = torch.autograd.grad((y, h_n, c_n), wrt, grads_out)
    ref_y, (ref_h, ref_c) = lstm(x, (h0[None], c0[None]))  # nn.LSTM's states are [1, B, H]
    ref_grads = torch.autograd.grad((ref_y, ref_h[0], ref_c[0]), wrt, grads_out)
    for name, a, e in zip(LAYER_NAMES, (y, h_n, c_n, *grads),
                          (ref_y, ref_h[0], ref_c[0], *ref_grads), strict=True):
        assert rel_err(a, e) < 1e-10, name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("used", [(0,), (1,), (2,), (1, 2)])
def test_layer_gradients_when_some_outputs_are_unused(backend, used):
    # The native backward is handed undefined gradients for unused outputs (autograd's zero
    # filling is off) and an expanded one for a sum: both must give the reference's gradients.
    inputs = layer_inputs(5, 3, 4, 6)
    with running(backend, LAYER_OPS):
        outs = flat(ops.lstm_layer(*inputs))
        loss = sum(outs[k].sum() for k in used)
        grads = torch.autograd.grad(loss, inputs)
    inputs64 = [t.detach().double().requires_grad_() for t in inputs]
    outs64 = flat(lstm_ops.layer_reference(*inputs64))
    expected = torch.autograd.grad(sum(outs64[k].sum() for k in used), inputs64)
    for a, e in zip(grads, expected, strict=True):
        assert rel_err(a, e) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("used", [0, 1])
def test_cell_gradients_when_one_output_is_unused(backend, used):
    inputs = cell_inputs(3, 5)
    with running(backend, CELL_OPS):
        grads = torch.autograd.grad(flat(ops.lstm_cell(*inputs))[used].sum(), inputs)
    inputs64 = [t.detach().double().requires_grad_() for t in inputs]
    expected = torch.autograd.grad(flat(lstm_ops.cell_reference(*inputs64))[used].sum(), inputs64)
    for a, e in zip(grads, expected, strict=True):
        assert rel_err(a, e) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend):
    cell = [t.detach().double().requires_grad_() for t in cell_inputs(2, 3)]
    layer = [t.detach().double().requires_grad_() for t in layer_inputs(3, 2, 3, 2)]
    with running(backend, CELL_OPS + LAYER_OPS):
        assert torch.autograd.gradcheck(ops.lstm_cell, cell)
        assert torch.autograd.gradcheck(lambda *a: ops.lstm_layer(*a)[0], layer)
        assert torch.autograd.gradcheck(lambda *a: ops.lstm_layer(*a)[1], layer)


# --- torch.library integration (native ops) -------------------------------------------------


@needs_native
def test_opcheck():
    cell = cell_inputs(3, 5)
    layer = layer_inputs(4, 3, 5, 6)
    torch.library.opcheck(torch.ops.plugkit.lstm_cell.default, tuple(cell))
    torch.library.opcheck(torch.ops.plugkit.lstm_layer.default, tuple(layer))
    with torch.no_grad():
        h, c, act = torch.ops.plugkit.lstm_cell(*cell)
        y, h_n, c_n, act_seq, cs = torch.ops.plugkit.lstm_layer(*layer)
    grad_h, grad_c = torch.randn_like(h), torch.randn_like(c)
    torch.library.opcheck(torch.ops.plugkit.lstm_cell_backward.default,
                          (grad_h, grad_c, act, cell[1].detach(), c))
    x, h0, c0, w_ih, w_hh = (t.detach() for t in layer[:5])
    grads = (torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n))
    torch.library.opcheck(torch.ops.plugkit.lstm_layer_backward.default,
                          (*grads, x, h0, c0, w_ih, w_hh, y, act_seq, cs))


@needs_native
def test_internal_outputs_are_not_differentiable():
    layer = layer_inputs(2, 3, 4, 5)
    _, _, _, act, cs = torch.ops.plugkit.lstm_layer(*layer)
    _, _, act_cell = torch.ops.plugkit.lstm_cell(*cell_inputs(2, 3))
    assert not (act.requires_grad or cs.requires_grad or act_cell.requires_grad)


@needs_native
def test_compile_fullgraph():
    layer = layer_inputs(4, 3, 5, 6)
    cell = cell_inputs(3, 6)

    def step(x, h0, c0, w_ih, w_hh, b_ih, b_hh, gates, c_prev):
        y, (h_n, c_n) = ops.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        h, c = ops.lstm_cell(gates, c_prev)
        return y.sum() + h_n.sum() + 2 * c_n.sum() + (h * c).sum()

    traced: set[str] = set()

    def inductor_recording_ops(gm, example_inputs):  # a dispatch mode cannot watch compile
        traced.update(str(n.target).removesuffix(".default") for n in gm.graph.nodes)
        return compile_fx(gm, example_inputs)

    inputs = layer + cell
    with ops.use_backend("native"):
        compiled = torch.compile(step, fullgraph=True, backend=inductor_recording_ops)
        got = torch.autograd.grad(compiled(*inputs), inputs)
        expected = torch.autograd.grad(step(*inputs), inputs)
    assert {"plugkit.lstm_layer", "plugkit.lstm_cell"} <= traced
    for a, e in zip(got, expected, strict=True):
        assert rel_err(a, e) < 1e-6


# --- bad inputs -----------------------------------------------------------------------------


def _bad_cell_cases():
    gates, c_prev = torch.randn(3, 8), torch.randn(3, 2)
    return {
        "int_gates": ((gates.long(), c_prev), "gates"),
        "gates_1d": ((gates[0], c_prev), "gates"),
        "gates_width": ((torch.randn(3, 10), c_prev), "gates"),
        "c_prev_shape": ((gates, torch.randn(3, 3)), "c_prev"),
        "c_prev_dtype": ((gates, c_prev.double()), "c_prev"),
        "c_prev_device": ((gates, c_prev.to("meta")), "c_prev"),
    }


def _bad_layer_cases():
    x, h0, c0 = torch.randn(4, 3, 5), torch.randn(3, 2), torch.randn(3, 2)
    w_ih, w_hh, b = torch.randn(8, 5), torch.randn(8, 2), torch.randn(8)
    ok = {"x": x, "h0": h0, "c0": c0, "w_ih": w_ih, "w_hh": w_hh, "b_ih": b, "b_hh": b}
    bad = {
        "x_2d": ("x", x[0]),
        "x_int": ("x", x.int()),
        "h0_nn_lstm_layout": ("h0", h0[None]),
        "c0_batch": ("c0", torch.randn(2, 2)),
        "w_ih_shape": ("w_ih", torch.randn(8, 4)),
        "w_hh_shape": ("w_hh", torch.randn(8, 3)),
        "w_hh_1d": ("w_hh", torch.randn(8)),
        "b_ih_shape": ("b_ih", torch.randn(9)),
        "b_hh_dtype": ("b_hh", b.double()),
        "w_ih_device": ("w_ih", w_ih.to("meta")),
        "h0_int": ("h0", h0.long()),
    }
    # each case: the valid arguments in order, with one of them replaced
    return {case: (tuple({**ok, name: t}.values()), name) for case, (name, t) in bad.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(_bad_cell_cases()))
def test_bad_cell_inputs(backend, case):
    args, name = _bad_cell_cases()[case]
    with ops.use_backend(backend), pytest.raises(ValueError, match=name):
        ops.lstm_cell(*args)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(_bad_layer_cases()))
def test_bad_layer_inputs(backend, case):
    args, name = _bad_layer_cases()[case]
    with ops.use_backend(backend), pytest.raises(ValueError, match=name):
        ops.lstm_layer(*args)


@needs_native
@pytest.mark.parametrize("case", ["gates_width", "c_prev_shape", "c_prev_dtype", "int_gates"])
def test_native_cell_checks_its_arguments(case):
    args, name = _bad_cell_cases()[case]
    with pytest.raises(ValueError, match=name):
        torch.ops.plugkit.lstm_cell(*args)


@needs_native
@pytest.mark.parametrize("case", ["x_2d", "h0_nn_lstm_layout", "w_ih_shape", "b_hh_dtype"])
def test_native_layer_checks_its_arguments(case):
    args, name = _bad_layer_cases()[case]
    with pytest.raises(ValueError, match=name):
        torch.ops.plugkit.lstm_layer(*args)


@needs_native
def test_native_layer_backward_checks_its_arguments():
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = (t.detach() for t in layer_inputs(4, 3, 5, 2))
    y, h_n, c_n, act, cs = torch.ops.plugkit.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"grad_y must have shape \[4, 3, 2\], got \[3, 3, 2\]"):
        torch.ops.plugkit.lstm_layer_backward(y[1:], h_n, c_n, x, h0, c0, w_ih, w_hh, y, act, cs)


# --- layouts and empty tensors --------------------------------------------------------------


def _strided(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous layout (every other element of a wider tensor)."""
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
    wide[..., ::2] = t.detach()
    return wide[..., ::2].requires_grad_()


def _check_layout_independent(backend, fn, inputs, strided, native_ops):
    assert not any(t.is_contiguous() for t in strided)
    with running(backend, native_ops):
        outs, grads, grads_out = outputs_and_grads(fn, inputs)
        outs_s = flat(fn(*strided))
        grads_s = torch.autograd.grad(outs_s, strided, [_strided(g) for g in grads_out])
    for a, e in zip(outs_s + list(grads_s), outs + grads, strict=True):
        assert rel_err(a, e) < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_cell_noncontiguous_inputs(backend):
    inputs = cell_inputs(3, 5)
    strided = [_strided(t) for t in inputs]
    _check_layout_independent(backend, ops.lstm_cell, inputs, strided, CELL_OPS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_noncontiguous_inputs(backend):
    inputs = layer_inputs(4, 3, 5, 6)
    x = inputs[0].detach().transpose(0, 1).contiguous().transpose(0, 1)  # batch-major storage
    strided = [x.requires_grad_()] + [_strided(t) for t in inputs[1:]]
    _check_layout_independent(backend, ops.lstm_layer, inputs, strided, LAYER_OPS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("steps,batch", [(0, 3), (4, 0), (0, 0)])
def test_layer_empty(backend, steps, batch):
    inputs = layer_inputs(steps, batch, 5, 6)
    x, h0, c0 = inputs[:3]
    with running(backend, LAYER_OPS):
        (y, h_n, c_n), grads, grads_out = outputs_and_grads(ops.lstm_layer, inputs)
    assert y.shape == (steps, batch, 6) and h_n.shape == c_n.shape == (batch, 6)
    assert [g.shape for g in grads] == [t.shape for t in inputs]
    if steps == 0:  # nothing ran: the states pass through, the weights get no gradient
        assert torch.equal(h_n, h0) and torch.equal(c_n, c0)
        assert torch.equal(grads[1], grads_out[1]) and torch.equal(grads[2], grads_out[2])
        assert all(not g.any() for g in grads[3:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_cell_empty(backend):
    inputs = cell_inputs(0, 5)
    with running(backend, CELL_OPS):
        (h, c), grads, _ = outputs_and_grads(ops.lstm_cell, inputs)
    assert h.shape == c.shape == (0, 5) and [g.shape for g in grads] == [(0, 20), (0, 5)]


# --- CUDA storage types ---------------------------------------------------------------------


@pytest.mark.cuda
@CUDA
@needs_native
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_storage(dtype):
    inputs = layer_inputs(5, 4, 8, 16, dtype=dtype, device="cuda")
    with running("native", LAYER_OPS):
        out, grads, grads_out = outputs_and_grads(ops.lstm_layer, inputs)
    ref_out, ref_grads = float64_reference(lstm_ops.layer_reference, inputs, grads_out)
    for name, a, e in zip(LAYER_NAMES, out + grads, ref_out + ref_grads, strict=True):
        assert a.dtype == dtype and rel_err(a, e) < 3e-2, name
