#!/usr/bin/env bash
# One prepared run of the benchmarks on a GPU machine, JSON out, in under 8 minutes:
#   1. install from the project's own files: make install ACCEL=cuda12 (skipped with a note when
#      it fails, e.g. offline, if a Python with the harness is already there);
#   2. the ~1B decoder's train step at its 1-GPU recipe (gin_configs/runs/decoder_1b_1gpu.gin:
#      bfloat16, scan, remat save_projections, 8 microbatches): benchmarks/recipe_throughput.py;
#   3. every attention kernel the backend has, forward + backward: benchmarks/attention.py
#      (tolerated when absent);
#   4. the fixed tiny shapes of benchmarks/train_throughput.py (every architecture).
# Each step runs under its own time limit, and no step starts past the total (470 s).
#
#   OUT=figures bash benchmarks/accelerator.sh            # writes OUT/*.json and OUT/*.log
#   bash benchmarks/accelerator.sh --dry-run              # prints the commands, runs nothing
#
# Environment: OUT (default benchmarks/accelerator_out), ACCEL (default cuda12), PY (the Python
# after installing; default .venv/bin/python, else python3). OUT/accelerator.json lists each
# step's exit status, seconds and output file; OUT/<step>.json holds its figures.
set -u -o pipefail

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $arg (expected --dry-run or --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-benchmarks/accelerator_out}"
ACCEL="${ACCEL:-cuda12}"
TOTAL_LIMIT_S=470
RECIPE=(--gin_file=gin_configs/arch/causal_decoder.gin --gin_file=gin_configs/data/c4.gin
        --gin_file=gin_configs/objectives/full_lm.gin --gin_file=gin_configs/runs/decoder_1b_1gpu.gin)
START_S=$(date +%s)
STEPS_JSON=""

python_bin() {
  if [ -n "${PY:-}" ]; then echo "$PY"; elif [ -x .venv/bin/python ]; then echo .venv/bin/python
  else echo python3; fi
}

# run_step NAME LIMIT_S OUTPUT_FILE COMMAND...: stdout to OUT/OUTPUT_FILE, stderr to OUT/NAME.log.
run_step() {
  local name="$1" limit="$2" output="$3"
  shift 3
  if [ "$DRY_RUN" = 1 ]; then
    echo "timeout ${limit}s $* > $OUT/$output 2> $OUT/$name.log"
    return 0
  fi
  local now left rc t0
  now=$(date +%s)
  left=$((TOTAL_LIMIT_S - (now - START_S)))
  if [ "$left" -lt 20 ]; then
    echo "skip $name: ${left}s left of ${TOTAL_LIMIT_S}s" >&2
    STEPS_JSON="$STEPS_JSON{\"step\": \"$name\", \"skipped\": true},"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  echo "== $name (limit ${limit}s): $*" >&2
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$output" 2> "$OUT/$name.log"
  rc=$?
  STEPS_JSON="$STEPS_JSON{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 )), \"limit_s\": $limit, \"timed_out\": $([ $rc = 124 ] || [ $rc = 137 ] && echo true || echo false), \"output\": \"$output\"},"
  echo "   rc $rc after $(( $(date +%s) - t0 ))s" >&2
}

[ "$DRY_RUN" = 1 ] || mkdir -p "$OUT"
run_step install 100 install.txt make install ACCEL="$ACCEL"
PYTHON="$(python_bin)"
# JAX preallocates 75% of the GPU by default; the recipe is sized for ~45 GiB of an 80 GB device.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
run_step train_1b 180 train_1b.json "$PYTHON" -m benchmarks.recipe_throughput --json --steps=5 \
  --warmup=2 "${RECIPE[@]}"
if [ -f benchmarks/attention.py ]; then
  run_step attention 90 attention.json "$PYTHON" -m benchmarks.attention --json
else
  echo "benchmarks/attention.py is absent: attention step skipped" >&2
  STEPS_JSON="$STEPS_JSON{\"step\": \"attention\", \"skipped\": true, \"reason\": \"benchmarks/attention.py absent\"},"
fi
run_step train_tiny 60 train_tiny.json "$PYTHON" -m benchmarks.train_throughput --json --no_probe \
  --steps=10

if [ "$DRY_RUN" = 0 ]; then
  GPU="$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  printf '{"gpu": "%s", "total_seconds": %d, "total_limit_s": %d, "steps": [%s]}\n' \
    "$GPU" "$(( $(date +%s) - START_S ))" "$TOTAL_LIMIT_S" "${STEPS_JSON%,}" > "$OUT/accelerator.json"
  cat "$OUT/accelerator.json"
fi
