"""The example third-party families in examples/ (plugkit-markov for text, plugkit-copula for
tables), installed with pip for real: found through their own distribution metadata, passing
their own conformance tests, trained, sampled and evaluated through the CLI -- the road any
published plugin travels."""

import json
import math
import shutil
from pathlib import Path

import pytest
from helpers import run_python as run

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PACKAGES = {"markov": EXAMPLES / "plugkit-markov", "copula": EXAMPLES / "plugkit-copula"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("example")
    for name, package in PACKAGES.items():  # pip writes build/ into its source: a copy
        source = shutil.copytree(package, root / name)
        installed = run("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(root / "site"), str(source), cwd=root)
        assert installed.returncode == 0, installed.stderr
    return root / "site"


def test_listed_from_their_distributions(site):
    listed = run("-m", "plugkit", "list", "--json", cwd=site, pythonpath=site)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    for name in PACKAGES:
        assert rows[name]["status"] == "ok" and rows[name]["distribution"] == f"plugkit-{name}"
    assert {"gan", "lstm", "vae"} <= rows.keys()  # the built-ins still load beside them


@pytest.mark.parametrize("name", PACKAGES)
def test_passes_its_own_conformance_tests(site, name):
    tested = run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGES[name] / "tests"),
                 cwd=PACKAGES[name], pythonpath=site)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_markov_trains_and_samples_through_the_cli(site, tmp_path):
    names = ["anna", "bob", "carla", "dana", "ella", "fred", "gina", "hana", "ivan", "jana"]
    (tmp_path / "names.txt").write_text("\n".join(names * 20) + "\n")
    trained = run("-m", "plugkit", "train", "markov", "--data", str(tmp_path / "names.txt"),
                  "--epochs", "10", "-o", "lr=0.2", "--json", "--out", str(tmp_path / "run"),
                  cwd=tmp_path, pythonpath=site)
    assert trained.returncode == 0, trained.stderr
    rows = [json.loads(line) for line in trained.stdout.splitlines()]
    uniform = math.log(len(set("".join(names))) + 1)  # nats per character of a blank model
    assert rows[-1]["val_loss"] < min(rows[0]["val_loss"], 0.25 * uniform)  # learns the names
    sampled = run("-m", "plugkit", "sample", str(tmp_path / "run"), "--n", "20", "--out",
                  str(tmp_path / "s.txt"), cwd=tmp_path, pythonpath=site)
    assert sampled.returncode == 0, sampled.stderr
    lines = (tmp_path / "s.txt").read_text().splitlines()
    assert len(lines) == 20 and sum(line in names for line in lines) >= 10


def test_copula_trains_samples_by_category_and_evaluates(site, tmp_path):
    run_dir = tmp_path / "run"
    trained = run("-m", "plugkit", "train", "copula", "--data", "iris", "--epochs", "10",
                  "--out", str(run_dir), cwd=tmp_path, pythonpath=site)
    assert trained.returncode == 0, trained.stderr
    sampled = run("-m", "plugkit", "sample", str(run_dir), "--n", "50", "--where",
                  "class=setosa", "--out", str(tmp_path / "setosa.csv"), cwd=tmp_path,
                  pythonpath=site)
    assert sampled.returncode == 0, sampled.stderr
    rows = (tmp_path / "setosa.csv").read_text().splitlines()
    assert len(rows) == 51 and all(row.endswith(",setosa") for row in rows[1:])
    refused = run("-m", "plugkit", "sample", str(run_dir), "--temperature", "0.5",
                  cwd=tmp_path, pythonpath=site)
    assert refused.returncode == 2
    assert "unknown sampler setting 'temperature' for copula; valid: where" in refused.stderr
    evaluated = run("-m", "plugkit", "eval", str(run_dir), "--json", cwd=tmp_path,
                    pythonpath=site)
    assert evaluated.returncode == 0, evaluated.stderr
    measures = {m["name"]: m for m in json.loads(evaluated.stdout)["measures"]}
    ks = measures["KS mean (numeric columns)"]
    assert ks["value"] < 2 * ks["floor"]  # the marginals are the data's
