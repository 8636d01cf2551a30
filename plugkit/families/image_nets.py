"""Image networks the vae and gan families share (shared machinery lives beside the
families, not in them): a trunk from images to features, one from a code to images, and the
class conditioning both use.

Conv trunks are DCGAN's (Radford et al., ICLR 2016): two stride-2 convolutions down, two
transposed convolutions up; MLP trunks serve images too small for them (8x8 digits).
Class labels enter as a one-hot beside the code (the decoder's or generator's input, Mirza &
Osindero, "Conditional GANs", 2014; Sohn et al., "Conditional VAE", NeurIPS 2015) and, for a
discriminator, by projection (Miyato & Koyama, "cGANs with Projection Discriminator", ICLR
2018): logit = w . phi(x) + embed(y) . phi(x), which judges how well x fits its label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plugkit.families.common import mlp


def down(c: int, h: int, w: int, conv: bool, width: int,
         act: type[nn.Module] = nn.ReLU) -> tuple[nn.Module, int]:
    """Images (B, C, H, W) -> features (B, F); returns the module and F."""
    if not conv:
        return nn.Sequential(nn.Flatten(), mlp([c * h * w, width, width], act), act()), width
    base = max(width // 8, 8)
    return nn.Sequential(
        nn.Conv2d(c, base, 4, 2, 1), act(),  # (B, base, H/2, W/2)
        nn.Conv2d(base, 2 * base, 4, 2, 1), act(),  # (B, 2base, H/4, W/4)
        nn.Flatten(),
    ), 2 * base * (h // 4) * (w // 4)


def up(code: int, c: int, h: int, w: int, conv: bool, width: int,
       norm: bool = False) -> nn.Module:
    """Codes (B, code) -> logits (B, C, H, W); BatchNorm between layers when `norm`."""
    if not conv:
        return nn.Sequential(mlp([code, width, width, c * h * w], nn.ReLU, norm=norm),
                             nn.Unflatten(1, (c, h, w)))
    base = max(width // 8, 8)
    return nn.Sequential(
        nn.Linear(code, 2 * base * (h // 4) * (w // 4)), nn.ReLU(),
        nn.Unflatten(1, (2 * base, h // 4, w // 4)),
        nn.ConvTranspose2d(2 * base, base, 4, 2, 1),  # (B, base, H/2, W/2)
        nn.BatchNorm2d(base) if norm else nn.Identity(), nn.ReLU(),
        nn.ConvTranspose2d(base, c, 4, 2, 1),  # (B, C, H, W) logits
    )


def with_label(code: torch.Tensor, y: torch.Tensor | None, classes: int) -> torch.Tensor:
    """[code, one-hot(y)] (B, code + classes); the code alone for an unconditional model."""
    if not classes:
        return code
    if y is None:
        raise ValueError(f"the model is conditioned on {classes} classes: give labels")
    return torch.cat([code, F.one_hot(y, classes).to(code.dtype)], 1)


def labels_or_random(labels: torch.Tensor | None, n: int, classes: int,
                     generator: torch.Generator, device: torch.device) -> torch.Tensor | None:
    """The labels to sample: those given, or uniform draws when a conditional model is sampled
    without them (the core always gives them; a direct Python call may not)."""
    if labels is not None or not classes:
        return labels
    return torch.randint(classes, (n,), generator=generator, device=device)


class Critic(nn.Module):
    """A discriminator's head over trunk features: one logit per image, plus the projection
    term embed(y) . phi(x) when the model is conditional."""

    def __init__(self, trunk: nn.Module, features: int, classes: int) -> None:
        super().__init__()
        self.trunk, self.linear = trunk, nn.Linear(features, 1)
        self.embed = nn.Embedding(classes, features) if classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.trunk(x)  # (B, F)
        logit = self.linear(phi).squeeze(1)  # (B,)
        if self.embed is not None:
            logit = logit + (self.embed(y) * phi).sum(1)
        return logit
