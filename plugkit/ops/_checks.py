"""Argument checks for the public operators: clear errors that name the argument and the value."""

from __future__ import annotations

import torch

_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def floating(t: object, name: str) -> torch.Tensor:
    """A float tensor of a dtype the kernels support on its device."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    allowed = _CUDA_DTYPES if t.is_cuda else _CPU_DTYPES  # cheap attributes first: hot path
    if t.dtype not in allowed:
        names = "/".join(str(d).removeprefix("torch.") for d in allowed)
        raise ValueError(f"{name} must be {names} on {t.device.type}, got {t.dtype}")
    if t.layout is not torch.strided:
        raise ValueError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    return t


def like(t: object, ref: torch.Tensor, name: str, ref_name: str) -> torch.Tensor:
    """Same dtype and device as `ref`."""
    floating(t, name)
    assert isinstance(t, torch.Tensor)
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}")
    if t.dtype != ref.dtype:
        raise ValueError(f"{name} has dtype {t.dtype} but {ref_name} has {ref.dtype}")
    return t


def same_shape(t: object, ref: torch.Tensor, name: str, ref_name: str) -> torch.Tensor:
    like(t, ref, name, ref_name)
    assert isinstance(t, torch.Tensor)
    if t.shape != ref.shape:
        raise ValueError(f"{name} has shape {_shape(t)} but {ref_name} has shape {_shape(ref)}")
    return t


def shape(t: torch.Tensor, expected: tuple[int, ...], name: str, what: str) -> None:
    if tuple(t.shape) != expected:
        want = "(" + ", ".join(str(s) for s in expected) + ")"
        raise ValueError(f"{name} must have shape {want} ({what}), got {_shape(t)}")


def ndim(t: torch.Tensor, n: int, name: str, layout: str) -> None:
    if t.dim() != n:
        raise ValueError(f"{name} must be {n}-D {layout}, got shape {_shape(t)}")


def nonempty(t: torch.Tensor, name: str) -> None:
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: the mean of an empty loss is undefined")
