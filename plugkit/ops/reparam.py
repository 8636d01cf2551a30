"""Reparameterized Gaussian sampling with its KL divergence (docs/operators.md).

    z  = mu + exp(logvar / 2) * eps,                 eps ~ N(0, 1) i.i.d.
    kl = 0.5 * sum_d(exp(logvar) + mu^2 - 1 - logvar) = KL(N(mu, exp(logvar)) || N(0, I))

When eps is not given it comes from a counter-based Philox4x32-10 stream keyed by a (seed, offset)
pair drawn from the device's torch generator, so torch.manual_seed makes it reproducible and the
native CPU, CUDA and fallback implementations draw the same numbers (csrc/common/philox.h).
"""

from __future__ import annotations

import math

import torch

from plugkit.ops import _backend, _checks

_M32 = 0xFFFFFFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def reparameterize(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """z = mu + exp(logvar/2) * eps for mu, logvar of shape [..., D]."""
    return reparameterize_kl(mu, logvar, eps=eps, generator=generator)[0]


def reparameterize_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    *,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, kl): z like mu, kl of shape mu.shape[:-1] (KL summed over the last dimension)."""
    _checks.floating(mu, "mu")
    _checks.same_shape(logvar, mu, "logvar", "mu")
    if mu.dim() == 0:
        raise ValueError("mu must have shape [..., D] (at least 1-D), got a 0-D tensor")
    if eps is not None:
        _checks.same_shape(eps, mu, "eps", "mu")
    key = None if eps is not None else draw_key(mu.device, generator)
    if _backend.native_for(mu.device):
        return tuple(torch.ops.plugkit.reparameterize_kl(mu, logvar, eps, key))
    if eps is None:
        eps = philox_normal(mu.shape, key, mu.dtype)
    return reference(mu, logvar, eps)


def draw_key(device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh int64 [seed, offset] on `device`, drawn from its torch generator (no host sync)."""
    return torch.randint(0, 2**62, (2,), dtype=torch.int64, device=device, generator=generator)


def reference(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor):
    """The fallback's math in plain differentiable torch ops."""
    z = mu + torch.exp(0.5 * logvar) * eps
    kl = 0.5 * (torch.exp(logvar) + mu * mu - 1 - logvar).sum(-1)
    return z, kl


# --- Philox4x32-10 + Box-Muller in int64 torch ops (bit-identical to csrc/common/philox.h) ---


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # a * b needs 64 unsigned bits; split b into 16-bit halves so no int64 product overflows.
    p_lo = a * (b & 0xFFFF)  # < 2^48
    p_hi = a * (b >> 16)  # < 2^48
    lo = (((p_hi & 0xFFFF) << 16) + p_lo) & _M32
    hi = ((p_hi + (p_lo >> 16)) >> 16) & _M32
    return hi, lo


def philox4x32_10(ctr: list[torch.Tensor], k0: torch.Tensor, k1: torch.Tensor):
    """Ten Philox rounds on int64 tensors holding uint32 values; returns the 4 output words."""
    c0, c1, c2, c3 = ctr
    for _ in range(10):
        hi0, lo0 = _mulhilo(_PHILOX_M[0], c0)
        hi1, lo1 = _mulhilo(_PHILOX_M[1], c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _PHILOX_W[0]) & _M32
        k1 = (k1 + _PHILOX_W[1]) & _M32
    return c0, c1, c2, c3


def philox_uint32(n_blocks: int, key: torch.Tensor) -> torch.Tensor:
    """The [n_blocks, 4] uint32 words (as int64) of the stream keyed by key = [seed, offset]."""
    seed, offset = key[0], key[1]
    counter = offset + torch.arange(n_blocks, dtype=torch.int64, device=key.device)
    zero = torch.zeros_like(counter)
    words = philox4x32_10(
        [counter & _M32, (counter >> 32) & _M32, zero, zero], seed & _M32, (seed >> 32) & _M32
    )
    return torch.stack(words, dim=1)


def philox_normal(shape, key: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """N(0, 1) samples of `shape` from the Philox stream (layout: csrc/common/philox.h)."""
    n = math.prod(shape)
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    words = philox_uint32((n + 3) // 4, key).view(-1, 2, 2)  # [block, pair, (radius, angle)]
    u = ((words >> 9).to(compute) + 0.5) * 2.0**-23
    radius = torch.sqrt(-2.0 * torch.log(u[..., 0]))
    theta = (2 * math.pi) * u[..., 1]
    normals = torch.stack((radius * torch.cos(theta), radius * torch.sin(theta)), dim=-1)
    return normals.reshape(-1)[:n].reshape(shape).to(dtype)


@_backend.on_native_load
def _register() -> None:
    @torch.library.register_fake("plugkit::reparameterize_kl")
    def _(mu, logvar, eps, key):
        return mu.new_empty(mu.shape), mu.new_empty(mu.shape[:-1])

    @torch.library.register_fake("plugkit::reparameterize_kl_backward")
    def _(grad_z, grad_kl, mu, logvar, z):
        return mu.new_empty(mu.shape), logvar.new_empty(logvar.shape)

    @torch.library.register_fake("plugkit::philox4x32")
    def _(counters, key):
        return counters.new_empty(counters.shape)
