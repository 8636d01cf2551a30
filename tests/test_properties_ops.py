"""Property-based tests of plugkit.ops: every op on both backends against float64 references.

Hypothesis draws the shapes (empty ones included), the memory layout (contiguous, transposed,
sliced with a step, broadcast with stride 0), the dtype and the values, extremes included:
logits up to +-1e4, logvar +-50, saturated LSTM gates. The search is derandomized, so CI runs
the same examples every time; PLUGKIT_EXAMPLES=1000 runs a deeper search by hand.

How close is close enough: an op adds terms, and rounding each term in the input dtype bounds
the error, so results are compared by norm against the magnitude of those terms (`scale`),
norm-relative with an absolute floor. A value that underflows in float32
(exp(-25) * eps) cannot be demanded element by element, but it is still counted.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugkit.ops import gan_d_loss, gan_g_loss, lstm_cell, lstm_layer, reparameterize_kl
from plugkit.ops import lstm as lstm_ops

EXAMPLES = int(os.environ.get("PLUGKIT_EXAMPLES", "30"))
SEARCH = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])
TOL = {torch.float32: 3e-5, torch.float64: 1e-11}  # times the magnitude of the summed terms

dtypes = st.sampled_from([torch.float32, torch.float64])
layouts = st.sampled_from(["contiguous", "transposed", "sliced", "broadcast"])


@st.composite
def tensors(draw, shape, lo, hi, extremes=()):
    """A float64 tensor of `shape` with values in [lo, hi], some exactly at `extremes`."""
    n = int(np.prod(shape))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.uniform(lo, hi, n)
    if extremes and n:
        picks = draw(st.lists(st.sampled_from(extremes), max_size=n))
        values[rng.permutation(n)[:len(picks)]] = picks
    return torch.from_numpy(values).reshape(shape)


def laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values with other strides: what a caller's views hand to an op."""
    if layout == "transposed" and t.dim() >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "sliced":
        wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype) if t.dim() else t
        if t.dim():
            wide[..., ::2] = t
            return wide[..., ::2]
    if layout == "broadcast" and t.dim() >= 1 and t.shape[0] > 0:
        return t[:1].expand(t.shape)  # stride 0 along the first dimension
    return t


def leaf(t: torch.Tensor, dtype: torch.dtype, layout: str = "contiguous") -> torch.Tensor:
    """`t` in `dtype` and `layout`, as a tensor autograd differentiates."""
    return laid_out(t.to(dtype), layout).requires_grad_()


def as64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().double().requires_grad_()


def assert_close(got, want, scale, dtype, what):
    """||got - want|| <= TOL * ||scale|| (plus a tiny floor), and finite where want is."""
    got, want, scale = got.detach().double(), want.detach().double(), scale.detach().double()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    representable = want.abs() < torch.finfo(dtype).max
    assert torch.isfinite(got[representable]).all(), f"{what}: not finite: {got}"
    err = (got - want)[representable].norm().item()
    bound = TOL[dtype] * (scale[representable].norm().item() + 1e-30)
    assert err <= bound, f"{what}: error {err:.3g} > {bound:.3g}"


# --- reparameterize_kl ---------------------------------------------------------------------------

shapes = st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple)


@SEARCH
@given(shape=shapes, layout=layouts, dtype=dtypes, data=st.data())
def test_reparameterize_kl_matches_float64(backend, shape, layout, dtype, data):
    mu = leaf(data.draw(tensors(shape, -10, 10, (0.0, 1e3, -1e3))), dtype, layout)
    logvar = leaf(data.draw(tensors(shape, -5, 5, (50.0, -50.0, 0.0, 20.0))), dtype, layout)
    eps = laid_out(data.draw(tensors(shape, -6, 6, (0.0, 8.0))).to(dtype), layout)
    z, kl = reparameterize_kl(mu, logvar, eps=eps)
    assert z.dtype == kl.dtype == dtype and kl.shape == shape[:-1]

    m, lv, e = as64(mu), as64(logvar), eps.double()
    std = torch.exp(0.5 * lv)
    z_ref = m + std * e
    kl_ref = 0.5 * (torch.exp(lv) + m * m - 1 - lv).sum(-1)
    kl_terms = 0.5 * (torch.exp(lv) + m * m + 1 + lv.abs()).sum(-1)
    assert_close(z, z_ref, m.abs() + (std * e).abs(), dtype, "z")
    assert_close(kl, kl_ref, kl_terms, dtype, "kl")

    dz = data.draw(tensors(shape, -1, 1)).to(dtype)
    dkl = data.draw(tensors(shape[:-1], -1, 1)).to(dtype)
    if mu.numel() == 0:
        return
    grads = torch.autograd.grad((z * dz).sum() + (kl * dkl).sum(), (mu, logvar))
    want = torch.autograd.grad((z_ref * dz.double()).sum() + (kl_ref * dkl.double()).sum(),
                               (m, lv))
    dz64, dkl64 = dz.double(), dkl.double()[..., None]
    # dlogvar may come from z - mu (the backward saves z, not eps), rounded relative to |z|
    scales = (dz64.abs() + (m * dkl64).abs(),
              0.5 * (dz64 * z_ref).abs() + 0.5 * (dz64 * m).abs()
              + 0.5 * (torch.exp(lv) + 1) * dkl64.abs())
    for name, g, w, s in zip(("dmu", "dlogvar"), grads, want, scales, strict=True):
        assert_close(g, w, s.detach(), dtype, name)


@SEARCH
@given(shape=shapes, layout=layouts, dtype=dtypes, seed=st.integers(0, 2**31), data=st.data())
def test_sampled_reparameterize_agrees_across_backends(shape, layout, dtype, seed, data):
    """Switching backend changes the drawn eps by a few ulps at most (Box-Muller's log, sin
    and cos are the platform's)."""
    from plugkit.ops import backend, use_backend

    if not backend().native_loaded:
        pytest.skip(backend().reason)
    mu = laid_out(data.draw(tensors(shape, -10, 10)).to(dtype), layout)
    logvar = laid_out(data.draw(tensors(shape, -50, 50, (50.0, -50.0))).to(dtype), layout)
    results = []
    for name in ("native", "torch"):
        torch.manual_seed(seed)
        with use_backend(name):
            results.append(reparameterize_kl(mu, logvar))
    (z_native, kl_native), (z_torch, kl_torch) = results
    std = torch.exp(0.5 * logvar.double())
    assert_close(z_native, z_torch, mu.double().abs() + 9 * std, dtype, "z")
    assert_close(kl_native, kl_torch, kl_torch.abs(), dtype, "kl")


# --- GAN losses --------------------------------------------------------------------------------

logit_shapes = st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple)
LOGIT_EXTREMES = (1e4, -1e4, 0.0, 30.0, -30.0, 88.0, -88.0)


def softplus64(x):
    return torch.logaddexp(x, torch.zeros_like(x))


def d_terms(r, f, kind, s):
    """The per-element terms of L_D, as (real terms, fake terms)."""
    if kind == "bce":
        return (1 - s) * softplus64(-r) + s * softplus64(r), softplus64(f)
    if kind == "hinge":
        return torch.relu(1 - r), torch.relu(1 + f)
    return -r, f


KINDS = st.sampled_from([("bce", None), ("hinge", 0.0), ("wasserstein", 0.0)])


@SEARCH
@given(real_shape=logit_shapes, fake_shape=logit_shapes, layout=layouts, dtype=dtypes,
       kind=KINDS, smoothing=st.floats(0, 1, exclude_max=True), data=st.data())
def test_gan_losses_match_float64(backend, real_shape, fake_shape, layout, dtype, kind,
                                  smoothing, data):
    kind, fixed = kind
    s = smoothing if fixed is None else fixed
    r = leaf(data.draw(tensors(real_shape, -20, 20, LOGIT_EXTREMES)), dtype, layout)
    f = leaf(data.draw(tensors(fake_shape, -20, 20, LOGIT_EXTREMES)), dtype, layout)
    d, g = gan_d_loss(r, f, kind=kind, label_smoothing=s), gan_g_loss(f, kind=kind)
    assert d.shape == g.shape == () and d.dtype == g.dtype == dtype

    r64, f64 = as64(r), as64(f)
    tr, tf = d_terms(r64, f64, kind, s)
    d_ref = tr.mean() + tf.mean()
    g_ref = softplus64(-f64).mean() if kind == "bce" else -f64.mean()
    assert_close(d, d_ref, tr.abs().mean() + tf.abs().mean(), dtype, "L_D")
    assert_close(g, g_ref, g_ref.abs() if kind == "bce" else f64.abs().mean(), dtype, "L_G")

    grads = torch.autograd.grad(d + 0.5 * g, (r, f))
    want = torch.autograd.grad(d_ref + 0.5 * g_ref, (r64, f64))
    for name, got, w, t in zip(("dreal", "dfake"), grads, want, (r, f), strict=True):
        assert_close(got, w, torch.full(t.shape, 2.0 / t.numel()), dtype, name)


@SEARCH
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=3).filter(lambda s: 0 in s),
       kind=st.sampled_from(["bce", "hinge", "wasserstein"]))
def test_gan_losses_refuse_empty_logits(backend, shape, kind):
    empty, ok = torch.zeros(shape), torch.zeros(3)
    for call in (lambda: gan_d_loss(empty, ok, kind=kind), lambda: gan_d_loss(ok, empty, kind=kind),
                 lambda: gan_g_loss(empty, kind=kind)):
        with pytest.raises(ValueError, match="is empty"):
            call()


# --- LSTM --------------------------------------------------------------------------------------

GATE_EXTREMES = (1e4, -1e4, 0.0, 20.0, -20.0)


@SEARCH
@given(batch=st.integers(0, 5), hidden=st.integers(0, 5), layout=layouts, dtype=dtypes,
       data=st.data())
def test_lstm_cell_matches_float64(backend, batch, hidden, layout, dtype, data):
    gates = leaf(data.draw(tensors((batch, 4 * hidden), -8, 8, GATE_EXTREMES)), dtype, layout)
    c_prev = leaf(data.draw(tensors((batch, hidden), -10, 10, (100.0, -100.0))), dtype, layout)
    h, c = lstm_cell(gates, c_prev)
    g64, c64 = as64(gates), as64(c_prev)
    h_ref, c_ref = lstm_ops.cell_reference(g64, c64)
    magnitude = 1 + c64.abs()  # gates are in [0, 1] or [-1, 1]: c and h are at most this
    assert_close(c, c_ref, magnitude, dtype, "c")
    assert_close(h, h_ref, magnitude, dtype, "h")
    if gates.numel() == 0:
        return
    dh, dc = (data.draw(tensors((batch, hidden), -1, 1)).to(dtype) for _ in range(2))
    grads = torch.autograd.grad((h * dh).sum() + (c * dc).sum(), (gates, c_prev))
    want = torch.autograd.grad((h_ref * dh.double()).sum() + (c_ref * dc.double()).sum(),
                               (g64, c64))
    upstream = (dh.abs() + dc.abs()).double() * magnitude.detach()
    for name, got, w in zip(("dgates", "dc_prev"), grads, want, strict=True):
        scale = upstream.repeat(1, 4) if name == "dgates" else upstream  # 4 gates per unit
        assert_close(got, w, scale, dtype, name)


@SEARCH
@given(steps=st.integers(0, 4), batch=st.integers(0, 3), inputs=st.integers(0, 4),
       hidden=st.integers(1, 4), layout=layouts, dtype=dtypes, data=st.data())
def test_lstm_layer_matches_float64(backend, steps, batch, inputs, hidden, layout, dtype, data):
    def draw(shape, bound, extremes=()):
        return leaf(data.draw(tensors(shape, -bound, bound, extremes)), dtype, layout)

    args = [draw((steps, batch, inputs), 5, (50.0, -50.0)), draw((batch, hidden), 2),
            draw((batch, hidden), 5), draw((4 * hidden, inputs), 1.5),
            draw((4 * hidden, hidden), 1.5), draw((4 * hidden,), 2), draw((4 * hidden,), 2)]
    y, (h_n, c_n) = lstm_layer(*args)
    args64 = [as64(a) for a in args]
    y_ref, (h_ref, c_ref) = lstm_ops.layer_reference(*args64)
    # |h| <= 1 and |c| grows by at most 1 per step: the magnitudes every result is built from
    c_bound = args64[2].detach().abs() + steps + 1
    assert_close(y, y_ref, torch.ones_like(y_ref) * 2, dtype, "y")
    assert_close(h_n, h_ref, torch.ones_like(h_ref) * 2, dtype, "h_n")
    assert_close(c_n, c_ref, c_bound, dtype, "c_n")
    if y.numel() + h_n.numel() == 0:
        return
    upstream = [data.draw(tensors(t.shape, -1, 1)).to(dtype) for t in (y, h_n, c_n)]
    loss = sum((t * u).sum() for t, u in zip((y, h_n, c_n), upstream, strict=True))
    loss_ref = sum((t * u.double()).sum()
                   for t, u in zip((y_ref, h_ref, c_ref), upstream, strict=True))
    grads = torch.autograd.grad(loss, args, allow_unused=True)
    want = torch.autograd.grad(loss_ref, args64, allow_unused=True)
    names = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")
    # gradients are sums over steps and batch of products of O(1) factors and the inputs
    size = (steps + 1) * (batch + 1) * (1 + 5 * inputs)
    for name, got, w in zip(names, grads, want, strict=True):
        if w is None:
            continue
        assert got is not None, name
        assert_close(got, w, torch.full(w.shape, float(size)), dtype, name)


# --- bad arguments: a clear error naming the argument, never a crash -------------------------

def _good_args(op):
    """Valid arguments of `op` as (name, tensor) pairs: B=2, H=3, T=2, I=2, D=4."""
    z = torch.zeros
    return {"reparameterize_kl": [("mu", z(2, 4)), ("logvar", z(2, 4))],
            "gan_d_loss": [("real_logits", z(2)), ("fake_logits", z(3))],
            "gan_g_loss": [("fake_logits", z(3))],
            "lstm_cell": [("gates", z(2, 12)), ("c_prev", z(2, 3))],
            "lstm_layer": [("x", z(2, 2, 2)), ("h0", z(2, 3)), ("c0", z(2, 3)),
                           ("w_ih", z(12, 2)), ("w_hh", z(12, 3)), ("b_ih", z(12)),
                           ("b_hh", z(12))]}[op]


BREAKS = {
    "int64": lambda t: t.long(), "float16": lambda t: t.half(), "bfloat16": lambda t: t.bfloat16(),
    "complex": lambda t: t.to(torch.complex64), "extra dim": lambda t: t[None],
    "narrower": lambda t: t[..., :-1], "0-d": lambda t: t.sum(), "list": lambda t: t.tolist(),
}
OPS = {"reparameterize_kl": reparameterize_kl, "gan_d_loss": gan_d_loss,
       "gan_g_loss": gan_g_loss, "lstm_cell": lstm_cell, "lstm_layer": lstm_layer}


@SEARCH
@given(op=st.sampled_from(sorted(OPS)), data=st.data(), how=st.sampled_from(sorted(BREAKS)))
def test_bad_arguments_get_a_clear_error(backend, op, data, how):
    args = _good_args(op)
    which = data.draw(st.integers(0, len(args) - 1))
    name, good = args[which]
    bad = BREAKS[how](good)
    if op.startswith("gan") and how in ("extra dim", "narrower", "0-d"):
        return  # logits of any shape are valid (narrower is empty only for 1-element inputs)
    values = [bad if i == which else t for i, (_, t) in enumerate(args)]
    with pytest.raises((ValueError, TypeError)) as info:
        OPS[op](*values)
    message = str(info.value)
    named = [name] if how != "narrower" else [n for n, _ in args]  # a mismatch names either
    assert any(n in message for n in named) and "\n" not in message, message
