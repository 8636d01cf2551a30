"""Machinery the built-in families share (DESIGN.md §5: not copied into each family)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from plugkit.data.tabular import Span


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


class TableLikelihood(nn.Module):
    """p(row | decoder output) for encoded table rows (plugkit.data.tabular): a Gaussian with a
    learned scale per numeric value and a categorical distribution per one-hot span, as TVAE
    (Xu et al., "Modeling Tabular Data using Conditional GAN", NeurIPS 2019)."""

    def __init__(self, spans: list[Span]) -> None:
        super().__init__()
        self.categorical = [s for s in spans if s.kind == "categorical"]
        numeric = [s.start for s in spans if s.kind == "numeric"]
        self.register_buffer("numeric", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.log_sigma = nn.Parameter(torch.zeros(len(numeric)))

    def sigma(self) -> torch.Tensor:
        # floor at 0.01 data std: a column with few distinct values would otherwise shrink its
        # scale without bound and dominate the loss
        return self.log_sigma.exp().clamp(min=0.01)  # (numeric,)

    def nll(self, out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per row [B], in nats."""
        sigma = self.sigma()
        z = (rows[:, self.numeric] - out[:, self.numeric]) / sigma  # (B, numeric)
        nll = (0.5 * z.square() + sigma.log() + 0.5 * math.log(2 * math.pi)).sum(1)  # (B,)
        for s in self.categorical:
            nll = nll + F.cross_entropy(out[:, s.start:s.end], rows[:, s.start:s.end].argmax(1),
                                        reduction="none")
        return nll

    def sample(self, out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(out.shape[0], len(self.numeric), generator=generator,
                            device=out.device)
        rows = draw_categories(out, self.categorical, generator)
        rows[:, self.numeric] = out[:, self.numeric] + self.sigma() * noise
        return rows


def draw_categories(out: torch.Tensor, categorical: list[Span],
                    generator: torch.Generator) -> torch.Tensor:
    """A copy of `out` whose categorical spans (logits) are replaced by one-hot draws."""
    rows = out.clone()
    for s in categorical:
        probs = out[:, s.start:s.end].softmax(1)  # (B, k)
        pick = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        rows[:, s.start:s.end] = torch.zeros_like(probs).scatter_(1, pick, 1.0)
    return rows


class GumbelSoftmax(nn.Module):
    """Generator output layer for table rows: categorical spans become Gumbel-softmax samples
    (Jang et al., 2017), nearly one-hot like the real rows yet differentiable, so the
    discriminator cannot tell fakes by their soft values alone; numeric values pass through."""

    def __init__(self, spans: list[Span], tau: float = 0.2) -> None:
        super().__init__()
        self.categorical = [s for s in spans if s.kind == "categorical"]
        self.tau = tau

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        parts, at = [], 0
        for s in self.categorical:
            parts += [out[:, at:s.start], F.gumbel_softmax(out[:, s.start:s.end], tau=self.tau)]
            at = s.end
        return torch.cat(parts + [out[:, at:]], dim=1)
