"""gpu-check step 11: the JSON of `plugkit bench kernels --json` as a Markdown table for the
summary, and a failure when a row failed to run (the bench records a failing case as a row
with a note and goes on, so its exit code alone would not show it).

Usage: python bench_table.py BENCH.json
"""
import json
import sys


def fmt(value, spec, suffix=""):
    return "" if value is None else f"{value:{spec}}{suffix}"


doc = json.load(open(sys.argv[1]))
m = doc["machine"]
print(f"torch {doc['torch']}; native loaded: {doc['backend']['native_loaded']}; "
      f"copy {m['copy_gbps']:.0f} GB/s, GEMM {m['gemm_gflops']:.0f} GFLOP/s")
print("| case | shape | impl | median ms | native × | achieved | % peak | note |")
print("|---|---|---|---:|---:|---:|---:|---|")
broken = []
for r in doc["rows"]:
    achieved = fmt(r["gbps"], ".1f", " GB/s") or fmt(r["gflops"], ".0f", " GFLOP/s")
    print(f"| {r['case']} | {r['shape']} | {r['impl']} | {fmt(r['median_ms'], '.3f')} | "
          f"{fmt(r['native_speedup'], '.2f', '×')} | {achieved} | "
          f"{fmt(r['pct_peak'], '.0f', '%')} | {r['note'] or ''} |")
    if r["median_ms"] is None and (r["note"] or "").startswith("failed"):
        broken.append(f"{r['case']} {r['shape']} {r['impl']}: {r['note']}")
if broken:
    sys.exit("rows that failed:\n  " + "\n  ".join(broken))
