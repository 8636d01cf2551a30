"""Property-based tests of the file readers: any file, however damaged, loads or fails cleanly.

Clean failure is a DataError or UsageError whose message is one line and names the file: never
another exception type, never a hang. Hypothesis writes valid files and damages them (cut at a
random byte, overwritten bytes, lying headers, ragged rows, binary junk, invalid UTF-8, huge
lines). The search is derandomized (PLUGKIT_EXAMPLES=1000 searches deeper by hand).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from plugkit.data import DataError, Dataset, builtin, load
from plugkit.errors import UsageError

EXAMPLES = int(os.environ.get("PLUGKIT_EXAMPLES", "40"))
SEARCH = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _no_hang():
    """A reader that blocks (a FIFO, an endless file) fails the test instead of hanging CI."""
    def stuck(signum, frame):
        raise TimeoutError("the reader hung")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def outcome(path: Path, **kw) -> Dataset | DataError | UsageError:
    """What load() makes of `path`: a Dataset, or the one-line error that names the file."""
    try:
        return load(str(path), **kw)
    except (DataError, UsageError) as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message, repr(message)
        assert path.name in message, message
        return exc


def fails(path: Path, match: str = "", **kw) -> str:
    result = outcome(path, **kw)
    assert isinstance(result, (DataError, UsageError)), f"{path.name} loaded: {result}"
    assert match in str(result), str(result)
    return str(result)


# --- arrays -----------------------------------------------------------------------------------

arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int32, np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    elements={"allow_nan": False, "allow_infinity": False, "min_value": 0, "max_value": 1},
)


def array_file(tmp: Path, x: np.ndarray, fmt: str) -> bytes:
    """The bytes of `x` saved as .npy, .npz or compressed .npz (with labels when it fits)."""
    buf = io.BytesIO()
    if fmt == ".npy":
        np.save(buf, x)
    else:
        save = np.savez_compressed if fmt == "compressed" else np.savez
        labels = {"y": np.arange(len(x)) % 2} if x.ndim > 1 else {}
        save(buf, x=x, **labels)
    return buf.getvalue()


FORMATS = st.sampled_from([".npy", ".npz", "compressed"])


@SEARCH
@given(x=arrays, fmt=FORMATS, data=st.data())
def test_array_files_cut_at_any_byte_fail_cleanly(tmp_path, x, fmt, data):
    whole = array_file(tmp_path, x, fmt)
    cut = data.draw(st.integers(0, len(whole) - 1), label="cut at")
    path = tmp_path / f"cut{'.npy' if fmt == '.npy' else '.npz'}"
    path.write_bytes(whole[:cut])
    fails(path)


@SEARCH
@given(x=arrays, fmt=FORMATS, data=st.data())
def test_array_files_with_overwritten_bytes_load_or_fail_cleanly(tmp_path, x, fmt, data):
    raw = bytearray(array_file(tmp_path, x, fmt))
    head = min(len(raw), 128)  # the header and the zip headers are where damage bites
    spots = data.draw(st.lists(st.tuples(st.integers(0, head - 1), st.integers(0, 255)),
                               min_size=1, max_size=6), label="overwrites")
    for at, value in spots:
        raw[at] = value
    path = tmp_path / f"damaged{'.npy' if fmt == '.npy' else '.npz'}"
    path.write_bytes(bytes(raw))
    outcome(path)


def npy_header(shape, descr="<f4") -> bytes:
    """A .npy version 1.0 header that claims `shape` and `descr`, padded like numpy's."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()


@SEARCH
@given(shape=st.lists(st.integers(0, 10**12), min_size=1, max_size=4), data_bytes=st.binary(
    max_size=64), in_npz=st.booleans())
def test_npy_headers_that_lie_about_the_shape_fail_cleanly(tmp_path, shape, data_bytes, in_npz):
    """A header claiming 10^12 elements must not make numpy allocate them."""
    raw = npy_header(shape) + data_bytes
    path = tmp_path / ("lie.npz" if in_npz else "lie.npy")
    if in_npz:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x.npy", raw)
    else:
        path.write_bytes(raw)
    result = outcome(path)
    if np.prod(shape, dtype=object) * 4 > len(data_bytes):
        assert isinstance(result, DataError) and "truncated" in str(result), result


def test_object_dtype_in_a_header_is_refused_before_any_pickle_is_read(tmp_path):
    (tmp_path / "obj.npy").write_bytes(npy_header((1,), "|O") + b"\x80\x04junk")
    fails(tmp_path / "obj.npy", "object array")


@pytest.mark.parametrize("shape", [(1, 0, 0), (3, 0), (2, 4, 0, 4)])
def test_arrays_of_empty_samples_fail_cleanly(tmp_path, shape):  # found by the search above
    np.save(tmp_path / "e.npy", np.zeros(shape, np.float32))
    fails(tmp_path / "e.npy", "every sample is empty")


def test_array_bigger_than_memory_is_refused_by_its_header(tmp_path, monkeypatch):
    from plugkit.data import readers

    np.save(tmp_path / "big.npy", np.zeros((8, 4, 4), np.float32))
    monkeypatch.setattr(readers, "_memory", lambda: 100)  # a machine with 100 bytes
    fails(tmp_path / "big.npy", "more than this machine's memory")


# --- random bytes as every format ---------------------------------------------------------------

@SEARCH
@given(raw=st.binary(max_size=600), suffix=st.sampled_from(
    [".npy", ".npz", ".csv", ".txt", ".parquet", ".png"]))
def test_random_bytes_in_any_format_load_or_fail_cleanly(tmp_path, raw, suffix):
    if suffix == ".png":  # an image folder holding the junk
        (tmp_path / "imgs").mkdir(exist_ok=True)
        (tmp_path / "imgs" / "junk.png").write_bytes(raw)
        fails(tmp_path / "imgs", "junk.png")
        return
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(raw)
    outcome(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv", ".txt", ".parquet"])
def test_empty_files_fail_cleanly(tmp_path, suffix):
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    fails(tmp_path / f"empty{suffix}")


def test_files_that_never_end_or_block_are_refused(tmp_path):
    os.mkfifo(tmp_path / "pipe.csv")  # opening it would wait for a writer forever
    fails(tmp_path / "pipe.csv", "not a regular file")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")  # reading it would never end
    fails(tmp_path / "zero.txt", "not a regular file")


# --- CSV ----------------------------------------------------------------------------------------

fields = st.text(alphabet=st.sampled_from('ab1.5-e," \n\r\t\x00é'), max_size=6)
rows = st.lists(st.lists(fields, min_size=0, max_size=4), min_size=1, max_size=8)


@SEARCH
@given(table=rows)
def test_ragged_csv_is_refused_and_every_csv_loads_or_fails_cleanly(tmp_path, table):
    path = tmp_path / "t.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(table)
    widths = {len(r) for r in table if r}  # the csv module skips blank rows, and so does pandas
    result = outcome(path)
    if len(widths) > 1:
        assert isinstance(result, DataError) and "malformed CSV" in str(result), result


@SEARCH
@given(raw=st.binary(max_size=200), at=st.integers(0, 40))
def test_binary_junk_inside_a_csv_loads_or_fails_cleanly(tmp_path, raw, at):
    text = b"a,b,c\n1,x,2.5\n3,y,4\n5,z,6\n"
    (tmp_path / "j.csv").write_bytes(text[:at] + raw + text[at:])
    outcome(tmp_path / "j.csv")


def test_huge_csv_field_fails_cleanly(tmp_path):
    (tmp_path / "huge.csv").write_text("a,b\n" + "x" * 200_000 + ",1\n")
    fails(tmp_path / "huge.csv", "malformed CSV (line 2: field larger than field limit")


def test_non_utf8_csv_fails_cleanly(tmp_path):
    (tmp_path / "u16.csv").write_bytes("a,b\n1,2\n".encode("utf-16"))
    fails(tmp_path / "u16.csv", "not UTF-8")


# --- text ---------------------------------------------------------------------------------------

@SEARCH
@given(raw=st.one_of(st.binary(max_size=300),
                     st.text(max_size=200).map(lambda t: t.encode("utf-8"))))
def test_text_files_load_exactly_or_fail_cleanly(tmp_path, raw):
    path = tmp_path / "t.txt"
    path.write_bytes(raw)
    result = outcome(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        assert isinstance(result, DataError) and "not valid UTF-8" in str(result), result
        return
    expected = [line.removesuffix("\r") for line in text.split("\n")]
    expected = [line for line in expected if line]
    if expected:
        assert isinstance(result, Dataset) and result.x == expected
    else:
        assert isinstance(result, DataError) and "empty" in str(result)


def test_a_huge_line_is_cut_into_windows_not_padded(tmp_path):
    (tmp_path / "long.txt").write_text("a" * 300_000 + "\n" + "b\n" * 1000)
    ds = outcome(tmp_path / "long.txt")
    assert isinstance(ds, Dataset) and ds.meta["max_length"] == 256 and ds.meta["cut"] == 1171
    assert len(ds) == 1172 + 1000


# --- IDX (fashion-mnist's format) ---------------------------------------------------------------


def idx_bytes(x: np.ndarray) -> bytes:
    dims = b"".join(int(d).to_bytes(4, "big") for d in x.shape)
    return b"\x00\x00\x08" + bytes([x.ndim]) + dims + x.astype(np.uint8).tobytes()


idx_arrays = hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0,
                                                   max_side=4))


@SEARCH
@given(x=idx_arrays, data=st.data())
def test_idx_files_with_bad_headers_fail_cleanly(tmp_path, x, data):
    raw = bytearray(idx_bytes(x))
    assert np.array_equal(read_idx(tmp_path, bytes(raw)), x)  # the valid file reads back
    damage = data.draw(st.sampled_from(["header", "cut", "extra", "not gzip"]))
    if damage == "header":
        for at, value in data.draw(st.lists(st.tuples(st.integers(0, 4 + 4 * x.ndim - 1),
                                                      st.integers(0, 255)), min_size=1)):
            raw[at] = value
    elif damage == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif damage == "extra":
        raw += data.draw(st.binary(min_size=1, max_size=8))
    result = read_idx(tmp_path, bytes(raw), gzipped=damage != "not gzip")
    if isinstance(result, np.ndarray):  # only a header rewritten to what it was, or its twin
        assert damage == "header" and result.size == len(raw) - 4 - 4 * result.ndim


def read_idx(tmp: Path, raw: bytes, gzipped: bool = True) -> np.ndarray | DataError:
    path = tmp / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw) if gzipped else raw)
    try:
        return builtin._idx(path)
    except DataError as exc:
        assert "\n" not in str(exc) and path.name in str(exc)
        return exc


def test_a_damaged_fashion_mnist_install_fails_by_name(tmp_path, monkeypatch):
    for part in ("train", "t10k"):  # 10 images each, one per class
        (tmp_path / f"{part}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(np.zeros((10, 4, 4), np.uint8))))
        (tmp_path / f"{part}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(np.arange(10, dtype=np.uint8))))
    monkeypatch.setattr(builtin, "FASHION_DIR", tmp_path)
    for name in ("fashion-mnist", "fashion-mnist-test"):
        entry = dataclasses.replace(builtin.REGISTRY[name], installed=lambda: True)
        monkeypatch.setitem(builtin.REGISTRY, name, entry)
        assert len(load(name)) == 10
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (7).to_bytes(4, "big") + b"\x00\x00"))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: the IDX header says shape"):
        load("fashion-mnist-test")
    labels.unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: cannot read"):
        load("fashion-mnist-test")
