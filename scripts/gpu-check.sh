#!/usr/bin/env bash
# shellcheck disable=SC2317  # the step_* functions run indirectly: bash gpu-check.sh --step NAME
# gpu-check (issue 12 §6): the first run of plugkit's CUDA kernels, on a machine with an NVIDIA
# GPU, its own torch preinstalled and no package registry in reach. In at most GPU_CHECK_BUDGET
# seconds (default 300) it:
#
#   1. reports the machine (nvidia-smi, nvcc, the Python that has torch, torch's CUDA and the
#      GPU's capability) and stops at once, exit 2, when there is no GPU torch can use;
#   2. says which of plugkit's runtime dependencies that Python lacks (nothing is fetched) and
#      what each missing one costs;
#   3. copies the tree to a scratch folder (the user's checkout and its .venv stay untouched) and
#      makes a venv there that sees the preinstalled torch (--system-site-packages, plus a .pth
#      when that Python is itself a venv);
#   4. builds the native core with the CUDA kernels for the GPU present:
#      pip install --no-build-isolation --no-deps --no-index -e .   (PLUGKIT_NATIVE=1,
#      PLUGKIT_CUDA=1, TORCH_CUDA_ARCH_LIST from torch.cuda.get_device_capability())
#   5. plugkit doctor --require-native --require-cuda-build, and the build's arch list;
#   6. the CUDA tests of tests/test_ops_*.py and tests/test_backend.py;
#   7. probes the tests do not make: non-contiguous inputs, gradcheck and opcheck on the GPU,
#      half storage, a grid-stride launch, empty tensors, device-mismatch errors, a side stream
#      and CUDA-graph capture;
#   8. trains vae and gan on `digits` and lstm on a small text, a few epochs each on the GPU;
#   9. resumes the GPU-written vae run on the CPU (GPU hidden) for one more epoch;
#  10. samples the vae and the lstm runs on the CPU;
#  11. plugkit bench kernels --device cuda --json, with the time that is left (--quick when
#      little is left; torch.compile off unless GPU_CHECK_BENCH_COMPILE=1).
#
# Each step runs under `timeout`; its exit code, duration and last lines are appended to the
# summary as soon as it ends, so a run that is cut off still reports. Full logs, the test output,
# the bench JSON and the samples go next to it.
#
# Usage:   make gpu-check            or   bash scripts/gpu-check.sh [SUMMARY.md]
# Summary: the argument, else $GPU_CHECK_SUMMARY, else $OUT/gpu-check.md when $OUT is set, else
#          gpu-check/summary.md. Logs: $GPU_CHECK_DIR, else $OUT/gpu-check when $OUT is set,
#          else the summary's folder. The scratch folder (tree copy, venv, build, runs) is
#          removed at the end unless GPU_CHECK_KEEP=1.
# Exit:    0 every step passed; 1 a step failed or timed out; 2 nothing to check here (no GPU
#          that torch can use, or no Python with torch).
# Knobs:   GPU_CHECK_PYTHON (the Python with torch), GPU_CHECK_ARCH (e.g. "9.0"),
#          GPU_CHECK_BUDGET (seconds, default 300), GPU_CHECK_BENCH_COMPILE=1, CUDA_HOME.
#          GPU_CHECK_PLUMBING=1 GPU_CHECK_VENV=.venv: exercise the script itself on a machine
#          without a GPU (CPU everywhere, the given venv, no build); it proves nothing about CUDA.
set -uo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd)"

now_ms() { date +%s%3N; }
cores() { env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; }  # nproc obeys OMP_NUM_THREADS
secs() { printf '%d.%d' "$(($1 / 1000))" "$((($1 % 1000) / 100))"; }

# The plugkit command: the real CLI when typer and rich are importable, else the API shim that
# this script writes (same subcommands and flags, JSON output).
pk() {
  if [[ $GC_CLI == cli ]]; then
    "$GC_VENV/bin/plugkit" "$@"
  else
    "$GC_VPY" "$GC_WORK/plugkit_api.py" "$@"
  fi
}

# =============================== steps (each: bash SELF --step NAME) ===============================
# Everything a step needs comes from the GC_* variables that main exports.

TORCH_PROBE='
import json, sys
info = {"executable": sys.executable, "python": sys.version.split()[0],
        "in_venv": sys.prefix != sys.base_prefix}
try:
    import torch
except Exception as exc:
    info["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(info))
    sys.exit(0)
info.update(torch=torch.__version__, torch_file=torch.__file__, cuda=torch.version.cuda,
            available=torch.cuda.is_available(), devices=[])
if info["available"]:
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        info["devices"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                                "memory_gib": round(p.total_memory / 2**30, 1),
                                "sms": p.multi_processor_count})
    info["torch_arch_list"] = torch.cuda.get_arch_list()
print(json.dumps(info))
'

step_environment() {
  echo "host $(hostname 2>/dev/null || echo '?'), $(uname -srm), $(cores) CPUs, $(date -u +%FT%TZ)"
  local smi_ok=0
  if command -v nvidia-smi >/dev/null; then
    if timeout 10 nvidia-smi; then
      smi_ok=1
      timeout 10 nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap \
        --format=csv 2>/dev/null || true
    else
      echo "nvidia-smi failed (exit $?)"
    fi
  else
    echo "nvidia-smi: not found"
  fi

  # The Python that has torch: the first candidate whose torch sees a GPU, else the first with torch.
  local candidates=() p seen="" chosen="" chosen_info="" fallback="" fallback_info="" info
  if [[ $GC_PLUMBING == 1 ]]; then candidates+=("$GC_VENV/bin/python"); fi
  candidates+=("${GPU_CHECK_PYTHON:-}" python3 python /opt/conda/bin/python /usr/bin/python3
               /usr/local/bin/python3)
  for p in "${candidates[@]}"; do
    [[ -n $p ]] || continue
    p=$(command -v "$p" 2>/dev/null) || continue
    [[ " $seen " == *" $p "* ]] && continue
    seen="$seen $p"
    info=$(timeout 20 "$p" -c "$TORCH_PROBE" 2>/dev/null | tail -n 1)
    echo "python $p: ${info:-no answer}"
    [[ $info == *'"torch":'* ]] || continue
    if [[ $info == *'"available": true'* ]]; then chosen=$p chosen_info=$info; break; fi
    [[ -z $fallback ]] && fallback=$p fallback_info=$info
  done
  if [[ -z $chosen ]]; then chosen=$fallback chosen_info=$fallback_info; fi

  # torch's CUDA version picks the toolkit: torch refuses to build with an nvcc of another major.
  local torch_cuda="" arch="" gpu_ok=0 reason=""
  if [[ -n $chosen ]]; then
    torch_cuda=$("$chosen" -c 'import json, sys; print(json.loads(sys.argv[1])["cuda"] or "")' \
      "$chosen_info")
    arch=$("$chosen" -c '
import json, sys
caps = sorted({d["capability"] for d in json.loads(sys.argv[1])["devices"]}, key=float)
print(";".join(caps))' "$chosen_info")
  fi
  local d v cands=() first="" match="" nvcc_version=""
  if [[ -n ${CUDA_HOME:-} ]]; then cands+=("$CUDA_HOME"); fi
  cands+=(/usr/local/cuda /usr/local/cuda-*)
  if p=$(command -v nvcc 2>/dev/null); then cands+=("$(dirname "$(dirname "$(readlink -f "$p")")")"); fi
  for d in "${cands[@]}"; do
    [[ -x $d/bin/nvcc ]] || continue
    v=$("$d/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
    echo "CUDA toolkit $d: nvcc ${v:-?}"
    if [[ -z $first ]]; then first=$d nvcc_version=$v; fi
    if [[ -z $match && -n $torch_cuda && ${v%%.*} == "${torch_cuda%%.*}" ]]; then match=$d; fi
    if [[ -n ${CUDA_HOME:-} && $d == "$CUDA_HOME" ]]; then match=$d; break; fi  # the user's choice
  done
  local cuda_home=${match:-$first}
  if [[ -n $cuda_home ]]; then
    nvcc_version=$("$cuda_home/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
  fi
  arch=${GPU_CHECK_ARCH:-$arch}

  if [[ -z $chosen ]]; then
    reason="no Python with torch found (tried:${seen:- nothing}); set GPU_CHECK_PYTHON"
  elif [[ $GC_PLUMBING == 1 ]]; then
    gpu_ok=1 reason="everything runs on the CPU, no CUDA is checked"
  elif [[ $chosen_info == *'"available": true'* ]]; then
    gpu_ok=1
  elif [[ -z $torch_cuda ]]; then
    reason="torch at $chosen is a CPU-only build (torch.version.cuda is None)"
  elif ((smi_ok)); then
    reason="nvidia-smi sees a GPU but torch ($torch_cuda) cannot use it (driver too old for torch's CUDA, or CUDA_VISIBLE_DEVICES)"
  else
    reason="no NVIDIA GPU visible (nvidia-smi missing or failing; torch.cuda.is_available() is False)"
  fi
  {
    printf 'GC_PY=%q\n' "$chosen"
    printf 'GC_TORCH_CUDA=%q\n' "$torch_cuda"
    printf 'GC_ARCH=%q\n' "$arch"
    printf 'GC_CUDA_HOME=%q\n' "$cuda_home"
    printf 'GC_NVCC_VERSION=%q\n' "$nvcc_version"
    printf 'GC_GPU_OK=%q\n' "$gpu_ok"
    printf 'GC_GPU_REASON=%q\n' "$reason"
  } >"$GC_WORK/env.sh"

  echo
  echo "python: ${chosen:-none}"
  if [[ -n $chosen ]]; then
    "$chosen" - "$chosen_info" <<'EOF'
import json, sys
info = json.loads(sys.argv[1])
print(f"torch {info['torch']} (CUDA {info['cuda']}), Python {info['python']}, "
      f"in a venv: {info['in_venv']}")
for n, d in enumerate(info["devices"]):
    sm = d["capability"].replace(".", "")
    print(f"cuda:{n} {d['name']}: sm_{sm}, {d['memory_gib']} GiB, {d['sms']} SMs")
print("torch built for:", " ".join(info.get("torch_arch_list", [])) or "-")
EOF
  fi
  echo "CUDA_HOME: ${cuda_home:-none} (nvcc ${nvcc_version:-none}); TORCH_CUDA_ARCH_LIST: ${arch:-none}"
  if [[ -n $torch_cuda && -n $nvcc_version && ${torch_cuda%%.*} != "${nvcc_version%%.*}" ]]; then
    echo "WARNING: nvcc $nvcc_version and torch's CUDA $torch_cuda differ in major version;"
    echo "         torch.utils.cpp_extension refuses that build (set CUDA_HOME to a matching toolkit)"
  fi
  if ((gpu_ok)); then
    echo "verdict: GPU check can run${reason:+ ($reason)}"
    return 0
  fi
  echo "NO GPU CHECK HERE: $reason"
  return 3
}

step_dependencies() {
  "$GC_PY" - "$GC_WORK/deps.env" <<'EOF'
import importlib, importlib.metadata as md, importlib.util, os, shlex, shutil, sys, warnings

warnings.simplefilter("ignore")  # import-time warnings of the packages are not the point here

# (module, distribution, imported for real?, what this check loses without it)
NEEDED = [
    ("numpy", "numpy", True, "training, sampling and the tests: those steps cannot run"),
    ("safetensors", "safetensors", True, "checkpoints: training, resume and sampling cannot run"),
    ("typer", "typer", True, "the plugkit command: this check calls the Python API instead"),
    ("rich", "rich", True, "doctor and bench tables: the API shim prints JSON (a rich stub for bench)"),
    ("sklearn", "scikit-learn", True, "the digits dataset: vae and gan train on generated 8x8 images"),
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
missing, flags = [], {}
for module, dist, really, loss in NEEDED:
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
    except Exception as exc:  # an installed but broken package counts as missing
        ok, version = False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if module == "ninja":  # torch runs the ninja binary, from PATH
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        binary = shutil.which("ninja", path=path)
        ok = binary is not None
        version = f"{version}, binary {binary}" if ok else f"{version}, no ninja binary on PATH"
    flags[module] = ok
    print(f"{'ok     ' if ok else 'MISSING'} {dist:14} {version}")
    if not ok:
        missing.append(f"{dist} ({loss})")
print()
print("missing: " + ("; ".join(missing) if missing else "nothing"))
with open(sys.argv[1], "w") as f:
    for module, ok in flags.items():
        f.write(f"GC_HAVE_{module.upper()}={int(ok)}\n")
    f.write("GC_MISSING=" + shlex.quote("; ".join(missing) or "nothing") + "\n")
EOF
}

copy_tree() {
  mkdir -p "$GC_SRC"
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    # what a fresh clone has, plus untracked files that are not ignored
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
      tar --null --ignore-failed-read -T - -cf -) | tar -C "$GC_SRC" -xf -
  else
    tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
      --exclude=./runs --exclude=./gpu-check --exclude='*.egg-info' --exclude='*.so' \
      --exclude=./plugkit/_build_info.json --exclude=__pycache__ --exclude=.pytest_cache \
      -cf - . | tar -C "$GC_SRC" -xf -
  fi
}

step_venv() {
  if [[ $GC_PLUMBING == 1 ]]; then
    echo "plumbing mode: the existing venv $GC_VENV and the tree $GC_SRC, no copy, no build"
    "$GC_VPY" -c 'import plugkit, torch; print("plugkit", plugkit.__file__, "torch", torch.__version__)'
    return
  fi
  copy_tree || return 1
  echo "tree copied to $GC_SRC ($(du -sh "$GC_SRC" | cut -f1))"
  if ! "$GC_PY" -m venv --system-site-packages "$GC_VENV"; then
    echo "venv with pip failed (no ensurepip?); trying --without-pip (pip from the base Python)"
    rm -rf "$GC_VENV"
    "$GC_PY" -m venv --system-site-packages --without-pip "$GC_VENV" || return 1
  fi
  # A venv sees the *base* interpreter's site-packages; when the Python that has torch is itself a
  # venv (or has a user site), its folders come in through this .pth (addsitedir also runs the
  # .pth files there).
  local site
  site=$("$GC_VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return 1
  "$GC_PY" - >"$site/_plugkit_gpu_check_base.pth" <<'EOF'
import os, site, sysconfig
paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
if site.ENABLE_USER_SITE:
    paths.append(site.getusersitepackages())
paths = [p for i, p in enumerate(paths) if os.path.isdir(p) and p not in paths[:i]]
# one line, exec'd by site.py in a function scope: no comprehension (it could not see `site`)
print(f"import site; list(map(site.addsitedir, {paths!r}))")
EOF
  cat "$site/_plugkit_gpu_check_base.pth"
  local base venv where='import importlib.util as u; print(u.find_spec("torch").origin)'
  base=$("$GC_PY" -c "$where") || return 1
  venv=$("$GC_VPY" -c "$where") || return 1
  echo "torch in the venv: $venv"
  if [[ $base != "$venv" ]]; then
    echo "the venv imports another torch than $base"
    return 1
  fi
  "$GC_VPY" -m pip --version || { echo "no pip in the venv nor in the base Python"; return 1; }
}

step_build() {
  cd "$GC_SRC" || return 1
  # ninja may sit next to the base Python, outside PATH; nvcc of the chosen toolkit first
  PATH="$GC_VENV/bin:$(dirname "$GC_PY"):${GC_CUDA_HOME:+$GC_CUDA_HOME/bin:}$PATH"
  if [[ -n $GC_CUDA_HOME ]]; then export CUDA_HOME=$GC_CUDA_HOME; fi
  MAX_JOBS=$(cores)
  export TORCH_CUDA_ARCH_LIST=$GC_ARCH MAX_JOBS PLUGKIT_NATIVE=1 PLUGKIT_CUDA=1
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_NO_CACHE_DIR=1
  echo "CUDA_HOME=${CUDA_HOME:-unset} TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS" \
    "nvcc=$(command -v nvcc) ninja=$(command -v ninja || echo 'none: a serial build')"
  local out="$GC_LOGS/build.txt"
  "$GC_VPY" -m pip install --no-build-isolation --no-deps --no-index -v -e . 2>&1 | tee "$out"
  if ((PIPESTATUS[0] != 0)); then
    # the compiler's own lines sit far above pip's closing words: repeat them where the tail is
    echo "--- first error lines of the build ---"
    grep -E "error:|error [A-Z]+[0-9]+|FAILED:|Error:|undefined (symbol|reference)|mismatch|\[plugkit setup\]|PLUGKIT_[A-Z]+=" "$out" |
      cut -c1-300 | head -n 15
    return 1
  fi
  echo
  "$GC_VPY" -c 'import plugkit._C as m; print("plugkit._C:", m.__file__, "cuda_compiled:", m.cuda_compiled)'
}

step_build_without_native() {
  cd "$GC_SRC" || return 1
  export PLUGKIT_NATIVE=0 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_NO_CACHE_DIR=1
  "$GC_VPY" -m pip install --no-build-isolation --no-deps --no-index -e .
}

step_doctor() {
  cd "$GC_SRC" || return 1
  local flags=(--require-native) rc=0
  if [[ $GC_DEV == cuda ]]; then flags+=(--require-cuda-build); fi
  pk doctor "${flags[@]}" || rc=1
  echo
  "$GC_VPY" - "$GC_DEV" <<'EOF' || rc=1
import json, pathlib, sys
import torch
import plugkit
info_path = pathlib.Path(plugkit.__file__).parent / "_build_info.json"
info = json.loads(info_path.read_text()) if info_path.exists() else None
print("build info:", info)
print("torch", torch.__version__, "CUDA", torch.version.cuda, "arch list", torch.cuda.get_arch_list())
if sys.argv[1] == "cuda":
    built = [a.split("+")[0] for a in ((info or {}).get("cuda_arch_list") or "").replace(" ", ";").split(";") if a]
    for i in range(torch.cuda.device_count()):
        cap = "{}.{}".format(*torch.cuda.get_device_capability(i))
        print(f"cuda:{i} {torch.cuda.get_device_name(i)} sm_{cap.replace('.', '')}:",
              "kernels built for it" if cap in built else f"NOT in the build's arch list {built}")
        if cap not in built:
            sys.exit(1)
EOF
  return "$rc"
}

step_cuda_tests() {
  cd "$GC_SRC" || return 1
  export PLUGKIT_REQUIRE_NATIVE=1 CUDA_LAUNCH_BLOCKING=1
  if [[ $GC_DEV == cuda ]]; then export PLUGKIT_REQUIRE_CUDA_BUILD=1; fi
  # The CUDA cases: the `device` fixture's "cuda" parameter, the lstm tests' DEVICES, every
  # test_cuda_*; plus the Philox known answers (on every device) and the required-build check.
  local out="$GC_LOGS/cuda-tests.txt"
  "$GC_VPY" -m pytest -q -p no:cacheprovider --junitxml="$GC_LOGS/cuda-tests.xml" \
    -k "cuda or philox_known_answers_native or required_native_core" \
    tests/test_ops_gan.py tests/test_ops_lstm.py tests/test_ops_reparam.py tests/test_backend.py \
    2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  # A CUDA test skipped on a GPU machine has not run: that is a failure of this check.
  local skipped
  skipped=$(grep -cE "^SKIPPED.*(no CUDA device|native core|needs the native|plugkit\._C)" "$out")
  if ((skipped > 0)); then
    echo "$skipped SKIPPED lines above: CUDA tests skipped where they must run"
    ((rc == 0)) && rc=1
  fi
  return "$rc"
}

step_probes() {
  cd "$GC_SRC" || return 1
  CUDA_LAUNCH_BLOCKING=1 "$GC_VPY" "$GC_WORK/probes.py" "$GC_DEV"
}

train_on_device() {  # FAMILY DATA RUN [-o key=value ...]
  local family=$1 data=$2 run=$3
  shift 3
  cd "$GC_SRC" || return 1
  PLUGKIT_BACKEND=$GC_BACKEND pk train "$family" --data "$data" --epochs 3 --device "$GC_DEV" \
    --out "$GC_RUNS/$run" --json "$@"
}

step_train_vae() { train_on_device vae "$GC_IMG_DATA" vae; }
step_train_gan() { train_on_device gan "$GC_IMG_DATA" gan; }

step_train_lstm() {
  "$GC_VPY" - "$GC_WORK/names.txt" <<'EOF' || return 1
import random, sys
rng = random.Random(0)
syllables = "ka ri mo na lu te si ra po vi an el or is um be da go ne li".split()
names = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(1500)]
open(sys.argv[1], "w").write("\n".join(names) + "\n")
EOF
  train_on_device lstm "$GC_WORK/names.txt" lstm
}

step_resume_cpu() {
  cd "$GC_SRC" || return 1
  # The GPU hidden: the run continues as it would on a machine without one.
  CUDA_VISIBLE_DEVICES="" PLUGKIT_BACKEND=$GC_BACKEND pk train vae --data "$GC_IMG_DATA" \
    --epochs 4 --device cpu --out "$GC_RUNS/vae" --resume --json || return 1
  "$GC_VPY" - "$GC_RUNS/vae" <<'EOF'
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()
          if line.strip()]
record = json.loads((run / "run.json").read_text())
print("metrics.jsonl epochs:", epochs, "| run.json status:", record.get("status"))
if epochs != [1, 2, 3, 4]:
    sys.exit("expected exactly one metrics row for each of epochs 1-4")
EOF
}

step_sample_cpu() {
  cd "$GC_SRC" || return 1
  local rc=0 out="$GC_LOGS/samples"
  mkdir -p "$out"
  export CUDA_VISIBLE_DEVICES="" PLUGKIT_BACKEND=$GC_BACKEND
  if [[ $GC_HAVE_PIL == 1 ]]; then
    pk sample "$GC_RUNS/vae" --per-class 8 --out "$out/vae.png" || rc=1
  else
    pk sample "$GC_RUNS/vae" --n 80 --out "$out/vae.npz" || rc=1
  fi
  pk sample "$GC_RUNS/lstm" --n 20 --out "$out/lstm.txt" || rc=1
  if [[ -f $out/lstm.txt ]]; then head -n 20 "$out/lstm.txt" | tr '\n' ' '; echo; fi
  return "$rc"
}

step_bench() {
  cd "$GC_SRC" || return 1
  local args=(--device "$GC_DEV" --json) json="$GC_LOGS/bench-kernels-$GC_DEV.json"
  if [[ $GC_BENCH_QUICK == 1 ]]; then args+=(--quick); fi
  if [[ ${GPU_CHECK_BENCH_COMPILE:-0} != 1 ]]; then args+=(--no-compile); fi
  echo "plugkit bench kernels ${args[*]} > $json"
  pk bench kernels "${args[@]}" >"$json" || return 1
  "$GC_VPY" - "$json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
m = doc["machine"]
print(f"torch {doc['torch']}; native loaded: {doc['backend']['native_loaded']}; "
      f"copy {m['copy_gbps']:.0f} GB/s, GEMM {m['gemm_gflops']:.0f} GFLOP/s")
print("| case | shape | impl | median ms | native × | achieved | % peak | note |")
print("|---|---|---|---:|---:|---:|---:|---|")
def fmt(value, spec, suffix=""):
    return "" if value is None else f"{value:{spec}}{suffix}"
broken = []
for r in doc["rows"]:
    achieved = fmt(r["gbps"], ".1f", " GB/s") or fmt(r["gflops"], ".0f", " GFLOP/s")
    print(f"| {r['case']} | {r['shape']} | {r['impl']} | {fmt(r['median_ms'], '.3f')} | "
          f"{fmt(r['native_speedup'], '.2f', '×')} | {achieved} | {fmt(r['pct_peak'], '.0f', '%')} | "
          f"{r['note'] or ''} |")
    if r["median_ms"] is None and (r["note"] or "").startswith("failed"):
        broken.append(f"{r['case']} {r['shape']} {r['impl']}: {r['note']}")
if broken:
    sys.exit("rows that failed:\n  " + "\n  ".join(broken))
EOF
}

# =============================== helper files (written by main) ===============================

write_api_shim() {
  cat >"$GC_WORK/plugkit_api.py" <<'EOF'
"""The plugkit commands gpu-check runs, through plugkit's Python API: for a Python without typer
(the CLI) or rich (its tables). Same subcommands and flags; output as with --json."""
import argparse
import dataclasses
import json
import sys
import types
from pathlib import Path


def stub_rich():
    """plugkit.bench imports rich for its table; --json never draws one."""
    try:
        import rich.box  # noqa: F401
        import rich.table  # noqa: F401
    except ImportError:
        rich, box, table = (types.ModuleType(n) for n in ("rich", "rich.box", "rich.table"))
        box.SIMPLE_HEAD = None

        class Table:
            def __init__(self, *args, **kwargs):
                raise RuntimeError("rich is not installed")

        table.Table, rich.box, rich.table = Table, box, table
        sys.modules.update({"rich": rich, "rich.box": box, "rich.table": table})


def run(a) -> int:
    if a.cmd == "doctor":
        import plugkit.ops

        report = plugkit.ops.backend()
        print(json.dumps(dataclasses.asdict(report), indent=2))
        if a.require_native and report.active != "native":
            print(f"error: the native core is not active: {report.reason}", file=sys.stderr)
            return 1
        if a.require_cuda_build and not report.cuda_compiled:
            print("error: the CUDA kernels were not compiled", file=sys.stderr)
            return 1
        return 0
    if a.cmd == "bench":
        stub_rich()
        from plugkit import bench

        rows = bench.run_kernels(a.quick, a.device, with_compile=a.compile and not a.quick)
        print(bench.main_json(rows))
        return 0
    if a.cmd == "train":
        from plugkit.training import TrainConfig, train

        config = TrainConfig(family=a.family, data=a.data, out=Path(a.out) if a.out else None,
                             epochs=a.epochs, device=a.device, options=a.option, resume=a.resume)
        train(config, lambda row: print(json.dumps(row), flush=True))
        return 0
    from plugkit.sampling import sample

    print(f"wrote {sample(a.run, a.n, a.out, a.seed, per_class=a.per_class)}")
    return 0


def main(argv) -> int:
    parser = argparse.ArgumentParser(prog="plugkit (gpu-check API shim)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    doctor = sub.add_parser("doctor")
    doctor.add_argument("--require-native", action="store_true")
    doctor.add_argument("--require-cuda-build", action="store_true")
    bench = sub.add_parser("bench")
    bench.add_argument("what", choices=["kernels"])
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--quick", action="store_true")
    bench.add_argument("--no-compile", dest="compile", action="store_false")
    train = sub.add_parser("train")
    train.add_argument("family")
    train.add_argument("--data")
    train.add_argument("--out")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--device", default="auto")
    train.add_argument("-o", "--option", action="append", default=[])
    train.add_argument("--resume", action="store_true")
    train.add_argument("--json", action="store_true")
    sample = sub.add_parser("sample")
    sample.add_argument("run")
    sample.add_argument("--n", type=int)
    sample.add_argument("--out")
    sample.add_argument("--per-class", type=int)
    sample.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from plugkit.errors import PlugkitError

    try:
        return run(args)
    except PlugkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


sys.exit(main(sys.argv[1:]))
EOF
}

write_probes() {
  cat >"$GC_WORK/probes.py" <<'EOF'
"""What tests/test_ops_*.py check on the CPU only, checked on the GPU: every native op with
non-contiguous inputs, gradcheck, opcheck, half storage, a grid-stride launch, empty tensors,
device-mismatch errors, a side stream and CUDA-graph capture (a kernel launched on any stream
but the current one fails the capture). One line per probe; exit 1 if any failed."""
import os
import sys
import time

import torch

import plugkit.ops as ops
from plugkit.ops import _backend
from plugkit.ops import gan as G
from plugkit.ops import lstm as L
from plugkit.ops import reparam as R

dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")
CUDA = dev.type == "cuda"
P = torch.ops.plugkit
torch.backends.cuda.matmul.allow_tf32 = False  # float32 GEMMs compared at 1e-5
torch.manual_seed(0)
results = {}


def probe(fn):
    """Runs fn at once; records ok / FAIL with the first line of the error."""
    if getattr(fn, "skip", None):
        print(f"skip {fn.__name__} ({fn.skip})", flush=True)
        return fn
    start = time.perf_counter()
    try:
        fn()
        if CUDA:
            torch.cuda.synchronize()  # an asynchronous fault belongs to this probe
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        results[fn.__name__] = False
        print(f"FAIL {fn.__name__}: {type(exc).__name__}: {first}", flush=True)
    else:
        results[fn.__name__] = True
        print(f"ok   {fn.__name__} ({time.perf_counter() - start:.2f} s)", flush=True)
    return fn


def cuda_only(fn):
    if not CUDA:
        fn.skip = "needs CUDA"
    return fn


def rel(actual, expected):
    a = actual.detach().double()
    b = expected.detach().double().to(a.device)
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def close(actual, expected, tol, what):
    err = rel(actual, expected)
    assert err < tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


def leaf(t):
    return t.detach().requires_grad_()


def cpu64(ts):
    return [leaf(t.detach().double().cpu()) for t in ts]


def compare(outs, grads, ref_outs, ref_grads, tol, names):
    for name, a, b in zip(names, [*outs, *grads], [*ref_outs, *ref_grads], strict=True):
        close(a, b, tol, name)


@probe
def native_kernels_registered_for_device():
    assert _backend.native_for(dev), ops.backend().reason
    key = "CUDA" if CUDA else "CPU"
    names = ["reparameterize_kl", "reparameterize_kl_backward", "philox4x32", "gan_d_loss",
             "gan_d_loss_backward", "gan_g_loss", "gan_g_loss_backward", "lstm_cell",
             "lstm_cell_backward", "lstm_layer", "lstm_layer_backward"]
    absent = [n for n in names
              if not torch._C._dispatch_has_kernel_for_dispatch_key(f"plugkit::{n}", key)]
    assert not absent, f"no {key} kernel for {absent}"


@probe
def reparam_noncontiguous_inputs():
    mu = leaf(torch.randn(33, 40, device=dev).t())  # [40, 33] transposed
    lv = leaf(torch.randn(40, 66, device=dev)[:, ::2])  # strided
    eps = torch.randn(33, device=dev).expand(40, 33)  # stride 0
    z, kl = ops.reparameterize_kl(mu, lv, eps=eps)
    go = [torch.randn_like(z), torch.randn_like(kl)]
    grads = torch.autograd.grad((z, kl), (mu, lv), go)
    m64, l64 = cpu64([mu, lv])
    z64, kl64 = R.reference(m64, l64, eps.double().cpu())
    grads64 = torch.autograd.grad((z64, kl64), (m64, l64), [g.double().cpu() for g in go])
    compare((z, kl), grads, (z64, kl64), grads64, 1e-5, ("z", "kl", "dmu", "dlogvar"))


@probe
def reparam_philox_strided_and_half():
    mu, lv = torch.randn(64, 37, device=dev), 0.1 * torch.randn(64, 37, device=dev)
    key = torch.tensor([7, (1 << 32) - 3], device=dev)
    z, kl = P.reparameterize_kl(mu, lv, None, key)
    z2, kl2 = P.reparameterize_kl(mu.t().contiguous().t(), lv.t().contiguous().t(), None, key)
    assert torch.equal(z, z2) and torch.equal(kl, kl2), "layout changed the draws"
    if CUDA:
        for dtype, tol in ((torch.float16, 2e-3), (torch.bfloat16, 2e-2)):
            zh, klh = P.reparameterize_kl(mu.to(dtype), lv.to(dtype), None, key)
            zf, klf = P.reparameterize_kl(mu.to(dtype).float(), lv.to(dtype).float(), None, key)
            assert zh.dtype == klh.dtype == dtype
            close(zh, zf, tol, f"z {dtype}")
            close(klh, klf, tol, f"kl {dtype}")


@probe
def gan_noncontiguous_inputs_every_kind():
    r = leaf(3 * torch.randn(64, 6, device=dev)[:, ::2])
    f = leaf(3 * torch.randn(8, 50, device=dev).t())
    for kind, s in (("bce", 0.1), ("hinge", 0.0), ("wasserstein", 0.0)):
        d = ops.gan_d_loss(r, f, kind=kind, label_smoothing=s)
        g = ops.gan_g_loss(f, kind=kind)
        grads = torch.autograd.grad(d + 0.5 * g, (r, f))
        r64, f64 = cpu64([r, f])
        d64, g64 = G.d_loss_reference(r64, f64, kind, s), G.g_loss_reference(f64, kind)
        grads64 = torch.autograd.grad(d64 + 0.5 * g64, (r64, f64))
        compare((d, g), grads, (d64, g64), grads64, 1e-5,
                [f"{kind} {n}" for n in ("d", "g", "dreal", "dfake")])


@probe
def lstm_cell_noncontiguous_and_half():
    B, H = 33, 157
    dtypes = [(torch.float32, 1e-5)] + ([(torch.float16, 3e-2), (torch.bfloat16, 3e-2)] * CUDA)
    for dtype, tol in dtypes:
        gates = leaf(2 * torch.randn(4 * H, B, device=dev).t().to(dtype))  # [B, 4H] transposed
        c0 = leaf(torch.randn(B, 2 * H, device=dev)[:, ::2].to(dtype))
        h, c = ops.lstm_cell(gates, c0)
        go = [torch.randn_like(h), torch.randn_like(c)]
        grads = torch.autograd.grad((h, c), (gates, c0), go)
        g64, c64 = cpu64([gates, c0])
        h64, cc64 = L.cell_reference(g64, c64)
        grads64 = torch.autograd.grad((h64, cc64), (g64, c64), [g.double().cpu() for g in go])
        assert h.dtype == c.dtype == dtype
        compare((h, c), grads, (h64, cc64), grads64, tol,
                [f"{dtype} {n}" for n in ("h", "c", "dgates", "dc_prev")])


@probe
def lstm_layer_noncontiguous_inputs():
    T, B, I, H = 6, 5, 7, 19
    inputs = [
        leaf(torch.randn(B, T, I, device=dev).transpose(0, 1)),  # x [T, B, I]
        leaf(torch.randn(B, 2 * H, device=dev)[:, ::2]),  # h0
        leaf(torch.randn(B, 2 * H, device=dev)[:, 1::2]),  # c0
        leaf(0.3 * torch.randn(I, 4 * H, device=dev).t()),  # w_ih [4H, I]
        leaf(0.3 * torch.randn(H, 4 * H, device=dev).t()),  # w_hh [4H, H]
        leaf(torch.randn(8 * H, device=dev)[::2]),  # b_ih
        leaf(torch.randn(4 * H, device=dev)),  # b_hh
    ]
    y, (hn, cn) = ops.lstm_layer(*inputs)
    go = [torch.randn_like(t) for t in (y, hn, cn)]
    grads = torch.autograd.grad((y, hn, cn), inputs, go)
    in64 = cpu64(inputs)
    y64, (hn64, cn64) = L.layer_reference(*in64)
    grads64 = torch.autograd.grad((y64, hn64, cn64), in64, [g.double().cpu() for g in go])
    compare((y, hn, cn), grads, (y64, hn64, cn64), grads64, 1e-5,
            ("y", "h_n", "c_n", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"))


def flat_layer(*args):
    y, (h_n, c_n) = ops.lstm_layer(*args)
    return y, h_n, c_n


@probe
def gradcheck_float64():
    def t(*shape):
        return torch.randn(*shape, dtype=torch.float64, device=dev, requires_grad=True)

    eps = torch.randn(3, 5, dtype=torch.float64, device=dev)
    checks = [
        (lambda m, lv: ops.reparameterize_kl(m, lv, eps=eps), (t(3, 5), t(3, 5))),
        (lambda r, f: ops.gan_d_loss(r, f, label_smoothing=0.1), (t(6, 2), t(5))),
        (lambda f: ops.gan_g_loss(f), (t(7),)),
        (ops.lstm_cell, (t(3, 16), t(3, 4))),
        (lambda *a: flat_layer(*a), (t(3, 2, 3), t(2, 4), t(2, 4), t(16, 3), t(16, 4), t(16),
                                     t(16))),
    ]
    for fn, args in checks:
        assert torch.autograd.gradcheck(fn, args)


@probe
def opcheck_on_device():
    def t(*shape, grad=True):
        return torch.randn(*shape, device=dev, requires_grad=grad)

    key = R.draw_key(dev)
    cell = (t(3, 20), t(3, 5))
    layer = (t(4, 3, 5), t(3, 6), t(3, 6), t(24, 5), t(24, 6), t(24), t(24))
    cases = [
        (P.reparameterize_kl.default, (t(4, 6), t(4, 6), t(4, 6, grad=False), None)),
        (P.reparameterize_kl.default, (t(6, 4).t(), t(6, 4).t(), None, key)),
        (P.philox4x32.default, (torch.arange(8, device=dev).view(2, 4), key)),
        (P.gan_d_loss.default, (t(3, 8).t(), t(11), "bce", 0.1)),
        (P.gan_g_loss.default, (t(11), "hinge")),
        (P.lstm_cell.default, cell),
        (P.lstm_layer.default, layer),
    ]
    with torch.no_grad():
        h, c, act = P.lstm_cell(*cell)
        y, h_n, c_n, act_seq, cs = P.lstm_layer(*layer)
    cases += [
        (P.lstm_cell_backward.default,
         (torch.randn_like(h), torch.randn_like(c), act, cell[1].detach(), c)),
        (P.lstm_layer_backward.default,
         (torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n),
          *(x.detach() for x in layer[:5]), y, act_seq, cs)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


@probe
def empty_tensors():
    z, kl = ops.reparameterize_kl(torch.zeros(0, 4, device=dev), torch.zeros(0, 4, device=dev))
    assert z.shape == (0, 4) and kl.shape == (0,)
    mu = torch.zeros(4, 0, device=dev, requires_grad=True)
    z, kl = ops.reparameterize_kl(mu, torch.zeros(4, 0, device=dev))
    assert z.shape == (4, 0) and kl.shape == (4,) and not kl.any()
    (kl.sum() + z.sum()).backward()
    assert mu.grad.shape == (4, 0)
    h, c = ops.lstm_cell(torch.zeros(0, 20, device=dev), torch.zeros(0, 5, device=dev))
    assert h.shape == c.shape == (0, 5)
    for T, B in ((0, 3), (4, 0)):
        y, (hn, cn) = ops.lstm_layer(
            torch.zeros(T, B, 3, device=dev), torch.zeros(B, 5, device=dev),
            torch.zeros(B, 5, device=dev), torch.zeros(20, 3, device=dev),
            torch.zeros(20, 5, device=dev), torch.zeros(20, device=dev),
            torch.zeros(20, device=dev))
        assert y.shape == (T, B, 5) and hn.shape == cn.shape == (B, 5)
    try:
        ops.gan_g_loss(torch.zeros(0, device=dev))
    except ValueError:
        pass
    else:
        raise AssertionError("gan_g_loss on empty logits did not raise")


@probe
@cuda_only
def device_mismatch_raises_before_launch():
    x = torch.randn(8, device=dev)
    mu, key = torch.randn(2, 3, device=dev), torch.tensor([1, 2])
    gates, c0 = torch.randn(2, 8, device=dev), torch.randn(2, 2, device=dev)
    layer = [torch.randn(2, 2, 3, device=dev), torch.randn(2, 2, device=dev),
             torch.randn(2, 2, device=dev), torch.randn(8, 3, device=dev),
             torch.randn(8, 2, device=dev), torch.randn(8, device=dev), torch.randn(8, device=dev)]
    calls = {
        "gan_d_loss fake on cpu": lambda: P.gan_d_loss(x, x.cpu(), "bce", 0.0),
        "reparameterize_kl key on cpu": lambda: P.reparameterize_kl(mu, mu, None, key),
        "philox4x32 key on cpu": lambda: P.philox4x32(torch.zeros(1, 4, dtype=torch.long,
                                                                  device=dev), key),
        "lstm_cell c_prev on cpu": lambda: P.lstm_cell(gates, c0.cpu()),
        "lstm_layer h0 on cpu": lambda: P.lstm_layer(layer[0], layer[1].cpu(), *layer[2:]),
    }
    silent = []
    for name, call in calls.items():
        try:
            call()
        except (ValueError, RuntimeError) as exc:
            assert "cpu" in str(exc), f"{name}: {exc}"
        else:
            silent.append(name)
        torch.cuda.synchronize()  # raises here if a kernel ran on a host pointer
    assert not silent, f"no error for {silent}"


def all_ops(t):
    """Every native op once, called directly (no autograd), on the tensors of `t`."""
    with torch.no_grad():
        z, kl = P.reparameterize_kl(t["mu"], t["lv"], None, t["key"])
        out = [z, kl, *P.reparameterize_kl_backward(t["gz"], t["gk"], t["mu"], t["lv"], z)]
        out += [P.gan_d_loss(t["r"], t["f"], "bce", 0.1), P.gan_g_loss(t["f"], "hinge"),
                *P.gan_d_loss_backward(t["one"], t["r"], t["f"], "bce", 0.1),
                P.gan_g_loss_backward(t["one"], t["f"], "hinge")]
        h, c, act = P.lstm_cell(t["gates"], t["c_prev"])
        out += [h, c, *P.lstm_cell_backward(t["gh"], t["gc"], act, t["c_prev"], c)]
        layer = [t[k] for k in ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")]
        y, h_n, c_n, act_seq, cs = P.lstm_layer(*layer)
        out += [y, h_n, c_n, *P.lstm_layer_backward(t["gy"], t["gh"], t["gc"], *layer[:5], y,
                                                    act_seq, cs)]
        out.append(P.philox4x32(t["counters"], t["key"]))
    return out


def op_inputs():
    B, H, T, I = 16, 32, 5, 12
    t = {"mu": torch.randn(300, 37), "lv": 0.1 * torch.randn(300, 37), "gz": torch.randn(300, 37),
         "gk": torch.randn(300), "r": torch.randn(5000), "f": torch.randn(7000),
         "one": torch.ones(()), "gates": torch.randn(B, 4 * H), "c_prev": torch.randn(B, H),
         "gh": torch.randn(B, H), "gc": torch.randn(B, H), "x": torch.randn(T, B, I),
         "h0": torch.randn(B, H), "c0": torch.randn(B, H), "w_ih": 0.3 * torch.randn(4 * H, I),
         "w_hh": 0.3 * torch.randn(4 * H, H), "b_ih": torch.randn(4 * H),
         "b_hh": torch.randn(4 * H), "gy": torch.randn(T, B, H)}
    t = {k: v.to(dev) for k, v in t.items()}
    t["key"] = torch.tensor([123, 456], device=dev)
    t["counters"] = torch.randint(0, 2**32, (64, 4), device=dev)
    return t


def assert_all_close(got, want, what):
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: output {i} shape/dtype"
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6), (
            f"{what}: output {i} differs by {(a.double() - b.double()).abs().max().item():.2e}")


@probe
@cuda_only
def side_stream():
    t = op_inputs()
    expected = all_ops(t)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = all_ops(t)
    torch.cuda.current_stream().wait_stream(stream)
    assert_all_close(got, expected, "side stream")


@probe
@cuda_only
def cuda_graph_capture_and_replay():
    t = op_inputs()
    warm = torch.cuda.Stream()
    warm.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(warm):  # cuBLAS handles and workspaces before the capture
        all_ops(t)
    torch.cuda.current_stream().wait_stream(warm)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = all_ops(t)
    fresh = op_inputs()  # new values into the captured inputs: the replay must read them
    for k, v in fresh.items():
        t[k].copy_(v)
    graph.replay()
    torch.cuda.synchronize()
    assert_all_close(captured, all_ops(fresh), "graph replay")


@probe
@cuda_only
def lstm_cell_grid_stride():
    if os.environ.get("PROBE_QUICK") == "1":
        return
    B, H = 2048, 8200  # B*H > 65536 blocks x 256 threads: every thread loops
    gates = leaf(torch.randn(B, 4 * H, device=dev))
    c0 = leaf(torch.randn(B, H, device=dev))
    h, c = ops.lstm_cell(gates, c0)
    go = [torch.randn_like(h), torch.randn_like(c)]
    grads = torch.autograd.grad((h, c), (gates, c0), go)
    with ops.use_backend("torch"):
        hr, cr = ops.lstm_cell(gates, c0)
    grads_r = torch.autograd.grad((hr, cr), (gates, c0), go)
    compare((h, c), grads, (hr, cr), grads_r, 1e-5, ("h", "c", "dgates", "dc_prev"))


failed = [name for name, ok in results.items() if not ok]
print(f"{len(results) - len(failed)} probes ok, {len(failed)} failed{': ' if failed else ''}"
      + ", ".join(failed))
sys.exit(1 if failed else 0)
EOF
}

# ======================================== the driver ========================================

say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

run_step() {  # FN CAP TITLE [TAIL_LINES]
  local fn=$1 cap=$2 title=$3 tail_n=${4:-15}
  STEP=$((STEP + 1))
  local log left limit start rc ms verdict
  log="$GC_LOGS/$(printf '%02d' "$STEP")-$fn.log"
  left=$(((DEADLINE_MS - $(now_ms)) / 1000))
  cap=$((cap * SCALE))
  limit=$((cap < left ? cap : left))
  if ((limit < 3)); then
    skip_step "$title" "the ${BUDGET} s budget is spent"
    return 1
  fi
  say ""
  say "## $STEP. $title"
  say "started $(date -u +%T) UTC, timeout ${limit} s"
  start=$(now_ms)
  timeout -k 5 "$limit" bash "$SELF" --step "$fn" >"$log" 2>&1 </dev/null &
  CHILD=$!
  wait "$CHILD"
  rc=$?
  CHILD=""
  ms=$(($(now_ms) - start))
  if ((rc == 0)); then
    verdict=PASS
  elif ((rc == 124 || rc == 137)); then
    verdict=TIMEOUT
  else
    verdict=FAIL
  fi
  say "**$verdict**: exit $rc after $(secs "$ms") s (log: ${log#"$SUMMARY_DIR"/})"
  say '```'
  tail -n "$tail_n" "$log" | cut -c1-400 | tee -a "$SUMMARY"
  say '```'
  RESULTS+=("| $STEP. $title | $verdict | $rc | $(secs "$ms") | $limit |")
  [[ $verdict == PASS ]] || FAILED+=("$STEP")
  return "$rc"
}

skip_step() {  # TITLE REASON
  STEP=$((STEP + 1))
  say ""
  say "## $STEP. $1"
  say "**NOT RUN**: $2"
  RESULTS+=("| $STEP. $1 | not run | | | |")
  FAILED+=("$STEP")
}

finish() {  # EXIT_CODE
  local code=$1 total
  trap - TERM INT HUP
  total=$(secs $(($(now_ms) - T0_MS)))
  # the runs' records and samples come back with the logs
  if [[ -d ${GC_RUNS:-} ]]; then
    local run
    for run in "$GC_RUNS"/*/; do
      [[ -d $run ]] || continue
      run=${run%/}
      mkdir -p "$GC_LOGS/runs/${run##*/}"
      cp "$run"/run.json "$run"/metrics.jsonl "$GC_LOGS/runs/${run##*/}/" 2>/dev/null
    done
  fi
  say ""
  say "## Result"
  say ""
  say "| step | result | exit | seconds | timeout |"
  say "|---|---|---:|---:|---:|"
  local row
  for row in "${RESULTS[@]}"; do say "$row"; done
  say ""
  if ((code == 0 && ${#FAILED[@]} > 0)); then code=1; fi
  if ((code == 0)); then
    say "**ALL PASSED** in $total s (budget $BUDGET s)."
  elif ((code == 2)); then
    say "**NOTHING CHECKED** ($total s): $GC_GPU_REASON. Nothing was built."
  else
    say "**FAILED** (steps ${FAILED[*]:-?}; exit $code) in $total s (budget $BUDGET s)."
  fi
  if [[ ${GPU_CHECK_KEEP:-0} == 1 ]]; then
    say "Summary: $SUMMARY; logs, test output, bench JSON and samples: $GC_LOGS; scratch kept: $GC_WORK"
  else
    rm -rf "$GC_WORK"
    say "Summary: $SUMMARY; logs, test output, bench JSON and samples: $GC_LOGS"
  fi
  exit "$code"
}

on_signal() {
  local sig=$1 _
  if [[ -n ${CHILD:-} ]]; then
    kill -TERM "$CHILD" 2>/dev/null
    for _ in 1 2 3 4 5; do kill -0 "$CHILD" 2>/dev/null || break; sleep 1; done
    kill -KILL "$CHILD" 2>/dev/null
  fi
  say ""
  say "**CUT OFF** by SIG$sig during step $STEP"
  RESULTS+=("| $STEP. (cut off by SIG$sig) | cut off | | | |")
  FAILED+=("$STEP")
  finish 1
}

main() {
  BUDGET=${GPU_CHECK_BUDGET:-300}
  SCALE=${GPU_CHECK_TIMEOUT_SCALE:-1}  # every step's timeout times this (a slow machine)
  T0_MS=$(now_ms)
  DEADLINE_MS=$((T0_MS + BUDGET * 1000))
  STEP=0 CHILD="" RESULTS=() FAILED=()

  if [[ -n ${1:-} ]]; then
    SUMMARY=$1
  elif [[ -n ${GPU_CHECK_SUMMARY:-} ]]; then
    SUMMARY=$GPU_CHECK_SUMMARY
  elif [[ -n ${OUT:-} ]]; then
    SUMMARY=$OUT/gpu-check.md
  else
    SUMMARY=$ROOT/gpu-check/summary.md
  fi
  [[ $SUMMARY == /* ]] || SUMMARY=$PWD/$SUMMARY
  mkdir -p "$(dirname "$SUMMARY")" || exit 1
  SUMMARY_DIR=$(cd "$(dirname "$SUMMARY")" && pwd)
  SUMMARY=$SUMMARY_DIR/$(basename "$SUMMARY")
  GC_LOGS=${GPU_CHECK_DIR:-${OUT:+$OUT/gpu-check}}
  GC_LOGS=${GC_LOGS:-$SUMMARY_DIR}
  [[ $GC_LOGS == /* ]] || GC_LOGS=$PWD/$GC_LOGS
  mkdir -p "$GC_LOGS" || exit 1
  GC_WORK=$(mktemp -d "${TMPDIR:-/tmp}/plugkit-gpu-check.XXXXXX") || exit 1
  GC_PLUMBING=${GPU_CHECK_PLUMBING:-0}
  GC_RUNS=$GC_WORK/runs
  if [[ $GC_PLUMBING == 1 ]]; then
    GC_VENV=$(cd "${GPU_CHECK_VENV:?GPU_CHECK_PLUMBING=1 needs GPU_CHECK_VENV}" && pwd)
    GC_SRC=$ROOT GC_DEV=cpu
    export PYTHONDONTWRITEBYTECODE=1
  else
    GC_VENV=$GC_WORK/venv GC_SRC=$GC_WORK/src GC_DEV=cuda
  fi
  GC_VPY=$GC_VENV/bin/python
  GC_PY="" GC_CLI=api GC_BACKEND=native GC_BENCH_QUICK=0 GC_IMG_DATA=digits GC_GPU_REASON=""
  export GC_LOGS GC_WORK GC_PLUMBING GC_RUNS GC_VENV GC_SRC GC_DEV GC_VPY GC_PY GC_CLI GC_BACKEND \
    GC_BENCH_QUICK GC_IMG_DATA
  # caches of the tools the steps run stay in the scratch folder
  export TORCHINDUCTOR_CACHE_DIR=$GC_WORK/inductor TRITON_CACHE_DIR=$GC_WORK/triton \
    PLUGKIT_CACHE=$GC_WORK/plugkit-cache MPLCONFIGDIR=$GC_WORK/matplotlib

  : >"$SUMMARY"
  say "# plugkit GPU check"
  say ""
  say "Started $(date -u +%FT%TZ) on $(hostname 2>/dev/null || echo '?'); tree $ROOT" \
    "($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git'))," \
    "budget $BUDGET s. Each step is appended when it ends: a step that has a start line and" \
    "no result was cut off."
  trap 'on_signal TERM' TERM
  trap 'on_signal INT' INT
  trap 'on_signal HUP' HUP

  if ! run_step environment 20 "environment: GPU, CUDA toolkit, the Python with torch" 25; then
    # shellcheck source=/dev/null
    [[ -f $GC_WORK/env.sh ]] && source "$GC_WORK/env.sh"
    GC_GPU_REASON=${GC_GPU_REASON:-the environment step failed}
    finish 2
  fi
  # shellcheck source=/dev/null
  source "$GC_WORK/env.sh"
  export GC_PY GC_ARCH GC_CUDA_HOME
  if [[ $GC_PLUMBING == 1 ]]; then say "**Plumbing mode**: $GC_GPU_REASON."; fi

  run_step dependencies 10 "runtime dependencies of plugkit in $GC_PY (nothing is fetched)" 25
  # shellcheck source=/dev/null
  source "$GC_WORK/deps.env" 2>/dev/null || GC_HAVE_NUMPY=0
  say "Missing: ${GC_MISSING:-unknown (the step failed)}"
  export GC_HAVE_PIL=${GC_HAVE_PIL:-0}
  if [[ ${GC_HAVE_TYPER:-0} == 1 && ${GC_HAVE_RICH:-0} == 1 ]]; then GC_CLI=cli; fi

  if ! run_step venv 15 "venv over the preinstalled torch; the tree copied to scratch"; then
    finish 1
  fi

  if [[ $GC_PLUMBING == 1 ]]; then
    skip_step "build" "plumbing mode uses the existing venv's build"
  elif ! run_step build 140 "build: pip install --no-build-isolation --no-deps --no-index -e . (CUDA for sm ${GC_ARCH})" 25; then
    # the rest still runs, on the PyTorch fallback, so the families and resume are checked
    GC_BACKEND=torch
    run_step build_without_native 30 "install without the native core (PLUGKIT_NATIVE=0): the rest runs on the fallback" ||
      finish 1
  fi
  write_api_shim
  write_probes

  local required="--require-native"
  if [[ $GC_DEV == cuda ]]; then required+=" --require-cuda-build"; fi
  run_step doctor 15 "plugkit doctor $required; the build's arch list against the GPU" 25
  if [[ ${GC_HAVE_PYTEST:-0} == 1 ]]; then
    run_step cuda_tests 30 "CUDA tests of tests/test_ops_*.py and tests/test_backend.py" 25
  else
    skip_step "CUDA tests" "pytest is not installed in $GC_PY"
  fi
  run_step probes 15 "CUDA probes beyond the tests (non-contiguous, gradcheck, opcheck, streams, graphs)" 25

  if [[ ${GC_HAVE_NUMPY:-0} == 1 && ${GC_HAVE_SAFETENSORS:-0} == 1 ]]; then
    if [[ ${GC_HAVE_SKLEARN:-0} != 1 ]]; then
      GC_IMG_DATA=$GC_WORK/images.npz
      "$GC_VPY" -c '
import sys, numpy as np
rng = np.random.default_rng(0)
y = rng.integers(0, 10, 1500)
x = (rng.random((1500, 8, 8)) < (0.2 + 0.06 * y[:, None, None])).astype(np.float32)
np.savez(sys.argv[1], x=x, y=y)' "$GC_IMG_DATA"
      say "scikit-learn is missing: vae and gan train on generated 8x8 images ($GC_IMG_DATA)."
    fi
    export GC_BACKEND GC_IMG_DATA
    local on="on $GC_DEV, PLUGKIT_BACKEND=$GC_BACKEND"
    run_step train_vae 10 "train vae on ${GC_IMG_DATA##*/}, 3 epochs $on"
    run_step train_gan 10 "train gan on ${GC_IMG_DATA##*/}, 3 epochs $on"
    run_step train_lstm 10 "train lstm on a small text (1500 names), 3 epochs $on"
    run_step resume_cpu 10 "resume the $GC_DEV-written vae run on the CPU (GPU hidden) for epoch 4"
    run_step sample_cpu 15 "sample the vae and lstm runs on the CPU (GPU hidden)"
  else
    skip_step "training, resume and sampling" "numpy or safetensors is missing"
  fi

  # The bench takes what the budget has left: its full shapes when there is time, else --quick.
  local left=$(((DEADLINE_MS - $(now_ms)) / 1000 - 2))
  if [[ $GC_PLUMBING == 1 || $left -lt 45 ]]; then GC_BENCH_QUICK=1; fi
  export GC_BENCH_QUICK
  local bench_cap=$((left < 150 ? left : 150)) quick=""
  if [[ $GC_BENCH_QUICK == 1 ]]; then quick=" --quick"; fi
  if ((bench_cap >= 10)); then
    run_step bench "$bench_cap" "plugkit bench kernels --device $GC_DEV$quick --json" 40
  else
    skip_step "plugkit bench kernels" "only $left s of the budget left"
  fi
  finish 0
}

if [[ ${1:-} == --step ]]; then
  "step_$2"
  exit $?
fi
main "$@"
