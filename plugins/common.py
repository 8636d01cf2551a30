"""Machinery the built-in image families share (DESIGN.md §5: not copied into each family)."""

from __future__ import annotations


def use_conv(arch: str, height: int, width: int) -> bool:
    """The `arch` option's rule: conv nets when asked, or for `auto` when two stride-2 layers
    fit (height and width multiples of 4) and the images are big enough (16 px) to gain."""
    if arch != "auto":
        return arch == "conv"
    return height % 4 == 0 and width % 4 == 0 and min(height, width) >= 16
