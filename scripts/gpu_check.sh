#!/usr/bin/env bash
# One-shot GPU check of atrous: build the CUDA kernels, then test and benchmark them on this GPU.
#
#   scripts/gpu_check.sh OUTDIR
#
# For a machine with a GPU, torch (a CUDA build), nvcc and ninja, and no package registry. Steps,
# each with its own time limit so the whole run stays under 10 minutes on one H200:
#   1. check the Python modules it needs (and say which are missing, and what that skips)
#   2. build the extension in place for the visible GPU's architecture   -> OUTDIR/build.log
#   3. python -m atrous.info                                              -> OUTDIR/info.txt, info.json
#   4. the CUDA tests: pytest -m cuda (every device-parametrized property, gradcheck, opcheck and
#      compile test on CUDA, our CUDA kernels against our CPU kernels, the half-type tolerance
#      table, streams, 64-bit indices)                                    -> OUTDIR/pytest-cuda.log, .xml
#   5. compute-sanitizer memcheck and racecheck on scripts/sanitizer_cases.py (every op and rung
#      once on small tensors; it also compares the values with F.conv2d)
#                                                       -> OUTDIR/memcheck.log, racecheck.log
#   6. the CUDA benchmark: python -m atrous bench --device cuda --quick   -> OUTDIR/bench/
#   7. the depthwise ladder on the middle-flow shape, both layouts        -> OUTDIR/ladder/
# OUTDIR/summary.txt lists each step's status and time; it is copied, with the machine and the
# benchmark table, to tutorials/assets/gpu_check/ for tutorial 05. Exit status 0 only if every
# step passed.
# Environment: PYTHON (default: .venv/bin/python if present, else python3), MAX_JOBS (default: all
# cores), TORCH_CUDA_ARCH_LIST (default: the visible GPU's compute capability).
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
OUT="$(cd "$1" && pwd)"
cd "$ROOT"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PATH="$(dirname "$(command -v "$PYTHON")"):$PATH"  # ninja installed beside this Python
export MPLBACKEND=Agg OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
STARTED=$(date +%s)
DEADLINE=$((STARTED + 580))  # 9 min 40 s: every step's limit is cut to fit before it
FAILED=0
: > "$OUT/summary.txt"

note() { echo "$*" | tee -a "$OUT/summary.txt"; }

# step NAME CAP_S RESERVE_S LOG COMMAND...: runs COMMAND under `timeout`, output to the terminal
# and LOG. Its limit is CAP_S, or less so that RESERVE_S seconds remain for the later steps
# before the deadline; a step left under 10 s is skipped.
step() {
  local name=$1 cap=$2 reserve=$3 log=$4
  shift 4
  local t0=$(date +%s) status
  local limit=$(( DEADLINE - t0 - reserve ))
  (( limit > cap )) && limit=$cap
  if (( limit < 10 )); then
    note "SKIPPED $name: no time left before the 8-minute deadline"
    FAILED=1
    return 1
  fi
  echo "=== $name (limit ${limit}s) ==="
  timeout -s INT -k 15 "$limit" "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  local took=$(( $(date +%s) - t0 ))
  if [[ $status -eq 0 ]]; then
    note "ok      $name (${took}s)"
  elif [[ $status -eq 124 || $status -eq 130 || $status -eq 137 ]]; then
    note "TIMEOUT $name after ${took}s (limit ${limit}s; see $(basename "$log"))"
    FAILED=1
  else
    note "FAILED  $name (exit $status, ${took}s; see $(basename "$log"))"
    FAILED=1
  fi
  return $status
}

# 1. What this machine has.
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)  python: $PYTHON  commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
  command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not on PATH (setup.py also looks in CUDA_HOME and /usr/local/cuda*)"
} 2>&1 | tee "$OUT/machine.txt"
MISSING=$("$PYTHON" - <<'PY'
import importlib.util, shutil
need = {"torch": "everything", "setuptools": "the build", "numpy": "torch's tensors <-> the tests",
        "pytest": "the CUDA tests", "hypothesis": "the CUDA tests (property tests import it)",
        "matplotlib": "the benchmark's chart only (numbers and JSON still written)",
        "triton": "the torch.compile(inductor) test on CUDA"}
missing = [f"{m} (needed for {why})" for m, why in need.items() if importlib.util.find_spec(m) is None]
if shutil.which("ninja") is None and importlib.util.find_spec("ninja") is None:
    missing.append("ninja (needed for the build: torch's extension builder runs it)")
print("\n".join(missing))
PY
)
if [[ -n "$MISSING" ]]; then
  note "MISSING Python modules or tools (install them from a wheel or a local mirror):"
  while IFS= read -r line; do note "          $line"; done <<< "$MISSING"
fi
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  note "FAILED  no GPU visible to torch (torch.cuda.is_available() is False): nothing to check"
  exit 1
fi
if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
  TORCH_CUDA_ARCH_LIST=$("$PYTHON" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
  export TORCH_CUDA_ARCH_LIST
fi
note "GPU arch TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"

# 2. Build in place, CUDA required (ATROUS_WITH_CUDA=1 makes a missing toolkit an error).
if ! step "build (setup.py build_ext --inplace)" 200 200 "$OUT/build.log" \
    env ATROUS_WITH_CUDA=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PYTHON" setup.py build_ext --inplace; then
  note "the build failed: nothing else can run"
  exit 1
fi

# 3. What was built.
step "python -m atrous.info" 30 300 "$OUT/info.txt" "$PYTHON" -m atrous.info
"$PYTHON" -m atrous.info --json > "$OUT/info.json" 2>/dev/null

# 4. The CUDA tests (every test marked `cuda`), plus the build checks that need no GPU.
if [[ "$MISSING" == *pytest* || "$MISSING" == *hypothesis* ]]; then
  note "SKIPPED the CUDA tests: pytest and hypothesis are needed (see MISSING above)"
  FAILED=1
else
  step "pytest -m cuda" 190 240 "$OUT/pytest-cuda.log" \
    "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider --junitxml="$OUT/pytest-cuda.xml" tests
  step "pytest build checks" 30 220 "$OUT/pytest-build.log" \
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/ops/test_conv_index.py \
    tests/extension/test_build.py::test_every_operator_has_a_cuda_kernel_when_cuda_is_compiled \
    tests/extension/test_build.py::test_info_lists_the_compiled_cuda_architectures \
    tests/extension/test_build.py::test_cuda_sources_compiled_when_expected
fi

# 5. compute-sanitizer on a small subset: out-of-bounds and misaligned accesses (memcheck) and
# shared-memory hazards between threads (racecheck: a missing __syncthreads shows up here).
SANITIZER="$(command -v compute-sanitizer || true)"
if [[ -z "$SANITIZER" && -n "${CUDA_HOME:-}" && -x "$CUDA_HOME/bin/compute-sanitizer" ]]; then
  SANITIZER="$CUDA_HOME/bin/compute-sanitizer"
fi
if [[ -z "$SANITIZER" ]]; then
  SANITIZER=$(ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
fi
if [[ -z "$SANITIZER" ]]; then
  note "SKIPPED compute-sanitizer: not found (PATH, \$CUDA_HOME/bin, /usr/local/cuda*/bin)"
  FAILED=1
else
  for tool in memcheck racecheck; do
    step "compute-sanitizer --tool $tool" 60 120 "$OUT/$tool.log" \
      "$SANITIZER" --tool "$tool" --error-exitcode 3 "$PYTHON" scripts/sanitizer_cases.py
  done
fi

# 6. and 7. The benchmark: PyTorch on NCHW (its native depthwise kernel) and channels_last
# (cuDNN) as baselines, TF32 off, CUDA events, L2 flushed before each timed run (hot times too).
step "bench --device cuda --quick" 75 30 "$OUT/bench.log" \
  "$PYTHON" -m atrous bench --device cuda --quick --out "$OUT/bench"
step "bench --ladder depthwise_conv2d" 45 0 "$OUT/ladder.log" \
  "$PYTHON" -m atrous bench --device cuda --ladder depthwise_conv2d --shapes os16-middle-dw728 --batch 8 \
  --rung-budget 5 --out "$OUT/ladder"

note "total $(( $(date +%s) - STARTED ))s; results in $OUT"
# What tutorial 05 (the emulator lab) shows: the summary, the machine and the benchmark table, in the repository.
ASSETS="$ROOT/tutorials/assets/gpu_check"
mkdir -p "$ASSETS"
cp "$OUT/summary.txt" "$OUT/machine.txt" "$ASSETS/"
[[ -f "$OUT/bench/bench.md" ]] && cp "$OUT/bench/bench.md" "$ASSETS/bench.md"
[[ -f "$OUT/bench/bench.json" ]] && cp "$OUT/bench/bench.json" "$ASSETS/bench.json"
echo "copied the summary to $ASSETS (commit it)"
exit $FAILED
