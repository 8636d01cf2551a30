"""Does synthetic data help a downstream classifier? `plugkit augment RUN`.

The run's own data is split exactly as training split it: the classifier trains on the same
real images the generative model trained on, and is scored on the held-out real images neither
saw. It trains three times: on the real training images, on those plus a class-balanced
synthetic set (per_class samples of every class from the run), and on the synthetic set alone.
The gain is the accuracy of real + synthetic minus that of real alone, on the holdout.

The classifier is scikit-learn's logistic regression on standardized pixels: deterministic,
quick on CPU, and sensitive to how many examples of each class it sees, which is what
augmentation changes. A stronger classifier changes the numbers, not the protocol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plugkit import atomic, runs
from plugkit.errors import PlugkitError, UsageError


def augment(run_dir: str | Path, per_class: int | None = None, seed: int = 0,
            out: str | Path | None = None) -> dict:
    """Accuracies on the held-out real images; writes real + synthetic to `out` (.npz) if
    given. per_class: synthetic images of each class (default: the largest class's count in
    the training split, so the synthetic set alone is as big as a balanced real one)."""
    run = runs.Run(run_dir)
    if run.modality != "image" or not run.classes:
        what = f"a {run.modality} run" + ("" if run.classes else " without labels")
        raise UsageError(f"augment needs an image run trained on labelled data; {run.path} is "
                         f"{what}")
    if out is not None and Path(out).suffix != ".npz":
        raise UsageError(f"`out` must end in .npz, got {Path(out).name!r}")
    if not run.model().num_classes:
        raise UsageError(f"{run.path}'s model is not class-conditional (conditional=false)")
    train, holdout = run.split()
    classes = len(run.classes)
    per_class = per_class or int(np.bincount(train.labels, minlength=classes).max())
    if per_class < 1:
        raise UsageError(f"`per_class` must be at least 1, got {per_class}")
    labels = run.labels(per_class * classes, per_class=per_class)
    synthetic = np.concatenate(list(run.draw(len(labels), seed, labels=labels)))

    x_train, y_train = _flat(train.x), train.labels
    x_syn, x_test = _flat(synthetic), _flat(holdout.x)
    scores = {
        "real": _accuracy(x_train, y_train, x_test, holdout.labels, seed),
        "real + synthetic": _accuracy(np.concatenate([x_train, x_syn]),
                                      np.concatenate([y_train, labels]), x_test,
                                      holdout.labels, seed),
        "synthetic": _accuracy(x_syn, labels, x_test, holdout.labels, seed),
    }
    if out is not None:
        both_x = np.concatenate([train.x, synthetic]).astype(np.float32)
        both_y = np.concatenate([train.labels, labels]).astype(np.int64)
        _save(Path(out), both_x, both_y)
    return {"run": str(run.path), "classifier": "logistic regression on standardized pixels",
            "real_train": len(train), "synthetic": len(labels), "per_class": per_class,
            "holdout": len(holdout), "accuracy": scores,
            "gain": scores["real + synthetic"] - scores["real"], "seed": seed}


def _save(out: Path, x: np.ndarray, labels: np.ndarray) -> None:
    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a path
            np.savez(f, x=x, labels=labels)

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic.write(out, fill)
    except OSError as exc:
        raise PlugkitError(f"cannot write {out}: {exc.strerror or exc}") from None


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32)


def _accuracy(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, random_state=seed))
    return float((model.fit(x, y).predict(x_test) == y_test).mean())
