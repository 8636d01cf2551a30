"""gpu-check step 2: which of plugkit's runtime dependencies the Python with torch lacks, and what
each missing one costs this check.

The GPU machine has no package registry, so nothing is fetched: the check adapts instead (the
API shim for a missing typer or rich, generated images for a missing scikit-learn, no tests
without pytest). One line per package, then the list of what is missing; the verdicts go to the
file given, as shell assignments the driver sources: GC_HAVE_<MODULE>=0|1 and GC_MISSING.

Usage: python dependencies.py OUT.env
"""
import importlib
import importlib.metadata as md
import importlib.util
import os
import shlex
import shutil
import sys
import warnings

# (module, distribution, imported for real?, what this check loses without it)
NEEDED = [
    ("numpy", "numpy", True, "training, sampling and the tests: those steps cannot run"),
    ("safetensors", "safetensors", True, "checkpoints: training, resume and sampling cannot run"),
    ("typer", "typer", True, "the plugkit command: this check calls the Python API instead"),
    ("rich", "rich", True,
     "doctor and bench tables: the API shim prints JSON (a rich stub for bench)"),
    ("sklearn", "scikit-learn", True,
     "the digits dataset: vae and gan train on generated 8x8 images"),
    ("PIL", "Pillow", True, ".png grids: samples are written as .npz"),
    ("pytest", "pytest", True, "the CUDA tests: not run (the probes still run)"),
    ("setuptools", "setuptools", True, "the build: nothing can be installed"),
    ("wheel", "wheel", False, "the build, with setuptools older than 70.1"),
    ("pip", "pip", False, "the install: nothing can be installed"),
    ("ninja", "ninja", False, "parallel compilation: the build runs one file at a time (slow)"),
    ("threadpoolctl", "threadpoolctl", False, "thread limits of numpy/scikit-learn (optional)"),
    ("pandas", "pandas", False, "tables and eval (not used by this check)"),
    ("scipy", "scipy", False, "eval (not used by this check)"),
    ("matplotlib", "matplotlib", False, "eval figures (not used by this check)"),
    ("hypothesis", "hypothesis", False, "property tests (not run by this check)"),
]


def check(module, dist, really):
    """(usable?, version or why not). An installed but broken package counts as missing."""
    try:
        if really:
            importlib.import_module(module)
        elif importlib.util.find_spec(module) is None:
            raise ImportError("not found")
        try:
            version = md.version(dist)
        except md.PackageNotFoundError:
            version = "?"
        ok = True
    except Exception as exc:
        ok, version = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if module == "ninja":  # torch runs the ninja binary, from PATH
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        binary = shutil.which("ninja", path=path)
        ok = binary is not None
        version = f"{version}, binary {binary}" if ok else f"{version}, no ninja binary on PATH"
    return ok, version


def main(out):
    warnings.simplefilter("ignore")  # import-time warnings of the packages are not the point here
    missing, flags = [], {}
    for module, dist, really, loss in NEEDED:
        ok, version = check(module, dist, really)
        flags[module] = ok
        print(f"{'ok     ' if ok else 'MISSING'} {dist:14} {version}")
        if not ok:
            missing.append(f"{dist} ({loss})")
    print()
    print("missing: " + ("; ".join(missing) if missing else "nothing"))
    with open(out, "w") as f:
        for module, ok in flags.items():
            f.write(f"GC_HAVE_{module.upper()}={int(ok)}\n")
        f.write("GC_MISSING=" + shlex.quote("; ".join(missing) or "nothing") + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
