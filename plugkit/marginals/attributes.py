"""Encoded table rows as discrete attributes, and back: what a marginal model counts.

A table's batch rows (plugkit.formats.tabular) hold, per numeric column, an offset within one
of its modes, the mode's one-hot and a missing flag, and per categorical column a one-hot. A
model of marginals needs each column as one attribute with finitely many levels:
- categorical: its category (missing is one);
- numeric: its mode times OFFSET_BINS bins of the offset, plus a level for missing when the
  column has missing values. A mode is a Gaussian of its own (std 0 for a point mode) and
  offsets are in units of 4 std, so offsets within a mode are about N(0, 1/4^2): the bins are
  that Gaussian's quantiles, and decoding draws the offset from the Gaussian truncated to its
  bin. With the modes of a quantile grid (tabular_private) that gives every column about
  8 x 4 levels, fine enough for the shapes and cheap enough for three-way marginals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plugkit.formats import tabular

OFFSET_STD = 1 / tabular.WIDTH  # a Gaussian mode's offsets: (v - mean) / (4 std)


@dataclass(frozen=True)
class Column:
    """One attribute: where its spans lie in an encoded row and how many levels it has."""

    kind: str  # "numeric" | "categorical"
    offset: int = -1  # numeric: the offset's index
    mode: tuple[int, int] | None = None  # numeric: the mode one-hot's [start, end), if any
    missing: tuple[int, int] | None = None  # numeric: the missing flag's [start, end), if any
    categories: tuple[int, int] | None = None  # categorical: the one-hot's [start, end)
    modes: int = 1

    def levels(self, bins: int) -> int:
        if self.kind == "categorical":
            return self.categories[1] - self.categories[0]
        return self.modes * bins + (self.missing is not None)


class Attributes:
    """The attributes of an encoding (tabular.spans' layout), with `bins` offset bins."""

    def __init__(self, encoding: list[dict], bins: int) -> None:
        self.bins, self.width = bins, tabular.width(encoding)
        layout: dict[str, dict[str, tuple[int, int]]] = {}
        for span in tabular.spans(encoding):
            layout.setdefault(span.column, {})[span.kind] = (span.start, span.end)
        self.columns = []
        for column in encoding:
            spans = layout[column["name"]]
            if column["kind"] == "categorical":
                self.columns.append(Column("categorical", categories=spans["categorical"]))
            else:
                self.columns.append(Column("numeric", spans["offset"][0], spans.get("mode"),
                                           spans.get("missing"), modes=len(column["modes"])))
        self.sizes = tuple(c.levels(bins) for c in self.columns)
        normal = torch.distributions.Normal(0.0, OFFSET_STD)
        inner = torch.arange(1, bins, dtype=torch.float64) / bins
        self.edges = normal.icdf(inner)  # [bins - 1] offsets between the bins

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """int64 [N, d] levels of encoded rows x [N, width]."""
        out = []
        for c in self.columns:
            if c.kind == "categorical":
                out.append(x[:, c.categories[0]:c.categories[1]].argmax(1))
                continue
            offset = x[:, c.offset].double().contiguous()
            level = torch.bucketize(offset, self.edges.to(x.device), right=True)
            if c.mode is not None:
                level = level + self.bins * x[:, c.mode[0]:c.mode[1]].argmax(1)
            if c.missing is not None:
                gone = x[:, c.missing[0]:c.missing[1]].argmax(1) == 1
                level = torch.where(gone, c.modes * self.bins, level)
            out.append(level)
        return torch.stack(out, 1)

    def rows(self, codes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """float32 encoded rows [N, width] of levels [N, d]; each offset drawn within its bin
        from `generator`."""
        n = len(codes)
        x = torch.zeros(n, self.width, dtype=torch.float32, device=codes.device)
        rows = torch.arange(n, device=codes.device)
        for i, c in enumerate(self.columns):
            level = codes[:, i]
            if c.kind == "categorical":
                x[rows, c.categories[0] + level] = 1.0
                continue
            gone = level == c.modes * self.bins if c.missing is not None else \
                torch.zeros_like(level, dtype=torch.bool)
            kept = torch.where(gone, 0, level)
            u = torch.rand(n, generator=generator, device=codes.device, dtype=torch.float64)
            x[:, c.offset] = self._offset(kept % self.bins, u).float()
            if c.mode is not None:
                x[rows, c.mode[0] + kept // self.bins] = 1.0
            if c.missing is not None:
                x[rows, c.missing[0] + gone.long()] = 1.0
        return x

    def _offset(self, bin_: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """An offset within each bin: the mode's Gaussian truncated to it, by inverse CDF."""
        cuts = torch.cat([torch.zeros(1), torch.arange(1, self.bins) / self.bins,
                          torch.ones(1)]).double().to(u.device)
        low, high = cuts[bin_], cuts[bin_ + 1]
        p = (low + u * (high - low)).clamp(1e-12, 1 - 1e-12)
        return OFFSET_STD * torch.special.ndtri(p)
