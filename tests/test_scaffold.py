"""`plugkit new-plugin`: the scaffolded package installs with pip for real, is discovered
through its distribution metadata, passes its own conformance tests and trains."""

import json
from pathlib import Path

from helpers import run_python as run
from typer.testing import CliRunner

from plugkit.cli import app


def test_scaffold_installs_lists_tests_and_trains(tmp_path):
    created = CliRunner().invoke(app, ["new-plugin", "pixel_gauss", "--dir", str(tmp_path)])
    assert created.exit_code == 0, created.output
    package, site = tmp_path / "plugkit-pixel-gauss", tmp_path / "site"
    project = Path(__file__).resolve().parents[1] / "pyproject.toml"  # the house's ruff rules
    linted = run("-m", "ruff", "check", "--config", str(project), str(package), cwd=tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    installed = run("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(package), cwd=tmp_path, pythonpath="")
    assert installed.returncode == 0, installed.stderr
    listed = run("-m", "plugkit", "list", "--json", cwd=tmp_path, pythonpath=site)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["pixel_gauss"]["status"] == "ok"
    assert rows["pixel_gauss"]["distribution"] == "plugkit-pixel-gauss"
    tested = run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests"),
                 cwd=package, pythonpath=site)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    trained = run("-m", "plugkit", "train", "pixel_gauss", "--epochs", "2", "--out",
                  str(tmp_path / "run"), cwd=tmp_path, pythonpath=site)
    assert trained.returncode == 0, trained.stderr
    assert (tmp_path / "run" / "model.safetensors").exists()


def test_scaffold_rejects_bad_names_and_existing_folders(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["new-plugin", "Bad-Name", "--dir", str(tmp_path)])
    assert bad.exit_code == 2 and "lowercase identifier" in bad.stderr
    assert runner.invoke(app, ["new-plugin", "ok", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["new-plugin", "ok", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.stderr
