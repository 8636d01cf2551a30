"""Images: DDPM on pixels in [-1, 1], a small UNet, DDIM sampling and classifier-free
guidance."""

from __future__ import annotations

import torch
from torch import nn

from plugkit import ops
from plugkit.families import image_nets
from plugkit.families.diffusion.options import Options, Settings
from plugkit.families.diffusion.steps import (
    FixedNoise,
    TimeEmbedding,
    ddim_step,
    key_of,
    min_snr_odds,
    refuse_guidance,
    refuse_where,
    schedule_of,
    steps_of,
)
from plugkit.families.unet import UNet
from plugkit.family import Batch, DataInfo

# rows of one denoiser pass when sampling on a CPU: a pass over a whole block of images streams
# feature maps far larger than the caches (1,000 28x28 images at 32 channels: 100 MB each), so
# on a CPU the sampler takes the block a few rows at a time. Measured 2026-11-30, one pass over
# 1,000 mnist-sized images, one thread of a 2-core EPYC (the other core busy): 10.1 s at once,
# 8.2 s in passes of 250 rows, 5.7 s of 100, 4.1 s of 50 (channels=32); 2.6 / 1.6 / 1.1 / 1.0 s
# (channels=16). A GPU takes the block in one pass.
CPU_ROWS = 50


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


class Images:
    """Images (B, C, H, W), diffused in [-1, 1]: the UNet, DDIM sampling, classifier-free
    guidance when the model learned the labels."""

    timesteps = 100  # T when the option is 0
    # mnist-5k, 15 minutes on one CPU thread, 16 channels: Fréchet distance 0.55 at 2e-3 against
    # 0.86 at 1e-3 (docs/results.md)
    lr = 2e-3  # the learning rate when the option is 0

    def __init__(self, o: Options, info: DataInfo, device: torch.device) -> None:
        self.o, self.device = o, device
        self.shape = (info.meta["channels"], info.meta["height"], info.meta["width"])
        self.classes = image_nets.num_classes(info.classes, o.conditional)

    def net(self) -> nn.Module:
        return ImageDenoiser(self.shape[0], self.o.channels, self.classes, self.o.dropout)

    def loss(self, net: nn.Module, abar: torch.Tensor, x0: torch.Tensor,
             labels: torch.Tensor | None, noise: Batch | FixedNoise) -> torch.Tensor:
        """The eps loss of images x0 (B, C, H, W) in [0, 1]; `noise` draws, in this order: the
        step per row, the key of eps, whether each row's label is dropped."""
        odds = min_snr_odds(abar, self.o.snr_gamma) if self.o.snr_gamma else None
        t = steps_of(noise.rand(1), self.o.timesteps, odds)  # (B,) in 1..T
        key, start = key_of(noise)  # eps (B, C, H, W) from the key, never stored
        x_t = ops.diffusion_noise(2 * x0 - 1, abar[t], key=key, row_start=start)
        pred = net(x_t, t, self._dropped(labels, noise))
        return ops.diffusion_loss(pred, key=key, row_start=start)

    def _dropped(self, labels: torch.Tensor | None,
                 noise: Batch | FixedNoise) -> torch.Tensor | None:
        """The labels, each "no label" (index `classes`) with probability cond_drop."""
        if not self.classes:
            return None
        dropped = noise.rand(1)[:, 0] < self.o.cond_drop  # (B,)
        return torch.where(dropped, self.classes, labels)

    def sample(self, net: nn.Module, abar: torch.Tensor, n: int, generator: torch.Generator,
               labels: torch.Tensor | None, settings: Settings) -> torch.Tensor:
        """Images (n, C, H, W) in [0, 1] for the labels; without labels, the unconditional
        model's."""
        refuse_where(settings, "images")
        if labels is None or not self.classes:
            refuse_guidance(settings, "these images are drawn without labels")
        if self.classes and labels is None:
            labels = torch.full((n,), self.classes, device=self.device)  # "no label"
        x = torch.randn(n, *self.shape, generator=generator, device=self.device)
        for t, s in schedule_of(settings.steps, self.o.timesteps):
            eps = self._eps(net, x, t, labels, settings.guidance)
            x = ddim_step(abar, x, eps, t, s)
        return ((x + 1) / 2).clamp(0, 1)

    def _eps(self, net: nn.Module, x: torch.Tensor, t: int, labels: torch.Tensor | None,
             guidance: float) -> torch.Tensor:
        """The predicted eps, on a CPU in passes of at most CPU_ROWS rows (guided: half as many
        images a pass, each twice): the same numbers up to rounding, in under half the time."""
        rows = len(x) if self.device.type != "cpu" else max(1, CPU_ROWS // (2 if guidance else 1))
        if len(x) <= rows:
            return self._eps_pass(net, x, t, labels, guidance)
        return torch.cat([
            self._eps_pass(net, x[i:i + rows], t,
                           None if labels is None else labels[i:i + rows], guidance)
            for i in range(0, len(x), rows)])

    def _eps_pass(self, net: nn.Module, x: torch.Tensor, t: int,
                  labels: torch.Tensor | None, guidance: float) -> torch.Tensor:
        """The predicted eps, guided: one pass over the labelled and unlabelled copies."""
        steps = torch.full((len(x),), t, device=self.device)
        if not guidance:
            return net(x, steps, labels)
        unlabelled = torch.full_like(labels, self.classes)
        both = net(torch.cat([x, x]), torch.cat([steps, steps]), torch.cat([labels, unlabelled]))
        given, free = both.chunk(2)
        return given + guidance * (given - free)
