"""Typed family options and sampler settings: a dataclass declares them, `-o key=value` sets
options when training, `-s key=value` settings when sampling.

    @dataclass
    class Options:
        latent_dim: int = option(16, "size of the latent code", min=1)
        likelihood: str = option("bernoulli", "reconstruction", choices=("bernoulli", "gaussian"))

Unknown keys and bad values are usage errors that list what is valid; cross-field rules go in
the dataclass's __post_init__ (raise ValueError).
"""

from __future__ import annotations

import dataclasses
import numbers
import typing
from dataclasses import dataclass
from typing import Any

from plugkit.errors import UsageError

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def option(default: Any, help: str, *, min: float | None = None, max: float | None = None,
           choices: tuple | None = None, absent: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with the help text and the constraints `plugkit info` shows.
    `absent`: for an option added in a later version, the value that reproduces the runs made
    before it, whose run.json lacks it (`recorded`): a moving average added with a default of
    0.999 reads as 0, none, for them."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "absent": absent}
    return dataclasses.field(default=default, metadata=meta)


def with_defaults(defaults: dict[str, Any], pairs: list[str]) -> list[str]:
    """key=value pairs with `defaults` (a family's private_options or modality_options) for
    the keys `pairs` do not give."""
    given = {pair.partition("=")[0].strip() for pair in pairs}
    return [f"{key}={value}" for key, value in defaults.items() if key not in given] + \
        list(pairs)


def recorded(options_cls: type, stored: dict[str, Any]) -> dict[str, Any]:
    """A run's stored options with the `absent` value of every option it predates."""
    older = {f.name: f.metadata["absent"] for f in dataclasses.fields(options_cls)
             if f.name not in stored and
             f.metadata.get("absent", dataclasses.MISSING) is not dataclasses.MISSING}
    return {**stored, **older}


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


def parse(options_cls: type, pairs: list[str], family: str, kind: str = "option") -> Any:
    """An instance of `options_cls` from `key=value` strings, validated (`build`)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{kind}s are key=value, got {pair!r}")
        values[key.strip()] = raw.strip()
    return build(options_cls, values, family, kind)


def build(options_cls: type, values: dict[str, Any], family: str, kind: str = "option") -> Any:
    """An instance of `options_cls` from values by name, validated: a string is converted to
    the field's type ("0.5" for a float), any other value must have that type already; then
    the bounds and choices, then the dataclass's own cross-field rules. `kind` names what the
    fields are in messages ("option", "sampler setting")."""
    infos = {info.name: info for info in describe(options_cls)}
    hints = typing.get_type_hints(options_cls)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in infos:
            valid = ", ".join(infos) or "none"
            raise UsageError(f"unknown {kind} {key!r} for {family}; valid: {valid} "
                             f"(see `plugkit info {family}`)")
        tp = hints[key]
        if isinstance(value, str) and tp is not str:
            value = _convert(tp, value, f"{kind} {key}")
        elif tp in (int, float) and isinstance(value, _NUMBER[tp]) and \
                not isinstance(value, bool):  # numpy's numbers too
            value = tp(value)
        elif not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
            raise UsageError(f"{kind} {key} must be {_KIND_OF.get(tp, tp.__name__)}, "
                             f"got {value!r}")
        checked[key] = _check(infos[key], value, kind)
    try:
        return options_cls(**checked)
    except ValueError as exc:  # the dataclass's own cross-field rules
        raise UsageError(f"invalid {kind}s for {family}: {exc}") from None


_KIND_OF = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
_NUMBER = {int: numbers.Integral, float: numbers.Real}


def _convert(tp: Any, raw: str, what: str) -> Any:
    try:
        if tp is bool:
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError
        if tp in (int, float):
            return tp(raw)
    except ValueError:
        raise UsageError(f"{what} must be {_KIND_OF[tp]}, got {raw!r}") from None
    raise UsageError(f"{what} has unsupported type {_type_name(tp)}")


def _check(info: OptionInfo, value: Any, kind: str = "option") -> Any:
    what = f"{kind} {info.name}"
    if info.choices is not None and value not in info.choices:
        allowed = ", ".join(map(str, info.choices))
        raise UsageError(f"{what} must be one of {allowed}, got {value!r}")
    if info.min is not None and value < info.min:
        raise UsageError(f"{what} must be >= {info.min}, got {value!r}")
    if info.max is not None and value > info.max:
        raise UsageError(f"{what} must be <= {info.max}, got {value!r}")
    return value
