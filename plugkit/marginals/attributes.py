"""Encoded table rows as discrete attributes, and back: what a marginal model counts.

A table's batch rows (plugkit.formats.tabular) hold, per numeric column, an offset within one
of its modes, the mode's one-hot and a missing flag, and per categorical column a one-hot. A
model of marginals needs each column as one attribute with finitely many levels:
- categorical: its category (missing is one);
- numeric: its mode, a Gaussian mode split into `bins` bins of the offset (a point mode, std
  0, is one level: its value), plus a level for missing when the column has missing values.
  Offsets are in units of 4 std, so within a Gaussian mode they are about N(0, 1/4^2): the
  bins are that Gaussian's quantiles, and decoding draws the offset from the Gaussian
  truncated to its bin. With the modes of a quantile grid (tabular_private) a column has
  about 8 x 4 levels, plus its common integers: fine enough for the shapes, cheap enough for
  three-way marginals.
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
    widths: tuple[int, ...] = ()  # numeric: levels per mode (1 for a point mode)
    points: tuple[bool, ...] = ()  # numeric: which modes are point modes (std 0)

    @property
    def levels(self) -> int:
        if self.kind == "categorical":
            return self.categories[1] - self.categories[0]
        return sum(self.widths) + (self.missing is not None)


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
                points = tuple(m["std"] == 0 for m in column["modes"])
                self.columns.append(Column("numeric", spans["offset"][0], spans.get("mode"),
                                           spans.get("missing"),
                                           widths=tuple(1 if p else bins for p in points),
                                           points=points))
        self.sizes = tuple(c.levels for c in self.columns)
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
            bin_ = torch.bucketize(offset, self.edges.to(x.device), right=True)
            mode = x[:, c.mode[0]:c.mode[1]].argmax(1) if c.mode is not None else \
                torch.zeros(len(x), dtype=torch.long, device=x.device)
            widths = torch.tensor(c.widths, device=x.device)
            starts = widths.cumsum(0) - widths
            point = torch.tensor(c.points, device=x.device)
            level = starts[mode] + torch.where(point[mode], 0, bin_)
            if c.missing is not None:
                gone = x[:, c.missing[0]:c.missing[1]].argmax(1) == 1
                level = torch.where(gone, sum(c.widths), level)
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
            gone = level == sum(c.widths) if c.missing is not None else \
                torch.zeros_like(level, dtype=torch.bool)
            kept = torch.where(gone, 0, level)
            widths = torch.tensor(c.widths, device=codes.device)
            mode = torch.repeat_interleave(torch.arange(len(widths), device=codes.device),
                                           widths)[kept]
            bin_ = kept - (widths.cumsum(0) - widths)[mode]
            u = torch.rand(n, generator=generator, device=codes.device, dtype=torch.float64)
            offset = self._offset(bin_, u)  # a point mode's offset is 0 (its value exactly)
            point = torch.tensor(c.points, device=codes.device)
            x[:, c.offset] = torch.where(point[mode], 0.0, offset).float()
            if c.mode is not None:
                x[rows, c.mode[0] + mode] = 1.0
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
