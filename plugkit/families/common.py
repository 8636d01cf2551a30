"""Machinery the built-in families share (written once, not copied into each family); the table
heads, likelihood and conditions are in tabular_heads.py."""

from __future__ import annotations

from torch import nn


def use_conv(arch: str, height: int, width: int) -> bool:
    """The `arch` option's rule: conv nets when asked, or for `auto` when two stride-2 layers
    fit (height and width multiples of 4) and the images are big enough (16 px) to gain."""
    if arch != "auto":
        return arch == "conv"
    return height % 4 == 0 and width % 4 == 0 and min(height, width) >= 16


def mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU, norm: bool = False) -> nn.Sequential:
    """Linear layers of the given sizes; activation (and BatchNorm) between them, not after."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        hidden = i < len(sizes) - 2
        layers += [nn.Linear(a, b)] + ([nn.BatchNorm1d(b)] if hidden and norm else [])
        layers += [act()] if hidden else []
    return nn.Sequential(*layers)
