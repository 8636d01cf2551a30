"""The time-to-quality figure, DIR/time-to-quality.png: each row's headline measure against
seconds of training, one line per model, the real-vs-real floor dashed (run in plugkit's
venv, which has matplotlib).

    python benchmarks/figure.py DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from table import rows  # noqa: E402


def main(out: Path) -> None:
    found = rows(out)
    if not found:
        raise SystemExit(f"no DIR/ROW/result.json under {out}")
    cols = min(2, len(found))
    rows_ = -(-len(found) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(6 * cols, 4 * rows_), squeeze=False)
    for ax in axes.flat[len(found):]:
        ax.set_visible(False)
    for ax, result in zip(axes.flat, found, strict=False):
        floor = None
        for name, points in result["models"].items():
            ax.plot([p["seconds"] for p in points], [p["value"] for p in points], "o-",
                    label=name, ms=4)
            floor = points[-1].get("floor", floor)
        if floor is not None:
            ax.axhline(floor, ls="--", c="grey", lw=1, label="real vs real")
        ax.set(title=f"{result['row']} (scale {result['scale']:g})", xlabel="seconds of training",
               ylabel=f"{result['headline']} (lower is better)")
        ax.set_xlim(left=0)  # time to quality reads from the start
        if result["headline"] == "Fréchet distance":  # from hundreds down to a floor near 0
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "time-to-quality.png", dpi=120)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
