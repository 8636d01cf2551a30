"""Checkpoints that load without executing anything from the file.

model.safetensors holds every module's weights ("<module>.<parameter>"); state.pt holds the
optimizers, RNG streams and loop counters and is read with torch.load(weights_only=True), the
restricted unpickler that refuses code.

The two form one checkpoint, and a crash (kill -9, power cut) at any instant must leave a pair
that belongs together. Both are staged as complete temp files first; the old weights move to
model.prev.safetensors, the new ones take their place, and renaming state.pt in is the commit.
Weights carry their step in the safetensors metadata, so resuming picks whichever weights file
matches the committed state.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from plugkit import atomic
from plugkit.errors import PlugkitError

WEIGHTS, STATE, PREVIOUS = "model.safetensors", "state.pt", "model.prev.safetensors"
BEST = "best.safetensors"  # the weights of the lowest validation loss so far


def _tensors(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": t.detach().cpu().contiguous()
            for name, module in modules.items() for key, t in module.state_dict().items()}


def snapshot(modules: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """A copy of the weights as they are now, for save_weights later."""
    return {k: t.clone() for k, t in _tensors(modules).items()}


def save_weights(run_dir: Path, modules: dict[str, torch.nn.Module] | dict[str, torch.Tensor],
                 file: str = WEIGHTS) -> None:
    """Weights alone, without training state (the best weights, tests, exports): of modules,
    or a snapshot."""
    tensors = modules if all(isinstance(v, torch.Tensor) for v in modules.values()) else \
        _tensors(modules)
    atomic.write(run_dir / file, lambda tmp: save_file(tensors, str(tmp)))


def save(run_dir: Path, modules: dict[str, torch.nn.Module],
         optimizers: dict[str, torch.optim.Optimizer], **loop: Any) -> None:
    """Weights and training state as one crash-consistent checkpoint (module docstring)."""
    metadata = {"step": str(loop["step"])}
    weights = atomic.stage(run_dir / WEIGHTS,
                           lambda tmp: save_file(_tensors(modules), str(tmp), metadata))
    try:
        state = atomic.stage(run_dir / STATE, lambda tmp: torch.save(
            {"optimizers": {k: o.state_dict() for k, o in optimizers.items()},
             "rng": rng_state(), "loop": loop}, tmp))
    except BaseException:
        weights.unlink(missing_ok=True)
        raise
    if (run_dir / WEIGHTS).exists():
        os.replace(run_dir / WEIGHTS, run_dir / PREVIOUS)  # still matches the current state
    os.replace(weights, run_dir / WEIGHTS)
    os.replace(state, run_dir / STATE)  # the commit point
    (run_dir / PREVIOUS).unlink(missing_ok=True)


def resume(run_dir: Path, modules: dict[str, torch.nn.Module]) -> dict[str, Any]:
    """The committed training state, with the weights that belong to it loaded."""
    state = load_state(run_dir)
    step = str(state["loop"]["step"])
    for file in (WEIGHTS, PREVIOUS):
        if (run_dir / file).exists() and _step(run_dir / file) in (step, None):
            load_weights(run_dir, modules, file)
            return state
    raise PlugkitError(f"{run_dir}: no weights file matches the training state (step {step}); "
                       "the checkpoint is damaged")


def remove_staged(run_dir: Path) -> None:
    """Deletes temp files a crash left half-way through a save (never the committed files)."""
    for name in (WEIGHTS, STATE):
        for leftover in run_dir.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def _step(path: Path) -> str | None:
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("step")
    except Exception as exc:
        raise PlugkitError(f"{path}: cannot read weights ({exc})") from None


def load_weights(run_dir: Path, modules: dict[str, torch.nn.Module],
                 file: str | None = None) -> None:
    """Weights into `modules` (on any device: the file is read to CPU first). By default the
    newest complete weights: model.safetensors, or the previous file after a crash mid-save."""
    if file is None:
        file = PREVIOUS if not (run_dir / WEIGHTS).exists() and \
            (run_dir / PREVIOUS).exists() else WEIGHTS
    try:
        tensors = load_file(str(run_dir / file), device="cpu")
    except Exception as exc:
        raise PlugkitError(f"{run_dir / file}: cannot read weights ({exc})") from None
    for name, module in modules.items():
        prefix = f"{name}."
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if hasattr(module, "shape_from"):  # tensors whose number and shapes training decided
            module.shape_from(own)
        _check_fits(run_dir / file, name, module.state_dict(), own)
        module.load_state_dict(own)


def _check_fits(path: Path, name: str, expected: dict[str, torch.Tensor],
                found: dict[str, torch.Tensor]) -> None:
    """Names the first tensor that is missing, extra or of another shape (torch's own message
    runs to many lines and stops at 'Error(s) in loading state_dict')."""
    for key, tensor in expected.items():
        if key not in found:
            raise PlugkitError(f"{path} does not fit the model: it has no tensor "
                               f"{name}.{key}")
        if found[key].shape != tensor.shape:
            raise PlugkitError(f"{path} does not fit the model: tensor {name}.{key} is "
                               f"{list(found[key].shape)} in the file but "
                               f"{list(tensor.shape)} in the model (built with other options "
                               "or data?)")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise PlugkitError(f"{path} does not fit the model: the file has tensor "
                           f"{name}.{extra[0]} that the model lacks")


def rng_state() -> dict[str, Any]:
    """Every RNG stream the loop touches, in types weights_only loading accepts."""
    version, keys, pos = random.getstate()[0:3]
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [version, list(keys), pos],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, keys, pos = state["python"]
    random.setstate((version, tuple(keys), pos))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
        if lines[0].startswith("Weights only load failed"):  # torch's multi-line refusal
            what = next((line for line in lines if "GLOBAL" in line), lines[-1])
            raise PlugkitError(f"{path}: refused, it holds more than plain training state "
                               f"({what}); nothing in it was run") from None
        raise PlugkitError(f"{path}: cannot read training state ({lines[0]})") from None
