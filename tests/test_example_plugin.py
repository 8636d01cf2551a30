"""The example third-party family in examples/plugkit-markov, installed with pip for real:
found through its own distribution metadata, passing its own conformance tests, trained and
sampled through the CLI -- the road any published plugin travels."""

import json
import math
import shutil
from pathlib import Path

import pytest
from helpers import run_python as run

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "plugkit-markov"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("example")
    source = shutil.copytree(PACKAGE, root / "source")  # pip writes build/ into its source
    installed = run("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(root / "site"), str(source), cwd=root)
    assert installed.returncode == 0, installed.stderr
    return root / "site"


def test_listed_from_its_distribution(site):
    listed = run("-m", "plugkit", "list", "--json", cwd=site, pythonpath=site)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["markov"]["status"] == "ok" and rows["markov"]["distribution"] == "plugkit-markov"
    assert {"gan", "lstm", "vae"} <= rows.keys()  # the built-ins still load beside it


def test_passes_its_own_conformance_tests(site):
    tested = run("-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGE / "tests"),
                 cwd=PACKAGE, pythonpath=site)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_trains_and_samples_through_the_cli(site, tmp_path):
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
