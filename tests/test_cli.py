"""The CLI's small commands through typer's CliRunner."""

import json

import pytest
from typer.testing import CliRunner

import plugkit
from plugkit.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"plugkit {plugkit.__version__}"


def test_datasets_lists_every_builtin_with_how_to_get_it():
    result = runner.invoke(app, ["datasets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["digits"]["installed"] is True and rows["digits"]["modality"] == "image"
    assert {"mnist-5k", "names", "shakespeare", "adult", "sunspots"} <= set(rows)
    assert all(r["hint"] for r in rows.values())


@pytest.mark.parametrize("columns", [80, 200])
def test_list_fits_the_terminal_and_shows_each_description_whole(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= columns
    # a description cut into cells of a word or two would not read back as one phrase
    text = " ".join(" ".join(line.strip(" │").split()) for line in result.output.splitlines())
    assert "variational autoencoder (MLP or conv) with a fused" in text


def test_doctor_json_reports_every_op():
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert set(report["ops"]) == set(plugkit.ops.OPS) and report["reason"]


def test_bench_train_reports_both_loops():
    from plugkit import bench_train

    result = bench_train.run("vae", "digits", epochs=1, batch_size=256,
                             opts=("hidden=16", "latent_dim=2"), repeats=1)
    assert result["hand_written_s"] > 0 and result["plugkit_s"] > 0


def test_library_errors_name_settings_and_the_cli_shows_flags(tmp_path):
    """A message names a setting as the Python caller knows it; the CLI shows its flag."""
    import plugkit
    from plugkit.errors import UsageError, for_cli

    with pytest.raises(UsageError, match="`batch_size` must be at least 1"):
        plugkit.train("vae", data="digits", batch_size=0, out=tmp_path / "r")
    assert for_cli("`batch_size` must be at least 1; see `plugkit info vae`") == \
        "--batch-size must be at least 1; see `plugkit info vae`"
    result = CliRunner().invoke(app, ["train", "vae", "--batch-size", "0",
                                      "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "error: --batch-size must be at least 1" in result.output


def test_training_says_how_long_the_rest_will_take(monkeypatch):
    import time

    from plugkit.cli import train as train_cli

    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    left = train_cli._time_left(10, None)
    now[0] = 130.0  # epoch 1 after 30 s, setup included
    assert left(1) == "; about 4 min left"  # 9 epochs at 30 s
    now[0] = 140.0  # epoch 2 after 10 more: the pace since the first epoch
    assert left(2) == "; about 80 s left"
    capped = train_cli._time_left(10, 60.0)
    now[0] = 170.0
    assert capped(1) == "; about 30 s left (--max-time)"
    now[0] = 200.0
    assert capped(10) == ""


def test_train_help_shows_the_defaults_it_states():
    """Rich reads "[default: 64]" in a help text as markup and drops it unless escaped."""
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.replace("│", " ").split())
    for shown in ("Samples per step [default: 64, or the family's for the data's kind]",
                  "random stream [default: 0]",
                  "[default: min(1e-5, 1/(10 n))]"):
        assert shown in text


def test_an_option_added_later_reads_as_its_absent_value_for_older_runs():
    """options.recorded: a run.json without an option takes the option's `absent` value (the
    behaviour before it existed), not its default."""
    from dataclasses import dataclass

    from plugkit import options

    @dataclass
    class Opts:
        width: int = options.option(8, "width")
        average: float = options.option(0.999, "added later", absent=0.0)

    assert options.recorded(Opts, {"width": 4}) == {"width": 4, "average": 0.0}
    assert options.recorded(Opts, {"width": 4, "average": 0.9}) == {"width": 4, "average": 0.9}
    built = options.build(Opts, options.recorded(Opts, {"width": 4}), "demo")
    assert built.average == 0.0
