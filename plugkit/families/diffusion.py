"""Denoising diffusion for tables, as TabDDPM does it (Kotelnikov et al., "TabDDPM: Modelling
Tabular Data with Diffusion Models", ICML 2023): Gaussian diffusion on the numeric values and
multinomial diffusion on the categories (Hoogeboom et al., "Argmax Flows and Multinomial
Diffusion", NeurIPS 2021), one MLP denoiser with a timestep embedding for both.

The row is the encoded row every table family sees (plugkit.formats.tabular): its "offset"
spans (a numeric value's offset within its mode) diffuse as Gaussians, its one-hot spans (the
mode of a numeric value, whether it is missing, a category) each as a categorical variable. So
point modes, missing values and categories are all drawn as categories, as TabDDPM draws
categories, and the mode-specific offsets do what TabDDPM's quantile transform does: put every
numeric column on a scale a Gaussian suits.

- forward, at step t of T (cosine schedule, Nichol & Dhariwal, ICML 2021, as TabDDPM):
  offsets x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps; a one-hot span keeps its category with
  probability abar_t, else takes one uniformly at random.
- the denoiser reads x_t and t and predicts eps for the offsets and the logits of x_0 for each
  one-hot span; the loss is the mean squared error on eps plus the mean cross-entropy of x_0
  over the spans (whose optimum, like that of TabDDPM's KL, is the true p(x_0 | x_t)).
- sampling runs the T steps back: DDPM's posterior for the offsets, and for each span the exact
  posterior q(x_{t-1} | x_t) under the predicted distribution of x_0 (`_categorical_step`).
- `where COLUMN=VALUE` is drawn by the model: the column's span is held at the category's own
  forward process at every step (inpainting, as RePaint's replacement) while the denoiser
  fills in the rest, so the other columns follow the category; no row is rejected.

Every noise of a training step is drawn per row through Batch.randn / Batch.rand (the step t,
eps, the categories' replacement), so a run on N processes trains what one process trains and
--resume continues exactly. This is the family's first increment: tables, with the arithmetic
in PyTorch; images, sequences and the fused native ops of the diffusion issue are still to come.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plugkit.family import Batch, DataInfo, Family
from plugkit.formats import tabular
from plugkit.options import option

CLIP = 3.0  # |offset| of a predicted x_0 at most: 12 std of its mode (real data: about 1)


@dataclass
class Options:
    timesteps: int = option(100, "diffusion steps T, in training and in sampling", min=2,
                            max=4000)
    hidden: int = option(256, "width of the denoiser's MLP", min=8)
    layers: int = option(3, "hidden layers of the denoiser", min=1, max=16)
    dropout: float = option(0.0, "dropout in the denoiser", min=0.0, max=0.9)
    lr: float = option(1e-3, "AdamW learning rate", min=0.0, max=1.0)
    weight_decay: float = option(1e-5, "AdamW weight decay", min=0.0)


@dataclass
class Settings:
    where: str = option("", "tables: every row holds VALUE in the categorical COLUMN "
                        "(COLUMN=VALUE), drawn so by the model, not filtered")


def cosine_schedule(steps: int, s: float = 0.008) -> torch.Tensor:
    """abar_t for t = 0..T (abar_0 = 1), float64: cos^2 of the time, each step's beta at most
    0.999 so the last steps do not destroy everything at once."""
    f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + s) / (1 + s)
                  * math.pi / 2) ** 2
    alpha = (f[1:] / f[:-1]).clamp(min=0.001)  # 1 - beta_t
    return torch.cat([torch.ones(1, dtype=torch.float64), alpha.cumprod(0)])


class Denoiser(nn.Module):
    """TabDDPM's MLP: the row projected, plus an embedding of t (sinusoidal, then an MLP), then
    SiLU blocks; one output per position of the row."""

    def __init__(self, width: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed_t = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(),
                                     nn.Linear(hidden, hidden))
        self.project = nn.Linear(width, hidden)
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(hidden, hidden), nn.SiLU(), nn.Dropout(dropout)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(hidden, width)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, D) noisy rows, t (B,) steps 1..T -> (B, D)."""
        half = self.hidden // 2
        freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=x.device) / half)
        angles = t.float()[:, None] * freqs  # (B, half)
        emb = torch.cat([angles.cos(), angles.sin()], 1)
        emb = F.pad(emb, (0, self.hidden - emb.shape[1]))  # (B, hidden)
        return self.out(self.blocks(self.project(x) + self.embed_t(emb)))


class Diffusion(Family):
    name = "diffusion"
    description = "denoising diffusion for tables (TabDDPM: Gaussian + multinomial)"
    modalities = ("table",)
    conditional = True  # tables: per category (--where), by inpainting
    Options = Options
    Settings = Settings
    default_dataset = "iris"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        self.encoding = info.meta["encoding"]
        spans = tabular.spans(self.encoding)
        self.width = tabular.width(self.encoding)
        self.offsets = torch.tensor([s.start for s in spans if not s.discrete], device=device)
        self.spans = [(s.start, s.end) for s in spans if s.discrete]
        self.categorical = torch.tensor([i for a, b in self.spans for i in range(a, b)],
                                        dtype=torch.long, device=device)
        self.abar = cosine_schedule(options.timesteps).to(device)  # (T + 1,) float64
        self.net = Denoiser(self.width, options.hidden, options.layers,
                            options.dropout).to(device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=options.lr,
                                           weight_decay=options.weight_decay)

    def modules(self) -> dict[str, nn.Module]:
        return {"denoiser": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.optimizer}

    def _loss(self, x0: torch.Tensor, u_t: torch.Tensor, eps: torch.Tensor,
              u_cat: torch.Tensor) -> torch.Tensor:
        """The loss of rows x0 (B, D) noised at steps drawn from u_t (B, 1) uniform, with eps
        (B, offsets) and u_cat (B, D) uniform numbers for the categories' replacement."""
        T = self.options.timesteps
        t = 1 + (u_t[:, 0] * T).long().clamp(max=T - 1)  # (B,) in 1..T
        abar = self.abar[t][:, None].float()  # (B, 1)
        x_t = x0.clone()
        x_t[:, self.offsets] = abar.sqrt() * x0[:, self.offsets] + (1 - abar).sqrt() * eps
        for a, b in self.spans:  # keep the category with probability abar, else a random one
            k = b - a
            probs = abar * x0[:, a:b] + (1 - abar) / k
            gumbel = -torch.log(-torch.log(u_cat[:, a:b].clamp(1e-12, 1 - 1e-12)))
            x_t[:, a:b] = F.one_hot((probs.log() + gumbel).argmax(1), k).to(x0.dtype)
        out = self.net(x_t, t)
        loss = F.mse_loss(out[:, self.offsets], eps) if len(self.offsets) else out.new_zeros(())
        if self.spans:
            ce = sum(F.cross_entropy(out[:, a:b], x0[:, a:b].argmax(1)) for a, b in self.spans)
            loss = loss + ce / len(self.spans)
        return loss

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.net.train()
        loss = self._loss(batch.x, batch.rand(1), batch.randn(len(self.offsets)),
                          batch.rand(self.width))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def val_loss(self, batch: Batch) -> float:
        self.net.eval()  # the same steps and noise every epoch: comparable values
        g = torch.Generator(self.device).manual_seed(0)
        n = len(batch.x)
        noise = (torch.rand(n, 1, generator=g, device=self.device),
                 torch.randn(n, len(self.offsets), generator=g, device=self.device),
                 torch.rand(n, self.width, generator=g, device=self.device))
        return self._loss(batch.x, *noise).item()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels=None,
               settings: Settings | None = None) -> torch.Tensor:
        """Encoded rows (n, D), from noise through the T steps back; `where` by inpainting."""
        self.net.eval()
        held = self._held(settings)  # (start, end, category) or None
        x = torch.zeros(n, self.width, device=self.device)
        x[:, self.offsets] = torch.randn(n, len(self.offsets), generator=generator,
                                         device=self.device)
        for a, b in self.spans:  # the stationary distribution: uniform
            pick = torch.randint(b - a, (n,), generator=generator, device=self.device)
            x[:, a:b] = F.one_hot(pick, b - a).float()
        T = self.options.timesteps
        if held is not None:
            x = self._hold(x, held, T, generator)
        for t in range(T, 0, -1):
            out = self.net(x, torch.full((n,), t, device=self.device))
            x = self._gaussian_step(x, out, t, generator)
            for a, b in self.spans:
                x[:, a:b] = self._categorical_step(x[:, a:b], out[:, a:b], t, generator)
            if held is not None:
                x = self._hold(x, held, t - 1, generator)
        return x

    def _held(self, settings: Settings | None) -> tuple[int, int, int] | None:
        where = settings.where if settings is not None else ""
        if not where:
            return None
        column, category = tabular.parse_where(self.encoding, where)  # or a UsageError
        span = next(s for s in tabular.spans(self.encoding)
                    if s.column == column and s.kind == "categorical")
        return span.start, span.end, category

    def _hold(self, x: torch.Tensor, held: tuple[int, int, int], t: int,
              generator: torch.Generator) -> torch.Tensor:
        """x with the held column drawn from its category's forward process at step t: the
        category itself at t = 0."""
        a, b, category = held
        k, abar = b - a, float(self.abar[t])
        probs = torch.full((k,), (1 - abar) / k, device=x.device)
        probs[category] += abar
        pick = torch.multinomial(probs.expand(len(x), k), 1, generator=generator)[:, 0]
        x[:, a:b] = F.one_hot(pick, k).to(x.dtype)
        return x

    def _gaussian_step(self, x: torch.Tensor, out: torch.Tensor, t: int,
                       generator: torch.Generator) -> torch.Tensor:
        """x_{t-1} for the offsets: DDPM's posterior mean from the predicted eps, plus its
        noise (none at the last step)."""
        if not len(self.offsets):
            return x
        abar_t, abar_prev = float(self.abar[t]), float(self.abar[t - 1])
        alpha_t = abar_t / abar_prev
        x_t, eps = x[:, self.offsets], out[:, self.offsets]
        # x_0 as the predicted eps implies it, clipped as DDPM clips pixels: near t = T,
        # 1 / sqrt(abar_t) (about 2,000 for T = 100) would otherwise blow its error up, and
        # step after step the offsets overflow (measured on adult: 1e35 by t = 60)
        x0 = ((x_t - math.sqrt(1 - abar_t) * eps) / math.sqrt(abar_t)).clamp(-CLIP, CLIP)
        mean = (math.sqrt(abar_prev) * (1 - alpha_t) * x0
                + math.sqrt(alpha_t) * (1 - abar_prev) * x_t) / (1 - abar_t)
        if t > 1:
            variance = (1 - alpha_t) * (1 - abar_prev) / (1 - abar_t)
            mean = mean + math.sqrt(variance) * torch.randn(
                mean.shape, generator=generator, device=x.device)
        x = x.clone()
        x[:, self.offsets] = mean
        return x

    def _categorical_step(self, x_t: torch.Tensor, logits: torch.Tensor, t: int,
                          generator: torch.Generator) -> torch.Tensor:
        """x_{t-1} of one span (n, K), one-hot: the posterior of multinomial diffusion averaged
        over the predicted x_0, sum_k p(x_0 = k) q(x_{t-1} | x_t, x_0 = k), which with
        q(x_{t-1} | x_t, x_0) = q(x_t | x_{t-1}) q(x_{t-1} | x_0) / q(x_t | x_0) is
        A_j (abar_{t-1} w_j + (1 - abar_{t-1}) / K sum_k w_k), w_k = p(x_0 = k) / q(x_t | x_0 = k),
        A_j = q(x_t | x_{t-1} = j)."""
        k = x_t.shape[1]
        abar_t, abar_prev = float(self.abar[t]), float(self.abar[t - 1])
        alpha_t = abar_t / abar_prev
        p0 = logits.float().softmax(1)  # (n, K)
        w = p0 / (abar_t * x_t + (1 - abar_t) / k)
        forward = alpha_t * x_t + (1 - alpha_t) / k  # A_j
        probs = forward * (abar_prev * w + (1 - abar_prev) / k * w.sum(1, keepdim=True))
        pick = torch.multinomial(probs.clamp(min=0) + 1e-30, 1, generator=generator)[:, 0]
        return F.one_hot(pick, k).to(x_t.dtype)
