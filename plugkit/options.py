"""Typed family options: a dataclass declares them, `-o key=value` sets them.

    @dataclass
    class Options:
        latent_dim: int = option(16, "size of the latent code", min=1)
        likelihood: str = option("bernoulli", "reconstruction", choices=("bernoulli", "gaussian"))

Unknown keys and bad values are usage errors that list what is valid; cross-field rules go in
the dataclass's __post_init__ (raise ValueError).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from plugkit.errors import UsageError

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def option(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           choices: tuple | None = None) -> Any:
    """A dataclass field with the help text and the constraints `plugkit info` shows."""
    meta = {"help": help, "min": min, "max": max, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None


def describe(options_cls: type) -> list[OptionInfo]:
    """The options of a family, in declaration order."""
    hints = typing.get_type_hints(options_cls)
    return [
        OptionInfo(f.name, _type_name(hints[f.name]), f.default, f.metadata.get("help", ""),
                   f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices"))
        for f in dataclasses.fields(options_cls)
    ]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def parse(options_cls: type, pairs: list[str], family: str) -> Any:
    """An options instance from `key=value` strings, validated."""
    infos = {info.name: info for info in describe(options_cls)}
    hints = typing.get_type_hints(options_cls)
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"-o expects key=value, got {pair!r}")
        if key not in infos:
            valid = ", ".join(infos) or "none"
            raise UsageError(f"unknown option {key!r} for {family}; valid: {valid} "
                             f"(see `plugkit info {family}`)")
        values[key] = _check(infos[key], _convert(hints[key], raw.strip(), key))
    try:
        return options_cls(**values)
    except ValueError as exc:  # the dataclass's own cross-field rules
        raise UsageError(f"invalid options for {family}: {exc}") from None


def _convert(tp: Any, raw: str, key: str) -> Any:
    try:
        if tp is bool:
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError
        if tp in (int, float, str):
            return tp(raw)
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number"}[tp]
        raise UsageError(f"option {key} must be {kind}, got {raw!r}") from None
    raise UsageError(f"option {key} has unsupported type {_type_name(tp)}")


def _check(info: OptionInfo, value: Any) -> Any:
    if info.choices is not None and value not in info.choices:
        allowed = ", ".join(map(str, info.choices))
        raise UsageError(f"option {info.name} must be one of {allowed}, got {value!r}")
    if info.min is not None and value < info.min:
        raise UsageError(f"option {info.name} must be >= {info.min}, got {value!r}")
    if info.max is not None and value > info.max:
        raise UsageError(f"option {info.name} must be <= {info.max}, got {value!r}")
    return value
