"""`--resume` continues the run on disk (run.json is the truth), refuses what contradicts it,
and a run says how it ended; failures leave nothing half-written (issue 12 §2, §5)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from plugkit.cli import app

runner = CliRunner()
SMALL = ["-o", "hidden=32", "-o", "latent_dim=4", "--batch-size", "128"]


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def image_folder(root, n=60):
    """What a user has: a folder of small grayscale PNGs in two class folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (12, 12), np.uint8), "L").save(folder / f"{i}.png")
    return root


def test_resume_of_an_image_folder_run_from_another_folder_without_family(tmp_path,
                                                                          monkeypatch):
    data = image_folder(tmp_path / "my images")
    run = tmp_path / "run"
    assert cli("train", "vae", "--data", data, "--out", run, "--epochs", 1, *SMALL,
               "-o", "conditional=false").exit_code == 0
    monkeypatch.chdir(tmp_path / "my images")  # relative paths would now point elsewhere
    result = cli("train", "--out", run, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in rows(run)] == [1, 2]
    record = json.loads((run / "run.json").read_text())
    assert record["data"]["path"] == str(data.resolve()) and record["status"] == "done"
    assert record["options"]["conditional"] is False and record["options"]["latent_dim"] == 4


def test_resume_of_a_text_run_keeps_its_data_and_options(tmp_path):
    text = tmp_path / "words.txt"
    text.write_text("\n".join(["anna", "bob", "carl", "dora", "emil", "fred"] * 10) + "\n")
    run = tmp_path / "run"
    first = cli("train", "lstm", "--data", text, "--out", run, "--epochs", 1, "-o", "hidden=16",
                "--json")
    assert first.exit_code == 0, first.output
    result = cli("train", "lstm", "--out", run, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output  # main: "dataset 'names' is not installed"
    assert json.loads((run / "run.json").read_text())["options"]["hidden"] == 16


def test_an_option_is_not_reset_to_its_default_on_resume(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "vae", "--out", run, "--epochs", 1, *SMALL).exit_code == 0
    result = cli("train", "vae", "--out", run, "--resume", "--epochs", 2, "--json")
    assert result.exit_code == 0, result.output  # main: weights of latent 4 vs a latent-16 model
    assert json.loads((run / "run.json").read_text())["batch_size"] == 128


@pytest.mark.parametrize("flag, value, stored", [
    (["--batch-size", "32"], "32", "--batch-size 128"),
    (["--seed", "5"], "5", "--seed 0"),
    (["-o", "latent_dim=8"], "latent_dim=8", "-o latent_dim=4"),
    (["--data", "iris"], "iris", "--data digits"),
    (["--val-fraction", "0.3"], "0.3", "--val-fraction 0.1"),
])
def test_a_flag_that_contradicts_the_run_is_refused_naming_both_values(tmp_path, flag, value,
                                                                        stored):
    run = tmp_path / "run"
    assert cli("train", "vae", "--out", run, "--epochs", 1, *SMALL).exit_code == 0
    result = cli("train", "vae", "--out", run, "--resume", "--epochs", 2, *flag)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert stored in result.stderr and value in result.stderr
    assert len(rows(run)) == 1  # nothing trained


def test_repeating_the_runs_own_settings_is_fine(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "vae", "--out", run, "--epochs", 1, *SMALL).exit_code == 0
    result = cli("train", "vae", "--data", "digits", "--out", run, "--resume", "--epochs", 2,
                 *SMALL, "--seed", 0)
    assert result.exit_code == 0, result.output


def test_a_changed_or_missing_data_file_is_refused_by_name(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a,b\n" + "".join(f"{i % 7}.5,{'xy'[i % 2]}\n" for i in range(40)))
    run = tmp_path / "run"
    assert cli("train", "vae", "--data", table, "--out", run, "--epochs", 1,
               "-o", "hidden=16").exit_code == 0
    table.write_text(table.read_text() + "3.5,x\n")
    changed = cli("train", "--out", run, "--resume", "--epochs", 2)
    assert changed.exit_code == 1 and str(table.resolve()) in changed.stderr
    assert "changed" in changed.stderr and len(changed.stderr.strip().splitlines()) == 1
    table.unlink()
    missing = cli("train", "--out", run, "--resume", "--epochs", 2)
    assert missing.exit_code == 1 and "not there any more" in missing.stderr


def test_max_time_says_so_and_resume_logs_one_row_per_epoch(tmp_path):
    straight, run = tmp_path / "straight", tmp_path / "cut"
    assert cli("train", "vae", "--out", straight, "--epochs", 2, *SMALL).exit_code == 0
    stopped = cli("train", "vae", "--out", run, "--epochs", 2, *SMALL, "--max-time", 0.01)
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.strip().splitlines()[-1].startswith("stopped: --max-time")
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "stopped" and "--max-time" in record["stopped"]
    resumed = cli("train", "--out", run, "--resume", "--epochs", 2)
    assert resumed.exit_code == 0 and resumed.stdout.strip().endswith(f"saved {run}")
    got, want = rows(run), rows(straight)
    assert [r["epoch"] for r in got] == [1, 2]  # main: epoch 1 logged twice
    for a, b in zip(got, want, strict=True):  # an epoch cut in two reports the whole epoch
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-9) and a["step"] == b["step"]
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "done" and "stopped" not in record


def test_weights_that_do_not_fit_name_the_tensor_and_shapes(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "vae", "--out", run, "--epochs", 1, *SMALL).exit_code == 0
    record = json.loads((run / "run.json").read_text())
    record["options"]["latent_dim"] = 5  # as if run.json and weights came from different runs
    (run / "run.json").write_text(json.dumps(record))
    result = cli("train", "--out", run, "--resume", "--epochs", 2)
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "does not fit the model: tensor vae." in result.stderr
    assert "in the file but" in result.stderr and "in the model" in result.stderr


def _fail_at_step(monkeypatch, error, after=0):
    """The VAE's train_step raises `error` from its (after+1)-th call."""
    from plugkit import plugins

    cls = plugins.get("vae")
    original, calls = cls.train_step, []

    def failing(self, batch):
        calls.append(1)
        if len(calls) > after:
            raise error
        return original(self, batch)

    monkeypatch.setattr(cls, "train_step", failing)


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError(
    "[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried "
    "to allocate 40000000000 bytes.")])
def test_out_of_memory_in_a_fresh_run_is_one_line_and_leaves_nothing(tmp_path, monkeypatch,
                                                                     error):
    _fail_at_step(monkeypatch, error)
    result = cli("train", "vae", "--out", tmp_path / "run", "--epochs", 2, *SMALL)
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "out of memory" in result.stderr and "--batch-size" in result.stderr
    assert not (tmp_path / "run").exists()


def test_out_of_memory_in_a_resumed_run_keeps_its_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert cli("train", "vae", "--out", run, "--epochs", 1, *SMALL).exit_code == 0
    weights = (run / "model.safetensors").read_bytes()
    _fail_at_step(monkeypatch, MemoryError())
    result = cli("train", "--out", run, "--resume", "--epochs", 2)
    assert result.exit_code == 1 and "the last checkpoint is kept" in result.stderr
    assert (run / "model.safetensors").read_bytes() == weights and len(rows(run)) == 1
    assert cli("train", "--out", run, "--resume", "--epochs", 2).exit_code == 1  # still failing
    monkeypatch.undo()
    assert cli("train", "--out", run, "--resume", "--epochs", 2).exit_code == 0


def test_any_failure_before_the_first_checkpoint_leaves_no_run_behind(tmp_path, monkeypatch):
    from plugkit.errors import PlugkitError

    _fail_at_step(monkeypatch, PlugkitError("boom"), after=3)
    result = cli("train", "vae", "--out", tmp_path / "run", "--epochs", 2, *SMALL)
    assert result.exit_code == 1 and result.stderr.strip() == "error: boom"
    assert not (tmp_path / "run").exists()


def test_a_failure_in_a_folder_the_user_had_removes_only_plugkits_files(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    _fail_at_step(monkeypatch, MemoryError())
    result = cli("train", "vae", "--out", folder, "--epochs", 1, *SMALL)
    assert result.exit_code == 1
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_long_epoch_in_a_log_is_not_silent(tmp_path, monkeypatch):
    from plugkit.cli import train as train_cli

    monkeypatch.setattr(train_cli, "PROGRESS_EVERY_S", 0.0)  # as if every step took 30 s
    result = cli("train", "vae", "--out", tmp_path / "run", "--epochs", 1, *SMALL)
    assert result.exit_code == 0
    steps = [line for line in result.stdout.splitlines() if " step " in line]
    assert steps and steps[0].startswith("epoch 1/1  step 1/")


def test_a_resume_without_epochs_goes_on_to_the_runs_own(tmp_path):
    run = tmp_path / "run"
    first = cli("train", "vae", "--data", "iris", "--out", run, "--epochs", 3, "--max-time", 0,
                *SMALL)
    assert first.exit_code == 0 and "stopped" in first.output  # in epoch 1
    result = cli("train", "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in rows(run)] == [1, 2, 3]  # not the default 10
    assert "epoch 3/3" in result.output


def test_resuming_a_finished_run_says_it_trained_nothing_and_how_to_go_on(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "vae", "--data", "iris", "--out", run, "--epochs", 2,
               *SMALL).exit_code == 0
    again = cli("train", "--out", run, "--resume")
    assert again.exit_code == 0, again.output
    assert "has trained 2 epochs, which --epochs 2 does not exceed: nothing trained" in \
        again.output
    assert "--epochs N" in again.output and len(rows(run)) == 2
    further = cli("train", "--out", run, "--resume", "--epochs", 3)
    assert further.exit_code == 0 and "nothing trained" not in further.output
    assert [r["epoch"] for r in rows(run)] == [1, 2, 3]
    fewer = cli("train", "--out", run, "--resume", "--epochs", 1)  # the epochs it has, not 1
    assert "has trained 3 epochs, which --epochs 1 does not exceed" in fewer.output


def test_a_table_run_that_recorded_an_image_size_still_resumes_and_samples(tmp_path):
    """--image-size is refused on tables now; runs made before recorded it, unused."""
    run = tmp_path / "run"
    assert cli("train", "vae", "--data", "iris", "--out", run, "--epochs", 1, *SMALL,
               "--image-size", 16).exit_code == 2  # refused, and no run folder left
    assert not run.exists()
    assert cli("train", "vae", "--data", "iris", "--out", run, "--epochs", 1, *SMALL
               ).exit_code == 0
    record = json.loads((run / "run.json").read_text())
    record["data"]["image_size"] = 16  # as an older plugkit wrote it
    (run / "run.json").write_text(json.dumps(record))
    result = cli("train", "--out", run, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output
    result = cli("sample", run, "--n", 5, "--out", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output


def test_a_table_run_resumes_with_the_encoding_it_trained_on(tmp_path, monkeypatch):
    """A plugkit that encodes the same table differently (here: one that derives no column)
    still resumes the runs of the one before, decoding as they trained."""
    import pandas as pd

    from plugkit.formats import tabular

    grade = np.repeat(["a", "b", "c"], 30)
    pd.DataFrame({"grade": grade, "points": np.repeat([1, 2, 3], 30),
                  "x": np.random.default_rng(0).normal(size=90).round(2)}
                 ).to_csv(tmp_path / "t.csv", index=False)
    run = tmp_path / "run"
    with monkeypatch.context() as older:
        older.setattr(tabular, "derive", lambda df, kinds: [])
        assert cli("train", "vae", "--data", tmp_path / "t.csv", "--out", run, "--epochs", 1,
                   *SMALL).exit_code == 0
    record = json.loads((run / "run.json").read_text())
    assert [c["name"] for c in record["data"]["meta"]["encoding"]] == ["grade", "points", "x"]
    del record["data"]["meta"]["derived"]  # as the plugkit before it wrote run.json
    (run / "run.json").write_text(json.dumps(record))
    result = cli("train", "--out", run, "--resume", "--epochs", 2)
    assert result.exit_code == 0, result.output
    result = cli("sample", run, "--n", 5, "--out", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(tmp_path / "s.csv").columns) == ["grade", "points", "x"]
