"""Tables as TabDDPM diffuses them: Gaussian offsets, multinomial one-hot spans, an MLP
denoiser; `where` by inpainting (the package docstring says how)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plugkit import ops
from plugkit.families.diffusion.options import Options, Settings
from plugkit.families.diffusion.steps import (
    FixedNoise,
    TimeEmbedding,
    categorical_step,
    gaussian_step,
    key_of,
    refuse_guidance,
    schedule_of,
    steps_of,
)
from plugkit.family import Batch, DataInfo
from plugkit.formats import tabular


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


class Calibration(nn.Module):
    """An offset per position of the row, added to the averaged denoiser's output: its
    one-hot spans' logits of x_0 (option `calibrate`). A moving average of weights is not an
    average of predictions: the softmax of averaged logits is sharper than the predictions of
    the weights around them. On adult after 10 minutes the averaged denoiser's mean prediction
    of workclass Private on noised training rows was 0.703 at t = 40-90 against the rows'
    0.696, and its samples drew Private a point too often. Any stationary point of the
    cross-entropy matches the data's shares on average (the output bias sees to it), so the
    offsets refit that bias for the averaged weights, by the same loss on rows training noised,
    as SWA re-estimates BatchNorm's statistics for averaged weights (Izmailov et al., UAI
    2018). The same training with and without them: Private over-drawn by 0.005 instead of
    0.011, TV max 1.33x its floor instead of 1.43x (docs/results.md); one offset for every t
    leaves the rest, as the gap grows with t. Their own optimizer: a multi-process run
    averages their gradients like any other's."""

    # plain SGD on each span's summed cross-entropy: a step moves an offset in proportion to
    # its gap, so the noise of 256 rows averages out; Adam moves each by about its lr whatever
    # the gap (at 1e-3 the same samples on adult, offsets twice as noisy between checkpoints).
    # At 0.05 an offset follows the average within ~100 of its steps (a share of 3%: ~700).
    lr = 0.05
    # fitted every 8th step, on that step's rows: every step cost 28% of adult's rows a
    # second (18% on 64 of its 256 rows: a step of the offsets is many small ops), this 5-9%
    every = 8

    def __init__(self, width: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(width))


class Calibrated(nn.Module):
    """The averaged denoiser with its Calibration's offsets added: what samples."""

    def __init__(self, net: nn.Module, calibration: Calibration) -> None:
        super().__init__()
        self.net, self.calibration = net, calibration

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t) + self.calibration.shift


class Tables:
    """Encoded rows: Gaussian offsets, multinomial one-hot spans, the MLP denoiser; `where` by
    inpainting."""

    classes = 0  # conditioned on a category (where), not on a label
    timesteps = 100  # T when the option is 0
    lr = 1e-3  # the learning rate when the option is 0

    def __init__(self, o: Options, info: DataInfo, device: torch.device) -> None:
        self.o, self.device = o, device
        self.encoding = info.meta["encoding"]
        spans = tabular.spans(self.encoding)
        self.width = tabular.width(self.encoding)
        self.offsets = torch.tensor([s.start for s in spans if not s.discrete], device=device)
        self.spans = [(s.start, s.end) for s in spans if s.discrete]
        # each span's stationary distribution, what noise draws a category from: its shares
        # in the data, or None, uniform (option prior; a missing flag's share is not recorded)
        shares = (tabular.shares(self.encoding) if o.prior == "marginal"
                  else [None] * len(self.spans))
        self.priors = [None if share is None
                       else torch.tensor(share, dtype=torch.float32, device=device)
                       for share in shares]
        # DP-SGD trains the denoiser alone: offsets fitted to the rows would not be private
        self.calibration = (Calibration(self.width).to(device)
                            if o.calibrate and o.ema and self.spans and not info.private
                            else None)
        self.noised: tuple[torch.Tensor, ...] = ()  # the last training step's (x_t, t, x0)

    def sampler(self, averaged: nn.Module) -> nn.Module:
        return averaged if self.calibration is None else Calibrated(averaged, self.calibration)

    def calibration_loss(self, averaged: nn.Module) -> torch.Tensor:
        """The cross-entropy of the calibrated average's x_0, summed over the spans, on the
        rows the last training step noised; only the offsets learn from it."""
        x_t, t, x0 = self.noised
        with torch.no_grad():
            out = averaged.eval()(x_t, t)
        out = out + self.calibration.shift
        return sum(F.cross_entropy(out[:, a:b], x0[:, a:b].argmax(1)) for a, b in self.spans)

    def net(self) -> nn.Module:
        return Denoiser(self.width, self.o.hidden, self.o.layers, self.o.dropout)

    def loss(self, net: nn.Module, abar: torch.Tensor, x0: torch.Tensor,
             labels: torch.Tensor | None, noise: Batch | FixedNoise) -> torch.Tensor:
        """The loss of rows x0 (B, D), each noised at its own step; `noise` draws, in this
        order: the step per row, the key of the offsets' eps, the uniform numbers of the
        categories' replacement per row. A table's class is one of its columns: `labels` are
        not used."""
        t = steps_of(noise.rand(1), self.o.timesteps)  # (B,) in 1..T
        key, start = key_of(noise)
        u_cat = noise.rand(self.width)
        kept = abar[t][:, None].float()  # (B, 1)
        x_t = x0.clone()
        x_t[:, self.offsets] = ops.diffusion_noise(x0[:, self.offsets], abar[t], key=key,
                                                   row_start=start)
        for (a, b), prior in zip(self.spans, self.priors, strict=True):
            # kept with probability abar, else drawn from the prior
            probs = kept * x0[:, a:b] + ((1 - kept) / (b - a) if prior is None
                                         else (1 - kept) * prior)
            gumbel = -torch.log(-torch.log(u_cat[:, a:b].clamp(1e-12, 1 - 1e-12)))
            x_t[:, a:b] = F.one_hot((probs.log() + gumbel).argmax(1), b - a).to(x0.dtype)
        if net.training and self.calibration is not None:
            self.noised = (x_t, t, x0)
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
        refuse_guidance(settings, "this run's data is a table (choose rows with `where`)")
        where = settings.where
        held = self._held(where)  # (start, end, category) or None
        x = torch.zeros(n, self.width, device=self.device)
        x[:, self.offsets] = torch.randn(n, len(self.offsets), generator=generator,
                                         device=self.device)
        for (a, b), prior in zip(self.spans, self.priors, strict=True):  # the stationary one
            pick = (torch.randint(b - a, (n,), generator=generator, device=self.device)
                    if prior is None else
                    torch.multinomial(prior.expand(n, b - a), 1, replacement=True,
                                      generator=generator)[:, 0])
            x[:, a:b] = F.one_hot(pick, b - a).float()
        if held is not None:
            x = self._hold(abar, x, held, self.o.timesteps, generator)
        for t, s in schedule_of(settings.steps, self.o.timesteps):
            out = net(x, torch.full((n,), t, device=self.device))
            if len(self.offsets):
                x[:, self.offsets] = gaussian_step(abar, x[:, self.offsets],
                                                   out[:, self.offsets], t, s, generator)
            for (a, b), prior in zip(self.spans, self.priors, strict=True):
                x[:, a:b] = categorical_step(abar, x[:, a:b], out[:, a:b], t, s, generator,
                                             prior)
            if held is not None:
                x = self._hold(abar, x, held, s, generator)
        return x

    def _held(self, where: str) -> tuple[int, int, int] | None:
        if not where:
            return None
        column, category = tabular.parse_where(self.encoding, where)  # or a UsageError
        span = next(s for s in tabular.spans(self.encoding)
                    if s.column == column and s.kind == "categorical")
        return span.start, span.end, category

    def _hold(self, abar: torch.Tensor, x: torch.Tensor, held: tuple[int, int, int], t: int,
              generator: torch.Generator) -> torch.Tensor:
        """x with the held span drawn from its category's forward process at step t: the
        category itself at t = 0."""
        a, b, category = held
        kept = float(abar[t])
        prior = self.priors[self.spans.index((a, b))]
        probs = (torch.full((b - a,), (1 - kept) / (b - a), device=x.device) if prior is None
                 else (1 - kept) * prior)
        probs[category] += kept
        pick = torch.multinomial(probs.expand(len(x), b - a), 1, generator=generator)[:, 0]
        x[:, a:b] = F.one_hot(pick, b - a).to(x.dtype)
        return x
