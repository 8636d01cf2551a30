"""Denoising diffusion (Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020) for
tables, sequences and images.

Tables, as TabDDPM does them (Kotelnikov et al., "TabDDPM: Modelling Tabular Data with Diffusion
Models", ICML 2023): Gaussian diffusion on the numeric values and multinomial diffusion on the
categories (Hoogeboom et al., "Argmax Flows and Multinomial Diffusion", NeurIPS 2021), one MLP
denoiser with a timestep embedding for both.

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
  posterior q(x_{t-1} | x_t) under the predicted distribution of x_0 (`categorical_step`).
- `where COLUMN=VALUE` is drawn by the model: the column's span is held at the category's own
  forward process at every step (inpainting, as RePaint's replacement) while the denoiser
  fills in the rest, so the other columns follow the category; no row is rejected.

Sequences (standardized windows [B, T, F]): Gaussian diffusion on every value, the denoiser a
1-D convolutional net over time with the same timestep embedding (`ConvDenoiser`).

Images ([B, C, H, W], gray or RGB, any size; scaled from [0, 1] to [-1, 1] as DDPM scales
pixels): Gaussian diffusion on every pixel, the denoiser a small UNet (plugkit/families/unet.py).
With labels it is class-conditional with classifier-free guidance (Ho & Salimans,
"Classifier-Free Diffusion Guidance", 2021): training replaces a label by "no label" with
probability `cond_drop`, so one net learns both eps(x_t, label) and eps(x_t), and sampling
follows (1 + w) eps(x_t, label) - w eps(x_t) for the `guidance` weight w. Sampling is DDIM's
deterministic walk (Song et al., "Denoising Diffusion Implicit Models", ICLR 2021, eta = 0:
the initial noise decides the image), over all T steps or `steps` of them, and samples come
from a moving average of the weights (`ema`), as DDPM's do. Measured on digits after 2 minutes
of training on one CPU thread (62 epochs, plugkit eval; real floor: Fréchet distance 0.079,
label accuracy 0.994): the average took the Fréchet distance from 0.51 to 0.15 and detection
accuracy from 0.70 to 0.57; `steps=20` of the 100, a fifth of the denoiser's passes, gave
0.17; `guidance=1` gave label accuracy 0.998 (0.948 without) at a Fréchet distance of 0.29,
hence no guidance by default.

Every noise of a training step is drawn per row through Batch.randn / Batch.rand (the step t,
eps, the categories' replacement, the dropped labels), so a run on N processes trains what one
process trains and --resume continues exactly. The Gaussian noise of a step is not stored: it
is drawn from a Philox key by plugkit.ops.diffusion_noise and drawn again by diffusion_loss,
keyed by each row's global index, so it too is the same on any number of processes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plugkit import ops
from plugkit.errors import UsageError
from plugkit.families import image_nets
from plugkit.families.unet import GROUPS, UNet
from plugkit.family import Batch, DataInfo, Family
from plugkit.formats import tabular
from plugkit.options import option

CLIP = 3.0  # |offset| of a predicted x_0 at most: 12 std of its mode (real data: about 1)


@dataclass
class Options:
    timesteps: int = option(100, "diffusion steps T, in training and in sampling", min=2,
                            max=4000)
    hidden: int = option(256, "tables, sequences: width of the denoiser", min=8)
    layers: int = option(3, "tables, sequences: hidden layers of the denoiser", min=1, max=16)
    dropout: float = option(0.0, "dropout in the denoiser", min=0.0, max=0.9)
    lr: float = option(1e-3, "AdamW learning rate", min=0.0, max=1.0)
    weight_decay: float = option(1e-5, "AdamW weight decay", min=0.0)
    channels: int = option(32, "images: the UNet's channels at full resolution (twice that "
                           f"at 1/2 and 1/4), a multiple of {GROUPS}", min=GROUPS, max=1024)
    cond_drop: float = option(0.1, "images with labels: how often training drops the label, "
                              "teaching the unconditional model that guidance needs", min=0.0,
                              max=1.0)
    conditional: bool = image_nets.conditional_option()
    ema: float = option(0.999, "images: decay of the moving average of the denoiser's weights "
                        "that samples (0: the trained weights themselves)", min=0.0,
                        max=0.9999)

    def __post_init__(self) -> None:
        if self.channels % GROUPS:
            raise ValueError(f"channels must be a multiple of {GROUPS} (GroupNorm's groups), "
                             f"got {self.channels}")


@dataclass
class Settings:
    where: str = option("", "tables: every row holds VALUE in the categorical COLUMN "
                        "(COLUMN=VALUE), drawn so by the model, not filtered")
    steps: int = option(0, "denoising steps when sampling, evenly spaced over the T trained "
                        "(fewer: faster); 0: all T", min=0)
    guidance: float = option(0.0, "images drawn for labels: classifier-free guidance weight w, "
                             "eps = (1 + w) eps(x, label) - w eps(x); 0: none (one net "
                             "evaluation per step, not two)", min=0.0)


def schedule_of(steps: int, timesteps: int) -> list[tuple[int, int]]:
    """The (t, s) pairs sampling steps through, t down to s < t: every step when `steps` is 0
    or at least T, else `steps` jumps evenly spaced over T ("respacing", Nichol & Dhariwal,
    ICML 2021: each jump t -> s is one step of a diffusion whose alpha is abar_t / abar_s)."""
    if steps <= 0 or steps >= timesteps:
        points = list(range(timesteps, -1, -1))
    else:
        points = sorted({round(i * timesteps / steps) for i in range(steps + 1)}, reverse=True)
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


class Denoiser(nn.Module):
    """TabDDPM's MLP: the row projected, plus the step's embedding, then SiLU blocks; one output
    per position of the row."""

    def __init__(self, width: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed_t = TimeEmbedding(hidden)
        self.project = nn.Linear(width, hidden)
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(hidden, hidden), nn.SiLU(), nn.Dropout(dropout)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x (B, D) noisy rows, t (B,) steps 1..T -> (B, D)."""
        return self.out(self.blocks(self.project(x) + self.embed_t(t)))


class ConvDenoiser(nn.Module):
    """Windows (B, T, F) -> eps (B, T, F): 1-D convolutions over time (kernel 3, SiLU) in
    residual blocks dilated 1, 2, 4, ... (WaveNet), so a few blocks see far along the window,
    and every block's input gets the step's embedding and the window's mean features: a noisy
    window's level is the whole window's business, which no kernel of 3 sees (measured on co2
    without the two: detection accuracy 0.99, samples 13 times further from real windows than
    real ones)."""

    def __init__(self, features: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.embed_t = TimeEmbedding(hidden)
        self.project = nn.Conv1d(features, hidden, 3, padding=1)
        self.context = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Conv1d(hidden, hidden, 3, padding=2 ** i,
                                               dilation=2 ** i), nn.Dropout(dropout))
            for i in range(layers))
        self.out = nn.Conv1d(hidden, features, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.project(x.transpose(1, 2))  # (B, hidden, T)
        emb = self.embed_t(t)  # (B, hidden)
        for block, context in zip(self.blocks, self.context, strict=True):
            h = h + block(h + (emb + context(h.mean(2)))[:, :, None])
        return self.out(F.silu(h)).transpose(1, 2)  # (B, T, F)


class ImageDenoiser(nn.Module):
    """Images (B, C, H, W), steps t (B,) and labels y (B,) -> eps (B, C, H, W): the UNet given
    the sum of the step's embedding and the label's. The label table has one row more than
    there are classes: row `classes` is "no label", the unconditional model of guidance."""

    def __init__(self, channels: int, base: int, classes: int, dropout: float) -> None:
        super().__init__()
        embedding = 4 * base  # DDPM's embedding width
        self.embed_t = TimeEmbedding(embedding)
        self.embed_y = nn.Embedding(classes + 1, embedding) if classes else None
        self.unet = UNet(channels, base, embedding, dropout)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed_t(t)  # (B, E)
        if self.embed_y is not None:
            emb = emb + self.embed_y(y)
        return self.unet(x, emb)


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
                     s: int, generator: torch.Generator) -> torch.Tensor:
    """x_s (s < t; s = t - 1 without respacing, as written below) of one one-hot span (n, K):
    the posterior of multinomial diffusion averaged over
    the predicted x_0, sum_k p(x_0 = k) q(x_{t-1} | x_t, x_0 = k), which with
    q(x_{t-1} | x_t, x_0) = q(x_t | x_{t-1}) q(x_{t-1} | x_0) / q(x_t | x_0) is
    A_j (abar_{t-1} w_j + (1 - abar_{t-1}) / K sum_k w_k), w_k = p(x_0 = k) / q(x_t | x_0 = k),
    A_j = q(x_t | x_{t-1} = j)."""
    k = x_t.shape[1]
    abar_t, abar_prev = float(abar[t]), float(abar[s])
    alpha_t = abar_t / abar_prev
    p0 = logits.float().softmax(1)  # (n, K)
    w = p0 / (abar_t * x_t + (1 - abar_t) / k)
    forward = alpha_t * x_t + (1 - alpha_t) / k  # A_j
    probs = forward * (abar_prev * w + (1 - abar_prev) / k * w.sum(1, keepdim=True))
    pick = torch.multinomial(probs.clamp(min=0) + 1e-30, 1, generator=generator)[:, 0]
    return F.one_hot(pick, k).to(x_t.dtype)


def steps_of(u: torch.Tensor, steps: int) -> torch.Tensor:
    """Steps t in 1..T, one per row, from uniform numbers u (B, 1)."""
    return 1 + (u[:, 0] * steps).long().clamp(max=steps - 1)


class _Fixed:
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


def _key(noise: Batch | _Fixed) -> tuple[torch.Tensor, int]:
    """The Philox key of a step's Gaussian noise, and the global index of its first row: every
    process draws the same key (the generators advance alike) and its own rows' numbers."""
    if isinstance(noise, _Fixed):
        return noise.key(), noise.start
    return ops.draw_key(noise.x.device), noise.start


class _Tables:
    """Encoded rows: Gaussian offsets, multinomial one-hot spans, the MLP denoiser; `where` by
    inpainting."""

    classes = 0  # conditioned on a category (where), not on a label
    ema = 0.0  # samples with the trained weights

    def __init__(self, o: Options, info: DataInfo, device: torch.device) -> None:
        self.o, self.device = o, device
        self.encoding = info.meta["encoding"]
        spans = tabular.spans(self.encoding)
        self.width = tabular.width(self.encoding)
        self.offsets = torch.tensor([s.start for s in spans if not s.discrete], device=device)
        self.spans = [(s.start, s.end) for s in spans if s.discrete]

    def net(self) -> nn.Module:
        return Denoiser(self.width, self.o.hidden, self.o.layers, self.o.dropout)

    def loss(self, net: nn.Module, abar: torch.Tensor, x0: torch.Tensor,
             labels: torch.Tensor | None, noise: Batch | _Fixed) -> torch.Tensor:
        """The loss of rows x0 (B, D), each noised at its own step; `noise` draws, in this
        order: the step per row, the key of the offsets' eps, the uniform numbers of the
        categories' replacement per row. A table's class is one of its columns: `labels` are
        not used."""
        t = steps_of(noise.rand(1), self.o.timesteps)  # (B,) in 1..T
        key, start = _key(noise)
        u_cat = noise.rand(self.width)
        kept = abar[t][:, None].float()  # (B, 1)
        x_t = x0.clone()
        x_t[:, self.offsets] = ops.diffusion_noise(x0[:, self.offsets], abar[t], key=key,
                                                   row_start=start)
        for a, b in self.spans:  # keep the category with probability abar, else a random one
            probs = kept * x0[:, a:b] + (1 - kept) / (b - a)
            gumbel = -torch.log(-torch.log(u_cat[:, a:b].clamp(1e-12, 1 - 1e-12)))
            x_t[:, a:b] = F.one_hot((probs.log() + gumbel).argmax(1), b - a).to(x0.dtype)
        out = net(x_t, t)
        loss = (ops.diffusion_loss(out[:, self.offsets], key=key, row_start=start)
                if len(self.offsets) else out.new_zeros(()))
        if self.spans:
            ce = sum(F.cross_entropy(out[:, a:b], x0[:, a:b].argmax(1)) for a, b in self.spans)
            loss = loss + ce / len(self.spans)
        return loss

    def sample(self, net: nn.Module, abar: torch.Tensor, n: int, generator: torch.Generator,
               labels: torch.Tensor | None, settings: Settings) -> torch.Tensor:
        """Encoded rows (n, D), from noise through the steps back; `where` by inpainting."""
        _refuse_guidance(settings, "this run's data is a table (choose rows with `where`)")
        where = settings.where
        held = self._held(where)  # (start, end, category) or None
        x = torch.zeros(n, self.width, device=self.device)
        x[:, self.offsets] = torch.randn(n, len(self.offsets), generator=generator,
                                         device=self.device)
        for a, b in self.spans:  # the stationary distribution: uniform
            pick = torch.randint(b - a, (n,), generator=generator, device=self.device)
            x[:, a:b] = F.one_hot(pick, b - a).float()
        if held is not None:
            x = _hold(abar, x, held, self.o.timesteps, generator)
        for t, s in schedule_of(settings.steps, self.o.timesteps):
            out = net(x, torch.full((n,), t, device=self.device))
            if len(self.offsets):
                x[:, self.offsets] = gaussian_step(abar, x[:, self.offsets],
                                                   out[:, self.offsets], t, s, generator)
            for a, b in self.spans:
                x[:, a:b] = categorical_step(abar, x[:, a:b], out[:, a:b], t, s, generator)
            if held is not None:
                x = _hold(abar, x, held, s, generator)
        return x

    def _held(self, where: str) -> tuple[int, int, int] | None:
        if not where:
            return None
        column, category = tabular.parse_where(self.encoding, where)  # or a UsageError
        span = next(s for s in tabular.spans(self.encoding)
                    if s.column == column and s.kind == "categorical")
        return span.start, span.end, category


def _hold(abar: torch.Tensor, x: torch.Tensor, held: tuple[int, int, int], t: int,
          generator: torch.Generator) -> torch.Tensor:
    """x with the held span drawn from its category's forward process at step t: the category
    itself at t = 0."""
    a, b, category = held
    k, kept = b - a, float(abar[t])
    probs = torch.full((k,), (1 - kept) / k, device=x.device)
    probs[category] += kept
    pick = torch.multinomial(probs.expand(len(x), k), 1, generator=generator)[:, 0]
    x[:, a:b] = F.one_hot(pick, k).to(x.dtype)
    return x


class _Sequences:
    """Standardized windows (B, T, F): Gaussian diffusion on every value, a 1-D conv denoiser."""

    classes, ema = 0, 0.0

    def __init__(self, o: Options, info: DataInfo, device: torch.device) -> None:
        self.o, self.device = o, device
        self.shape = (info.meta["length"], info.meta["features"])

    def net(self) -> nn.Module:
        return ConvDenoiser(self.shape[1], self.o.hidden, self.o.layers, self.o.dropout)

    def loss(self, net: nn.Module, abar: torch.Tensor, x0: torch.Tensor,
             labels: torch.Tensor | None, noise: Batch | _Fixed) -> torch.Tensor:
        t = steps_of(noise.rand(1), self.o.timesteps)  # (B,) in 1..T
        key, start = _key(noise)  # eps (B, T, F) from the key, never stored
        x_t = ops.diffusion_noise(x0, abar[t], key=key, row_start=start)
        return ops.diffusion_loss(net(x_t, t), key=key, row_start=start)

    def sample(self, net: nn.Module, abar: torch.Tensor, n: int, generator: torch.Generator,
               labels: torch.Tensor | None, settings: Settings) -> torch.Tensor:
        _refuse_where(settings, "sequences")
        _refuse_guidance(settings, "this run's data is sequences")
        x = torch.randn(n, *self.shape, generator=generator, device=self.device)
        for t, s in schedule_of(settings.steps, self.o.timesteps):
            eps = net(x, torch.full((n,), t, device=self.device))
            x = gaussian_step(abar, x, eps, t, s, generator)
        return x  # (n, T, F)


class _Images:
    """Images (B, C, H, W), diffused in [-1, 1]: the UNet, DDIM sampling, classifier-free
    guidance when the model learned the labels."""

    def __init__(self, o: Options, info: DataInfo, device: torch.device) -> None:
        self.o, self.device = o, device
        self.shape = (info.meta["channels"], info.meta["height"], info.meta["width"])
        self.classes = image_nets.num_classes(info.classes, o.conditional)
        self.ema = o.ema

    def net(self) -> nn.Module:
        return ImageDenoiser(self.shape[0], self.o.channels, self.classes, self.o.dropout)

    def loss(self, net: nn.Module, abar: torch.Tensor, x0: torch.Tensor,
             labels: torch.Tensor | None, noise: Batch | _Fixed) -> torch.Tensor:
        """The eps loss of images x0 (B, C, H, W) in [0, 1]; `noise` draws, in this order: the
        step per row, the key of eps, whether each row's label is dropped."""
        t = steps_of(noise.rand(1), self.o.timesteps)  # (B,) in 1..T
        key, start = _key(noise)  # eps (B, C, H, W) from the key, never stored
        x_t = ops.diffusion_noise(2 * x0 - 1, abar[t], key=key, row_start=start)
        pred = net(x_t, t, self._dropped(labels, noise))
        return ops.diffusion_loss(pred, key=key, row_start=start)

    def _dropped(self, labels: torch.Tensor | None, noise: Batch | _Fixed) -> torch.Tensor | None:
        """The labels, each "no label" (index `classes`) with probability cond_drop."""
        if not self.classes:
            return None
        dropped = noise.rand(1)[:, 0] < self.o.cond_drop  # (B,)
        return torch.where(dropped, self.classes, labels)

    def sample(self, net: nn.Module, abar: torch.Tensor, n: int, generator: torch.Generator,
               labels: torch.Tensor | None, settings: Settings) -> torch.Tensor:
        """Images (n, C, H, W) in [0, 1] for the labels; without labels, the unconditional
        model's."""
        _refuse_where(settings, "images")
        if labels is None or not self.classes:
            _refuse_guidance(settings, "these images are drawn without labels")
        if self.classes and labels is None:
            labels = torch.full((n,), self.classes, device=self.device)  # "no label"
        x = torch.randn(n, *self.shape, generator=generator, device=self.device)
        for t, s in schedule_of(settings.steps, self.o.timesteps):
            eps = self._eps(net, x, t, labels, settings.guidance)
            x = ddim_step(abar, x, eps, t, s)
        return ((x + 1) / 2).clamp(0, 1)

    def _eps(self, net: nn.Module, x: torch.Tensor, t: int, labels: torch.Tensor | None,
             guidance: float) -> torch.Tensor:
        """The predicted eps, guided: one pass over the labelled and unlabelled copies."""
        steps = torch.full((len(x),), t, device=self.device)
        if not guidance:
            return net(x, steps, labels)
        unlabelled = torch.full_like(labels, self.classes)
        both = net(torch.cat([x, x]), torch.cat([steps, steps]), torch.cat([labels, unlabelled]))
        given, free = both.chunk(2)
        return given + guidance * (given - free)


def _refuse_where(settings: Settings, data: str) -> None:
    if settings.where:
        raise UsageError("sampler setting `where` chooses a category of a table column; "
                         f"this run's data is {data}")


def _refuse_guidance(settings: Settings, why: str) -> None:
    if settings.guidance:
        raise UsageError("sampler setting `guidance` weighs the labels images are drawn for; "
                         + why)


_MODALITIES = {"table": _Tables, "sequence": _Sequences, "image": _Images}


class Diffusion(Family):
    name = "diffusion"
    description = "denoising diffusion for tables (TabDDPM), sequences and images (DDIM, CFG)"
    modalities = ("table", "sequence", "image")
    conditional = True  # tables: per category (--where), by inpainting; images: per label
    private = ("table",)  # DP-SGD: every row its own noise and loss, no layer mixes rows
    Options = Options
    Settings = Settings
    default_dataset = "iris"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        self.data = _MODALITIES[info.modality](options, info, device)  # what differs with it
        self.num_classes = self.data.classes
        self.abar = cosine_schedule(options.timesteps).to(device)  # (T + 1,) float64
        self.net = self.data.net().to(device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=options.lr,
                                           weight_decay=options.weight_decay)
        # images sample with a moving average of the weights, as DDPM's do (digits: Fréchet
        # distance 0.51 without it, 0.15 with it; module docstring)
        self.averaged = (copy.deepcopy(self.net).requires_grad_(False) if self.data.ema
                         else None)

    def modules(self) -> dict[str, nn.Module]:
        averaged = {"denoiser_ema": self.averaged} if self.averaged is not None else {}
        return {"denoiser": self.net} | averaged

    def _sampler(self) -> nn.Module:
        """The weights that sample, and so are validated: the moving average when kept."""
        return self.averaged if self.averaged is not None else self.net

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.optimizer}

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.net.train()
        loss = self.data.loss(self.net, self.abar, batch.x, batch.y, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.averaged is not None:
            image_nets.update_average(self.averaged, self.net, self.optimizer,
                                      self.data.ema)
        return {"loss": loss.item()}

    @torch.no_grad()
    def val_loss(self, batch: Batch) -> float:
        net = self._sampler().eval()  # the same steps and noise every epoch: comparable values
        noise = _Fixed(len(batch.x), self.device)
        return self.data.loss(net, self.abar, batch.x, batch.y, noise).item()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels=None,
               settings: Settings | None = None) -> torch.Tensor:
        """Encoded rows (n, D), standardized windows (n, T, F) or images (n, C, H, W) in
        [0, 1] (of the labels [n] when conditional), from noise through the T steps back (or
        `steps` of them)."""
        return self.data.sample(self._sampler().eval(), self.abar, n, generator, labels,
                                settings or Settings())
