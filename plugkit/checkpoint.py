"""Checkpoints that load without executing anything from the file.

model.safetensors holds every module's weights ("<module>.<parameter>"); state.pt holds the
optimizers, RNG streams and loop counters and is read with torch.load(weights_only=True), the
restricted unpickler that refuses code. Both are written atomically.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from plugkit import atomic
from plugkit.errors import PlugkitError

WEIGHTS, STATE = "model.safetensors", "state.pt"


def save_weights(run_dir: Path, modules: dict[str, torch.nn.Module]) -> None:
    tensors = {f"{name}.{key}": t.detach().cpu().contiguous()
               for name, module in modules.items() for key, t in module.state_dict().items()}
    atomic.write(run_dir / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))


def load_weights(run_dir: Path, modules: dict[str, torch.nn.Module]) -> None:
    """Weights into `modules` (on any device: the file is read to CPU first)."""
    try:
        tensors = load_file(str(run_dir / WEIGHTS), device="cpu")
    except Exception as exc:
        raise PlugkitError(f"{run_dir / WEIGHTS}: cannot read weights ({exc})") from None
    for name, module in modules.items():
        prefix = f"{name}."
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(own)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise PlugkitError(f"{run_dir / WEIGHTS} does not fit {name}: {first}") from None


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


def save_state(run_dir: Path, optimizers: dict[str, torch.optim.Optimizer], **loop: Any) -> None:
    state = {"optimizers": {k: o.state_dict() for k, o in optimizers.items()},
             "rng": rng_state(), "loop": loop}
    atomic.write(run_dir / STATE, lambda tmp: torch.save(state, tmp))


def load_state(run_dir: Path) -> dict[str, Any]:
    try:
        return torch.load(run_dir / STATE, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PlugkitError(f"{run_dir / STATE}: cannot read training state ({exc})") from None
