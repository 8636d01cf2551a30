"""Which implementation runs: the native extension (plugkit._C) or the pure-PyTorch fallback.

PLUGKIT_BACKEND=auto|native|torch picks it (auto: native when the extension loaded). The loader
runs once, when plugkit.ops is imported, and remembers why native is off when it is; asking for
`native` when it cannot load is an error, never a silent fallback.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

CHOICES = ("auto", "native", "torch")
_CAPABILITY_RANK = {"DEFAULT": 0, "AVX2": 1, "AVX512": 2}


@dataclass(frozen=True)
class NativeStatus:
    loaded: bool
    reason: str  # why not, when not loaded; how it was built otherwise
    cpu_capability: str | None = None
    cuda_compiled: bool = False
    build: dict | None = None


def _build_info() -> dict | None:
    path = Path(__file__).resolve().parent.parent / "_build_info.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _runtime_capability() -> str:
    cap = torch.backends.cpu.get_cpu_capability()
    return "AVX512" if cap.startswith("AVX512") else cap


def _load_native() -> NativeStatus:
    build = _build_info()
    if build is not None:
        built, here = build.get("cpu_capability", "DEFAULT"), _runtime_capability()
        if _CAPABILITY_RANK.get(built, 0) > _CAPABILITY_RANK.get(here, 0):
            return NativeStatus(False, f"built for {built} but this CPU supports {here}; "
                                "rebuild with PLUGKIT_CPU_CAPABILITY", build=build)
    try:
        module = importlib.import_module("plugkit._C")
    except ImportError as exc:
        reason = str(exc).splitlines()[0]
        if "No module named" in reason:
            reason = ("the extension plugkit._C is not built (no compiler at install time, or "
                      "PLUGKIT_NATIVE=0); see README: Install")
        return NativeStatus(False, f"cannot import plugkit._C: {reason}", build=build)
    for register in _ON_LOAD:
        register()
    return NativeStatus(
        True,
        f"plugkit._C loaded ({module.cpu_capability} CPU kernels"
        + (", CUDA kernels compiled)" if module.cuda_compiled else ", no CUDA kernels)"),
        cpu_capability=module.cpu_capability,
        cuda_compiled=bool(module.cuda_compiled),
        build=build,
    )


_ON_LOAD: list[Callable[[], None]] = []


def on_native_load(register: Callable[[], None]) -> Callable[[], None]:
    """Decorator: run `register` (fake impls, autograd) once the native ops exist."""
    _ON_LOAD.append(register)
    return register


def _choice_from_env() -> str:
    choice = os.environ.get("PLUGKIT_BACKEND", "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise ValueError(f"PLUGKIT_BACKEND must be one of {', '.join(CHOICES)}, got {choice!r}")
    return choice


_status: NativeStatus | None = None
_choice: str = "auto"


def status() -> NativeStatus:
    global _status
    if _status is None:
        _status = _load_native()
    return _status


def choice() -> str:
    return _choice


def set_backend(name: str) -> None:
    """Select auto, native or torch for this process (what PLUGKIT_BACKEND does at import)."""
    global _choice
    if name not in CHOICES:
        raise ValueError(f"backend must be one of {', '.join(CHOICES)}, got {name!r}")
    if name == "native" and not status().loaded:
        raise RuntimeError(f"PLUGKIT_BACKEND=native but the native core is off: {status().reason}")
    _choice = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    previous = _choice
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def native_for(device: torch.device) -> bool:
    """True when the native kernels should run for tensors on `device`."""
    if _choice == "torch":
        return False
    st = status()
    native = st.loaded and (device.type == "cpu" or (device.type == "cuda" and st.cuda_compiled))
    if not native and _choice == "native":
        raise RuntimeError(f"PLUGKIT_BACKEND=native but there are no native kernels for "
                           f"{device.type} tensors ({st.reason})")
    return native


def init() -> None:
    """Read PLUGKIT_BACKEND and load the extension (called once by plugkit.ops).

    Loading at import, not on first use, keeps the import out of torch.compile's tracing and
    makes torch.ops.plugkit.* available as soon as plugkit.ops is imported.
    """
    status()
    set_backend(_choice_from_env())
