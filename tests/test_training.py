"""Training and sampling end to end through the CLI, on the bundled digits dataset."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from plugkit.cli import app

runner = CliRunner()
SMALL = ["-o", "hidden=32", "-o", "latent_dim=4", "--batch-size", "128"]


def train(out, *args):
    result = runner.invoke(app, ["train", "vae", "--out", str(out), "--json", *SMALL, *args])
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, rows


def test_train_writes_a_run_and_the_loss_goes_down(tmp_path):
    result, rows = train(tmp_path / "run", "--epochs", "4")
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["loss"] < rows[0]["loss"] and rows[-1]["val_loss"] < rows[0]["val_loss"]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["family"] == "vae" and record["status"] == "done"
    assert record["data"]["spec"] == "digits" and record["options"]["latent_dim"] == 4
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 4
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert any(k.startswith("vae.encoder.") for k in weights)
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    # an image VAE keeps no best weights (its ELBO does not rank image models)
    assert state["loop"] == {"epoch": 4, "position": 0, "step": 4 * 13, "since_best": 0,
                             "best": float("inf")}
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_resume_continues_bit_for_bit(tmp_path):
    straight, _ = train(tmp_path / "straight", "--epochs", "2")
    first, _ = train(tmp_path / "resumed", "--epochs", "1")
    second, _ = train(tmp_path / "resumed", "--epochs", "2", "--resume")
    assert straight.exit_code == first.exit_code == second.exit_code == 0, second.output
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sample_formats_and_sidecar(tmp_path):
    assert train(tmp_path / "run", "--epochs", "1")[0].exit_code == 0
    for name in ("grid.png", "x.npz", "x.npy"):
        out = tmp_path / name
        result = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "10",
                                     "--out", str(out), "--seed", "3"])
        assert result.exit_code == 0, result.output
        sidecar = json.loads((tmp_path / f"{name}.json").read_text())
        assert sidecar["seed"] == 3 and sidecar["n"] == 10 and sidecar["family"] == "vae"
    x = np.load(tmp_path / "x.npz", allow_pickle=False)["x"]
    assert x.shape == (10, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert np.array_equal(x, np.load(tmp_path / "x.npy", allow_pickle=False))  # same seed
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (4 * 66 + 2, 3 * 66 + 2)  # 8x8 tiles x8


@pytest.mark.parametrize("args,code,message", [
    (["train", "gam"], 2, "unknown family 'gam'; installed: "),
    (["train", "vae", "-o", "latent=3"], 2, "unknown option 'latent' for vae; valid: latent_dim"),
    (["train", "vae", "-o", "latent_dim=0"], 2, "option latent_dim must be >= 1, got 0"),
    (["train", "vae", "--data", "nowhere.npz"], 1, "nowhere.npz"),
    (["train", "vae", "--data", "names"], 2,
     "family vae takes image, table or sequence data, but names is text"),
    (["train", "lstm", "--data", "iris"], 2,
     "but iris is table (a series in a table: --window LENGTH cuts it into windows)"),
    (["train", "vae", "--epochs", "0"], 2, "--epochs must be at least 1, got 0"),
    (["train", "vae", "--device", "tpu"], 2, "--device must be auto, cpu or cuda"),
    (["sample", "missing-run"], 2, "missing-run: not found (no such run folder)"),
])
def test_bad_input_is_one_line_and_an_exit_code(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    out = subprocess.run([sys.executable, "-m", "plugkit", *args], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert not (tmp_path / "runs").exists() or code == 0  # nothing half-written


def test_sample_rejects_bad_requests(tmp_path):
    assert train(tmp_path / "run", "--epochs", "1")[0].exit_code == 0
    zero = runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "0"])
    assert zero.exit_code == 2
    (tmp_path / "run" / "run.json").write_text("{not json")
    damaged = runner.invoke(app, ["sample", str(tmp_path / "run")])
    assert damaged.exit_code == 1


def test_an_existing_run_is_never_overwritten(tmp_path):
    assert train(tmp_path / "run", "--epochs", "1")[0].exit_code == 0
    again, _ = train(tmp_path / "run", "--epochs", "1")
    assert again.exit_code == 2 and "already holds a run of vae; continue it with --resume" in \
        again.stderr
    other = runner.invoke(app, ["train", "gan", "--out", str(tmp_path / "run"), "--epochs", "1"])
    assert other.exit_code == 2 and "holds a run of vae; it cannot be continued by gan" in \
        other.stderr
    resumed = runner.invoke(app, ["train", "gan", "--out", str(tmp_path / "run"), "--resume"])
    assert resumed.exit_code == 2 and "is a vae run, not gan" in resumed.stderr


def test_python_api(tmp_path):
    import plugkit

    run = plugkit.train("vae", "digits", out=tmp_path / "run", epochs=1,
                        options=["hidden=32", "latent_dim=4"])
    images, labels = plugkit.load(run).sample(3)
    assert images.shape == (3, 1, 8, 8) and labels.shape == (3,)


def test_ctrl_c_saves_and_resume_finishes(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "plugkit", "train", "vae", "--out", str(out), "--epochs", "500",
           *SMALL]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert len(stderr.strip().splitlines()) == 1 and "continue with --resume" in stderr
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    loop = torch.load(out / "state.pt", weights_only=True)["loop"]
    assert loop["step"] >= 13
    resumed, rows = train(out, "--epochs", str(loop["epoch"] + 1), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_unwritable_outputs_fail_cleanly(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    cases = [
        (["train", "vae", "--epochs", "1", "--out", "/proc/plugkit-run"], 1, "cannot write"),
        (["train", "vae", "--epochs", "1", "--out", str(a_file)], 2, "is a file, not a folder"),
    ]
    assert train(tmp_path / "run", "--epochs", "1")[0].exit_code == 0
    cases += [
        (["sample", str(tmp_path / "run"), "--out", "/proc/x.png"], 1, "cannot write /proc/x.png"),
        (["sample", str(tmp_path / "run"), "--out", str(a_file / "x.png")], 1, "cannot write"),
    ]
    for args, code, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == code and message in result.stderr, (args, result.output)
    assert not list(tmp_path.glob("**/*.tmp")) and a_file.read_text() == "not a folder"


def test_validation_weights_sum_count_pairs_by_their_count():
    """A family that returns (sum, count) -- the LSTM, per character -- is averaged over all
    units, so a long line weighs more than a short one; a plain float is weighted per sample."""
    from plugkit.trainer import validate

    class PerUnit:  # nonzero entries are the units ("characters")
        def val_loss(self, batch):
            return float(batch.x.sum()), int((batch.x != 0).sum())

    class PerSample:
        def val_loss(self, batch):
            return float(batch.x.sum() / (batch.x != 0).sum())

    x = torch.tensor([[2.0, 2.0, 2.0, 2.0], [8.0, 0.0, 0.0, 0.0]])  # batches of one row
    assert validate(PerUnit(), x, None, 1, "cpu") == pytest.approx(16 / 5)
    assert validate(PerSample(), x, None, 1, "cpu") == pytest.approx((2 + 8) / 2)


def test_best_weights_and_early_stopping(tmp_path, monkeypatch):
    """The lowest validation loss keeps its weights; --patience stops after that many epochs
    without a better one; sampling uses the best weights unless asked for the last."""
    from plugkit import checkpoint
    from plugkit.families.vae import VAE

    losses = iter([5.0, 3.0, 4.0, 4.5, 2.0, 1.0])  # best at epoch 2, no better for 2 epochs
    monkeypatch.setattr(VAE, "val_loss", lambda self, batch: next(losses))
    monkeypatch.setattr("plugkit.trainer.validate",
                        lambda family, *args: family.val_loss(None))
    told = []  # what the family hears after each validation
    monkeypatch.setattr(VAE, "validated", lambda self, improved: told.append(improved))
    # a table: the VAE's ELBO ranks its table models (not its image ones, below)
    result, rows = train(tmp_path / "run", "--data", "iris", "--epochs", "6", "--patience", "2")
    assert result.exit_code == 0, result.output
    assert [r["val_loss"] for r in rows] == [5.0, 3.0, 4.0, 4.5]  # stopped after epoch 4
    assert told == [True, True, False, False]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["stopped_early"] == 4 and record["status"] == "done"
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert state["loop"]["best"] == 3.0 and state["loop"]["since_best"] == 2
    best = load_file(str(tmp_path / "run" / checkpoint.BEST))
    last = load_file(str(tmp_path / "run" / checkpoint.WEIGHTS))
    assert any(not torch.equal(best[k], last[k]) for k in best)  # epoch 2's, not epoch 4's
    for weights in ("best", "last"):
        out = tmp_path / f"{weights}.csv"
        assert runner.invoke(app, ["sample", str(tmp_path / "run"), "--n", "4", "--out",
                                   str(out), "--weights", weights]).exit_code == 0
    assert (tmp_path / "best.csv").read_text() != (tmp_path / "last.csv").read_text()
    for family in ("gan", "vae"):  # a GAN's D loss; a VAE's ELBO on images
        refused = runner.invoke(app, ["train", family, "--out", str(tmp_path / family),
                                      "--patience", "2"])
        assert refused.exit_code == 2 and "does not rank its image models" in refused.stderr
        assert not (tmp_path / family).exists()


def test_batch_noise_is_the_same_rows_whatever_the_split():
    """Batch.randn and Batch.rand draw for the global batch and slice: two halves of a batch
    get exactly the rows the whole batch gets (what makes N processes compute what 1 does)."""
    from plugkit.family import Batch

    x = torch.zeros(6, 3)
    for draw in ("randn", "rand"):
        torch.manual_seed(1)
        whole = getattr(Batch(x), draw)(4)
        halves = []
        for start in (0, 3):
            torch.manual_seed(1)
            halves.append(getattr(Batch(x[start:start + 3], None, start, 6), draw)(4))
        assert torch.equal(whole, torch.cat(halves)) and whole.shape == (6, 4)
    assert 0 <= whole.min() and whole.max() < 1


def test_a_family_s_option_defaults_by_modality_apply_where_the_user_gives_none(
        tmp_path, monkeypatch):
    """Family.modality_options: the value for the data's modality, recorded in run.json; the
    user's own value wins; other modalities keep the option's default; `plugkit info` says."""
    from plugkit.families.vae import VAE

    monkeypatch.setattr(VAE, "modality_options", {"image": {"beta": 0.25}})
    runner = CliRunner()

    def beta_of(*args):
        run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        result = runner.invoke(app, ["train", "vae", "--epochs", "1", "--out", str(run),
                                     "-o", "hidden=16", *args])
        assert result.exit_code == 0, result.output
        return json.loads((run / "run.json").read_text())["options"]["beta"]

    assert beta_of("--data", "digits") == 0.25
    assert beta_of("--data", "digits", "-o", "beta=2") == 2.0
    assert beta_of("--data", "iris") == 1.0
    shown = runner.invoke(app, ["info", "vae", "--json"])
    beta = next(o for o in json.loads(shown.output)["options"] if o["name"] == "beta")
    assert beta["default"] == 1.0 and beta["defaults_by_modality"] == {"image": 0.25}
    monkeypatch.setenv("COLUMNS", "200")
    assert "1.0; image: 0.25" in runner.invoke(app, ["info", "vae"]).output
