"""A character n-gram model with learned smoothing: a complete third-party plugkit family.

The logits of the next character are a sum of one learned table per context length 0..order
(unigram, bigram, ...), so short contexts back off smoothly where long ones were rarely seen:
an interpolated n-gram model fit by gradient descent, as in makemore's bigram model (Karpathy)
generalized to longer contexts. Contexts longer than a few characters are hashed into a fixed
number of rows, so memory does not grow as vocab**order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from plugkit.family import Batch, DataInfo, Family
from plugkit.formats import text
from plugkit.options import option

BUCKETS = 1 << 16  # rows per table at most; longer contexts share rows by hashing


@dataclass
class Options:
    order: int = option(3, "context length in characters", min=1, max=10)
    lr: float = option(1e-2, "learning rate", min=0.0)


@dataclass
class Settings:
    temperature: float = option(1.0, "divide the logits by this (< 1 safer, > 1 wilder)")

    def __post_init__(self) -> None:  # a rule the bounds cannot say: raise ValueError
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


class NGram(nn.Module):
    def __init__(self, tokens: int, order: int) -> None:
        super().__init__()
        self.tokens, self.order = tokens, order
        self.tables = nn.ModuleList(
            nn.Embedding(min(tokens**k, BUCKETS), tokens) for k in range(order + 1))
        for table in self.tables:
            nn.init.zeros_(table.weight)  # start uniform: every count is smoothing at first

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """history (B, order + T) tokens -> logits (B, T, V) for its last T positions, each from
        the `order` tokens before it (the first `order` are padding or earlier text)."""
        steps = history.shape[1] - self.order
        logits, context = 0, torch.zeros_like(history[:, self.order:])  # (B, T)
        for k, table in enumerate(self.tables):
            if k > 0:  # extend every context by the character k steps back
                back = history[:, self.order - k:self.order - k + steps]
                context = context * self.tokens + back
            logits = logits + table(context % table.num_embeddings)  # (B, T, V)
        return logits


class Markov(Family):
    name = "markov"
    description = "character n-gram model with learned smoothing (example plugin)"
    modalities = ("text",)
    likelihood = True  # val_loss: nats per character, end of line included
    Options = Options
    Settings = Settings
    api_version = 2
    default_dataset = "names"

    def __init__(self, options: Options, info: DataInfo, device: torch.device) -> None:
        super().__init__(options, info, device)
        self.vocab = list(info.meta["vocab"])
        self.max_len = info.meta.get("max_length", 64) + 8
        self.net = NGram(len(self.vocab) + 1, options.order).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=options.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"ngram": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def _nll(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Summed NLL of each line's characters and its end token, and how many there are."""
        history = F.pad(x, (self.options.order, 0), value=text.END)  # end doubles as start
        nll = F.cross_entropy(self.net(history).transpose(1, 2), x, reduction="none")  # (B, L)
        ended = (x == text.END).long()
        mask = (ended.cumsum(1) - ended) == 0  # up to and including the first end token
        return (nll * mask).sum(), int(mask.sum())

    def train_step(self, batch: Batch) -> dict[str, float]:
        total, count = self._nll(batch.x)
        loss = total / count
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def val_loss(self, batch: Batch) -> tuple[float, int]:
        total, count = self._nll(batch.x)
        return total.item(), count

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator, labels=None,
               settings: Settings | None = None) -> torch.Tensor:
        """Tokens [n, max_len]: a line ends at its first end token (0), the core decodes."""
        temperature = (settings or Settings()).temperature
        history = torch.zeros(n, self.options.order, dtype=torch.long, device=self.device)
        for _ in range(self.max_len):
            context = F.pad(history[:, -self.options.order:], (0, 1))  # (n, order + 1)
            probs = (self.net(context)[:, -1] / temperature).softmax(1)  # (n, V)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (n, 1)
            history = torch.cat([history, nxt], dim=1)
        return history[:, self.options.order:]
