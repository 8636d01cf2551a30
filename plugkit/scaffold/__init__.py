"""`plugkit new-plugin NAME`: a pip-installable family package to start from.

The template is a real, tiny family (a per-pixel Gaussian over images) with its entry point and
a test on the conformance suite, so the new package installs, lists, trains and tests as is.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from plugkit.errors import PlugkitError, UsageError

TEMPLATES = Path(__file__).parent / "template"


def create(name: str, parent: Path) -> Path:
    """Writes plugkit-<name>/ under `parent`; returns its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise UsageError(f"plugin name must be a lowercase identifier (a-z, 0-9, _), got {name!r}")
    root = Path(parent) / f"plugkit-{name.replace('_', '-')}"
    if root.exists():
        raise UsageError(f"{root} already exists; choose another name or folder")
    cls = "".join(part.capitalize() for part in name.split("_"))
    files = {
        "pyproject.toml": "pyproject.toml.txt",
        f"plugkit_{name}.py": "family.py.txt",
        f"tests/test_{name}.py": "test_family.py.txt",
        "README.md": "README.md.txt",
    }
    try:
        for target, template in files.items():
            text = (TEMPLATES / template).read_text()
            text = text.replace("{name}", name).replace("{Class}", cls)
            text = text.replace("{dist}", name.replace("_", "-"))
            path = root / target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except OSError as exc:
        raise PlugkitError(f"cannot write {root}: {exc.strerror or exc}") from None
    return root
