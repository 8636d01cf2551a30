"""Held-out NLL of a character model of names, in nats per character with the end of line
included (plugkit's unit: plugkit/families/lstm.py, docs/metrics.md), computed by one function
for plugkit's lstm and the benchmark's nn.LSTM (run in plugkit's venv).

    python benchmarks/nll.py NAME run RUN              # plugkit's run, the weights sample uses
    python benchmarks/nll.py NAME charlstm VOCAB.json POINT.pt...  # one line each

Held out: what `plugkit eval --against NAME` holds out (export.heldout).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import plugkit
from plugkit import data
from plugkit.formats import text

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "peers"))
from charlstm import CharLSTM  # noqa: E402
from export import heldout  # noqa: E402


@torch.no_grad()
def nats_per_char(logits_of: Callable, vocab: list[str], lines: list[str],
                  batch: int = 256) -> float:
    """Summed NLL over every character and end token of `lines`, over their count; logits_of
    maps tokens (B, L) -- 0 first, as the start of a line -- to logits (B, L, V+1)."""
    x = torch.from_numpy(text.encode(lines, vocab))  # (N, L+1): characters, then 0s
    total, count = 0.0, 0
    for begin in range(0, len(x), batch):
        xb = x[begin:begin + batch]
        xb = xb[:, : int((xb != 0).sum(1).max()) + 1]  # drop all-padding columns
        logits = logits_of(F.pad(xb[:, :-1], (1, 0)))  # (B, L, V+1)
        nll = F.cross_entropy(logits.transpose(1, 2), xb, reduction="none")  # (B, L)
        ended = (xb == 0).long()
        mask = (ended.cumsum(1) - ended) == 0  # up to and including the end token
        total, count = total + float((nll * mask).sum()), count + int(mask.sum())
    return total / count


def main(name: str, kind: str, *paths: str) -> None:
    torch.set_num_threads(1)
    lines = heldout(data.load(name)).x
    if kind == "run":
        run = plugkit.load(paths[0])
        family = run.model()  # the weights `plugkit sample` draws from (best, for the lstm)
        family.net.eval()
        print(nats_per_char(lambda idx: family.net(idx)[0], family.vocab, lines))
        return
    vocab = json.loads(Path(paths[0]).read_text())
    model = CharLSTM(len(vocab) + 1).eval()
    for weights in paths[1:]:
        model.load_state_dict(torch.load(weights, weights_only=True))
        print(nats_per_char(lambda idx: model(idx)[0], vocab, lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
