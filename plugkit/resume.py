"""`--resume` continues the run that is on disk: run.json is the truth.

The family, data, options, modality, image size, window, max length, batch size, validation
fraction and seed come from run.json. A flag that contradicts it is refused, naming the
setting, the stored value and the new one; what may change between sessions is only how long
and where the run goes on: epochs, max_time, patience, threads, device (and --nproc). A data
file or folder is recorded by its absolute path and a fingerprint (bytes and SHA-256 of the
content), so a moved, edited or replaced file is refused by name instead of silently training
on other data.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from plugkit import rundir
from plugkit.errors import PlugkitError, UsageError

# when a fresh run omits them; its batch size, once its data's modality is known
# (training.BATCH_SIZE, Family.batch_sizes)
DEFAULTS = {"seed": 0, "val_fraction": 0.1}
_CHUNK = 1 << 20


def fingerprint(path: Path) -> dict[str, Any]:
    """Bytes and SHA-256 of a file, or of every file in a folder (names included)."""
    digest, size = hashlib.sha256(), 0
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def data_record(spec: Any) -> dict[str, Any]:
    """What run.json keeps of `data`: a built-in's name, a path made absolute with its
    fingerprint, or the fingerprint of in-memory data (plugkit.data.memory)."""
    from plugkit.data import builtin, memory

    if memory.is_memory(spec):
        return {"spec": memory.NAME, "memory": memory.fingerprint(spec)}
    if spec in builtin.REGISTRY:
        return {"spec": spec}
    path = Path(spec).expanduser().resolve()
    return {"spec": spec, "path": str(path), "fingerprint": fingerprint(path)}


def settle(config: Any, record: dict | None) -> Any:
    """The TrainConfig to run: defaults filled in for a fresh run (record None), or the stored
    settings of a resumed one, after refusing any flag that contradicts them."""
    if record is None:
        if config.family is None:
            raise UsageError("which family? give FAMILY (see `plugkit list`), or `resume` "
                             "with `out` RUN to continue a run")
        return dataclasses.replace(config, **{k: v for k, v in DEFAULTS.items()
                                              if getattr(config, k) is None})
    if config.epochs is None:  # a resumed run goes on to the epochs it was started for
        config = dataclasses.replace(config, epochs=record["epochs"])
    if config.family is not None and config.family != record["family"]:
        raise UsageError(f"{config.out or 'the run'} is a {record['family']} run, "
                         f"not {config.family}")
    data = record["data"]
    given = config.data
    if "memory" in data:  # the data is handed back, not recorded: check it is the same
        from plugkit.data import memory

        given = memory.given_back(config.data, data["memory"], config.out or "the run")
        config = dataclasses.replace(config, data=given)
    stored = {"data": given if "memory" in data else rundir.data_spec(data),
              "modality": data["modality"],
              "image_size": rundir.image_size(data), "window": data.get("window"),
              "max_length": data.get("max_length"),
              "batch_size": record["batch_size"], "seed": record["seed"],
              "val_fraction": record.get("val_fraction", DEFAULTS["val_fraction"])}
    for name, value in stored.items():
        given = getattr(config, name)
        if given is not None and not _same(name, given, value):
            trained = f"with {_flag(name)} {value}" if value is not None else \
                f"without {_flag(name)}"
            raise UsageError(f"`resume`: the run was trained {trained}, not {given}; a "
                             "resumed run keeps its settings (start a new run with another "
                             "`out` to change them)")
    _check_data(data)
    return dataclasses.replace(config, family=record["family"],
                               options=_options(config, record), **stored,
                               **_privacy(config, record))


def _privacy(config: Any, record: dict) -> dict[str, Any]:
    """A private run resumes with its own budget (and never trains past the epochs it was
    planned for: that would spend more); a run trained without DP cannot turn private."""
    spent = record.get("privacy")
    if spent is None:
        if config.dp_epsilon is not None:
            raise UsageError("`resume`: the run was trained without `dp_epsilon`; a private "
                             "run starts private (start a new run with another `out`)")
        return {}
    target = spent["target"]
    stored = {f"dp_{k}": target[k] for k in ("epsilon", "delta", "clip", "secure_rng")}
    for name, value in stored.items():
        given = getattr(config, name)
        if name in ("dp_epsilon", "dp_delta") and given is not None and given != value:
            raise UsageError(f"`resume`: the run was trained with `{name}` {value}, not "
                             f"{given}; a resumed run keeps its privacy budget")
    planned = spent["plan"]["epochs"]
    # a family that spends its own budget (rho) stops when it is spent: epochs do not count
    if not spent["plan"].get("rho") and config.epochs > planned:
        raise UsageError(f"`resume`: the privacy budget was planned for {planned} "
                         f"epochs; training to {config.epochs} would spend more than "
                         f"`dp_epsilon` {target['epsilon']}")
    return stored


def _flag(name: str) -> str:
    return f"`{name}`"


def _same(name: str, given: Any, stored: Any) -> bool:
    if name == "data" and given is stored:  # in-memory data, checked by its fingerprint
        return True
    if name == "data" and given != stored:
        return Path(given).expanduser().resolve() == Path(stored).expanduser().resolve()
    return given == stored


def _check_data(data: dict) -> None:
    if "path" not in data:
        return
    path = Path(data["path"])
    if not path.exists():
        raise PlugkitError(f"`resume`: the run's data {path} is not there any more (moved or "
                        "deleted); put it back to continue")
    if fingerprint(path) != data["fingerprint"]:
        raise PlugkitError(f"`resume`: the run's data {path} has changed since it was trained "
                        "on (its content differs); a resumed run trains on the same data: "
                        "restore it, or start a new run")


def _options(config: Any, record: dict) -> list[str]:
    """The stored options as key=value pairs, after refusing given ones that differ."""
    from plugkit import options, plugins

    cls = plugins.get(record["family"])
    stored = options.recorded(cls.Options, record["options"])
    given = options.parse(cls.Options, config.options, cls.name)
    for pair in config.options:
        key = pair.partition("=")[0].strip()
        if key in stored and getattr(given, key) != stored[key]:
            raise UsageError(f"`resume`: the run was trained with -o {key}={stored[key]}, "
                             f"not {key}={getattr(given, key)}; a resumed run keeps its "
                             "options")
    return [f"{k}={v}" for k, v in stored.items()]
