"""User files to a Dataset: .npy/.npz, image folders, .csv/.parquet, .txt.

Nothing is unpickled: arrays load with allow_pickle=False, so an object array (which could
carry code) is refused before any of it runs. Every failure is a DataError naming the file.
"""

from __future__ import annotations

import csv
import itertools
import lzma
import math
import os
import re
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from plugkit.data import images
from plugkit.data.dataset import DataError, Dataset, UsageError

SUFFIXES = (".npy", ".npz", ".csv", ".parquet", ".txt")
_SEPARATORS, _SNIFF_LINES = (",", ";", "\t", "|"), 50
_DECIMAL_COMMA = r"[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?"  # 1,5  35.455,50  -2
_ISO_DATE = r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"
_NPZ_X, _NPZ_Y = ("x", "images"), ("y", "labels")
_PICKLED = ("holds an object array (pickled Python objects); refused, nothing is unpickled: "
            "save a numeric array instead")


def read_path(path: Path, modality: str | None, image_size: int | None) -> Dataset:
    """The dataset in `path`; the modality follows the format unless `modality` forces one."""
    try:
        return _read(path, modality, image_size)
    except OSError as exc:  # permissions, I/O errors: whatever the format
        raise DataError(f"{exc.filename or path}: cannot read ({exc.strerror or exc})") from None


def _read(path: Path, modality: str | None, image_size: int | None) -> Dataset:
    if not path.exists():
        raise DataError(f"{path}: not found (no such file or folder)")
    if path.is_dir():
        _allow(path, "an image folder", ("image",), modality)
        return images.read_folder(path, image_size)
    if not path.is_file():  # a FIFO would block the read forever, /dev/zero never end
        raise DataError(f"{path}: not a regular file")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _read_array(path, modality, image_size)
    if suffix in (".csv", ".parquet"):
        _allow(path, f"a {suffix} file", ("table",), modality)
        df, style = _read_table(path)
        return Dataset(str(path), "table", df, meta={"csv": style} if style else {})
    if suffix == ".txt":
        _allow(path, "a .txt file", ("text",), modality)
        return _read_text(path)
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'}; expected a folder of "
                    f"images or one of {', '.join(SUFFIXES)}")


def _allow(path: Path | str, what: str, possible: tuple[str, ...], modality: str | None) -> None:
    if modality is not None and modality not in possible:
        raise UsageError(f"{path}: {what} cannot be read as {modality} data "
                         f"(possible: {', '.join(possible)})")


def _read_array(path: Path, modality: str | None, image_size: int | None) -> Dataset:
    x, y = _load_npz(path) if path.suffix.lower() == ".npz" else (_load_npy(path), None)
    return from_array(x, y, str(path), modality, image_size)


def from_array(x: np.ndarray, y: np.ndarray | None, source: str, modality: str | None,
               image_size: int | None) -> Dataset:
    """A Dataset of array x (and labels y): a 2-D array is a table (or sequences of one
    feature), 3-D grayscale images [N, H, W] (or sequences [N, T, F]), 4-D images."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source}: array must be numeric, got dtype {x.dtype}")
    detected = {2: "table", 3: "image", 4: "image"}.get(x.ndim)
    if detected is None:
        hint = ("; one series: save it as [N, 1] (x[:, None]) and train with --window"
                if x.ndim == 1 else "")
        raise DataError(f"{source}: expected a 2-D (table), 3-D or 4-D (images) array, "
                        f"got shape {list(x.shape)}{hint}")
    possible = {2: ("table", "sequence"), 3: ("image", "sequence"), 4: ("image",)}[x.ndim]
    _allow(source, f"a {x.ndim}-D array", possible, modality)
    modality = modality or detected
    if y is not None and len(y) != len(x):
        raise DataError(f"{source}: {len(y)} labels for {len(x)} samples")
    if len(x) == 0:
        raise DataError(f"{source}: empty (no samples)")
    if x.size == 0:
        raise DataError(f"{source}: every sample is empty (shape {list(x.shape)})")
    meta = {}
    if modality == "image":
        # 8-bit pixels (integers, or values beyond 1) are divided by 255: samples of such data
        # come back as 0..255 in Python (Run.sample)
        meta["bit_depth"] = 8 if x.dtype.kind in "biu" or float(x.max()) > 1 else None
        x = images.from_array(x, source)
        x = images.resize(x, image_size) if image_size else x
    elif modality == "sequence":
        x = x.astype(np.float32).reshape(len(x), x.shape[1], -1)
    else:
        import pandas as pd

        x = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    return Dataset(source, modality, x, y, meta=meta)


def _load_npy(path: Path) -> np.ndarray:
    def load():
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                raise DataError(f"{path}: not a .npy file (bad header)")
            f.seek(0)
            _check_npy(f, os.fstat(f.fileno()).st_size, str(path))
        return np.load(path, allow_pickle=False)

    return _np_load(path, load)


def _check_npy(f, size: int, where: str) -> None:
    """Reads the .npy header at `f` and checks it against the `size` bytes the file holds, so a
    truncated file or a header that lies is refused before numpy allocates what it claims."""
    major, _ = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if major == 1 else \
        np.lib.format.read_array_header_2_0  # 3.0 differs from 2.0 only in the text encoding
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise DataError(f"{where}: {_PICKLED}")
    need, have = math.prod(shape) * dtype.itemsize, size - f.tell()
    if need > have:
        raise DataError(f"{where}: truncated: the header promises {need:,} bytes of data, "
                        f"the file holds {have:,}")
    if need > _memory():
        raise DataError(f"{where}: {need / 2**30:,.1f} GiB of data, more than this machine's "
                        "memory")


def _memory() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no limit known
        return math.inf


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    def load():
        with zipfile.ZipFile(path) as archive:  # every member's header before any data
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as f:
                        _check_npy(f, info.file_size, f"{path}: {info.filename}")
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            xk = next((k for k in _NPZ_X if k in keys), keys[0] if len(keys) == 1 else None)
            if xk is None:
                raise DataError(f"{path}: no array named x or images among {keys}")
            yk = next((k for k in _NPZ_Y if k in keys), None)
            x, y = z[xk], (None if yk is None else z[yk])
        if not isinstance(x, np.ndarray) or not (y is None or isinstance(y, np.ndarray)):
            raise ValueError("an entry is not a .npy array")  # np.load hands such bytes back raw
        return x, y

    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a .npz file, or truncated (no readable zip directory)")
    return _np_load(path, load)


# What numpy and zipfile raise on damaged bytes: a header that does not parse (numpy tokenizes
# it: TokenError, SyntaxError), a bad zip or compressed stream, a compression method zipfile
# lacks (NotImplementedError), data cut short.
_DAMAGED = (ValueError, TypeError, SyntaxError, tokenize.TokenError, OSError, EOFError,
            zipfile.BadZipFile, zlib.error, lzma.LZMAError, NotImplementedError, OverflowError)


def _np_load(path: Path, load):
    try:
        with warnings.catch_warnings(action="ignore"):  # junk headers parse with SyntaxWarnings
            return load()
    except DataError:
        raise
    except _DAMAGED as exc:
        if isinstance(exc, ValueError) and ("allow_pickle" in str(exc) or "pickled" in str(exc)):
            raise DataError(f"{path}: {_PICKLED}") from None
        raise DataError(f"{path}: malformed or truncated array file ({_first_line(exc)})") from None
    except MemoryError:
        raise DataError(f"{path}: too large to load into this machine's memory") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _read_table(path: Path) -> tuple[Any, dict]:
    """(the table, the CSV style samples are written back in: {} for commas and points, else
    its separator and decimal mark, so that a spreadsheet reads its samples as it wrote the
    data)."""
    import pandas as pd

    style = {}
    try:
        if path.suffix.lower() == ".parquet":
            return _read_parquet(pd, path), style
        sep = _delimiter(path)
        _check_ragged(path, sep)
        df = pd.read_csv(path, sep=sep)
        if sep != ",":
            df, commas = _decimal_commas(pd, df)
            style = {"sep": sep, "decimal": "," if commas else "."}
        df = _iso_dates(pd, df)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty (no header, no rows)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV ({str(exc).strip().splitlines()[-1]})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if len(df) == 0:
        raise DataError(f"{path}: empty (a header but no rows)")
    return df, style


def _read_parquet(pd, path: Path):
    try:
        return pd.read_parquet(path)
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow: "
                        "pip install 'plugkit[parquet]'") from None
    except Exception as exc:  # pyarrow's ArrowInvalid and friends
        raise DataError(f"{path}: malformed Parquet file ({exc})") from None


def _delimiter(path: Path) -> str:
    """The field separator, of `,` `;` tab and `|`: one that splits the header line, evenly
    over the first lines if one does (the most fields, a comma first), else the one giving the
    header the most fields, whose parse then names the ragged line. Without this a `;` file
    (spreadsheets in locales that write 1,5) loads as one column of whole lines and trains
    without complaint; the header alone can mislead ("Gewicht, kg" in a `;` file). A header of
    one field is one column: a comma file, unless the lines commas split are all numbers with a
    decimal comma."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        head = list(itertools.islice(f, _SNIFF_LINES))
    header, fields = {}, {}  # per separator: the header's field count, every line's
    for sep in _SEPARATORS:
        try:
            counts = [len(row) for row in csv.reader(head, delimiter=sep) if row]
        except csv.Error:
            counts = []
        header[sep], fields[sep] = (counts[0] if counts else 1), set(counts)
    splitting = [sep for sep in _SEPARATORS if header[sep] > 1]
    if not splitting:
        split = [line.strip() for line in head[1:] if "," in line]
        decimal = split and all(re.fullmatch(_DECIMAL_COMMA, line) for line in split)
        return ";" if decimal else ","
    even = [sep for sep in splitting if len(fields[sep]) == 1]
    return max(even or splitting, key=lambda sep: header[sep])  # max keeps the first of ties


def _decimal_commas(pd, df) -> tuple[Any, bool]:
    """(df, whether any column had them): text columns whose every value is a number written
    with a decimal comma, thousands dots allowed (1,5 or 35.455,50), become numbers: files
    separated by something other than commas come from spreadsheets that write numbers that
    way."""
    found = False
    for name in df.columns:
        if pd.api.types.is_numeric_dtype(df[name]):
            continue
        values = df[name].dropna().astype(str)
        if len(values) and values.str.fullmatch(_DECIMAL_COMMA).all():
            plain = df[name].str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
            df[name] = pd.to_numeric(plain)
            found = found or values.str.contains(",", regex=False).any()
    return df, found


def _iso_dates(pd, df):
    """df with each text column whose every value is an ISO 8601 date or date-time
    (2024-03-01, 2024-03-01 12:30:00) read as datetimes, which tables train on as numbers
    (plugkit.formats.dates); other layouts (01/03/2024) mean different days in different
    countries and stay text."""
    for name in df.columns:
        column = df[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
            continue
        values = column.dropna()
        if not len(values) or not values.map(lambda v: isinstance(v, str)).all():
            continue
        if values.str.fullmatch(_ISO_DATE).all():
            df[name] = _parsed(pd, column)
    return df


def _parsed(pd, column: Any) -> Any:
    """ISO 8601 text as datetimes; offsets that differ (summer time) as UTC; the text itself
    where a value is no date (2024-13-45)."""
    for utc in (False, True):
        try:
            return pd.to_datetime(column, format="ISO8601", utc=utc)
        except (ValueError, TypeError):
            continue
    return column


def _check_ragged(path: Path, sep: str) -> None:
    """pandas pads short rows with NaN silently; a row with a different field count is an error."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=sep)
        width = None
        try:
            for row in reader:
                if width is None:
                    width = len(row)
                elif row and len(row) != width:
                    fields = f"{len(row)} field{'s' * (len(row) != 1)}"
                    raise DataError(f"{path}: malformed CSV (line {reader.line_num} has "
                                    f"{fields}, the header has {width})")
        except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
            raise DataError(f"{path}: malformed CSV (line {reader.line_num}: {exc})") from None


def _read_text(path: Path) -> Dataset:
    """Its non-empty lines, whole: data.load cuts long ones into windows and fills the meta
    (text.cut), so a line of any length costs memory in proportion to its size only."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 ({exc.reason})") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{path}: empty (no non-empty lines)")
    return Dataset(str(path), "text", lines)
