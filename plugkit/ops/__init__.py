"""plugkit's operators: fused kernels with a native (C++/CUDA) and a pure-PyTorch backend.

    reparameterize, reparameterize_kl   z = mu + exp(logvar/2) * eps (+ the KL to N(0, I))
    gan_d_loss, gan_g_loss              GAN losses from logits: bce, hinge, wasserstein
    lstm_cell, lstm_layer               LSTM step and whole-sequence layer (nn.LSTM layout)
    diffusion_noise, diffusion_loss     x_t = sqrt(abar) x0 + sqrt(1 - abar) eps and
                                        mean((pred - eps)^2), eps drawn from a key (draw_key)
    ddim_step                           one deterministic DDIM step, x_0 optionally clipped

`backend()` says which implementation runs and why; PLUGKIT_BACKEND=auto|native|torch or
`set_backend` / `use_backend` choose it. Semantics: docs/operators.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from plugkit.ops import _backend
from plugkit.ops._backend import set_backend, use_backend
from plugkit.ops.diffusion import ddim_step, diffusion_loss, diffusion_noise, draw_key
from plugkit.ops.gan import gan_d_loss, gan_g_loss
from plugkit.ops.lstm import lstm_cell, lstm_layer
from plugkit.ops.reparam import reparameterize, reparameterize_kl

OPS = (
    "reparameterize",
    "reparameterize_kl",
    "gan_d_loss",
    "gan_g_loss",
    "lstm_cell",
    "lstm_layer",
    "diffusion_noise",
    "diffusion_loss",
    "ddim_step",
)

__all__ = [
    "OPS",
    "BackendReport",
    "backend",
    "ddim_step",
    "diffusion_loss",
    "diffusion_noise",
    "draw_key",
    "gan_d_loss",
    "gan_g_loss",
    "lstm_cell",
    "lstm_layer",
    "reparameterize",
    "reparameterize_kl",
    "set_backend",
    "use_backend",
]


@dataclass(frozen=True)
class BackendReport:
    """What runs where, and why."""

    choice: str  # auto | native | torch, as selected
    active: str  # what runs for CPU tensors: native | torch
    reason: str  # why `active` runs
    native_loaded: bool
    native_status: str  # how the extension was built, or why it did not load
    cpu_capability: str | None
    cuda_compiled: bool
    cuda_available: bool
    torch_version: str = torch.__version__
    torch_cuda: str | None = torch.version.cuda
    ops: dict[str, dict[str, str]] = field(default_factory=dict)  # op -> device -> backend


def _which(device: str) -> str:
    try:
        return "native" if _backend.native_for(torch.device(device)) else "torch"
    except RuntimeError:
        return "unavailable"


def backend() -> BackendReport:
    """Which implementation each op uses on each device, and why the native path is off if it is."""
    st = _backend.status()
    choice = _backend.choice()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() or st.cuda_compiled else [])
    per_device = {d: _which(d) for d in devices}
    if choice == "torch":
        reason = "PLUGKIT_BACKEND=torch selects the pure-PyTorch fallback"
    else:
        reason = st.reason
    return BackendReport(
        choice=choice,
        active=per_device["cpu"],
        reason=reason,
        native_loaded=st.loaded,
        native_status=st.reason,
        cpu_capability=st.cpu_capability,
        cuda_compiled=st.cuda_compiled,
        cuda_available=torch.cuda.is_available(),
        ops={op: dict(per_device) for op in OPS},
    )


_backend.init()
