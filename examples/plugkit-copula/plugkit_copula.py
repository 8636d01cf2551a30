"""A Gaussian copula for tables: a complete third-party plugkit family.

Each column goes through its own marginal CDF to a standard normal score, and the scores are
jointly Gaussian with a correlation matrix R (as in the Synthetic Data Vault's GaussianCopula).
A family sees the data only as batches, so the marginals are accumulated from every batch that
`train_step` is given, in buffers that checkpoints keep:

- numeric: a reservoir sample (Vitter's algorithm R) of `reservoir` values. Every row seen,
  over all epochs, has the same chance to be in it, so sorted it is the column's quantile
  table. Missing values stay NaN; their share is a step at the bottom of the column's CDF.
- categorical: the count of each category (missing is a category of its own).

A value gets a uniform jitter within its step of the CDF (ties, categories, missing), so its
score is N(0, 1). R = L L^T (L lower triangular with rows of unit norm) is learned by Adam on
the copula's negative log-likelihood of the scores: 0 for independent columns, lower as R
explains them. Under `--nproc` each process keeps the marginals of its own share of the rows.
Sampling draws scores from N(0, R) and maps them back through the marginals; `--where` fixes
one categorical column's score within the category's step and draws the others from the
Gaussian conditional on it, which is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plugkit.family import Batch, DataInfo, Family
from plugkit.formats import tabular
from plugkit.options import option

EPS = 1e-6  # keeps the scores finite at the ends of the CDF


@dataclass
class Options:
    lr: float = option(0.05, "Adam learning rate of the correlation", min=0.0, max=1.0)
    reservoir: int = option(4096, "values kept per numeric column for its quantiles", min=16)


@dataclass
class Settings:
    where: str = option("", "draw only rows holding VALUE in a categorical COLUMN=VALUE")


class CopulaNet(nn.Module):
    def __init__(self, encoding: list[dict], reservoir: int) -> None:
        super().__init__()
        cats = [len(c["categories"]) for c in encoding if c["kind"] == "categorical"]
        prior = torch.zeros(len(cats), max(cats, default=1), dtype=torch.float64)
        for k, size in enumerate(cats):
            prior[k, :size] = 1e-3  # uniform until rows come
        self.raw = nn.Parameter(torch.zeros(len(encoding), len(encoding)))  # L before norming
        self.register_buffer("values", torch.zeros(
            reservoir, len(encoding) - len(cats), dtype=torch.float64))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("counts", prior)

    def cholesky(self) -> torch.Tensor:
        """L, lower triangular with a positive diagonal and rows of unit norm: R = L L^T."""
        a = self.raw.tril(-1) + torch.diag(self.raw.diagonal().exp())
        return a / a.norm(dim=1, keepdim=True)


class Copula(Family):
    name = "copula"
    description = "Gaussian copula over quantile-table marginals (example plugin)"
    modalities = ("table",)
    conditional = True  # the `where` setting
    likelihood = False  # val_loss is the copula's NLL of the scores, not the data's NLL
    api_version = 2
    Options = Options
    Settings = Settings
    default_dataset = "iris"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        self.encoding = info.meta["encoding"]
        kinds = [c["kind"] for c in self.encoding]
        self.num = [j for j, kind in enumerate(kinds) if kind == "numeric"]
        self.cat = [j for j, kind in enumerate(kinds) if kind == "categorical"]
        self.net = CopulaNet(self.encoding, options.reservoir).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=options.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"copula": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def _marginals(self) -> list[tuple[torch.Tensor, float | torch.Tensor]]:
        """Per column (sorted values, missing share) if numeric, else (probabilities, CDF)."""
        filled, out = min(int(self.net.seen), len(self.net.values)), [None] * len(self.encoding)
        for k, j in enumerate(self.num):
            kept = self.net.values[:filled, k]
            present = kept[~kept.isnan()].sort().values
            missing = 1 - len(present) / filled if filled else 0.0
            if len(present) == 0:  # nothing seen yet: the column's range
                present = torch.tensor([self.encoding[j]["min"], self.encoding[j]["max"]],
                                       dtype=torch.float64, device=self.device)
            out[j] = (present, missing)
        for k, j in enumerate(self.cat):
            p = self.net.counts[k, :len(self.encoding[j]["categories"])]
            out[j] = (p / p.sum(), (p / p.sum()).cumsum(0))
        return out

    def _nll(self, x: torch.Tensor, jitter: torch.Tensor) -> torch.Tensor:
        """The copula's negative log-likelihood per row, -log N(z; 0, R) + sum_j log N(z_j; 0, 1),
        of the scores z. jitter: uniform [B, columns], where in its CDF step each value lies."""
        vals, r = tabular.values(x, self.encoding), jitter.double()
        u, marginals = torch.empty_like(vals), self._marginals()
        for j in self.num:
            (a, missing), v = marginals[j], vals[:, j].contiguous()
            lo, hi = torch.searchsorted(a, v), torch.searchsorted(a, v, right=True)
            inner = (lo + r[:, j] * (hi - lo)).clamp(0.5, len(a) - 0.5) / len(a)  # unseen: inside
            u[:, j] = torch.where(v.isnan(), missing * r[:, j], missing + (1 - missing) * inner)
        for j in self.cat:
            (p, cdf), c = marginals[j], vals[:, j].long()
            u[:, j] = cdf[c] - r[:, j] * p[c]
        z = torch.special.ndtri(u.clamp(EPS, 1 - EPS)).float()  # [B, columns]
        low = self.net.cholesky()
        w = torch.linalg.solve_triangular(low, z.T, upper=False)  # [columns, B]
        return 0.5 * (w**2).sum(0) - 0.5 * (z**2).sum(1) + low.diagonal().log().sum()

    def train_step(self, batch: Batch) -> dict[str, float]:
        noise = batch.rand(len(self.encoding) + 1)  # a jitter per column, a reservoir slot
        with torch.no_grad():  # fold the batch into the marginals
            vals, net = tabular.values(batch.x, self.encoding), self.net
            rows = torch.arange(len(batch.x))
            place = net.seen + rows.to(self.device)  # each row's place in the stream
            slot = torch.where(place < len(net.values), place,
                               (noise[:, -1].double() * (place + 1)).long())
            keep = slot < len(net.values)  # the last row to land in a slot wins it
            last = torch.full((len(net.values),), -1, device=self.device).scatter_reduce(
                0, slot[keep], rows.to(self.device)[keep], "amax")
            net.values[last >= 0] = vals[last[last >= 0]][:, self.num]
            net.seen += len(vals)
            for k, j in enumerate(self.cat):
                net.counts[k] += torch.bincount(vals[:, j].long(), minlength=net.counts.shape[1])
        loss = self._nll(batch.x, noise[:, :-1]).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def val_loss(self, batch: Batch) -> float:
        fixed = torch.Generator(device=self.device).manual_seed(0)  # the same jitter each epoch
        jitter = torch.rand(len(batch.x), len(self.encoding), generator=fixed, device=self.device)
        return self._nll(batch.x, jitter).mean().item()

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels=None,
               settings: Settings | None = None) -> torch.Tensor:
        where, marginals = (settings or Settings()).where, self._marginals()
        e = torch.randn(n, len(self.encoding), generator=generator, device=self.device,
                        dtype=torch.float64)
        r = torch.rand(n, generator=generator, device=self.device, dtype=torch.float64)
        order = list(range(len(self.encoding)))
        if where:  # that column first: its score is e[:, 0] alone, the others follow from it
            name, category = tabular.parse_where(self.encoding, where)
            first = [c["name"] for c in self.encoding].index(name)
            order = [first] + [j for j in order if j != first]
            p, cdf = marginals[first]
            e[:, 0] = torch.special.ndtri((cdf[category] - r * p[category]).clamp(EPS, 1 - EPS))
        low = self.net.cholesky().double()
        z = torch.empty_like(e)
        z[:, order] = e @ torch.linalg.cholesky((low @ low.T)[order][:, order]).T
        u, vals = torch.special.ndtr(z), torch.empty_like(z)
        for j in self.num:
            a, missing = marginals[j]
            inner = ((u[:, j] - missing) / max(1 - missing, EPS)).clamp(0, 1)
            vals[:, j] = torch.quantile(a, inner).where(u[:, j] >= missing, torch.nan)
        for j in self.cat:
            p, cdf = marginals[j]
            vals[:, j] = torch.searchsorted(cdf, u[:, j].contiguous()).clamp(max=len(p) - 1)
        if where:
            vals[:, order[0]] = category  # exactly, whatever rounding did at a step's edge
        return tabular.from_values(vals, self.encoding)
