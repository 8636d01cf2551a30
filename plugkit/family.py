"""What a model family is: the contract every plugin implements (DESIGN.md §4).

A family is one class, published under the entry-point group `plugkit.models`:

    [project.entry-points."plugkit.models"]
    markov = "plugkit_markov:Markov"

It declares itself with class attributes (name, description, modalities, conditional,
api_version, Options) and owns its networks, losses, one training step and its sampler; the
core owns data, devices, seeds, the loop, checkpoints and logging. The per-step methods arrive
with the trainer (issue 3, next increment); this module is the metadata half of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

API_VERSION = 1
MODALITIES = ("image", "table", "text", "sequence")


@dataclass
class NoOptions:
    """A family without options."""


class Family:
    """Base class of every model family."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line, shown by `plugkit list`
    modalities: ClassVar[tuple[str, ...]]  # a subset of MODALITIES
    conditional: ClassVar[bool] = False  # can it sample given a label?
    api_version: ClassVar[int] = API_VERSION  # the plugin API it was written for
    Options: ClassVar[type] = NoOptions  # a dataclass: typed fields, defaults, help in metadata


def contract_errors(cls: object) -> list[str]:
    """Why `cls` is not a usable family (empty when it is)."""
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        return [f"{cls!r} is not a subclass of plugkit.family.Family"]
    errors = []
    if cls.api_version != API_VERSION:
        errors.append(f"targets plugin API {cls.api_version}, this plugkit speaks {API_VERSION}")
    for attr in ("name", "description", "modalities"):
        if not getattr(cls, attr, None):
            errors.append(f"declares no {attr}")
    unknown = set(getattr(cls, "modalities", ())) - set(MODALITIES)
    if unknown:
        errors.append(f"unknown modalities {sorted(unknown)} (known: {', '.join(MODALITIES)})")
    return errors
