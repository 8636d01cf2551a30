"""The benchmark's table (DIR/benchmarks.md) from every DIR/ROW/result.json: one line per
peer and plugkit family, with the issue's two ratios.

- time to the peer's quality: plugkit's first point whose headline measure is at least as
  good as the peer's final one, its seconds over the peer's (target <= 0.5). Points are at
  1/4, 1/2, 3/4 and 1 of the peer's time (peers/points.py), so this is an upper bound at that
  resolution; "> 1" when no point reached it.
- at the peer's time: plugkit's last point (trained for the peer's time) against the peer's
  final one (target: better).

Every headline measure (detection AUC, Fréchet distance, held-out NLL) is better lower.
"""

from __future__ import annotations

import json
from pathlib import Path

HEADLINE = {".csv": "detection AUC", ".npz": "Fréchet distance", ".txt": "held-out NLL"}


def rows(out: Path) -> list[dict]:
    found = [json.loads(p.read_text()) for p in out.glob("*/result.json")]
    return sorted(found, key=lambda r: r["index"])  # run.ROWS' order


def _value(point: dict) -> str:
    floor = f" (floor {point['floor']:.3f})" if point.get("floor") is not None else ""
    return f"{point['value']:.3f}{floor}"


def _reach(points: list[dict], target: float, seconds: float) -> tuple[str, bool]:
    for p in points:
        if p["value"] <= target:
            ratio = p["seconds"] / seconds
            return f"≤ {ratio:.2f}", ratio <= 0.5
    return "> 1", False


def lines(result: dict) -> list[str]:
    models = dict(result["models"])
    peer_name = result["peer"]
    peer = models.pop(peer_name)
    final, seconds = peer[-1], peer[-1]["seconds"]
    out = []
    for name, points in models.items():
        reach, fast = _reach(points, final["value"], seconds)
        last = points[-1]
        better = last["value"] < final["value"]
        met = ", ".join([f"time {'met' if fast else '**not met**'}",
                         f"quality {'met' if better else '**not met**'}"])
        out.append(f"| {result['row']} | {peer_name} | {seconds:.0f} s | "
                   f"{result['headline']} {_value(final)} | {name} | {_value(last)} "
                   f"({last['seconds']:.0f} s) | {reach} | {met} |")
    return out


def _note(r: dict) -> str:
    m = r["machine"]
    load = " (load average {:.1f} before, {:.1f} after)".format(*m["load"]) if "load" in m else ""
    held = r["protocol"]["holdout"] or f"half of {r['data']} (no test part declared yet)"
    return (f"{r['row']}: scale {r['scale']:g}; {m['cpu']}, {m['cores']} cores, one thread per "
            f"process{load}; {m['date']}, commit {r['commit']}; "
            f"n = {r.get('n', r['protocol']['n']):,} samples, held out: {held}")


def write(out: Path) -> str:
    found = rows(out)
    head = ["| row | peer | peer's time | peer's final | plugkit | plugkit at the peer's time "
            "| time to the peer's quality / peer's time | targets (≤ 0.5; better) |",
            "|---|---|---:|---|---|---|---:|---|"]
    body = [line for result in found for line in lines(result)]
    notes = [_note(r) for r in found]
    markdown = "\n".join(head + body + [""] + [f"- {note}" for note in notes]) + "\n"
    (out / "benchmarks.md").write_text(markdown)
    return markdown
