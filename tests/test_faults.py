"""Crashes: kill -9 of a real training process, and a crash at every instant of a checkpoint
write, never lose more than the steps since the last checkpoint nor break exact resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from plugkit import checkpoint, rundir

SMALL = ["-o", "hidden=32", "-o", "latent_dim=4", "--batch-size", "128", "--json"]


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "plugkit", "train", "vae", *SMALL, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    straight = cli("--epochs", "8", "--out", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen([sys.executable, "-m", "plugkit", "train", "vae", *SMALL,
                             "--epochs", "8", "--out", "killed"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended too soon"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-epoch or mid-checkpoint: wherever it is
    proc.wait()
    state = torch.load(tmp_path / "killed" / "state.pt", weights_only=True)
    assert state["loop"]["epoch"] >= 1  # the first epoch is saved, then every SAVE_EVERY s
    resumed = cli("--epochs", "8", "--out", "killed", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 9))  # no row lost, none repeated
    assert not (tmp_path / "killed" / checkpoint.PREVIOUS).exists()


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3])
def test_a_crash_at_any_rename_leaves_a_consistent_checkpoint(tmp_path, monkeypatch, crash_after):
    net = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    def save(step):
        with torch.no_grad():
            net.weight.fill_(step)  # weights that tell which step they belong to
        checkpoint.save(tmp_path, {"net": net}, {"sgd": optimizer}, epoch=step, position=0,
                        step=step)

    save(1)
    calls = []
    real_replace, real_unlink = os.replace, type(tmp_path).unlink

    def replace(src, dst):
        if len(calls) == crash_after:
            raise Crash
        calls.append(dst)
        real_replace(src, dst)

    def unlink(path, missing_ok=False):  # the clean-up of the previous weights is step 3
        if path.name == checkpoint.PREVIOUS and len(calls) == crash_after:
            raise Crash
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    monkeypatch.setattr(type(tmp_path), "unlink", unlink)
    with pytest.raises(Crash):
        save(2)
    monkeypatch.undo()
    restored = torch.nn.Linear(2, 2)
    state = checkpoint.resume(tmp_path, {"net": restored})
    step = state["loop"]["step"]
    assert step == (2 if crash_after >= 3 else 1)  # committed only once state.pt is in place
    assert torch.all(restored.weight == step)  # and the weights are that step's
    checkpoint.remove_staged(tmp_path)  # what resuming does with the crash's temp files
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path):
    (tmp_path / rundir.METRICS).write_text('{"epoch": 1, "step": 5}\n{"epoch": 2, "step": 10}\n'
                                         '{"epoch": 3, "st')
    rundir.truncate_metrics(tmp_path, 5)
    assert (tmp_path / rundir.METRICS).read_text() == '{"epoch": 1, "step": 5}\n'


def diverge(monkeypatch, at_step, how):
    """Makes the VAE's train_step go bad at a given step: a NaN loss or a NaN weight."""
    from plugkit.families.vae import VAE

    real_step, count = VAE.train_step, []

    def train_step(self, batch):
        losses = real_step(self, batch)
        count.append(1)
        if len(count) >= at_step:
            if how == "loss":
                return {**losses, "loss": float("nan")}
            with torch.no_grad():
                next(self.net.parameters()).fill_(float("inf"))
        return losses

    monkeypatch.setattr(VAE, "train_step", train_step)


@pytest.mark.parametrize("how, at_step, message", [
    ("loss", 20, "training diverged at step 20"),
    ("weights", 26, "parameters became NaN or inf by step 26"),  # epoch 2's last step
])
def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, how,
                                                             at_step, message):
    from typer.testing import CliRunner

    from plugkit.cli import app

    diverge(monkeypatch, at_step, how)  # epochs of 13 steps
    result = CliRunner().invoke(app, ["train", "vae", "--epochs", "4", "--out",
                                      str(tmp_path / "run"), *SMALL])
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["loop"]["step"] == 13  # epoch 1's checkpoint, untouched
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())
