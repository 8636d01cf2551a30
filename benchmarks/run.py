"""The side-by-side benchmark against the peers' own code (issue 14; benchmarks/README.md).

    python benchmarks/run.py [--only ROW] [--scale S] [--out DIR] [--plugkit PATH]

Each row: export the training data from plugkit (export.py), train the peer in its own venv
at its pinned version (peers/), train plugkit's families on the peer's measured time, one
after the other, one thread each, alone on the machine. Once every row has trained, score
every sample file with `plugkit eval --json`, two at a time (one thread each: scoring is not
timed, and the machine has two cores).
Writes DIR/ROW/result.json, the table DIR/benchmarks.md (every row found in DIR) and the
figure DIR/time-to-quality.png. Only the standard library here: whatever needs plugkit runs in
plugkit's venv (export.py, nll.py, figure.py), each peer in its own.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "peers"))
import table  # noqa: E402
from points import FRACTIONS  # noqa: E402  (plugkit is read at the peers' fractions)

NO_EPOCH_LIMIT = 10**6  # --max-time ends plugkit's training, not the epoch count (default 10)


@dataclass(frozen=True)
class Row:
    data: str  # the built-in dataset
    venv: str  # benchmarks/requirements-VENV.txt
    peer: str  # how the table names the peer
    command: tuple[str, ...]  # peers/SCRIPT and its first arguments
    budget: str  # the peer's budget at --scale 1: "epochs" or "seconds"
    amount: float
    folder: str  # where the peer writes its points, under DIR/ROW
    families: tuple[str, ...]  # plugkit's, each trained on the peer's time
    suffix: str  # the sample files' type


ROWS = {
    "adult-tvae": Row("adult", "ctgan", "ctgan 0.12.1 TVAE, 300 epochs (its default)",
                      ("ctgan_peer.py", "tvae"), "epochs", 300, "tvae", ("vae",), ".csv"),
    "adult-ctgan": Row("adult", "ctgan", "ctgan 0.12.1 CTGAN, 10 min",
                       ("ctgan_peer.py", "ctgan"), "seconds", 600, "ctgan", ("gan",), ".csv"),
    "mnist-5k": Row("mnist-5k", "pythae", "pythae 0.1.2 VAE, default MLPs, 100 epochs "
                    "(its default)", ("pythae_peer.py",), "epochs", 100, "pythae",
                    ("vae", "gan"), ".npz"),
    "names": Row("names", "lstm", "nn.LSTM at makemore's RNN sizes, 10 min", ("charlstm.py",),
                 "seconds", 600, "charlstm", ("lstm",), ".txt"),
    "adult-tabddpm": Row("adult", "synthcity", "synthcity 0.2.12 TabDDPM, 10 min",
                         ("synthcity_peer.py",), "seconds", 600, "tabddpm", ("diffusion",),
                         ".csv"),
}


class Tools:
    """How to call plugkit (its venv's CLI and python) and the peers' venvs, one thread each,
    every command's output appended to one log."""

    def __init__(self, plugkit: Path, log: Path) -> None:
        self.plugkit, self.python = plugkit, plugkit.parent / "python"
        self.log = log
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1", "PLUGKIT_THREADS": "1"}
        # a peer's venv sees neither plugkit nor a development PYTHONPATH
        self.peer_env = {k: v for k, v in self.env.items() if k != "PYTHONPATH"}

    def call(self, *cmd, peer: bool = False) -> str:
        cmd = [str(c) for c in cmd]
        with self.log.open("a") as log:
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            begin = time.monotonic()
            done = subprocess.run(cmd, env=self.peer_env if peer else self.env, text=True,
                                  stdout=subprocess.PIPE, stderr=log)
            log.write(f"{done.stdout}({time.monotonic() - begin:.1f} s)\n")
        if done.returncode:
            tail = self.log.read_text().splitlines()[-15:]
            raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n" + "\n".join(tail)
                             + f"\n(the whole log: {self.log})")
        return done.stdout


def venv_python(name: str) -> Path:
    """The peer's venv, made and installed from its requirements file unless it already was
    (a stamp holds the file's hash, so an edited file reinstalls)."""
    requirements = HERE / f"requirements-{name}.txt"
    home = HERE / ".venvs" / name
    python, stamp = home / "bin" / "python", home / ".installed"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return python
    print(f"setting up {home} from {requirements.name}", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
                   check=True)
    stamp.write_text(digest)
    return python


def plugkit_path(given: str | None) -> Path:
    """--plugkit, else the repo's .venv (made by `make setup` when missing)."""
    if given:
        path = Path(given).resolve()
        if not path.exists():
            raise SystemExit(f"--plugkit {given}: no such file")
        return path
    path = REPO / ".venv" / "bin" / "plugkit"
    if not path.exists():
        subprocess.run(["make", "setup"], cwd=REPO, check=True)
    return path


def run_row(name: str, row: Row, scale: float, out: Path, plugkit: Path) -> dict:
    """Trains the row's peer and plugkit's families, drawing samples at every point; returns
    the row's result, its points not yet scored."""
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    tools = Tools(plugkit, folder / "log.txt")
    load = os.getloadavg()[0]
    print(f"{name}: exporting {row.data}", flush=True)
    tools.call(tools.python, HERE / "export.py", row.data, folder)
    protocol = json.loads((folder / "protocol.json").read_text())
    # eval's default n; a smoke test (scale < 1) draws fewer samples too, so its evals are quick
    n = protocol["n"] if scale >= 1 else min(protocol["n"], max(500, round(protocol["n"] * scale)))
    models = {row.peer: train_peer(tools, row, folder, scale, n)}
    budget = models[row.peer][-1]["seconds"]
    for family in row.families:
        print(f"{name}: training plugkit {family} for the peer's {budget:.0f} s", flush=True)
        models[f"plugkit {family}"] = train_plugkit(tools, family, row, folder, budget, n)
    return {"row": name, "index": list(ROWS).index(name), "data": row.data,
            "headline": table.HEADLINE[row.suffix], "peer": row.peer, "scale": scale,
            "n": n, "protocol": protocol, "commit": _git("describe", "--always", "--dirty"),
            # the 1-minute load average before and after training: how much others used the
            # machine while it was timed
            "machine": machine() | {"load": [load, os.getloadavg()[0]]}, "models": models}


def score_rows(results: list[dict], out: Path, plugkit: Path, workers: int = 2) -> None:
    """Scores every point of every row, `workers` evals at a time, each logged beside its
    samples; then writes each row's result.json."""
    tasks = [(ROWS[r["row"]], p) for r in results for points in r["models"].values()
             for p in points]
    print(f"scoring {len(tasks)} sample files, {workers} at a time", flush=True)

    def one(task: tuple[Row, dict]) -> None:
        row, point = task
        score(Tools(plugkit, Path(point["file"]).with_suffix(".eval.log")), row, point)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, tasks))  # list: a failed eval raises here
    for r in results:
        (out / r["row"] / "result.json").write_text(json.dumps(r, indent=1))


def train_peer(tools: Tools, row: Row, folder: Path, scale: float, n: int) -> list[dict]:
    """The peer in its venv, at its budget times `scale`; its points (peers/points.py), with
    the held-out NLL of each for text."""
    python = venv_python(row.venv)
    amount = max(1, round(row.amount * scale)) if row.budget == "epochs" else row.amount * scale
    print(f"{folder.name}: training the peer ({amount:g} {row.budget}), samples of {n:,}",
          flush=True)
    tools.call(python, HERE / "peers" / row.command[0], *row.command[1:], folder,
               f"--{row.budget}", amount, "--n", n, peer=True)
    points = json.loads((folder / row.folder / "points.json").read_text())
    if row.suffix == ".txt":
        weights = [Path(p["file"]).with_suffix(".pt") for p in points]
        nlls = tools.call(tools.python, HERE / "nll.py", row.data, "charlstm",
                          folder / row.folder / "vocab.json", *weights).split()
        for p, nll in zip(points, nlls, strict=True):
            p["nll"] = float(nll)
    return points


def score(tools: Tools, row: Row, p: dict) -> None:
    """`plugkit eval --json` of a point's samples, kept next to them (eval compares every
    sample of a file, up to the held-out size: the samples drawn decide n); the headline
    measure and its floor go into the point (text: the NLL measured while training)."""
    headline = table.HEADLINE[row.suffix]
    report = json.loads(tools.call(tools.plugkit, "eval", p["file"], "--against", row.data,
                                   "--json", "--threads", "1",
                                   "--out", Path(p["file"]).with_suffix(".eval")))
    Path(p["file"]).with_suffix(".eval.json").write_text(json.dumps(report, indent=1))
    p["value"], p["floor"] = p.get("nll"), None
    for m in report["measures"]:
        if m["name"].startswith(headline):
            p["value"], p["floor"] = m["value"], m["floor"]


def train_plugkit(tools: Tools, family: str, row: Row, folder: Path, budget: float,
                  n: int) -> list[dict]:
    """plugkit trained for `budget` seconds in all, stopped at the peer's fractions of it
    (`--max-time`) and resumed (`--resume` continues exactly; each session's --max-time is its
    own, counted from its start): samples are drawn between two sessions. A point's seconds
    are what one uninterrupted run would have taken to get there: the first session's wall
    clock (start-up, data loading and encoding included) plus the later sessions' --max-time
    (each one's own start-up is the benchmark's cost, not training's; their wall clocks are
    kept as "wall")."""
    run = folder / f"plugkit-{family}"
    points: list[dict] = []
    elapsed = 0.0
    for k, fraction in enumerate(FRACTIONS):
        seconds = fraction * budget - elapsed
        if seconds < 1:  # the first session's start-up already went past this mark
            continue
        start = ["--resume"] if points else [family, "--data", row.data]
        begin = time.monotonic()
        tools.call(tools.plugkit, "train", *start, "--out", run, "--epochs", NO_EPOCH_LIMIT,
                   "--max-time", f"{seconds:.2f}", "--threads", "1")
        wall = time.monotonic() - begin
        elapsed += seconds if points else wall
        file = folder / f"plugkit-{family}-points" / f"point{k}{row.suffix}"
        file.parent.mkdir(exist_ok=True)
        tools.call(tools.plugkit, "sample", run, "--n", n, "--out", file, "--threads", "1")
        point = {"seconds": elapsed, "wall": wall, "file": str(file)}
        if row.suffix == ".txt":  # the run's weights move on when it resumes: measured now
            point["nll"] = float(tools.call(tools.python, HERE / "nll.py", row.data, "run", run))
        points.append(point)
        print(f"  point {len(points)}: {elapsed:.0f} s", flush=True)
    return points


def machine() -> dict:
    cpu, flags = platform.processor(), []
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        cpu = fields.get("Model name", cpu).strip()
        flags = fields.get("Flags", "").split()
    except OSError:
        pass
    # "AMD EPYC" names VMs with and without AVX-512, whose image rows differ (docs/benchmarks.md)
    vector = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"))
                   if flag in flags), None)
    cpu += f" ({vector})" if vector else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": 1,
            "date": time.strftime("%Y-%m-%d %H:%M")}


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=list(ROWS), help="run one row (default: all)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="every budget times this (0.05: a smoke test of a few minutes a row)")
    p.add_argument("--out", type=Path, default=HERE / "out", help="output folder")
    p.add_argument("--plugkit", help="plugkit's CLI (default: REPO/.venv/bin/plugkit, made by "
                   "`make setup` when missing)")
    args = p.parse_args()
    if not args.scale > 0:
        p.error(f"--scale must be > 0, got {args.scale}")
    plugkit = plugkit_path(args.plugkit)
    out = args.out.resolve()
    for name in [args.only] if args.only else list(ROWS):
        begin = time.monotonic()
        result = run_row(name, ROWS[name], args.scale, out, plugkit)
        print(f"{name}: trained in {time.monotonic() - begin:.0f} s", flush=True)
        # scored and written now: a later row that fails or is stopped leaves this one whole
        begin = time.monotonic()
        score_rows([result], out, plugkit)
        print(f"{name}: scored in {time.monotonic() - begin:.0f} s", flush=True)
    markdown = table.write(out)
    subprocess.run([str(plugkit.parent / "python"), str(HERE / "figure.py"), str(out)],
                   check=True)
    print(markdown)
    print(f"written: {out / 'benchmarks.md'}, {out / 'time-to-quality.png'}")


if __name__ == "__main__":
    main()
