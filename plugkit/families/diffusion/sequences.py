"""Sequences: Gaussian diffusion on every value of a standardized window, a 1-D
convolutional denoiser."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plugkit import ops
from plugkit.families.diffusion.options import Options, Settings
from plugkit.families.diffusion.steps import (
    FixedNoise,
    TimeEmbedding,
    gaussian_step,
    key_of,
    refuse_guidance,
    refuse_where,
    schedule_of,
    steps_of,
)
from plugkit.family import Batch, DataInfo


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


class Sequences:
    """Standardized windows (B, T, F): Gaussian diffusion on every value, a 1-D conv denoiser."""

    classes = 0

    def __init__(self, o: Options, info: DataInfo, device: torch.device) -> None:
        self.o, self.device = o, device
        self.shape = (info.meta["length"], info.meta["features"])

    def net(self) -> nn.Module:
        return ConvDenoiser(self.shape[1], self.o.hidden, self.o.layers, self.o.dropout)

    def loss(self, net: nn.Module, abar: torch.Tensor, x0: torch.Tensor,
             labels: torch.Tensor | None, noise: Batch | FixedNoise) -> torch.Tensor:
        t = steps_of(noise.rand(1), self.o.timesteps)  # (B,) in 1..T
        key, start = key_of(noise)  # eps (B, T, F) from the key, never stored
        x_t = ops.diffusion_noise(x0, abar[t], key=key, row_start=start)
        return ops.diffusion_loss(net(x_t, t), key=key, row_start=start)

    def sample(self, net: nn.Module, abar: torch.Tensor, n: int, generator: torch.Generator,
               labels: torch.Tensor | None, settings: Settings) -> torch.Tensor:
        refuse_where(settings, "sequences")
        refuse_guidance(settings, "this run's data is sequences")
        x = torch.randn(n, *self.shape, generator=generator, device=self.device)
        for t, s in schedule_of(settings.steps, self.o.timesteps):
            eps = net(x, torch.full((n,), t, device=self.device))
            x = gaussian_step(abar, x, eps, t, s, generator)
        return x  # (n, T, F)
