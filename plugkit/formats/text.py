"""Text as tokens: the shape every text family trains on (Batch.x for text).

    x = encode(["ab", "b"], vocab=["a", "b"])   # [[1, 2, 0], [2, 0, 0]]
    decode(x, vocab=["a", "b"])                  # ["ab", "b"]

Token 0 ends a line (and pads it); characters are 1..V in the order of meta["vocab"]. A line
longer than the data's max_length (a book without line breaks) is cut into consecutive windows,
as char-rnn reads a long text (`cut`): the row of a window that the line continues past holds
characters only, no 0, its last one the first of the next window. Every other row has at least
one 0, so a model learns where lines stop, and never that a line stops where it was cut.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

END = 0  # end of line, also the padding after it
MAX_LENGTH = 256  # default: longer lines are cut into windows of this many characters
MAX_TOKENS = 2**28  # rows are padded to the longest: N * (max_length + 1) int64 tokens (2 GiB)
_CHUNK = 1 << 20  # characters encoded at once: bounds the temporaries of a huge text


class Window(str):
    """A window that `cut` took from a longer line, which goes on after it: its characters and
    the next window's first, a target to predict where a whole line has its end token."""

    __slots__ = ()


def cut(lines: Sequence[str], max_length: int = MAX_LENGTH) -> list[str]:
    """Lines of at most `max_length` characters as they are; a longer line as consecutive
    windows starting every `max_length` characters: a Window (max_length + 1 characters) for
    each that the line continues past, then a plain str of the last 1..max_length, which ends
    the line. Dropping a Window's last character gives the line back:

        cut(["abcdefg"], 3) == ["abcd", "defg", "g"]   # "abc" + "def" + "g"
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    rows: list[str] = []
    for line in lines:
        if len(line) <= max_length:
            rows.append(line)
            continue
        starts = range(0, len(line), max_length)
        rows.extend(Window(line[i:i + max_length + 1]) for i in starts[:-1])
        rows.append(line[starts[-1]:])
    return rows


def text_meta(lines: Sequence[str]) -> dict:
    """What a text family builds from: the sorted characters, the most characters a row holds
    (max_length, a Window's extra one not counted) and, when lines were cut, how many rows are
    windows that a line continues past ("cut")."""
    windows = sum(isinstance(row, Window) for row in lines)
    longest = max((len(row) - isinstance(row, Window) for row in lines), default=0)
    meta = {"vocab": sorted(set().union(*lines)), "max_length": longest}
    return meta | ({"cut": windows} if windows else {})


def encode(lines: Sequence[str], vocab: Sequence[str], length: int | None = None) -> np.ndarray:
    """int64 [N, L] tokens, L = `length` or the most a row takes (vectorized: no loop per char).

    A line is followed by the end token (then padding); a Window fills its row, with no end
    token. Characters outside `vocab`, or lines that do not fit, raise ValueError naming them.
    """
    lengths = np.array([len(s) for s in lines], np.int64)  # (N,)
    windows = np.array([isinstance(s, Window) for s in lines], bool)  # (N,)
    need = lengths + ~windows  # tokens each row takes: characters, then an end token
    width = length if length is not None else int(need.max(initial=1))
    wrong = np.flatnonzero((need > width) | (windows & (lengths != width)))
    if len(wrong):
        row = int(wrong[0])
        fit = f"exactly {width} (a Window fills its row)" if windows[row] else \
            f"at most {width - 1}"
        raise ValueError(f"line {row} has {lengths[row]} characters; {fit} fit")
    known = np.array([ord(ch) for ch in vocab], np.uint32)
    order = np.argsort(known)
    out = np.zeros((len(lines), width), np.int64)
    ends, begin = np.cumsum(lengths), 0  # (N,) where each line's characters end
    while begin < len(lines):  # about _CHUNK characters at a time: temporaries stay small
        limit = ends[begin] - lengths[begin] + _CHUNK
        end = max(begin + 1, int(np.searchsorted(ends, limit, side="right")))
        _fill(out[begin:end], lines[begin:end], lengths[begin:end], known[order], order)
        begin = end
    return out


def _fill(out: np.ndarray, lines: Sequence[str], lengths: np.ndarray, known: np.ndarray,
          order: np.ndarray) -> None:
    """Writes the tokens of `lines` into the rows `out`; `known` is the vocabulary's sorted code
    points, `order` their places in the vocabulary."""
    codes = np.frombuffer("".join(lines).encode("utf-32-le"), np.uint32)  # (sum of lengths,)
    pos = np.searchsorted(known, codes).clip(0, max(len(known) - 1, 0))
    bad = (known[pos] != codes) if len(known) else np.ones(len(codes), bool)
    if bad.any():
        unknown = sorted({chr(c) for c in codes[bad]})
        raise ValueError(f"characters not in the vocabulary: {unknown!r}")
    rows = np.repeat(np.arange(len(lines)), lengths)
    cols = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, cols] = order[pos] + 1  # token = index in vocab + 1


def decode(tokens, vocab: Sequence[str]) -> list[str]:
    """Lines from int tokens [N, L] (array or tensor), each stopping at its first 0."""
    chars = np.array(["", *vocab], dtype=object)
    rows = np.asarray(tokens.tolist() if hasattr(tokens, "tolist") else tokens, np.int64)
    lines = []
    for row in rows.reshape(len(rows), -1):
        stop = np.flatnonzero(row == END)
        lines.append("".join(chars[row[:stop[0] if len(stop) else len(row)]]))
    return lines
