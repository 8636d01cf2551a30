"""A text's vocabulary and length fitted under differential privacy (plugkit.formats.text).

`text.text_meta` reads every line: its vocabulary names every character that occurs, even once
in one line, and its max_length is the longest line. Under DP (plugkit.privacy plans the noise):

- a line is one record, so it must be one row: a line that `text.cut` split into windows is
  joined back and cut short at `max_length` instead (`lines`). max_length is the user's
  `--max-length` (default text.MAX_LENGTH), declared, not measured.
- the vocabulary comes from noisy counts: each line counts once for each of its first
  CHARS_PER_LINE distinct characters (so one record moves at most that many counts by one:
  L2 sensitivity sqrt(CHARS_PER_LINE)), each count gets Gaussian noise of std `sigma`, and a
  character is listed only when its noisy count clears `threshold` (partition selection, as
  a table's categories in tabular_private). `keep` removes the unlisted characters from each
  line, a transformation of each record on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from plugkit.formats.text import Window

# distinct characters a line counts for: a name has about 6, a line of prose 20-30; the noise
# on every count grows with its square root
CHARS_PER_LINE = 16


def lines(rows: Sequence[str], max_length: int) -> list[str]:
    """One row per line: the rows `text.cut` made (a Window continues into the next row) as
    their lines' first `max_length` characters."""
    whole, continued = [], False
    for row in rows:
        if not continued:
            whole.append(str(row)[:max_length])
        continued = isinstance(row, Window)
    return whole


def vocab(rows: Sequence[str], sigma: float, threshold: float,
          rng: np.random.Generator) -> list[str]:
    """The characters whose noisy count of lines holding them clears `threshold`, sorted."""
    counts: Counter = Counter()
    for line in rows:
        counts.update(list(dict.fromkeys(line))[:CHARS_PER_LINE])
    seen = sorted(counts)
    noisy = np.array([counts[c] for c in seen], np.float64) + rng.normal(0.0, sigma, len(seen))
    return [c for c, count in zip(seen, noisy, strict=True) if count >= threshold]


def keep(rows: Sequence[str], listed: Sequence[str]) -> list[str]:
    """Each line without the characters that are not in `listed`."""
    allowed = set(listed)
    return ["".join(c for c in line if c in allowed) for line in rows]
