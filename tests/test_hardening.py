"""Untrusted files and resource errors: crafted pickles are refused without running, and a full
disk, a path that cannot be written or memory running out end in one line and no partial file.

Faults that root cannot produce for real are simulated: an output path
under /proc or below a file for "cannot write"; a disk that fills up mid-write is the kernel's
file-size limit in a subprocess (a real failing write(2), in every writer) and, for the ENOSPC
message itself, a write that raises it in-process.
"""

from __future__ import annotations

import errno
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_run
from typer.testing import CliRunner

from plugkit import plugins, runs, sampling
from plugkit.cli import app
from plugkit.errors import PlugkitError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["-o", "hidden=32", "-o", "latent_dim=4", "--batch-size", "128"]


class Payload:
    """Unpickling this runs a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plugkit(*args, cwd, **kw) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, on this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "plugkit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    return tiny_run("image", tmp_path_factory.mktemp("image"))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    return tiny_run("table", tmp_path_factory.mktemp("table"))


# --- no code runs from a file plugkit reads ----------------------------------------------------

def test_a_state_pt_that_would_run_code_is_refused_on_resume(image_run, tmp_path):
    run = shutil.copytree(image_run, tmp_path / "run")
    marker = tmp_path / "pwned"
    state = torch.load(run / "state.pt", weights_only=True)
    state["loop"]["note"] = Payload(marker)  # the real state, with one poisoned entry
    torch.save(state, run / "state.pt")

    result = plugkit("train", "vae", "--out", str(run), "--resume", "--epochs", "2", *SMALL,
                     cwd=tmp_path)
    line = one_line(result.stderr)
    assert result.returncode == 1, result.stderr
    assert "state.pt: refused" in line and "posix.system" in line and "nothing in it was run" \
        in line
    assert not marker.exists()
    torch.load(run / "state.pt", weights_only=False)  # the payload is live: unrestricted
    assert marker.exists()  # loading would have run it


@pytest.mark.parametrize("name", ["evil.npz", "evil.npy"])
def test_an_array_file_holding_a_pickle_is_refused_by_train(tmp_path, monkeypatch, name):
    marker = tmp_path / "pwned"
    payload = np.array([Payload(marker)], dtype=object)
    if name.endswith(".npz"):
        np.savez(tmp_path / name, x=payload)
    else:
        np.save(tmp_path / name, payload, allow_pickle=True)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", "vae", "--data", name, *SMALL])
    assert result.exit_code == 1
    assert "object array" in one_line(result.stderr) and "refused" in result.stderr
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload is live
    assert marker.exists()


# --- a full disk -------------------------------------------------------------------------------

FORMATS = {"image": [".png", ".npz", ".npy"], "table": [".csv", ".parquet"]}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("kind, suffix", [(k, s) for k, ss in FORMATS.items() for s in ss])
def test_disk_full_mid_write_leaves_nothing_and_keeps_the_old_file(request, tmp_path,
                                                                   monkeypatch, kind, suffix):
    run = request.getfixturevalue(f"{kind}_run")
    out = tmp_path / f"s{suffix}"
    sampling.sample(run, 5, out)  # a good earlier file, which a failed write must not touch
    before = out.read_bytes()
    monkeypatch.setattr(runs, "BLOCK", 4)  # several blocks: the disk fills after the first

    def blocks_then_full(self, *args, **kwargs):
        real = real_draw(self, *args, **kwargs)
        yield next(real)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_draw = runs.Run.draw
    monkeypatch.setattr(runs.Run, "draw", blocks_then_full)
    with pytest.raises(PlugkitError, match="the disk is full") as info:
        sampling.sample(run, 10, out)
    assert "\n" not in str(info.value) and out.name in str(info.value)
    assert leftovers(tmp_path) == [out.name, f"{out.name}.json"]  # no temp file, old pair kept
    assert out.read_bytes() == before


def _file_size_limit(limit: int):
    def apply():  # in the child: a write past `limit` bytes fails with EFBIG, as a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_real_failing_write_in_every_writer_is_one_line_and_leaves_nothing(image_run,
                                                                             table_run, tmp_path):
    """The kernel refuses the write mid-file (RLIMIT_FSIZE); each format gives one line."""
    code = f"""
import sys
from plugkit import plugins, sampling
from plugkit.errors import PlugkitError
for run, n, suffix in {[(str(image_run), 3000, s) for s in FORMATS["image"]]
                      + [(str(table_run), 20_000, s) for s in FORMATS["table"]]}:
    try:
        sampling.sample(run, n, r"{tmp_path}/s" + suffix)
        print("wrote", suffix)
    except PlugkitError as exc:
        print(exc)
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300, preexec_fn=_file_size_limit(16_000))
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5, result.stdout + result.stderr
    for line, suffix in zip(lines, FORMATS["image"] + FORMATS["table"], strict=True):
        assert line.startswith(f"cannot write {tmp_path}/s{suffix}: File too large"), line
    assert leftovers(tmp_path) == []


# --- cannot write here ---------------------------------------------------------------------------

@pytest.mark.parametrize("where, reason", [
    ("/proc/plugkit-test/s.npz", "No such file or directory"),  # even root cannot create it
    ("/proc/s.npz", "No such file or directory"),
    ("{tmp}/file/s.npz", "a file stands where a folder is expected"),
    ("{tmp}/file/deeper/s.npz", "a file stands where a folder is expected"),
    ("{tmp}/folder.npz", "Is a directory"),
])
def test_an_unwritable_output_is_one_line_exit_1(image_run, tmp_path, where, reason):
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "folder.npz").mkdir()
    out = where.format(tmp=tmp_path)
    result = CliRunner().invoke(app, ["sample", str(image_run), "--n", "4", "--out", out])
    assert result.exit_code == 1
    assert one_line(result.stderr) == f"error: cannot write {out}: {reason}"
    assert leftovers(tmp_path) == ["file", "folder.npz"] and not any(
        (tmp_path / "folder.npz").iterdir())


# --- out of memory -------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                 "allocate memory: you tried to allocate 40000000000000 bytes."),
])
def test_out_of_memory_while_drawing_is_one_line_and_leaves_nothing(image_run, tmp_path,
                                                                    monkeypatch, error):
    monkeypatch.setattr(runs, "BLOCK", 4)
    vae = plugins.get("vae")
    family_sample, calls = vae.sample, []

    def sample(self, n, **kw):
        calls.append(n)
        if len(calls) == 2:  # the second block: the file is half written
            raise error
        return family_sample(self, n, **kw)

    monkeypatch.setattr(vae, "sample", sample)
    result = CliRunner().invoke(app, ["sample", str(image_run), "--n", "10", "--out",
                                      str(tmp_path / "s.npy")])
    assert result.exit_code == 1
    assert one_line(result.stderr).startswith("error: out of memory drawing 4 samples at a time")
    assert leftovers(tmp_path) == []


def test_a_huge_png_grid_is_refused_before_anything_runs(image_run, tmp_path):
    result = CliRunner().invoke(app, ["sample", str(image_run), "--n", "1000000000",
                                      "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 2
    assert one_line(result.stderr) == ("error: --n 1,000,000,000 is too many for a .png grid "
                                       "(at most 10,000); write .npz or .npy instead")
    assert leftovers(tmp_path) == []


def test_other_errors_are_not_mistaken_for_memory(image_run, tmp_path, monkeypatch):
    def broken(self, n, **kw):
        raise RuntimeError("a bug in a family")

    monkeypatch.setattr(plugins.get("vae"), "sample", broken)
    with pytest.raises(RuntimeError, match="a bug in a family"):
        sampling.sample(image_run, 3, tmp_path / "s.npy")
    assert leftovers(tmp_path) == []
