"""plugkit chooses torch's thread count from the machine's load (plugkit.threads)."""

import json
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from plugkit import threads
from plugkit.cli import app
from plugkit.errors import UsageError

runner = CliRunner()


@pytest.fixture
def auto(monkeypatch):
    """The automatic choice (the suite fixes PLUGKIT_THREADS=1), torch's count restored."""
    monkeypatch.setenv("PLUGKIT_THREADS", "auto")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def fake_machine(monkeypatch, cores, others):
    """`cores` allowed; other processes keep `others` cores busy; this process is idle."""
    clock = {"t": 0.0, "busy": 0.0, "read": 0.0}

    def monotonic():
        clock["t"] += 0.1  # every look at the clock is a tenth of a second later
        return clock["t"]

    def read_load(cpus=None):
        now = monotonic()
        clock["busy"] += (now - clock["read"]) * others()
        clock["read"] = now
        return threads.Load(now, clock["busy"], 0.0)

    monkeypatch.setattr(threads, "read_load", read_load)
    monkeypatch.setattr(threads, "cores_allowed", lambda: (cores, f"{cores} cores"))
    monkeypatch.setattr(threads, "_START", None)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    monkeypatch.setattr(threads.time, "monotonic", monotonic)
    return clock


def test_fixed_counts_come_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.setenv("PLUGKIT_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.requested(5) == (5, "--threads")
    assert threads.requested() == (3, "PLUGKIT_THREADS")
    monkeypatch.delenv("PLUGKIT_THREADS")
    assert threads.requested() == (2, "OMP_NUM_THREADS")
    monkeypatch.setenv("PLUGKIT_THREADS", "auto")
    assert threads.requested() == (None, "")
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("PLUGKIT_THREADS", bad)
        with pytest.raises(UsageError, match="PLUGKIT_THREADS must be"):
            threads.requested()
    with pytest.raises(UsageError, match="`threads` must be at least 1"):
        threads.requested(0)


@pytest.mark.parametrize("cores, others, share, expected", [
    (2, 0.0, 1, 2), (2, 1.0, 1, 1), (2, 0.3, 1, 2), (2, 0.7, 1, 1), (8, 3.0, 1, 5),
    (8, 0.0, 2, 4), (2, 5.0, 1, 1), (1, 0.0, 1, 1),
    # --nproc 2: the sibling process's busy cores are its share, not a neighbour's
    (8, 4.0, 2, 4), (8, 5.0, 2, 3), (2, 1.0, 2, 1), (8, 7.0, 4, 1)])
def test_the_automatic_choice_leaves_busy_cores_alone(monkeypatch, auto, cores, others, share,
                                                      expected):
    fake_machine(monkeypatch, cores, lambda: others)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(share))
    choice = threads.choose()
    assert choice.auto and choice.threads == expected
    assert f"{cores} cores" in choice.reason


def test_own_time_is_not_counted_as_another_process():
    before, after = threads.Load(0.0, 10.0, 4.0), threads.Load(2.0, 14.0, 8.0)
    assert threads.others_busy(before, after) == 0.0  # all of it was ours
    assert threads.others_busy(before, threads.Load(2.0, 16.0, 8.0)) == 1.0
    assert threads.others_busy(None, after) == 0.0


def test_a_cgroup_quota_caps_the_cores(monkeypatch):
    monkeypatch.setattr(threads, "_allowed_cpus", lambda: list(range(16)))
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 2.5)
    assert threads.cores_allowed() == (2, "cgroup CPU quota 2.5 of 16 cores")
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.cores_allowed()[0] == 16


def run_steps(governor, seconds_at, steps):
    for _ in range(steps):
        governor.step(seconds_at[governor.threads])


@pytest.mark.parametrize("seconds_at, kept", [
    ({2: 0.01, 1: 0.02}, 2),    # a second thread halves the step: keep two
    ({2: 0.02, 1: 0.01}, 1),    # a small model that two threads slow down: keep one
    ({2: 0.0098, 1: 0.01}, 1),  # within 10%: the fewer threads
])
def test_the_governor_times_both_counts_and_keeps_the_faster(monkeypatch, auto, seconds_at,
                                                             kept):
    clock = fake_machine(monkeypatch, 2, lambda: 0.0)
    governor = threads.Governor(threads.choose(), check_s=1e9)
    assert governor.threads == 2  # the trial starts at every free core
    run_steps(governor, seconds_at, 200)
    assert governor.threads == kept and torch.get_num_threads() == kept
    assert clock["t"] > 0


def test_the_governor_follows_a_neighbour_that_starts_and_stops(monkeypatch, auto):
    load = {"others": 0.0}
    fake_machine(monkeypatch, 2, lambda: load["others"])
    governor = threads.Governor(threads.choose(), check_s=0.5)
    seconds_at = {2: 0.01, 1: 0.02}
    run_steps(governor, seconds_at, 100)
    assert governor.threads == 2
    load["others"] = 1.0  # a CPU-bound process starts mid-run
    run_steps(governor, seconds_at, 5)
    assert governor.threads == 1 and torch.get_num_threads() == 1
    load["others"] = 0.0  # and stops: both counts are timed again
    run_steps(governor, seconds_at, 100)
    assert governor.threads == 2


def test_a_fixed_count_is_never_changed(monkeypatch, auto):
    fake_machine(monkeypatch, 2, lambda: 1.0)
    governor = threads.Governor(threads.choose(2))
    run_steps(governor, {2: 0.5}, 50)
    assert governor.threads == 2 and torch.get_num_threads() == 2


@pytest.mark.skipif(len(threads._allowed_cpus()) < 2, reason="needs 2 cores")
def test_a_real_busy_process_is_seen(auto):
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        choice = threads.choose(window=0.5)
    finally:
        neighbour.kill()
    assert choice.busy >= 1 and choice.threads == choice.allowed - choice.busy


def test_training_logs_its_thread_count_and_doctor_shows_the_choice(tmp_path):
    result = runner.invoke(app, ["train", "vae", "--out", str(tmp_path / "run"), "--epochs", "1",
                                 "-o", "hidden=16", "--threads", "2", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.splitlines()[0])
    assert row["threads"] == 2
    doctor = runner.invoke(app, ["doctor", "--json"])
    assert json.loads(doctor.stdout)["threads"]["reason"] == "PLUGKIT_THREADS=1"


def test_sample_restores_the_callers_thread_count(tmp_path):
    assert runner.invoke(app, ["train", "vae", "--out", str(tmp_path / "run"), "--epochs", "1",
                               "-o", "hidden=16"]).exit_code == 0
    torch.set_num_threads(2)
    result = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "4", "--threads", "1",
                                 "--out", str(tmp_path / "x.npy")])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 2
