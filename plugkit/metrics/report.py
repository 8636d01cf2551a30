"""The eval report: metrics.json for machines, report.html for people, both written atomically.

report.html is one self-contained file (figures embedded as base64 PNG, no scripts, no fonts
or styles from the network), so it opens offline and can be mailed around as is.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugkit.errors import PlugkitError

STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;
text-align:right}td:first-child,th:first-child{text-align:left}figure{display:inline-block;
margin:.5em}figcaption{font-size:13px;color:#555}img{max-width:100%}.note{color:#666}"""


@dataclass
class Figure:
    caption: str
    png: bytes


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Report:
    title: str
    summary: dict[str, Any]  # what was compared: source, modality, sizes, seed, notes
    # name, value, spread, floor, floor_spread, better ("lower"/"higher"/"≈ 0.5"/"≈ floor"), help; a
    # spread is the standard deviation over repeated comparisons, None for one comparison
    measures: list[dict]
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # per-column tables and the like
    tables: list[Table] = field(default_factory=list)  # shown in report.html after the measures

    def add_figure(self, caption: str, fig: Any) -> None:
        """Stores a matplotlib figure as PNG and closes it (figures hold a lot of memory)."""
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        self.figures.append(Figure(caption, buffer.getvalue()))

    def add_table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        self.tables.append(Table(title, header, rows))

    def as_json(self) -> dict:
        return {**self.summary, "measures": self.measures, "details": self.details}

    def html(self) -> str:
        rows = "".join(
            f"<tr><td title='{_e(m.get('help', ''))}'>{_e(m['name'])}</td>"
            f"<td>{_e(stat(m['value'], m.get('spread')))}</td>"
            f"<td>{_e(stat(m.get('floor'), m.get('floor_spread')))}</td>"
            f"<td>{_e(m.get('better', ''))}</td></tr>" for m in self.measures)
        tables = "".join(
            f"<h2>{_e(t.title.capitalize())}</h2><table><tr>"
            + "".join(f"<th>{_e(h)}</th>" for h in t.header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
                      for row in t.rows) + "</table>" for t in self.tables)
        figures = "".join(
            f"<figure><img alt='{_e(f.caption)}' src='data:image/png;base64,"
            f"{base64.b64encode(f.png).decode()}'><figcaption>{_e(f.caption)}</figcaption>"
            "</figure>" for f in self.figures)
        summary = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>"
                          for k, v in self.summary.items() if k != "notes")
        notes = "".join(f"<p class='note'>{_e(note)}</p>"
                        for note in self.summary.get("notes", []))
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(self.title)}"
                f"</title><style>{STYLE}</style></head><body><h1>{_e(self.title)}</h1>"
                f"<table>{summary}</table>{notes}<h2>Measures</h2><p class='note'>Each measure "
                "next to its floor: the same measure between two disjoint sets of real data of "
                "the same size, i.e. what “as real as real” scores; “± s” is the standard "
                "deviation over repeated comparisons. docs/metrics.md defines each.</p>"
                f"<table><tr><th>measure</th><th>synthetic</th><th>real floor</th>"
                f"<th>better</th></tr>{rows}</table>{tables}<h2>Figures</h2>{figures}"
                "</body></html>\n")

    def write(self, out: Path) -> None:
        """metrics.json, report.html and figures/*.png in the folder `out`, which appears whole
        or not at all: everything is written to a sibling temp folder first, then renamed."""
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        except OSError as exc:
            raise PlugkitError(f"cannot write the report to {out}: {exc.strerror or exc}") \
                from None
        try:
            (tmp / "figures").mkdir()
            for i, figure in enumerate(self.figures):
                (tmp / "figures" / f"{i:02d}.png").write_bytes(figure.png)
            (tmp / "metrics.json").write_text(json.dumps(self.as_json(), indent=2,
                                                         default=_plain) + "\n")
            (tmp / "report.html").write_text(self.html(), encoding="utf-8")
            if out.is_dir():
                shutil.rmtree(out)  # an earlier report of the same run: replaced as a whole
            os.replace(tmp, out)
        except OSError as exc:
            raise PlugkitError(f"cannot write the report to {out}: {exc.strerror or exc}") \
                from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def stat(value: float | None, spread: float | None = None) -> str:
    """A figure as the report and the terminal print it: "0.8123 ± 0.031", "0.8123", "–"."""
    if value is None:
        return "–"
    if spread is None or not math.isfinite(spread) or not math.isfinite(value):
        return f"{value:.4g}"
    if spread <= 1e-9 * max(1.0, abs(value)):  # repeats that agree up to rounding (2.8e-17)
        return f"{value:.4g} ± 0"
    places = max(0, 1 - math.floor(math.log10(spread)))  # the spread's two significant digits
    return f"{value:.{places}f} ± {spread:.{places}f}"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)
