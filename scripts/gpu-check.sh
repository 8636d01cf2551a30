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
# Files:   the Python the steps run is in scripts/gpu_check/, one file per job, each saying what
#          it is; from step 3 on the steps run the scratch copy's files.
set -uo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd)"

now_ms() { date +%s%3N; }
cores() { env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; }  # nproc obeys OMP_NUM_THREADS
secs() { printf '%d.%d' "$(($1 / 1000))" "$((($1 % 1000) / 100))"; }

# The plugkit command: the real CLI when typer and rich are importable, else gpu_check/api_shim.py
# (same subcommands and flags, JSON output).
pk() {
  if [[ $GC_CLI == cli ]]; then
    "$GC_VENV/bin/plugkit" "$@"
  else
    "$GC_VPY" "$GC_TOOLS/api_shim.py" "$@"
  fi
}

# =============================== steps (each: bash SELF --step NAME) ===============================
# Everything a step needs comes from the GC_* variables that main exports.

step_environment() {
  echo "host $(hostname 2>/dev/null || echo '?'), $(uname -srm), $(cores) CPUs, $(date -u +%FT%TZ)"
  local smi_ok=0
  nvidia_smi && smi_ok=1
  choose_python
  local torch_cuda="" arch="" fields=()
  if [[ -n $PY ]]; then
    mapfile -t fields < <("$PY" "$GC_TOOLS/torch_info.py" fields "$PY_INFO")
    torch_cuda=${fields[0]:-} arch=${fields[1]:-}
  fi
  choose_toolkit "$torch_cuda"
  arch=${GPU_CHECK_ARCH:-$arch}

  local gpu_ok=0 reason=""
  if [[ -z $PY ]]; then
    reason="no Python with torch found (tried:${TRIED:- nothing}); set GPU_CHECK_PYTHON"
  elif [[ $GC_PLUMBING == 1 ]]; then
    gpu_ok=1 reason="everything runs on the CPU, no CUDA is checked"
  elif [[ $PY_INFO == *'"available": true'* ]]; then
    gpu_ok=1
  elif [[ -z $torch_cuda ]]; then
    reason="torch at $PY is a CPU-only build (torch.version.cuda is None)"
  elif ((smi_ok)); then
    reason="nvidia-smi sees a GPU but torch ($torch_cuda) cannot use it (driver too old for torch's CUDA, or CUDA_VISIBLE_DEVICES)"
  else
    reason="no NVIDIA GPU visible (nvidia-smi missing or failing; torch.cuda.is_available() is False)"
  fi
  {
    printf 'GC_PY=%q\n' "$PY"
    printf 'GC_ARCH=%q\n' "$arch"
    printf 'GC_CUDA_HOME=%q\n' "$TOOLKIT"
    printf 'GC_GPU_REASON=%q\n' "$reason"
  } >"$GC_WORK/env.sh"

  echo
  echo "python: ${PY:-none}"
  if [[ -n $PY ]]; then "$PY" "$GC_TOOLS/torch_info.py" describe "$PY_INFO"; fi
  echo "CUDA_HOME: ${TOOLKIT:-none} (nvcc ${NVCC:-none}); TORCH_CUDA_ARCH_LIST: ${arch:-none}"
  if [[ -n $torch_cuda && -n $NVCC && ${torch_cuda%%.*} != "${NVCC%%.*}" ]]; then
    echo "WARNING: nvcc $NVCC and torch's CUDA $torch_cuda differ in major version;"
    echo "         torch.utils.cpp_extension refuses that build (set CUDA_HOME to a matching toolkit)"
  fi
  if ((gpu_ok)); then
    echo "verdict: GPU check can run${reason:+ ($reason)}"
    return 0
  fi
  echo "NO GPU CHECK HERE: $reason"
  return 3
}

nvidia_smi() {  # what nvidia-smi sees; fails when it is missing or fails
  if ! command -v nvidia-smi >/dev/null; then
    echo "nvidia-smi: not found"
    return 1
  fi
  if timeout 10 nvidia-smi; then
    timeout 10 nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap \
      --format=csv 2>/dev/null || true
  else
    echo "nvidia-smi failed (exit $?)"
    return 1
  fi
}

# The Python that has torch: the first candidate whose torch sees a GPU, else the first with torch.
# Sets PY (empty: none), PY_INFO (its torch_info.py JSON) and TRIED.
choose_python() {
  local candidates=() p info fallback="" fallback_info=""
  PY="" PY_INFO="" TRIED=""
  if [[ $GC_PLUMBING == 1 ]]; then candidates+=("$GC_VENV/bin/python"); fi
  candidates+=("${GPU_CHECK_PYTHON:-}" python3 python /opt/conda/bin/python /usr/bin/python3
               /usr/local/bin/python3)
  for p in "${candidates[@]}"; do
    [[ -n $p ]] || continue
    p=$(command -v "$p" 2>/dev/null) || continue
    [[ " $TRIED " == *" $p "* ]] && continue
    TRIED="$TRIED $p"
    info=$(timeout 20 "$p" "$GC_TOOLS/torch_info.py" 2>/dev/null | tail -n 1)
    echo "python $p: ${info:-no answer}"
    [[ $info == *'"torch":'* ]] || continue
    if [[ $info == *'"available": true'* ]]; then PY=$p PY_INFO=$info; return; fi
    [[ -z $fallback ]] && fallback=$p fallback_info=$info
  done
  PY=$fallback PY_INFO=$fallback_info
}

# The CUDA toolkit: $CUDA_HOME when set, else the first whose nvcc has torch's CUDA major version
# (torch refuses to build with an nvcc of another major), else the first found. Sets TOOLKIT and
# NVCC (its release), both empty when there is none.
choose_toolkit() {  # TORCH_CUDA
  local torch_cuda=$1 d v p cands=() first="" match=""
  if [[ -n ${CUDA_HOME:-} ]]; then cands+=("$CUDA_HOME"); fi
  cands+=(/usr/local/cuda /usr/local/cuda-*)
  if p=$(command -v nvcc 2>/dev/null); then cands+=("$(dirname "$(dirname "$(readlink -f "$p")")")"); fi
  for d in "${cands[@]}"; do
    [[ -x $d/bin/nvcc ]] || continue
    v=$(nvcc_release "$d")
    echo "CUDA toolkit $d: nvcc ${v:-?}"
    first=${first:-$d}
    if [[ -z $match && -n $torch_cuda && ${v%%.*} == "${torch_cuda%%.*}" ]]; then match=$d; fi
    if [[ -n ${CUDA_HOME:-} && $d == "$CUDA_HOME" ]]; then match=$d; break; fi  # the user's choice
  done
  TOOLKIT=${match:-$first} NVCC=""
  if [[ -n $TOOLKIT ]]; then NVCC=$(nvcc_release "$TOOLKIT"); fi
}

nvcc_release() { "$1/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\),.*/\1/p'; }

step_dependencies() {
  "$GC_PY" "$GC_TOOLS/dependencies.py" "$GC_WORK/deps.env"
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
  if [[ ! -f $GC_SRC/scripts/gpu_check/probes.py ]]; then
    echo "the copy lacks scripts/gpu_check/ (the Python the next steps run)"
    return 1
  fi
  if ! "$GC_PY" -m venv --system-site-packages "$GC_VENV"; then
    echo "venv with pip failed (no ensurepip?); trying --without-pip (pip from the base Python)"
    rm -rf "$GC_VENV"
    "$GC_PY" -m venv --system-site-packages --without-pip "$GC_VENV" || return 1
  fi
  # A venv sees the *base* interpreter's site-packages; when the Python that has torch is itself a
  # venv (or has a user site), its folders come in through this .pth (base_site.py says how).
  local site
  site=$("$GC_VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return 1
  "$GC_PY" "$GC_TOOLS/base_site.py" >"$site/_plugkit_gpu_check_base.pth"
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
  "$GC_VPY" "$GC_TOOLS/build_arch.py" "$GC_DEV" || rc=1
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
  CUDA_LAUNCH_BLOCKING=1 "$GC_VPY" "$GC_TOOLS/probes.py" "$GC_DEV"
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
  "$GC_VPY" "$GC_TOOLS/train_data.py" names "$GC_WORK/names.txt" || return 1
  train_on_device lstm "$GC_WORK/names.txt" lstm
}

step_resume_cpu() {
  cd "$GC_SRC" || return 1
  # The GPU hidden: the run continues as it would on a machine without one.
  CUDA_VISIBLE_DEVICES="" PLUGKIT_BACKEND=$GC_BACKEND pk train vae --data "$GC_IMG_DATA" \
    --epochs 4 --device cpu --out "$GC_RUNS/vae" --resume --json || return 1
  "$GC_VPY" "$GC_TOOLS/resume_check.py" "$GC_RUNS/vae"
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
  "$GC_VPY" "$GC_TOOLS/bench_table.py" "$json"
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
  GC_TOOLS=$ROOT/scripts/gpu_check  # the Python the steps run; the copy's once there is one
  GC_PY="" GC_CLI=api GC_BACKEND=native GC_BENCH_QUICK=0 GC_IMG_DATA=digits GC_GPU_REASON=""
  export GC_LOGS GC_WORK GC_PLUMBING GC_RUNS GC_VENV GC_SRC GC_DEV GC_VPY GC_TOOLS GC_PY GC_CLI \
    GC_BACKEND GC_BENCH_QUICK GC_IMG_DATA
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
  source "$GC_WORK/deps.env" 2>/dev/null
  say "Missing: ${GC_MISSING:-unknown (the step failed)}"
  export GC_HAVE_PIL=${GC_HAVE_PIL:-0}
  if [[ ${GC_HAVE_TYPER:-0} == 1 && ${GC_HAVE_RICH:-0} == 1 ]]; then GC_CLI=cli; fi

  if ! run_step venv 15 "venv over the preinstalled torch; the tree copied to scratch"; then
    finish 1
  fi
  GC_TOOLS=$GC_SRC/scripts/gpu_check

  if [[ $GC_PLUMBING == 1 ]]; then
    skip_step "build" "plumbing mode uses the existing venv's build"
  elif ! run_step build 140 "build: pip install --no-build-isolation --no-deps --no-index -e . (CUDA for sm ${GC_ARCH})" 25; then
    # the rest still runs, on the PyTorch fallback, so the families and resume are checked
    GC_BACKEND=torch
    run_step build_without_native 30 "install without the native core (PLUGKIT_NATIVE=0): the rest runs on the fallback" ||
      finish 1
  fi

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
      "$GC_VPY" "$GC_TOOLS/train_data.py" images "$GC_IMG_DATA"
      say "scikit-learn is missing: vae and gan train on generated 8x8 images ($GC_IMG_DATA)."
    fi
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
