"""A plain torch.nn.LSTM character model of names, at makemore's RNN sizes and settings
(karpathy/makemore: embedding 64, hidden 64, batch 32, AdamW lr 5e-4, weight decay 0.01,
betas (0.9, 0.99), batches drawn with replacement), trained for a time budget and writing
samples and weights along the way (runs in the lstm venv: benchmarks/requirements-lstm.txt).

    python charlstm.py DIR --seconds 300 --n 3000   # DIR/train.txt, one name a line

Tokens as makemore's and plugkit's lstm: 0 ends a line and starts the next, characters are
1..V in sorted order; the loss is nats per character, the end token included. The model class
is imported by benchmarks/nll.py, which scores this model and plugkit's with the same code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

start = time.monotonic()  # before the imports: loading torch counts too

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

EMBED, HIDDEN, BATCH = 64, 64, 32  # makemore's n_embd, n_embd2, batch_size


class CharLSTM(nn.Module):
    def __init__(self, tokens: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(tokens, EMBED)
        self.lstm = nn.LSTM(EMBED, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, tokens)

    def forward(self, idx: torch.Tensor, state=None):
        """idx (B, T) -> logits (B, T, V+1) and the LSTM state."""
        y, state = self.lstm(self.embed(idx), state)  # (B, T, H)
        return self.head(y), state


def encode(lines: list[str], vocab: list[str]) -> torch.Tensor:
    """(N, L+1) tokens: each line's characters, then 0s (its end token, then padding)."""
    index = {ch: i + 1 for i, ch in enumerate(vocab)}
    width = max(map(len, lines)) + 1
    return torch.tensor([[index[ch] for ch in line] + [0] * (width - len(line))
                         for line in lines])


def loss_of(model: CharLSTM, x: torch.Tensor) -> torch.Tensor:
    """Mean NLL per character of token rows x (B, L), up to and including the first 0."""
    inputs = F.pad(x[:, :-1], (1, 0))  # (B, L): 0 as the start of a line
    logits, _ = model(inputs)
    ended = (x == 0).long()
    mask = (ended.cumsum(1) - ended) == 0  # (B, L) characters and the end token
    nll = F.cross_entropy(logits.transpose(1, 2), x, reduction="none")
    return (nll * mask).sum() / mask.sum()


@torch.no_grad()
def sample(model: CharLSTM, vocab: list[str], n: int, max_len: int) -> list[str]:
    """n names at temperature 1, no top-k, up to max_len characters."""
    idx = torch.zeros(n, 1, dtype=torch.long)
    state, out = None, []
    for _ in range(max_len):
        logits, state = model(idx, state)
        idx = torch.multinomial(logits[:, -1].softmax(1), 1)  # (n, 1)
        out.append(idx)
    chars = ["", *vocab]
    lines = []
    for row in torch.cat(out, 1).tolist():
        stop = row.index(0) if 0 in row else len(row)
        lines.append("".join(chars[t] for t in row[:stop]))
    return lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir", type=Path)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from points import Points, same_rng

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    points = Points(args.dir / "charlstm", start, seconds=args.seconds)
    lines = [line for line in (args.dir / "train.txt").read_text().splitlines() if line]
    vocab = sorted(set("".join(lines)))
    x = encode(lines, vocab)  # (N, L+1)
    longest = max(map(len, lines))
    (points.out / "vocab.json").write_text(json.dumps(vocab))
    model = CharLSTM(len(vocab) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01,
                                  betas=(0.9, 0.99), eps=1e-8)

    def save(stem: Path) -> Path:
        torch.save(model.state_dict(), stem.with_suffix(".pt"))
        with same_rng():
            names = sample(model.eval(), vocab, args.n, longest)
        model.train()
        stem.with_suffix(".txt").write_text("".join(f"{name}\n" for name in names))
        return stem.with_suffix(".txt")

    step = 0
    while not points.done():
        rows = torch.randint(len(x), (BATCH,))
        batch = x[rows]
        batch = batch[:, : int((batch != 0).sum(1).max()) + 1]  # drop all-padding columns
        loss = loss_of(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if points.due(step):
            points.write(step, save)
        if step % 1000 == 0:
            print(f"step {step}  loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
