"""Property-based tests of plugkit.ops: every op on both backends against float64 references.

Hypothesis draws the shapes (empty ones included), the memory layout (contiguous, transposed,
sliced with a step, broadcast with stride 0), the dtype and the values, extremes included:
logits up to +-1e4, logvar +-50, saturated LSTM gates, abar at 0 and 1. The search is
derandomized, so CI runs the same examples every time; PLUGKIT_EXAMPLES=1000 runs a deeper
search by hand.

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

from plugkit.ops import (
    ddim_step,
    diffusion_loss,
    diffusion_noise,
    draw_key,
    gan_d_loss,
    gan_g_loss,
    lstm_cell,
    lstm_layer,
    reparameterize_kl,
)
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


# --- diffusion ------------------------------------------------------------------------------------

abars = st.sampled_from([torch.float32, torch.float64])


def per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.double().view(-1, *([1] * (like.dim() - 1)))


@SEARCH
@given(shape=shapes, layout=layouts, dtype=dtypes, abar_dtype=abars, data=st.data())
def test_diffusion_noise_matches_float64(backend, shape, layout, dtype, abar_dtype, data):
    x0 = leaf(data.draw(tensors(shape, -10, 10, (0.0, 1e3, -1e3))), dtype, layout)
    eps = leaf(data.draw(tensors(shape, -6, 6, (0.0, 8.0))), dtype, layout)
    abar = laid_out(data.draw(tensors(shape[:1], 0, 1, (0.0, 1.0))).to(abar_dtype), layout)
    x_t = diffusion_noise(x0, abar, eps=eps)
    assert x_t.dtype == dtype and x_t.shape == shape

    a = per_row(abar, x0)
    keep, spread = a.sqrt(), (1 - a).sqrt()
    m, e = as64(x0), as64(eps)
    want = keep * m + spread * e
    assert_close(x_t, want, (keep * m).abs() + (spread * e).abs(), dtype, "x_t")
    if x0.numel() == 0:
        return
    grad = data.draw(tensors(shape, -1, 1)).to(dtype)
    got = torch.autograd.grad((x_t * grad).sum(), (x0, eps))
    expected = torch.autograd.grad((want * grad.double()).sum(), (m, e))
    for name, g, w in zip(("dx0", "deps"), got, expected, strict=True):
        assert_close(g, w, w.abs(), dtype, name)


@SEARCH
@given(rows=st.integers(1, 9), width=st.integers(0, 9), split=st.integers(0, 9),
       dtype=dtypes, seed=st.integers(0, 2**31))
def test_keyed_noise_rows_are_global(backend, rows, width, split, dtype, seed):
    """Rows [split, rows) drawn alone at row_start=split are the very numbers of the whole batch:
    the property that makes a run on N processes draw what one process draws."""
    split = min(split, rows)
    key = draw_key("cpu", torch.Generator().manual_seed(seed))
    x0, abar = torch.randn(rows, width, dtype=dtype), torch.rand(rows, dtype=torch.float64)
    whole = diffusion_noise(x0, abar, key=key)
    head = diffusion_noise(x0[:split], abar[:split], key=key)
    tail = diffusion_noise(x0[split:], abar[split:], key=key, row_start=split)
    assert torch.equal(torch.cat([head, tail]), whole)


@SEARCH
@given(shape=shapes, dtype=dtypes, row_start=st.integers(0, 1000), seed=st.integers(0, 2**31))
def test_keyed_noise_agrees_across_backends(shape, dtype, row_start, seed):
    """Switching backend changes drawn noise by a few ulps at most (Box-Muller's log, sin and
    cos are the platform's), for any row_start; the loss drawn from the key likewise."""
    from plugkit.ops import backend, use_backend

    if not backend().native_loaded:
        pytest.skip(backend().reason)
    key = draw_key("cpu", torch.Generator().manual_seed(seed))
    zeros, pred = torch.zeros(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    results = []
    for name in ("native", "torch"):
        with use_backend(name):
            eps = diffusion_noise(zeros, torch.zeros(shape[0]), key=key, row_start=row_start)
            loss = diffusion_loss(pred, key=key, row_start=row_start) if pred.numel() else None
            results.append((eps, loss))
    (eps_native, loss_native), (eps_torch, loss_torch) = results
    assert_close(eps_native, eps_torch, torch.full(shape, 9.0), dtype, "eps")
    if loss_native is not None:
        scale = ((pred.double().abs() + 9) ** 2).mean()
        assert_close(loss_native, loss_torch, scale, dtype, "loss")


@SEARCH
@given(shape=shapes, layout=layouts, dtype=dtypes, data=st.data())
def test_diffusion_loss_matches_float64(backend, shape, layout, dtype, data):
    pred = leaf(data.draw(tensors(shape, -10, 10, (0.0, 1e3, -1e3))), dtype, layout)
    eps = leaf(data.draw(tensors(shape, -6, 6, (0.0, 8.0))), dtype, layout)
    if pred.numel() == 0:
        with pytest.raises(ValueError, match="pred is empty"):
            diffusion_loss(pred, eps=eps)
        return
    loss = diffusion_loss(pred, eps=eps)
    assert loss.shape == () and loss.dtype == dtype
    p, e = as64(pred), as64(eps)
    want = ((p - e) ** 2).mean()
    terms = (p.abs() + e.abs()) ** 2
    assert_close(loss, want, terms.mean(), dtype, "loss")
    got = torch.autograd.grad(loss, (pred, eps))
    expected = torch.autograd.grad(want, (p, e))
    for name, g, w in zip(("dpred", "deps"), got, expected, strict=True):
        assert_close(g, w, 2 * (p.abs() + e.abs()) / p.numel(), dtype, name)


@SEARCH
@given(shape=shapes, layout=layouts, dtype=dtypes, abar_t=st.floats(0.001, 0.999),
       abar_s=st.floats(0, 1), clip=st.sampled_from([None, 1.0, 3.0]),
       as_tensor=st.booleans(), data=st.data())
def test_ddim_step_matches_float64(backend, shape, layout, dtype, abar_t, abar_s, clip, as_tensor,
                                   data):
    x_t = leaf(data.draw(tensors(shape, -10, 10, (0.0, 1e3, -1e3))), dtype, layout)
    eps = leaf(data.draw(tensors(shape, -6, 6, (0.0, 8.0))), dtype, layout)
    steps = (abar_t, abar_s)
    if as_tensor:  # 0-D float64 tensors, as abar[t] of the schedule
        steps = tuple(torch.tensor(v, dtype=torch.float64) for v in steps)
    x_s = ddim_step(x_t, eps, *steps, clip=clip)
    assert x_s.dtype == dtype and x_s.shape == shape

    a_t, b_t, a_s, b_s = abar_t**0.5, (1 - abar_t) ** 0.5, abar_s**0.5, (1 - abar_s) ** 0.5
    x, e = as64(x_t), as64(eps)
    x0 = (x - b_t * e) / a_t
    if clip is None:
        want = a_s * x0 + b_s * e
        # the terms x_s is made of: x0 (rounded relative to x_t and eps) and the noise
        scale = (a_s / a_t + 1) * (x.abs() + e.abs()) + b_s * e.abs()
    else:
        x0c = x0.clamp(-clip, clip)
        want = a_s * x0c + b_s * (x - a_t * x0c) / b_t
        # x0's rounding comes back through the noise taken again from it, times a_t / b_t
        scale = (x.abs() + e.abs()) / a_t * (1 + a_s + b_s * a_t / b_t) + b_s * e.abs()
    assert_close(x_s, want, scale.detach(), dtype, "x_s")
    if clip is not None or x_t.numel() == 0:
        return  # the clipped gradient: unit tests, away from the bounds
    grad = data.draw(tensors(shape, -1, 1)).to(dtype)
    got = torch.autograd.grad((x_s * grad).sum(), (x_t, eps))
    expected = torch.autograd.grad((want * grad.double()).sum(), (x, e))
    for name, g, w in zip(("dx_t", "deps"), got, expected, strict=True):
        assert_close(g, w, (a_s / a_t + b_s + 1) * grad.double().abs(), dtype, name)


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
                           ("b_hh", z(12))],
            "diffusion_noise": [("x0", z(2, 4)), ("abar", z(2))],
            "diffusion_loss": [("pred", z(2, 4))],
            "ddim_step": [("x_t", z(2, 4)), ("eps", z(2, 4))]}[op]


BREAKS = {
    "int64": lambda t: t.long(), "float16": lambda t: t.half(), "bfloat16": lambda t: t.bfloat16(),
    "complex": lambda t: t.to(torch.complex64), "extra dim": lambda t: t[None],
    "narrower": lambda t: t[..., :-1], "0-d": lambda t: t.sum(), "list": lambda t: t.tolist(),
}
OPS = {"reparameterize_kl": reparameterize_kl, "gan_d_loss": gan_d_loss,
       "gan_g_loss": gan_g_loss, "lstm_cell": lstm_cell, "lstm_layer": lstm_layer,
       "diffusion_noise": diffusion_noise,
       "diffusion_loss": lambda pred: diffusion_loss(pred, key=torch.tensor([1, 2])),
       "ddim_step": lambda x_t, eps: ddim_step(x_t, eps, 0.5, 0.7, clip=1.0)}
# breaks that leave valid arguments: a row of another width, a batch of another shape
STILL_VALID = {("diffusion_noise", "x0", "narrower"), ("diffusion_loss", "pred", "narrower"),
               ("diffusion_loss", "pred", "extra dim")}


@SEARCH
@given(op=st.sampled_from(sorted(OPS)), data=st.data(), how=st.sampled_from(sorted(BREAKS)))
def test_bad_arguments_get_a_clear_error(backend, op, data, how):
    args = _good_args(op)
    which = data.draw(st.integers(0, len(args) - 1))
    name, good = args[which]
    bad = BREAKS[how](good)
    if op.startswith("gan") and how in ("extra dim", "narrower", "0-d"):
        return  # logits of any shape are valid (narrower is empty only for 1-element inputs)
    if (op, name, how) in STILL_VALID:
        return
    values = [bad if i == which else t for i, (_, t) in enumerate(args)]
    with pytest.raises((ValueError, TypeError)) as info:
        OPS[op](*values)
    message = str(info.value)
    named = [name] if how != "narrower" else [n for n, _ in args]  # a mismatch names either
    assert any(n in message for n in named) and "\n" not in message, message
