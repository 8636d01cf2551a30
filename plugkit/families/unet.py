"""The diffusion family's image denoiser: a small UNet (Ronneberger et al., MICCAI 2015) as
DDPM shapes it (Ho et al., NeurIPS 2020): residual blocks of GroupNorm, SiLU and 3x3
convolutions, each told the step (and the label) by a per-channel shift of its features, two
halvings of the resolution on the way down and skip connections across to the way up.

Any height and width: the image is padded to a multiple of 4 (what two halvings need) and the
output cropped back, so 8x8 digits, 28x28 mnist and 48x48 photos all go through the same net.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MULTIPLIERS = (1, 2, 2)  # channels per resolution, in base channels: full, 1/2, 1/4
GROUPS = 8  # GroupNorm's groups: base channels must be a multiple of it


class ResBlock(nn.Module):
    """(B, in, H, W), emb (B, E) -> (B, out, H, W): two convolutions, the embedding added
    between them as a shift per channel, and a residual path (a 1x1 convolution when the
    channel count changes)."""

    def __init__(self, channels_in: int, channels_out: int, embedding: int,
                 dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.shift = nn.Linear(embedding, channels_out)
        self.norm2 = nn.GroupNorm(GROUPS, channels_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = (nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out
                     else nn.Identity())

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.shift(F.silu(emb))[:, :, None, None]  # (B, out, H, W)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class UNet(nn.Module):
    """Images (B, C, H, W) and an embedding (B, E) of what conditions them -> (B, C, H, W)."""

    def __init__(self, channels: int, base: int, embedding: int, dropout: float) -> None:
        super().__init__()
        widths = [base * m for m in MULTIPLIERS]
        self.stem = nn.Conv2d(channels, base, 3, padding=1)
        self.down = nn.ModuleList(ResBlock(a, b, embedding, dropout)
                                  for a, b in zip([base] + widths[:-1], widths, strict=True))
        self.downsample = nn.ModuleList(nn.Conv2d(w, w, 3, stride=2, padding=1)
                                        for w in widths[:-1])
        self.middle = ResBlock(widths[-1], widths[-1], embedding, dropout)
        # each block of the way up reads the features below it beside its level's skip
        self.up = nn.ModuleList(
            ResBlock(below + w, w, embedding, dropout)
            for below, w in zip(widths[1:] + widths[-1:], widths, strict=True))
        self.upsample = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1) for w in widths[1:])
        self.norm = nn.GroupNorm(GROUPS, base)
        self.out = nn.Conv2d(base, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        multiple = 2 ** (len(MULTIPLIERS) - 1)
        # zeros right and below up to H', W', multiples of 4: mid-gray in [-1, 1], cropped off
        # the output, so the loss never sees them
        h = F.pad(x, (0, -width % multiple, 0, -height % multiple))  # (B, C, H', W')
        h = self.stem(h)
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.middle(h, emb)  # (B, widths[-1], H'/4, W'/4)
        for level in reversed(range(len(self.up))):
            h = self.up[level](torch.cat([h, skips[level]], 1), emb)
            if level > 0:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
                h = self.upsample[level - 1](h)
        return self.out(F.silu(self.norm(h)))[:, :, :height, :width]
