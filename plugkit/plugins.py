"""Discovery of model families through the `plugkit.models` entry-point group.

Built-in families travel the same road as third-party ones. Reading the entry points is cheap
(distribution metadata only); a family's module is imported when it is first asked for, once,
and a family that fails to import, names a missing object or breaks the contract is reported as
broken with its reason while every other family keeps working. PLUGKIT_FAMILIES=a,b limits
which families are loaded at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from importlib import import_module, metadata

from plugkit.errors import PlugkitError, UsageError
from plugkit.family import Family, contract_errors

GROUP = "plugkit.models"


@dataclass
class Entry:
    """One installed family: where it comes from, and the class or why it is broken."""

    name: str
    target: str  # "module:attr", as the entry point says
    distribution: str
    version: str
    _loaded: tuple[type[Family] | None, str | None] | None = field(default=None, repr=False)

    def load(self) -> tuple[type[Family] | None, str | None]:
        """(class, None) or (None, why it is broken); imports the module on first call only."""
        if self._loaded is None:
            self._loaded = _import(self)
        return self._loaded

    @property
    def family(self) -> type[Family] | None:
        return self.load()[0]

    @property
    def error(self) -> str | None:
        return self.load()[1]


def _import(entry: Entry) -> tuple[type[Family] | None, str | None]:
    module_name, _, attr = entry.target.partition(":")
    try:
        obj = import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except Exception as exc:  # a broken plugin must never take the others down
        return None, f"cannot load {entry.target}: {type(exc).__name__}: {exc}"
    errors = contract_errors(obj)
    if not errors and obj.name != entry.name:
        errors.append(f"entry point is named {entry.name!r} but the class says {obj.name!r}")
    return (None, "; ".join(errors)) if errors else (obj, None)


def _allowed() -> set[str] | None:
    value = os.environ.get("PLUGKIT_FAMILIES", "").strip()
    return {name.strip() for name in value.split(",") if name.strip()} if value else None


@cache
def entries() -> dict[str, Entry]:
    """Every installed family by name (nothing imported yet), sorted by name."""
    allowed = _allowed()
    found: dict[str, Entry] = {}
    for ep in metadata.entry_points(group=GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        dist = ep.dist
        found.setdefault(ep.name, Entry(
            name=ep.name,
            target=ep.value,
            distribution=dist.metadata["Name"] if dist else "?",
            version=dist.version if dist else "?",
        ))
    return dict(sorted(found.items()))


def get(name: str) -> type[Family]:
    """The family class called `name`; a clear error when it is unknown or broken."""
    entry = entries().get(name)
    if entry is None:
        installed = ", ".join(entries()) or "none"
        raise UsageError(f"unknown family {name!r}; installed: {installed} (see `plugkit list`)")
    if entry.family is None:
        raise PlugkitError(f"family {name!r} is broken: {entry.error}")
    return entry.family
