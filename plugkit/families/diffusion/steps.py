"""The arithmetic every modality of the diffusion family shares: the noise schedule, the
timestep embedding, the sampler's steps, and how a step's noise is drawn."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from plugkit import ops
from plugkit.errors import UsageError
from plugkit.families.diffusion.options import Settings
from plugkit.family import Batch

CLIP = 3.0  # |offset| of a predicted x_0 at most: 12 std of its mode (real data: about 1)


def schedule_of(steps: int, timesteps: int, power: int = 1) -> list[tuple[int, int]]:
    """The (t, s) pairs sampling steps through, t down to s < t: every step when `steps` is 0
    or at least T, else `steps` jumps over T ("respacing", Nichol & Dhariwal, ICML 2021: each
    jump t -> s is one step of a diffusion whose alpha is abar_t / abar_s), at the times
    T (i / steps)^power: evenly spaced for power 1, for 2 closer at low noise (DDIM's
    "quadratic" spacing), where the finest detail is drawn."""
    if steps <= 0 or steps >= timesteps:
        points = list(range(timesteps, -1, -1))
    else:
        points = sorted({round((i / steps) ** power * timesteps) for i in range(steps + 1)},
                        reverse=True)
    return list(zip(points[:-1], points[1:], strict=True))


def cosine_schedule(steps: int, s: float = 0.008) -> torch.Tensor:
    """abar_t for t = 0..T (abar_0 = 1), float64: cos^2 of the time, each step's beta at most
    0.999 so the last steps do not destroy everything at once."""
    f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + s) / (1 + s)
                  * math.pi / 2) ** 2
    alpha = (f[1:] / f[:-1]).clamp(min=0.001)  # 1 - beta_t
    return torch.cat([torch.ones(1, dtype=torch.float64), alpha.cumprod(0)])



class TimeEmbedding(nn.Sequential):
    """t (B,) -> (B, hidden): sinusoids of the step, as a transformer's positions, then an
    MLP (an nn.Sequential of it, so its weights keep the names Linear layers give them)."""

    def __init__(self, hidden: int) -> None:
        super().__init__(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.hidden = hidden

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.hidden // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
        angles = t.float()[:, None] * freqs  # (B, half)
        emb = torch.cat([angles.cos(), angles.sin()], 1)
        return super().forward(F.pad(emb, (0, self.hidden - emb.shape[1])))  # (B, hidden)


def gaussian_step(abar: torch.Tensor, x_t: torch.Tensor, eps: torch.Tensor, t: int, s: int,
                  generator: torch.Generator) -> torch.Tensor:
    """x_s (s < t; s = t - 1 without respacing) from x_t and the predicted eps: DDPM's
    posterior mean, plus its noise (none at the last step, s = 0)."""
    abar_t, abar_prev = float(abar[t]), float(abar[s])
    alpha_t = abar_t / abar_prev
    # x_0 as the predicted eps implies it, clipped as DDPM clips pixels: near t = T,
    # 1 / sqrt(abar_t) (about 2,000 for T = 100) would otherwise blow its error up, and step
    # after step the values overflow (measured on adult: 1e35 by t = 60)
    x0 = ((x_t - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)).clamp(-CLIP, CLIP)
    mean = (math.sqrt(abar_prev) * (1 - alpha_t) * x0
            + math.sqrt(alpha_t) * (1 - abar_prev) * x_t) / (1 - abar_t)
    if s == 0:
        return mean
    variance = (1 - alpha_t) * (1 - abar_prev) / (1 - abar_t)
    return mean + math.sqrt(variance) * torch.randn(mean.shape, generator=generator,
                                                    device=mean.device)


def ddim_step(abar: torch.Tensor, x_t: torch.Tensor, eps: torch.Tensor, t: int,
              s: int) -> torch.Tensor:
    """x_s (s < t) from x_t without noise (DDIM, eta = 0): the predicted x_0, clipped to the
    pixels' [-1, 1], taken back to step s along the noise that x_0 implies in x_t (one fused
    pass, plugkit.ops.ddim_step; abar[t] stays on the device: no host sync per step)."""
    return ops.ddim_step(x_t, eps, abar[t], abar[s], clip=1.0)


def categorical_step(abar: torch.Tensor, x_t: torch.Tensor, logits: torch.Tensor, t: int,
                     s: int, generator: torch.Generator,
                     prior: torch.Tensor | None = None) -> torch.Tensor:
    """x_s (s < t) of one one-hot span (n, K), drawn from its categorical_posterior."""
    probs = categorical_posterior(abar, x_t, logits, t, s, prior)
    pick = torch.multinomial(probs.clamp(min=0) + 1e-30, 1, generator=generator)[:, 0]
    return F.one_hot(pick, x_t.shape[1]).to(x_t.dtype)


def categorical_posterior(abar: torch.Tensor, x_t: torch.Tensor, logits: torch.Tensor, t: int,
                          s: int, prior: torch.Tensor | None = None) -> torch.Tensor:
    """(n, K), up to a factor per row: how likely x_s (s < t; s = t - 1 without respacing, as
    written below) of one one-hot span (n, K) whose noise draws a category from `prior` m (K,;
    default uniform, 1/K each) is each category: the posterior of multinomial diffusion
    averaged over the predicted x_0,
    sum_k p(x_0 = k) q(x_{t-1} | x_t, x_0 = k), which with
    q(x_{t-1} | x_t, x_0) = q(x_t | x_{t-1}) q(x_{t-1} | x_0) / q(x_t | x_0) is
    A_j (abar_{t-1} w_j + (1 - abar_{t-1}) m_j sum_k w_k), w_k = p(x_0 = k) / q(x_t | x_0 = k),
    A_j = q(x_t | x_{t-1} = j), and q(x_t | x_0 = k) = abar_t [x_t = k] + (1 - abar_t) m_{x_t}."""
    k = x_t.shape[1]
    abar_t, abar_prev = float(abar[t]), float(abar[s])
    alpha_t = abar_t / abar_prev
    p0 = logits.float().softmax(1)  # (n, K)
    if prior is None:  # uniform: m_j = m_{x_t} = 1 / K, in the arithmetic runs have always used
        w = p0 / (abar_t * x_t + (1 - abar_t) / k)
        forward = alpha_t * x_t + (1 - alpha_t) / k  # A_j
        probs = forward * (abar_prev * w + (1 - abar_prev) / k * w.sum(1, keepdim=True))
    else:
        m_t = (x_t * prior).sum(1, keepdim=True)  # (n, 1): m of x_t's category
        w = p0 / (abar_t * x_t + (1 - abar_t) * m_t)
        forward = alpha_t * x_t + (1 - alpha_t) * m_t
        probs = forward * (abar_prev * w + (1 - abar_prev) * prior * w.sum(1, keepdim=True))
    return probs


def steps_of(u: torch.Tensor, steps: int, odds: torch.Tensor | None = None) -> torch.Tensor:
    """Steps t in 1..T, one per row, from uniform numbers u (B, 1): uniform, or with `odds`
    (T,) (min_snr_odds) in proportion to them."""
    if odds is None:
        return 1 + (u[:, 0] * steps).long().clamp(max=steps - 1)
    cdf = odds.cumsum(0) / odds.sum()
    return 1 + torch.searchsorted(cdf, u[:, 0].to(cdf.dtype)).clamp(max=steps - 1)


def min_snr_odds(abar: torch.Tensor, gamma: float) -> torch.Tensor:
    """(T,) how often training draws each step t = 1..T: in proportion to Min-SNR-gamma's
    weight of the eps loss, min(SNR_t, gamma) / SNR_t (Hang et al., ICCV 2023), drawn rather
    than weighed, so the fused loss stays one mean. The low-noise steps, whose eps is easy
    and whose gradients fight the others', come up rarely; the steps that draw shapes, often."""
    snr = abar[1:] / (1 - abar[1:])
    return snr.clamp(max=gamma) / snr


class FixedNoise:
    """Noise drawn like Batch.rand / Batch.randn but from one seeded generator: the same noise
    every epoch, so validation losses compare."""

    start = 0  # the rows are the whole (validation) batch

    def __init__(self, rows: int, device: torch.device) -> None:
        self.rows, self.device = rows, device
        self.generator = torch.Generator(device).manual_seed(0)

    def rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(self.rows, *shape, generator=self.generator, device=self.device)

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(self.rows, *shape, generator=self.generator, device=self.device)

    def key(self) -> torch.Tensor:
        return ops.draw_key(self.device, self.generator)


def key_of(noise: Batch | FixedNoise) -> tuple[torch.Tensor, int]:
    """The Philox key of a step's Gaussian noise, and the global index of its first row: every
    process draws the same key (the generators advance alike) and its own rows' numbers."""
    if isinstance(noise, FixedNoise):
        return noise.key(), noise.start
    return ops.draw_key(noise.x.device), noise.start


def refuse_where(settings: Settings, data: str) -> None:
    if settings.where:
        raise UsageError("sampler setting `where` chooses a category of a table column; "
                         f"this run's data is {data}")


def refuse_guidance(settings: Settings, why: str) -> None:
    if settings.guidance:
        raise UsageError("sampler setting `guidance` weighs the labels images are drawn for; "
                         + why)
