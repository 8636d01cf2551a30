"""Text as tokens: the shape every text family trains on (Batch.x for text).

    x = encode(["ab", "b"], vocab=["a", "b"])   # [[1, 2, 0], [2, 0, 0]]
    decode(x, vocab=["a", "b"])                  # ["ab", "b"]

Token 0 ends a line (and pads it); characters are 1..V in the order of meta["vocab"]. Every
row has at least one 0, so a model always learns where a line stops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

END = 0  # end of line, also the padding after it


def text_meta(lines: Sequence[str]) -> dict:
    """What a text family builds from: the sorted characters and the longest line's length."""
    return {"vocab": sorted(set("".join(lines))), "max_length": max(map(len, lines), default=0)}


def encode(lines: Sequence[str], vocab: Sequence[str], length: int | None = None) -> np.ndarray:
    """int64 [N, L] tokens, L = `length` or the longest line + 1 (vectorized: no loop per char).

    Characters outside `vocab` raise ValueError naming them.
    """
    lengths = np.array([len(s) for s in lines], np.int64)  # (N,)
    width = length if length is not None else int(lengths.max(initial=0)) + 1
    if len(lines) and lengths.max() >= width:
        row = int(lengths.argmax())
        raise ValueError(f"line {row} has {lengths[row]} characters; at most {width - 1} fit")
    codes = np.frombuffer("".join(lines).encode("utf-32-le"), np.uint32)  # (sum of lengths,)
    known = np.array([ord(ch) for ch in vocab], np.uint32)
    order = np.argsort(known)
    pos = np.searchsorted(known[order], codes).clip(0, max(len(known) - 1, 0))
    bad = (known[order][pos] != codes) if len(known) else np.ones(len(codes), bool)
    if bad.any():
        unknown = sorted({chr(c) for c in codes[bad]})
        raise ValueError(f"characters not in the vocabulary: {unknown!r}")
    out = np.zeros((len(lines), width), np.int64)
    rows = np.repeat(np.arange(len(lines)), lengths)
    cols = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = order[pos] + 1  # token = index in vocab + 1
    return out


def decode(tokens, vocab: Sequence[str]) -> list[str]:
    """Lines from int tokens [N, L] (array or tensor), each stopping at its first 0."""
    chars = np.array(["", *vocab], dtype=object)
    rows = np.asarray(tokens.tolist() if hasattr(tokens, "tolist") else tokens, np.int64)
    lines = []
    for row in rows.reshape(len(rows), -1):
        stop = np.flatnonzero(row == END)
        lines.append("".join(chars[row[:stop[0] if len(stop) else len(row)]]))
    return lines
