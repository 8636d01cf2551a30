"""Diffusion operators (docs/operators.md): noising, the eps loss and a DDIM step, each fused.

    x_t  = sqrt(abar) x0 + sqrt(1 - abar) eps                diffusion_noise (abar: one per row)
    loss = mean((pred - eps)^2)                              diffusion_loss
    x_s  = sqrt(abar_s) x0 + sqrt(1 - abar_s) eps,           ddim_step (DDIM, eta = 0), with
           x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)  clamped to [-clip, clip] if given

The noise is keyed, not stored. `draw_key` gives an int64 [seed, offset] pair; diffusion_noise
draws eps from it and diffusion_loss draws the same eps again, so a training step keeps no eps
tensor alive:

    key = draw_key(x0.device)
    x_t = diffusion_noise(x0, abar[t], key=key, row_start=batch.start)
    loss = diffusion_loss(net(x_t, t), key=key, row_start=batch.start)

Element j of row r of a [B, ...] tensor (D values per row) takes the normal at position
(row_start + r) * D + j of the Philox stream reparameterize uses (csrc/common/philox.h): a
process holding rows [row_start, row_start + B) of a global batch draws exactly the numbers one
process draws for those rows, whatever the number of processes.
"""

from __future__ import annotations

import math

import torch

from plugkit.ops import _backend, _checks, reparam

_M32 = 0xFFFFFFFF
_ABAR_DTYPES = (torch.float32, torch.float64)


def draw_key(device: torch.device | str, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh int64 [seed, offset] on `device` from its torch generator (or `generator`), for
    diffusion_noise and diffusion_loss; no host sync, and traced by torch.compile."""
    return reparam.draw_key(torch.device(device), generator)


def diffusion_noise(
    x0: torch.Tensor,
    abar: torch.Tensor,
    *,
    key: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    row_start: int = 0,
) -> torch.Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) eps for x0 [B, ...] and abar [B] (float32/float64).

    eps: given as is, or drawn from `key` (what diffusion_loss needs to draw it again), or from
    a key drawn here from `generator` (the device's default generator when None).
    row_start: the global index of x0's first row (module docstring). Differentiable in x0
    (dx0 = sqrt(abar) dx_t) and a given eps; abar is the schedule, a constant.
    """
    _check_rows(x0, "x0")
    _check_abar(abar, x0)
    _check_row_start(row_start)
    if eps is not None:
        if key is not None or generator is not None:
            raise ValueError("give eps, or a key or generator to draw it, not both")
        _checks.same_shape(eps, x0, "eps", "x0")
    elif key is not None:
        if generator is not None:
            raise ValueError("give key or generator, not both (the key already fixes the noise)")
        _check_key(key, x0, "x0")
    else:
        key = draw_key(x0.device, generator)
    if _backend.native_for(x0.device):
        return torch.ops.plugkit.diffusion_noise.default(x0, abar, eps, key, row_start)
    if eps is None:
        eps = normals(x0.shape, key, x0.dtype, row_start)
    return noise_reference(x0, abar, eps)


def diffusion_loss(
    pred: torch.Tensor,
    *,
    key: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    row_start: int = 0,
) -> torch.Tensor:
    """mean((pred - eps)^2) over pred [B, ...], a 0-dim tensor of pred's dtype.

    eps: drawn again from `key`, the key and row_start diffusion_noise drew it with, or given.
    Differentiable in pred (2 (pred - eps) / N) and a given eps.
    """
    _check_rows(pred, "pred")
    _checks.nonempty(pred, "pred")
    _check_row_start(row_start)
    if (key is None) == (eps is None):
        raise ValueError("give exactly one of key (the one diffusion_noise drew eps with) and eps"
                         f" (got {'both' if key is not None else 'neither'})")
    if eps is not None:
        _checks.same_shape(eps, pred, "eps", "pred")
    else:
        _check_key(key, pred, "pred")
    if _backend.native_for(pred.device):
        return torch.ops.plugkit.diffusion_loss.default(pred, eps, key, row_start)
    if eps is None:
        eps = normals(pred.shape, key, pred.dtype, row_start)
    return loss_reference(pred, eps)


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    abar_t: float | torch.Tensor,
    abar_s: float | torch.Tensor,
    *,
    clip: float | None = None,
) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0) from step t to step s: x_s, like x_t.

    abar_t in (0, 1), abar_s in [0, 1]: Python floats, or 0-dim float32/float64 tensors on
    x_t's device (abar[t] of the schedule: no host sync, and torch.compile does not specialize
    on the value). clip: clamp the predicted x_0 to [-clip, clip] and take the noise again from
    the clamped x_0, as DDPM and DDIM clip pixels. Differentiable in x_t and eps.
    """
    _checks.floating(x_t, "x_t")
    _checks.same_shape(eps, x_t, "eps", "x_t")
    abar_t = _step_value(abar_t, "abar_t", x_t, open_above=True)
    abar_s = _step_value(abar_s, "abar_s", x_t, open_above=False)
    if clip is not None:
        if isinstance(clip, bool) or not isinstance(clip, (int, float)):
            raise TypeError(f"clip must be a float or None, got {type(clip).__name__}")
        if not clip > 0:
            raise ValueError(f"clip must be > 0 (or None), got {clip}")
        clip = float(clip)
    if _backend.native_for(x_t.device):
        return torch.ops.plugkit.ddim_step.default(x_t, eps, abar_t, abar_s, clip)
    return ddim_reference(x_t, eps, abar_t, abar_s, clip)


# --- argument checks -------------------------------------------------------------------------


def _check_rows(t: object, name: str) -> None:
    _checks.floating(t, name)
    assert isinstance(t, torch.Tensor)
    if t.dim() == 0:
        raise ValueError(f"{name} must have shape [B, ...] (at least 1-D), got a 0-D tensor")


def _check_abar(abar: object, x0: torch.Tensor) -> None:
    if not isinstance(abar, torch.Tensor):
        raise TypeError(f"abar must be a torch.Tensor [B], got {type(abar).__name__}")
    if abar.dtype not in _ABAR_DTYPES:
        raise ValueError(f"abar must be float32/float64, got {abar.dtype}")
    if abar.device != x0.device:
        raise ValueError(f"abar is on {abar.device} but x0 is on {x0.device}")
    if abar.dim() != 1 or abar.shape[0] != x0.shape[0]:
        raise ValueError(f"abar has shape {tuple(abar.shape)} but x0 has {x0.shape[0]} rows: "
                         "abar must be [B], one value per row of x0")
    if abar.requires_grad:
        raise ValueError("abar requires grad, but the noise schedule is a constant here: pass "
                         "abar.detach()")


def _check_row_start(row_start: object) -> None:
    if isinstance(row_start, bool) or not isinstance(row_start, int):
        raise TypeError(f"row_start must be an int, got {type(row_start).__name__}")
    if row_start < 0:
        raise ValueError(f"row_start must be >= 0, got {row_start}")


def _check_key(key: object, x: torch.Tensor, name: str) -> None:
    if not isinstance(key, torch.Tensor):
        raise TypeError(f"key must be a torch.Tensor (from draw_key), got {type(key).__name__}")
    if key.dtype != torch.int64 or tuple(key.shape) != (2,):
        raise ValueError(f"key must be an int64 tensor [seed, offset] (from draw_key), got "
                         f"{key.dtype} of shape {tuple(key.shape)}")
    if key.device != x.device:
        raise ValueError(f"key is on {key.device} but {name} is on {x.device}")


def _step_value(value: object, name: str, x_t: torch.Tensor, open_above: bool) -> torch.Tensor:
    """abar_t / abar_s as a 0-dim float tensor on x_t's device; Python floats checked here."""
    if isinstance(value, torch.Tensor):
        if value.dtype not in _ABAR_DTYPES:
            raise ValueError(f"{name} must be float32/float64, got {value.dtype}")
        if value.dim() != 0:
            raise ValueError(f"{name} must be a 0-D tensor (one step for every row), got shape "
                             f"{tuple(value.shape)}")
        if value.device != x_t.device:
            raise ValueError(f"{name} is on {value.device} but x_t is on {x_t.device}")
        if value.requires_grad:
            raise ValueError(f"{name} requires grad, but the noise schedule is a constant here: "
                             f"pass {name}.detach()")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a 0-D tensor, got {type(value).__name__}")
    ok = 0 < value < 1 if open_above else 0 <= value <= 1
    if not ok:
        raise ValueError(f"{name} must be in {'(0, 1)' if open_above else '[0, 1]'}, got {value}")
    return torch.full((), float(value), dtype=torch.float64, device=x_t.device)


# --- the pure-PyTorch fallback (and test oracle): differentiable, traced by torch.compile ------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32  # half: float32 math


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] values shaped to broadcast over the rows of `like` [B, ...]."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def noise_reference(x0: torch.Tensor, abar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    compute = _compute_dtype(x0.dtype)
    a = _per_row(abar.to(torch.float64), x0)
    keep, spread = a.sqrt().to(compute), (1 - a).sqrt().to(compute)
    return (keep * x0.to(compute) + spread * eps.to(compute)).to(x0.dtype)


def loss_reference(pred: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    compute = _compute_dtype(pred.dtype)
    return (pred.to(compute) - eps.to(compute)).square().mean().to(pred.dtype)


def ddim_reference(x_t: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor,
                   abar_s: torch.Tensor, clip: float | None) -> torch.Tensor:
    compute = _compute_dtype(x_t.dtype)
    at, as_ = abar_t.to(torch.float64), abar_s.to(torch.float64)
    a_t, b_t, a_s, b_s = at.sqrt(), (1 - at).sqrt(), as_.sqrt(), (1 - as_).sqrt()
    x, e = x_t.to(compute), eps.to(compute)
    if clip is None:  # linear in x_t and eps: the coefficients rounded once
        out = (a_s / a_t).to(compute) * x + (b_s - a_s * b_t / a_t).to(compute) * e
    else:
        x0 = ((x - b_t.to(compute) * e) / a_t.to(compute)).clamp(-clip, clip)
        e = (x - a_t.to(compute) * x0) / b_t.to(compute)  # the noise the clamped x0 implies
        out = a_s.to(compute) * x0 + b_s.to(compute) * e
    return out.to(x_t.dtype)


def normals(shape, key: torch.Tensor, dtype: torch.dtype, row_start: int = 0) -> torch.Tensor:
    """N(0, 1) of `shape` [B, ...] for rows row_start.. of the stream keyed by `key`: the numbers
    the native kernels draw (Philox4x32-10 + Box-Muller, layout in csrc/common/philox.h)."""
    n = math.prod(shape)
    start = row_start * math.prod(shape[1:])
    first = start // 4
    blocks = (start + n + 3) // 4 - first
    seed, offset = key[0], key[1]
    counter = offset + first + torch.arange(blocks, dtype=torch.int64, device=key.device)
    zero = torch.zeros_like(counter)
    words = reparam.philox4x32_10([counter & _M32, (counter >> 32) & _M32, zero, zero],
                                  seed & _M32, (seed >> 32) & _M32)
    u = ((torch.stack(words, 1).view(-1, 2, 2) >> 9).to(_compute_dtype(dtype)) + 0.5) * 2.0**-23
    radius = torch.sqrt(-2.0 * torch.log(u[..., 0]))  # [block, pair]
    theta = (2 * math.pi) * u[..., 1]
    values = torch.stack((radius * torch.cos(theta), radius * torch.sin(theta)), dim=-1)
    return values.reshape(-1)[start - 4 * first:start - 4 * first + n].reshape(shape).to(dtype)


# --- registration of the native operators ----------------------------------------------------


def _noise_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[1])  # abar: dx0 = sqrt(abar) dx_t needs nothing else


def _noise_backward(ctx, grad):
    (abar,) = ctx.saved_tensors
    d_x0 = d_eps = None
    if ctx.needs_input_grad[0]:
        d_x0 = torch.ops.plugkit.diffusion_noise_backward.default(grad, abar)
    if ctx.needs_input_grad[2]:  # a given eps that requires grad (rare: plain torch ops)
        spread = _per_row((1 - abar.to(torch.float64)).sqrt(), grad)
        d_eps = (grad.to(_compute_dtype(grad.dtype)) * spread.to(_compute_dtype(grad.dtype)))
        d_eps = d_eps.to(grad.dtype)
    return d_x0, None, d_eps, None, None


def _loss_setup(ctx, inputs, output) -> None:
    pred, eps, key, row_start = inputs
    ctx.save_for_backward(pred, eps, key)  # pred is the caller's anyway; no eps when keyed
    ctx.row_start = row_start


def _loss_backward(ctx, grad):
    pred, eps, key = ctx.saved_tensors
    d_pred = torch.ops.plugkit.diffusion_loss_backward.default(grad, pred, eps, key,
                                                               ctx.row_start)
    d_eps = -d_pred if ctx.needs_input_grad[1] else None
    return d_pred, d_eps, None, None


def _ddim_setup(ctx, inputs, output) -> None:
    x_t, eps, abar_t, abar_s, clip = inputs
    ctx.save_for_backward(x_t, eps, abar_t, abar_s)
    ctx.clip = clip


def _ddim_backward(ctx, grad):
    """x_s is linear in (x_t, eps) where x0 is not clamped; where it is, x0 is a constant and
    x_s = a_s x0c + b_s (x_t - a_t x0c) / b_t. Sampling runs under no_grad: plain torch ops."""
    x_t, eps, abar_t, abar_s = ctx.saved_tensors
    compute = _compute_dtype(grad.dtype)
    at, as_ = abar_t.to(torch.float64), abar_s.to(torch.float64)
    a_t, b_t, a_s, b_s = at.sqrt(), (1 - at).sqrt(), as_.sqrt(), (1 - as_).sqrt()
    g = grad.to(compute)
    d_x, d_eps = (a_s / a_t).to(compute) * g, (b_s - a_s * b_t / a_t).to(compute) * g
    if ctx.clip is not None:
        x0 = (x_t.to(compute) - b_t.to(compute) * eps.to(compute)) / a_t.to(compute)
        inside = (x0 >= -ctx.clip) & (x0 <= ctx.clip)  # torch.clamp's convention at the bounds
        d_x = torch.where(inside, d_x, (b_s / b_t).to(compute) * g)
        d_eps = torch.where(inside, d_eps, torch.zeros_like(d_eps))
    return d_x.to(grad.dtype), d_eps.to(grad.dtype), None, None, None


@_backend.on_native_load
def _register() -> None:
    # Fake impls: output shapes for torch.compile (the kernels return contiguous tensors, hence
    # new_empty). Autograd in Python (torch.library), beside the wrappers: each backward is one
    # native op (noise, loss) or a few torch ops (ddim, whose backward sampling never runs).
    @torch.library.register_fake("plugkit::diffusion_noise")
    def _(x0, abar, eps, key, row_start):
        return x0.new_empty(x0.shape)

    @torch.library.register_fake("plugkit::diffusion_noise_backward")
    def _(grad, abar):
        return grad.new_empty(grad.shape)

    @torch.library.register_fake("plugkit::diffusion_loss")
    def _(pred, eps, key, row_start):
        return pred.new_empty(())

    @torch.library.register_fake("plugkit::diffusion_loss_backward")
    def _(grad, pred, eps, key, row_start):
        return pred.new_empty(pred.shape)

    @torch.library.register_fake("plugkit::ddim_step")
    def _(x_t, eps, abar_t, abar_s, clip):
        return x_t.new_empty(x_t.shape)

    torch.library.register_autograd("plugkit::diffusion_noise", _noise_backward,
                                    setup_context=_noise_setup)
    torch.library.register_autograd("plugkit::diffusion_loss", _loss_backward,
                                    setup_context=_loss_setup)
    torch.library.register_autograd("plugkit::ddim_step", _ddim_backward,
                                    setup_context=_ddim_setup)
