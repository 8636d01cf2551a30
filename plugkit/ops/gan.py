"""GAN losses (docs/operators.md): the discriminator's and the generator's loss from logits.

    bce          L_D = mean((1-s) softplus(-r) + s softplus(r)) + mean(softplus(f))
                 L_G = mean(softplus(-f))            (the non-saturating generator loss)
    hinge        L_D = mean(relu(1 - r)) + mean(relu(1 + f)),  L_G = -mean(f)
    wasserstein  L_D = mean(f) - mean(r),                        L_G = -mean(f)

r, f: logits of real and fake samples (any shapes); s: one-sided label smoothing (bce only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plugkit.ops import _backend, _checks

KINDS = ("bce", "hinge", "wasserstein")


def _check(kind: str, label_smoothing: float) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if kind != "bce" and label_smoothing != 0.0:
        raise ValueError(f"label_smoothing applies only to kind='bce', got {label_smoothing}")


def gan_d_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    *,
    kind: str = "bce",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The discriminator's loss, a 0-dim tensor of the logits' dtype."""
    _check(kind, label_smoothing)
    _checks.floating(real_logits, "real_logits")
    _checks.like(fake_logits, real_logits, "fake_logits", "real_logits")
    _checks.nonempty(real_logits, "real_logits")
    _checks.nonempty(fake_logits, "fake_logits")
    if _backend.native_for(real_logits.device):
        op = torch.ops.plugkit.gan_d_loss.default
        return op(real_logits, fake_logits, kind, float(label_smoothing))
    return d_loss_reference(real_logits, fake_logits, kind, label_smoothing)


def gan_g_loss(fake_logits: torch.Tensor, *, kind: str = "bce") -> torch.Tensor:
    """The generator's loss, a 0-dim tensor of the logits' dtype."""
    _check(kind, 0.0)
    _checks.floating(fake_logits, "fake_logits")
    _checks.nonempty(fake_logits, "fake_logits")
    if _backend.native_for(fake_logits.device):
        return torch.ops.plugkit.gan_g_loss.default(fake_logits, kind)
    return g_loss_reference(fake_logits, kind)


# The pure-PyTorch fallback: differentiable, so autograd and torch.compile handle it as is.
# -logsigmoid(x) is softplus(-x) computed stably, with an exact gradient at 0.


def d_loss_reference(r: torch.Tensor, f: torch.Tensor, kind: str, s: float) -> torch.Tensor:
    if kind == "bce":
        return (s * r - F.logsigmoid(r)).mean() - F.logsigmoid(-f).mean()
    if kind == "hinge":
        return F.relu(1 - r).mean() + F.relu(1 + f).mean()
    return f.mean() - r.mean()


def g_loss_reference(f: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "bce":
        return -F.logsigmoid(f).mean()
    return -f.mean()


@_backend.on_native_load
def _register() -> None:
    # The fake impls tell torch.compile the output's shape without running anything. Autograd
    # is registered in C++ (csrc/autograd.cpp) so the backward runs without Python.
    @torch.library.register_fake("plugkit::gan_d_loss")
    def _(real, fake, kind, label_smoothing):
        return real.new_empty(())

    @torch.library.register_fake("plugkit::gan_d_loss_backward")
    def _(grad, real, fake, kind, label_smoothing):
        return real.new_empty(real.shape), fake.new_empty(fake.shape)

    @torch.library.register_fake("plugkit::gan_g_loss")
    def _(fake, kind):
        return fake.new_empty(())

    @torch.library.register_fake("plugkit::gan_g_loss_backward")
    def _(grad, fake, kind):
        return fake.new_empty(fake.shape)
