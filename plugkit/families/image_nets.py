"""Image networks the vae and gan families share (shared machinery lives beside the
families, not in them): a trunk from images to features, one from a code to images, the class
conditioning both use, and the options that shape them, declared once for both families.

Conv trunks are DCGAN's (Radford et al., ICLR 2016): two stride-2 convolutions down, two
transposed convolutions up; MLP trunks serve images too small for them (8x8 digits).
Class labels enter as a one-hot beside the code (the decoder's or generator's input, Mirza &
Osindero, "Conditional GANs", 2014; Sohn et al., "Conditional VAE", NeurIPS 2015) and, for a
discriminator, by projection (Miyato & Koyama, "cGANs with Projection Discriminator", ICLR
2018): logit = w . phi(x) + embed(y) . phi(x), which judges how well x fits its label.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plugkit.options import option

# Options both families declare alike. Each call gives a fresh dataclass field (one field
# cannot serve two classes); they live beside the code that reads them, so that a help text
# and its rule change together.


def hidden_option() -> Any:
    return option(256, "MLP width; the conv nets use hidden/8 base channels", min=8)


def arch_option() -> Any:
    return option("auto", "networks: mlp, conv, or auto (conv when height and width are "
                  "multiples of 4 and at least 16)", choices=("auto", "mlp", "conv"))


def conditional_option() -> Any:
    return option(True, "images with labels: learn p(image | label), so samples can be drawn "
                  "per class (--label, --per-class)")


def use_conv(arch: str, height: int, width: int) -> bool:
    """The `arch` option's rule: conv nets when asked, or for `auto` when two stride-2 layers
    fit (height and width multiples of 4) and the images are big enough (16 px) to gain."""
    fits = height % 4 == 0 and width % 4 == 0
    if arch == "conv" and not fits:  # two stride-2 layers up would give (H//4)*4 pixels
        from plugkit.errors import UsageError

        raise UsageError(f"arch=conv needs images whose height and width are multiples of 4, "
                         f"these are {height}x{width}: give --image-size, or arch=mlp or auto")
    if arch != "auto":
        return arch == "conv"
    return fits and min(height, width) >= 16


def num_classes(classes: list[str] | None, conditional: bool) -> int:
    """The `conditional` option's rule: learn p(x | label) for every class the data has."""
    return len(classes or []) if conditional else 0


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU, norm: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes; activation (and BatchNorm) between them, not after
    (also the vae's table encoder and decoder)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        hidden = i < len(sizes) - 2
        layers += [nn.Linear(a, b)] + ([nn.BatchNorm1d(b)] if hidden and norm else [])
        layers += [act()] if hidden else []
    return nn.Sequential(*layers)


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


@torch.no_grad()
def update_average(average: nn.Module, net: nn.Module, optimizer: torch.optim.Optimizer,
                   decay: float) -> None:
    """One step of a moving average of net's weights (the gan's G, diffusion's denoiser). Its
    decay warms up as (1 + t) / (10 + t) over the step count t (from the optimizer's state, so
    resume restores it): the average of a short run is of its recent weights, not of the
    random initial ones. Buffers (BatchNorm's running statistics) are net's own."""
    t = int(optimizer.state[next(net.parameters())]["step"])
    decay = min(decay, (1 + t) / (10 + t))
    for a, p in zip(average.parameters(), net.parameters(), strict=True):
        a.lerp_(p, 1 - decay)
    for a, b in zip(average.buffers(), net.buffers(), strict=True):
        a.copy_(b)
