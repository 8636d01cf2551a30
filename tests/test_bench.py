"""Smoke test of the kernel benchmark: every case and impl reports, quickly. No timing targets."""

import json
import math

import pytest

import plugkit.ops as ops
from plugkit import bench


@pytest.fixture(scope="module")
def rows():
    return bench.run_kernels(quick=True)


def _by_case(rows):
    out = {}
    for r in rows:
        out.setdefault((r["case"], r["shape"]), {})[r["impl"]] = r
    return out


def test_every_case_and_impl_has_a_row(rows):
    by_case = _by_case(r for r in rows if r["case"] != "machine")
    cases = bench.cases("cpu")
    assert len(by_case) == len(cases)
    for case, impls in zip(cases, by_case.values(), strict=True):
        assert tuple(impls) == bench.impl_names(case)


def test_times_are_positive_and_finite_or_explained(rows):
    for r in rows:
        if r["median_ms"] is None:
            assert r["note"], r
        else:
            assert math.isfinite(r["median_ms"]) and r["median_ms"] > 0, r


def test_native_and_baselines_are_timed(rows):
    native_loaded = ops.backend().native_loaded
    for case, r in zip(bench.cases("cpu"), _by_case(rows[2:]).values(), strict=True):
        for name in case.op.baselines:
            assert r[name]["median_ms"] is not None
        available = all(hasattr(ops, name) for name in case.op.needs)
        assert (r["fallback"]["median_ms"] is not None) == available
        assert (r["native"]["median_ms"] is not None) == (available and native_loaded)
        if r["native"]["median_ms"] is not None:
            assert r["native"]["native_speedup"] == pytest.approx(1.0)


def test_machine_peaks_and_figures(rows):
    peaks = bench.machine(rows)
    assert peaks["copy_gbps"] > 0 and peaks["gemm_gflops"] > 0
    timed = [r for r in rows[2:] if r["median_ms"] is not None]
    assert all((r["gbps"] or r["gflops"]) and r["pct_peak"] > 0 for r in timed)


def test_json_and_table(rows):
    doc = json.loads(bench.main_json(rows))
    assert doc["machine"] == bench.machine(rows)
    assert len(doc["rows"]) == len(rows) - 2
    assert bench.format_table(rows).row_count == len(rows) - 2
