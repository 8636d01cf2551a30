"""Backend selection: PLUGKIT_BACKEND, the report, no silent fallback where native is required."""

import os
import subprocess
import sys

import pytest

import plugkit.ops


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_required_native_core_is_loaded():
    """CI sets PLUGKIT_REQUIRE_NATIVE=1: a broken native build must fail the suite."""
    if os.environ.get("PLUGKIT_REQUIRE_NATIVE") != "1":
        pytest.skip("PLUGKIT_REQUIRE_NATIVE is not set")
    report = plugkit.ops.backend()
    assert report.native_loaded, report.native_status
    if report.choice != "torch":  # the fallback-only run still requires a working build
        assert report.active == "native"
    if os.environ.get("PLUGKIT_REQUIRE_CUDA_BUILD") == "1":
        assert report.cuda_compiled, "the CUDA kernels were not compiled"


def test_env_selects_the_fallback():
    out = run_python("import plugkit.ops as o; r = o.backend(); print(r.choice, r.active)",
                     PLUGKIT_BACKEND="torch")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch", "torch"]


def test_env_rejects_unknown_backend():
    out = run_python("import plugkit.ops", PLUGKIT_BACKEND="fast")
    assert out.returncode != 0
    assert "PLUGKIT_BACKEND must be one of auto, native, torch, got 'fast'" in out.stderr


def test_report_names_every_op_and_device():
    report = plugkit.ops.backend()
    assert set(report.ops) == set(plugkit.ops.OPS)
    assert all("cpu" in devices for devices in report.ops.values())
    assert report.reason


def test_use_backend_restores_the_previous_choice():
    before = plugkit.ops.backend().choice
    with plugkit.ops.use_backend("torch"):
        assert plugkit.ops.backend().active == "torch"
    assert plugkit.ops.backend().choice == before


def test_unknown_backend_name_is_rejected():
    with pytest.raises(ValueError, match="backend must be one of auto, native, torch"):
        plugkit.ops.set_backend("gpu")
