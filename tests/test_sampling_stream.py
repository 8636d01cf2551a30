"""Sampling in blocks: streamed files equal one-shot files, the seeding is what the docstring of
plugkit.runs.Run.draw says, and peak memory does not grow with --n."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import tiny_run
from PIL import Image

from plugkit import runs as run_records
from plugkit import sampling
from plugkit.formats import codec, grid

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("image", "table", "text", "sequence")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {kind: tiny_run(kind, tmp_path_factory.mktemp(kind)) for kind in KINDS}


def one_shot(path: Path, parts: list) -> bytes:
    """What the in-memory writers make of all the blocks at once."""
    first = parts[0]
    if isinstance(first, list):  # text
        return "".join(f"{line}\n" for part in parts for line in part).encode()
    if isinstance(first, pd.DataFrame):
        df = pd.concat(parts, ignore_index=True)
        return df.to_parquet(index=False) if path.suffix == ".parquet" else \
            df.to_csv(index=False).encode()
    buf = io.BytesIO()
    np.save(buf, np.concatenate(parts))  # .npz holds exactly this as x.npy
    return buf.getvalue()


def content(path: Path) -> bytes:
    if path.suffix == ".npz":
        with zipfile.ZipFile(path) as z:
            assert z.namelist()[-1] == "x.npy"  # after labels.npy for a conditional run
            return z.read("x.npy")
    return path.read_bytes()


CASES = [(kind, suffix) for kind in KINDS for suffix in sampling.FORMATS[kind]]


@pytest.mark.parametrize("kind, suffix", CASES)
def test_streamed_file_equals_the_one_shot_file(runs, tmp_path, monkeypatch, kind, suffix):
    monkeypatch.setattr(run_records, "BLOCK", 4)  # 10 samples: blocks of 4, 4 and 2
    out = sampling.sample(runs[kind], 10, tmp_path / f"s{suffix}", seed=7)
    run = run_records.Run(runs[kind])
    labels = run.labels(10)
    assert (labels is not None) == (kind == "image")  # digits: a class-conditional VAE
    parts = list(run.draw(10, 7, labels=labels))
    assert [len(p) for p in parts] == [4, 4, 2]
    if suffix == ".png":
        picture = grid.grid_image(np.concatenate(parts))
        expected = (picture * 255).round().astype(np.uint8).squeeze(2)
        assert np.array_equal(np.asarray(Image.open(out)), expected)
    elif suffix == ".parquet":
        expected = pd.read_parquet(io.BytesIO(one_shot(out, parts)))
        pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    else:
        assert content(out) == one_shot(out, parts)  # byte for byte


def rows(path: Path):
    if path.suffix == ".txt":
        return path.read_text().splitlines()
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return np.load(path, allow_pickle=False)


def same(a, b) -> bool:
    if isinstance(a, pd.DataFrame):  # NaN where the other has NaN counts as equal
        return a.reset_index(drop=True).equals(b.reset_index(drop=True))
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kind, suffix", [("image", ".npy"), ("table", ".csv"), ("text", ".txt")])
def test_a_block_depends_on_the_seed_and_its_index_only(runs, tmp_path, monkeypatch, kind,
                                                        suffix):
    monkeypatch.setattr(run_records, "BLOCK", 4)
    # a class-conditional run's default labels follow the class mix of n: fix them
    given = {"label": "0"} if kind == "image" else {}
    got = {n: rows(sampling.sample(runs[kind], n, tmp_path / f"{n}{suffix}", seed=3, **given))
           for n in (8, 10, 12)}
    assert len(got[8]) == 8 and len(got[10]) == 10 and len(got[12]) == 12
    for n in (10, 12):  # whole blocks are the same whatever n is
        assert same(got[n][:8], got[8])
    assert not same(got[8][:4], got[8][4:])  # block 1 is not block 0 again
    other = rows(sampling.sample(runs[kind], 8, tmp_path / f"other{suffix}", seed=4, **given))
    assert not same(other, got[8])


@pytest.mark.parametrize("kind", ["image", "text"])
def test_up_to_one_block_is_one_draw_from_the_seed(runs, tmp_path, kind):
    """n <= BLOCK: exactly what sampling gave before it streamed (one generator, `seed`)."""
    family = run_records.Run(runs[kind]).model()
    generator = torch.Generator().manual_seed(5)
    given = {"labels": torch.full((6,), 2)} if kind == "image" else {}  # digits: class 2
    with torch.no_grad():
        expected = codec.decode(family.info, family.sample(6, generator=generator, **given))
    suffix = sampling.FORMATS[kind][-1]  # .npy for images, .txt for text
    got = rows(sampling.sample(runs[kind], 6, tmp_path / f"s{suffix}", seed=5,
                               **({"label": "2"} if kind == "image" else {})))
    assert same(got, expected)


def test_block_seeds_are_distinct():
    seeds = {run_records.block_seed(seed, k) for seed in (0, 1, -1, 2**63) for k in range(50)}
    assert len(seeds) == 200 and run_records.block_seed(9, 0) == 9


PEAK = """
import resource, sys
from plugkit import runs as run_records
from plugkit import sampling
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
sampling.sample(sys.argv[1], 20_000, sys.argv[2])
small = peak()
sampling.sample(sys.argv[1], 200_000, sys.argv[2])
print(round(peak() - small))
"""


@pytest.mark.parametrize("kind, suffix", [("text", ".txt"), ("image", ".npz")])
def test_peak_memory_does_not_grow_with_n(runs, kind, suffix):
    """Sampling 200,000 rather than 20,000 must not raise the peak by the samples it wrote: the
    one-shot code raised it by 232 MiB (text) and 91 MiB (images) here, streaming by 4 and 10."""
    out = runs[kind].parent / f"s{suffix}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", PEAK, str(runs[kind]), str(out)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 40, f"peak grew by {result.stdout.strip()} MiB"
    written = out.read_text().count("\n") if kind == "text" else \
        np.load(out, allow_pickle=False)["x"].shape[0]
    assert written == 200_000
