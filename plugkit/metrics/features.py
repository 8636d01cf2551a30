"""A feature space for comparing images, trained on the real data itself: nothing downloaded.

Fréchet distance (Heusel et al. 2017, FID) compares Gaussians fitted to features of a network
that has learned what matters in the data: Inception features for ImageNet photos. plugkit may
not download weights, and Inception knows little of 8x8 digits anyway, so we train a small CNN
on the real images: a classifier when labels exist, else rotation prediction (Gidaris et al.
2018), a task that needs no labels yet forces the net to learn shapes and strokes. Training is
deterministic (fixed seed, data order and CPU ops) and cached on disk as safetensors + JSON, so
every `plugkit eval` of the same real data measures in the same space.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from plugkit import atomic
from plugkit.errors import UsageError

VERSION = "features-1"  # bump when the net or its training changes: old cache entries go stale
DIM, STEPS, BATCH, LR, HELD_OUT = 64, 600, 64, 3e-3, 0.2


class FeatureNet(nn.Module):
    """Small CNN. Its features are the global average of the last conv block, the analogue of
    Inception's pool3 that FID reads; the head classifies from a 2x2 grid of that block so that
    task-specific layout (needed to tell rotations apart) stays out of the features."""

    def __init__(self, channels: int, size: tuple[int, int], classes: int, has_classes: bool):
        super().__init__()
        self.channels, self.size, self.classes = channels, tuple(size), classes
        self.has_classes, self.accuracy = has_classes, float("nan")
        self.trunk = nn.Sequential(
            _block(channels, 16), nn.MaxPool2d(2),  # (B, 16, H/2, W/2)
            _block(16, 32), nn.MaxPool2d(2),  # (B, 32, H/4, W/4)
            _block(32, DIM))  # (B, DIM, H/4, W/4); 8x8 input still leaves 2x2
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),  # (B, 4 * DIM): any H, W >= 8
            nn.Linear(4 * DIM, DIM), nn.ReLU(), nn.Linear(DIM, classes))  # (B, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).mean((2, 3))  # (B, DIM)

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        """(N, DIM) float64 features of float [N, C, H, W] images in [0, 1]."""
        self.eval()
        return _batched(self.embed, self._check(images)).double().numpy()

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N,) int64 class predictions; only for a net trained on labels."""
        if not self.has_classes:
            raise UsageError("this feature net was trained without labels (rotation task): "
                             "it has features but no classes to predict")
        self.eval()
        return _batched(self, self._check(images)).argmax(1).numpy().astype(np.int64)

    def _check(self, images: np.ndarray) -> torch.Tensor:
        want = (self.channels, *self.size)
        shape = tuple(np.shape(images))
        if len(shape) != 4 or shape[1:] != want:
            raise UsageError(f"images of shape {shape} do not fit this feature net, trained on "
                             f"(N, {', '.join(map(str, want))})")
        return torch.from_numpy(np.ascontiguousarray(images, np.float32))


def _batched(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(b) for b in x.split(512)])  # bounded memory for any N


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


def feature_net(images: np.ndarray, labels: np.ndarray | None = None, *, seed: int = 0,
                cache_dir: str | Path | None = None) -> FeatureNet:
    """The feature net of these real images (and labels, if any), trained once and cached."""
    x, y = _validate(images, labels)
    folder = Path(cache_dir or os.environ.get("PLUGKIT_CACHE")
                  or Path.home() / ".cache" / "plugkit" / "features")
    path = folder / cache_key(x, y, seed)
    net = _load(path)
    if net is None:
        net = _build(x, y, seed)
        _save(path, net)
    return net


def _validate(images: np.ndarray, labels: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.ascontiguousarray(images, np.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or min(x.shape[2:]) < 8 or len(x) < 10:
        raise UsageError(f"images must be [N >= 10, C in (1, 3), H >= 8, W >= 8]; got {x.shape}")
    if not np.isfinite(x).all():
        raise UsageError("images contain NaN or infinite values")
    if labels is None:
        return x, None
    y = np.ascontiguousarray(labels, np.int64)
    if y.shape != (len(x),) or y.min() < 0:
        raise UsageError(f"labels must be {len(x)} integers >= 0; got shape {y.shape}")
    return x, y


def cache_key(x: np.ndarray, y: np.ndarray | None, seed: int) -> str:
    """sha256 of everything the trained weights depend on."""
    h = hashlib.sha256(json.dumps([VERSION, x.shape, seed, STEPS, BATCH, LR, HELD_OUT]).encode())
    h.update(x.tobytes())
    h.update(b"unlabeled" if y is None else y.tobytes())
    return h.hexdigest()


def _build(x: np.ndarray, y: np.ndarray | None, seed: int) -> FeatureNet:
    with torch.random.fork_rng(devices=[]):  # a fixed init without moving the caller's RNG
        torch.manual_seed(seed)
        net = FeatureNet(x.shape[1], x.shape[2:], 4 if y is None else int(y.max()) + 1,
                         has_classes=y is not None)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
    n_held = round(HELD_OUT * len(x))  # >= 2: _validate asks for 10 images
    held, train = order[:n_held], order[n_held:]
    xs, ys = torch.from_numpy(x), None if y is None else torch.from_numpy(y)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        _train(net, xs[train], None if ys is None else ys[train], seed)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    net.accuracy = _accuracy(net, *(_turns(xs[held]) if ys is None else (xs[held], ys[held])))
    return net


def _turns(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Four views labelled 0-3: turned by 0/90/180/270 degrees (Gidaris et al. 2018) or, as
    non-square images cannot turn 90 degrees in place, flipped none/left-right/up-down/both."""
    if x.shape[2] == x.shape[3]:
        views = [torch.rot90(x, k, (2, 3)) for k in range(4)]
    else:
        views = [x, x.flip(3), x.flip(2), x.flip(2, 3)]
    return torch.cat(views), torch.arange(4).repeat_interleave(len(x))  # (4B, C, H, W), (4B,)


def _train(net: FeatureNet, x: torch.Tensor, y: torch.Tensor | None, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=STEPS)
    net.train()
    order = torch.empty(0, dtype=torch.int64)
    batch = BATCH if y is not None else BATCH // 4  # four views each: the same cost a step
    for _ in range(STEPS):
        if len(order) < min(batch, len(x)):  # a fresh epoch; the tail of the old one is dropped
            order = torch.randperm(len(x), generator=gen)
        idx, order = order[:batch], order[batch:]
        xb, yb = (x[idx], y[idx]) if y is not None else _turns(_shift(x[idx], gen))
        loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image moved by up to a pixel. Only for the rotation task: without it the net tells
    rotations apart by where the ink sits in the fixed frame, not by shape (digits, 3 seeds: the
    0-vs-1 centroid gap over their spread fell from 1.4-1.8 to 0.75-1.2). Labelled training
    does better without it (~0.7% on digits, same on MNIST)."""
    b, c, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1))  # (B, C, H+2, W+2)
    dy, dx = torch.randint(0, 3, (2, b, 1), generator=gen)
    rows = (dy + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[:, None, None], rows, cols]


@torch.no_grad()
def _accuracy(net: FeatureNet, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((_batched(net, x).argmax(1) == y).double().mean())


def _save(path: Path, net: FeatureNet) -> None:
    """Weights first, then the JSON that vouches for them (by sha256): no JSON, no entry."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        weights = {k: v.contiguous() for k, v in net.state_dict().items()}
        atomic.write(path.with_suffix(".safetensors"), lambda t: save_file(weights, str(t)))
        meta = {"version": VERSION, "channels": net.channels, "size": list(net.size),
                "classes": net.classes, "has_classes": net.has_classes,
                "accuracy": net.accuracy, "weights_sha256": _sha(path.with_suffix(".safetensors"))}
        atomic.write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))
    except OSError as exc:  # a read-only cache costs a retrain next time, not the evaluation
        warnings.warn(f"feature net not cached in {path.parent}: {exc}", stacklevel=3)


def _load(path: Path) -> FeatureNet | None:
    """The cached net, or None when absent or damaged in any way (then it is rebuilt)."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        if meta["version"] != VERSION or meta["weights_sha256"] != _sha(
                path.with_suffix(".safetensors")):
            return None
        net = FeatureNet(meta["channels"], meta["size"], meta["classes"], meta["has_classes"])
        net.load_state_dict(load_file(str(path.with_suffix(".safetensors"))))
        net.accuracy = float(meta["accuracy"])
    except Exception:  # unreadable, truncated, edited, wrong shapes: all mean "train again"
        return None
    return net.eval()


def _sha(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()
