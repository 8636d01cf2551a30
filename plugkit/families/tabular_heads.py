"""Table machinery the gan and vae families share: output heads per span of an encoded row
(plugkit.formats.tabular), the TVAE likelihood, and CTGAN's conditional vector with
training-by-sampling (Xu et al., "Modeling Tabular Data using Conditional GAN", NeurIPS 2019).

Spans: "offset" spans are bounded real values (tanh heads); "mode", "missing" and "categorical"
spans are one-hot (softmax / Gumbel-softmax heads, cross-entropy losses).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plugkit.errors import UsageError
from plugkit.formats import tabular
from plugkit.formats.tabular import Span
from plugkit.options import option


@dataclass
class Settings:
    """The sampler settings of gan and vae."""

    where: str = option("", "tables: every row holds VALUE in the categorical COLUMN "
                        "(COLUMN=VALUE), drawn so by the model, not filtered")


def where_of(settings: Settings | None, conditions: Conditions | None) -> str | None:
    """The `where` setting of a sample() call, refused for data that is not a table."""
    where = settings.where if settings is not None else ""
    if where and conditions is None:
        raise UsageError("sampler setting where chooses a category of a table column; this "
                         "run's data is not a table")
    return where or None


def _offsets(spans: list[Span]) -> torch.Tensor:
    return torch.tensor([s.start for s in spans if s.kind == "offset"], dtype=torch.long)


class Residual(nn.Module):
    """CTGAN's generator block: the input passes on beside ReLU(BN(Linear(x))), so later layers
    see both (B, i) -> (B, i + o)."""

    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(i, o), nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


def residual_mlp(sizes: list[int], out: int) -> nn.Sequential:
    """Residual blocks of the given widths, then a linear layer to `out` (CTGAN's G)."""
    layers, width = [], sizes[0]
    for size in sizes[1:]:
        layers.append(Residual(width, size))
        width += size
    return nn.Sequential(*layers, nn.Linear(width, out))


class RowHead(nn.Module):
    """A generator's output layer for encoded rows: tanh on offsets, and on one-hot spans a
    straight-through Gumbel-softmax sample (Jang et al., ICLR 2017) at temperature 0.2 while
    training: exactly one-hot like real rows, so a discriminator cannot tell fakes by soft
    values (CTGAN feeds the soft sample; measured on adult, the hard one gave TV max 0.10
    against 0.19), with the soft sample's gradient; `draw` samples one-hot spans for sampling.

    An offset is multiplied by the probability that it matters: that the value is present and
    its mode is not a point mode (std 0). Real rows hold offset 0 there, and a discriminator
    would otherwise learn to spot the small nonzero offsets a tanh writes instead.
    """

    def __init__(self, encoding: list[dict], tau: float = 0.2) -> None:
        super().__init__()
        spans = tabular.spans(encoding)
        self.discrete = [s for s in spans if s.discrete]
        self.tau = tau
        # the span of each position of a row, so that one softmax over segments draws every
        # one-hot span at once (a call per span, F.gumbel_softmax, took 9.6 ms of a 57 ms gan
        # step on adult's 15 spans, batch 512, one thread); an offset is a span of its own,
        # overwritten by _offsets
        segment = torch.tensor([i for i, s in enumerate(spans) for _ in range(s.start, s.end)],
                               dtype=torch.long)
        self.register_buffer("segment", segment, persistent=False)
        self.segments = len(spans)
        # per numeric column: where its offset is, which entries of its mode span are Gaussian
        # modes (their sum is the probability that the offset matters), and its "present"
        # entry; as index tensors, so that _offsets treats every column in one call each
        by_column = {(s.column, s.kind): s for s in spans}
        numeric = [c for c in encoding if c["kind"] == "numeric"]
        width = spans[-1].end if spans else 0
        at, present, gaussian, column = [], [], torch.zeros(width), torch.full((width,), 0)
        always = torch.zeros(len(numeric))  # the offset matters for a mode-less column
        for i, c in enumerate(numeric):
            at.append(by_column[c["name"], "offset"].start)
            mode, missing = by_column.get((c["name"], "mode")), by_column.get((c["name"],
                                                                               "missing"))
            scaled = torch.tensor([float(m["std"] > 0) for m in c["modes"]])
            if mode:
                gaussian[mode.start:mode.end], column[mode.start:mode.end] = scaled, i
            else:
                always[i] = scaled[0]
            present.append(missing.start if missing else width)  # width: a column of ones
        for name, value in {"at": torch.tensor(at, dtype=torch.long), "gaussian": gaussian,
                            "column": column, "always": always,
                            "present": torch.tensor(present, dtype=torch.long)}.items():
            self.register_buffer(f"_{name}", value, persistent=False)

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        """Rows from G's output [B, D], drawing from the global random stream."""
        u = torch.rand_like(out).clamp_min_(torch.finfo(out.dtype).tiny)
        z = (out - torch.log(-torch.log(u))) / self.tau  # logits + Gumbel noise, cooled
        segment = self.segment.expand_as(z)
        top = torch.full((len(z), self.segments), -math.inf, dtype=z.dtype, device=z.device)
        top = top.scatter_reduce(1, segment, z.detach(), "amax").gather(1, segment)
        e = torch.exp(z - top)  # a softmax within each span, shifted by its largest
        total = z.new_zeros(len(z), self.segments).index_add(1, self.segment, e)
        soft = e / total.gather(1, segment)
        hard = (z.detach() == top).to(out.dtype)  # the Gumbel-max draw: one 1 a span
        return self._offsets(out, hard - soft.detach() + soft)  # straight through

    def draw(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._offsets(out, draw_categories(out, self.discrete, generator))

    def _offsets(self, out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """`rows` with each offset tanh(out) times the probability that it matters."""
        if not len(self._at):
            return rows
        keep = self._always + out.new_zeros(len(out), len(self._at)).index_add(
            1, self._column, rows * self._gaussian)  # (B, numeric)
        with_ones = torch.cat([rows, torch.ones_like(rows[:, :1])], 1)
        keep = keep * with_ones.index_select(1, self._present)  # the "present" entry, or 1
        offsets = torch.tanh(out.index_select(1, self._at)) * keep
        return rows.index_copy(1, self._at, offsets)


def draw_categories(out: torch.Tensor, discrete: list[Span],
                    generator: torch.Generator) -> torch.Tensor:
    """A copy of `out` whose one-hot spans (logits) are replaced by one-hot draws."""
    rows = out.clone()
    for s in discrete:
        probs = out[:, s.start:s.end].softmax(1)  # (B, k)
        pick = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        rows[:, s.start:s.end] = torch.zeros_like(probs).scatter_(1, pick, 1.0)
    return rows


class RowLikelihood(nn.Module):
    """p(row | decoder output), as TVAE: each offset a Gaussian around tanh(output) with a
    learned scale, each one-hot span a categorical distribution over its logits."""

    def __init__(self, spans: list[Span], floor: float = 0.01) -> None:
        super().__init__()
        self.discrete = [s for s in spans if s.discrete]
        self.floor = floor  # the smallest scale (sigma)
        # a plain tensor, not a buffer: DP-SGD (Opacus) refuses trainable layers with buffers
        self.offsets = _offsets(spans)
        # TVAE starts at 0.1: offsets are in units of 4 std of their mode, a mode spans ~0.5
        self.log_sigma = nn.Parameter(torch.full((len(self.offsets),), math.log(0.1)))

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        """The log scales [B, offsets] for the rows of `out`: taken by a call, so that DP-SGD
        sees each row's part of log_sigma's gradient (per_sample_grads). `out` must not
        require grad: the backward hook that gives that part fires on the output's gradient
        only when no input waits for one (the result does not depend on it)."""
        return self.log_sigma.expand(len(out), -1)

    @staticmethod
    def per_sample_grads(layer: RowLikelihood, activations: list, backprops: torch.Tensor
                         ) -> dict[nn.Parameter, torch.Tensor]:
        """Each row's gradient of log_sigma (Opacus' grad sampler, plugkit.privacy): forward
        copies log_sigma to every row, so a row's gradient is its row of the backprop."""
        return {layer.log_sigma: backprops}

    def sigma(self, log_sigma: torch.Tensor | None = None) -> torch.Tensor:
        # floored (0.01 by default): a spike (all values equal within a mode) would otherwise
        # shrink its scale without bound and dominate the loss
        log_sigma = self.log_sigma if log_sigma is None else log_sigma
        return log_sigma.exp().clamp(min=self.floor)  # (offsets,) or (B, offsets)

    def nll(self, out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per row [B], in nats."""
        sigma = self.sigma(self(out.detach()))  # (B, offsets); detached: see forward
        z = (rows[:, self.offsets] - torch.tanh(out[:, self.offsets])) / sigma  # (B, offsets)
        nll = (0.5 * z.square() + sigma.log() + 0.5 * math.log(2 * math.pi)).sum(1)  # (B,)
        for s in self.discrete:
            nll = nll + F.cross_entropy(out[:, s.start:s.end], rows[:, s.start:s.end].argmax(1),
                                        reduction="none")
        return nll

    def sample(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(out.shape[0], len(self.offsets), generator=generator,
                            device=out.device)
        rows = draw_categories(out, self.discrete, generator)
        offsets = torch.tanh(out[:, self.offsets]) + self.sigma() * noise
        rows[:, self.offsets] = offsets.clamp(-1.0, 1.0)  # as TVAE: within the mode's 4 std
        return rows


class Conditions:
    """CTGAN's conditional vector: one-hot over every category of every categorical column
    (width C), with the one set entry naming a column and one of its values.

    Training-by-sampling: a condition picks a categorical column at random, then a category
    with probability proportional to log(1 + count), so rare categories are seen far more
    often than their share of the rows, and a real row holding that category is drawn to go
    with it. The core hands a family one batch at a time, so rows are drawn from the batch
    and categories from those present in it (log-frequency among them). Sampling draws
    categories by their frequency in the data (or the one --where names), so the samples keep
    the data's proportions.
    """

    def __init__(self, encoding: list[dict]) -> None:
        self.encoding = encoding
        spans = {s.column: s for s in tabular.spans(encoding) if s.kind == "categorical"}
        columns = [c for c in encoding if c["kind"] == "categorical"]
        self.columns = [(c["name"], spans[c["name"]]) for c in columns]
        counts = torch.tensor([n for c in columns for n in c["counts"]], dtype=torch.float64)
        self.width = len(counts)  # C
        self.starts = list(itertools.accumulate([0] + [len(c["counts"]) for c in columns]))
        self.index = torch.tensor([i for _, s in self.columns for i in range(s.start, s.end)],
                                  dtype=torch.long)  # row position of each entry (C,)
        self.column_of = torch.tensor([k for k, c in enumerate(columns) for _ in c["counts"]],
                                      dtype=torch.long)  # (C,)
        self.log_frequency = (1 + counts).log()  # (C,) training's weights within a column
        # sampling's: a column uniformly, then a category by its share of the column's rows
        totals = torch.tensor([sum(c["counts"]) for c in columns], dtype=torch.float64)
        self.frequency = counts / totals[self.column_of] / max(len(columns), 1)  # (C,)

    def training(self, x: torch.Tensor, n: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """n conditions [n, C] for the batch x [B, D] and the rows of x that satisfy them [n]
        (random draws from `generator`, by default the global RNG the core seeds)."""
        g, device = generator, x.device
        if not self.width:
            return x.new_zeros(n, 0), torch.arange(n, device=device) % len(x)
        present = x[:, self.index.to(device)] > 0.5  # (B, C)
        column = torch.randint(len(self.columns), (n,), generator=g, device=device)  # (n,)
        weight = self.log_frequency.to(device, torch.float32) * present.any(0)  # (C,)
        weight = weight * (self.column_of.to(device) == column[:, None])  # (n, C)
        category = torch.multinomial(weight, 1, generator=g).squeeze(1)  # (n,)
        match = present[:, category].T  # (n, B): the rows holding each category
        pick = torch.rand(match.shape, generator=g, device=device) * match
        return F.one_hot(category, self.width).to(x.dtype), pick.argmax(1)  # a match at random

    def of_rows(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """A condition [B, C] per row of x [B, D] from that row alone: a categorical column
        picked by the row's uniform draw u [B] (Batch.rand in training: the same whatever the
        number of processes), and the row's own category in it. What DP-SGD needs (each row's
        loss from the row, each row once); `training` draws rows for categories instead."""
        if not self.width:
            return x.new_zeros(len(x), 0)
        column = (u * len(self.columns)).long().clamp(max=len(self.columns) - 1)  # (B,)
        held = x[:, self.index.to(x.device)] > 0.5  # (B, C): the row's categories
        mine = self.column_of.to(x.device) == column[:, None]  # (B, C)
        return (held & mine).to(x.dtype)  # all zeros where the row's category is unlisted

    def sampling(self, n: int, generator: torch.Generator, device: torch.device,
                 where: str | None = None) -> torch.Tensor:
        """n conditions [n, C]: by frequency in the data, or all on `where`, "COLUMN=VALUE"
        (plugkit sample --where; checked by tabular.parse_where)."""
        if where is not None:
            column, index = tabular.parse_where(self.encoding, where)
            k = [name for name, _ in self.columns].index(column)
            category = torch.full((n,), self.starts[k] + index, device=device)
        elif not self.width:
            return torch.zeros(n, 0, device=device)
        else:
            category = torch.multinomial(self.frequency.to(device), n, replacement=True,
                                         generator=generator)
        return F.one_hot(category, self.width).float()

    def by_frequency(self, u: torch.Tensor) -> torch.Tensor:
        """Conditions [n, C] drawn like `sampling`'s, by the uniform draws u [n] (inverse
        CDF): a GAN's fake conditions under DP, drawn per global row."""
        if not self.width:
            return torch.zeros(len(u), 0, device=u.device)
        cdf = self.frequency.to(u.device, torch.float64).cumsum(0)
        category = torch.searchsorted(cdf, u.double() * cdf[-1], right=True)
        return F.one_hot(category.clamp(max=self.width - 1), self.width).float()

    def penalty(self, out: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Cross-entropy [n] between the generator's logits for the conditioned column and the
        condition: CTGAN's loss that makes G produce the category it was asked for."""
        loss = out.new_zeros(len(out))
        at = 0
        for _, s in self.columns:
            part = cond[:, at:at + s.end - s.start]  # (n, k)
            ce = F.cross_entropy(out[:, s.start:s.end], part.argmax(1), reduction="none")
            loss = loss + ce * part.sum(1)  # only the rows conditioned on this column
            at += s.end - s.start
        return loss

    def impose(self, rows: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Rows whose conditioned column holds exactly the condition's category."""
        if not self.width:
            return rows
        index = self.index.to(rows.device)
        chosen = self.column_of.to(rows.device)[cond.argmax(1)]  # (n,) the conditioned column
        clear = (self.column_of.to(rows.device)[None] == chosen[:, None]).to(rows.dtype)
        rows = rows.clone()
        rows[:, index] = rows[:, index] * (1 - clear) + cond
        return rows

