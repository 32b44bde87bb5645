#!/usr/bin/env bash
# The GPU check for a bare, lent GPU machine, in under 5 minutes (estimated: ~1 min set-up and
# proposals, ~1 min bench, ~2 min runs on one H100; not measured yet). It
#   1. checks that ohemcli imports (else `pip install -e .`; one line says what is missing);
#   2. takes VOC_ROOT, else ../shared/data/voc100 beside the checkout, else a small synthetic set;
#   3. runs every built-in sampler and the example plugin (hard_after_warmup) for a few
#      iterations each, AMP off and on (`ohem bench`: s/iter, peak memory, loss, host syncs);
#   4. trains one run, resumes it to twice the iterations, and checks its summary;
#   5. checks that two training steps under the last AMP mode change the RoI head's weights;
#   6. runs a 2-GPU torchrun job for a few steps when two GPUs are visible;
#   7. prints one table; the exit status is 1 when any check failed.
#
#   bash benchmarks/gpu_check.sh [VOC_ROOT] [ITERS]
#
# VGG16's weights: Caffe's when `ohem data download vgg16-caffe` put them in the cache, else
# torchvision's when torch hub has them, else random (WEIGHTS=caffe|torchvision|none forces one).
# Environment (the test suite runs this script on the CPU with them): DEVICE (cuda), CONFIG
# (voc07_vgg16), AMP_MODES ("--no-amp --amp"), WARMUP (2), WORKERS (4), TRAINVAL (16) and TEST
# (8) synthetic images, OUT (a new temporary folder).
set -uo pipefail
DATA=${1:-}
ITERS=${2:-3}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-voc07_vgg16}
AMP_MODES=${AMP_MODES:---no-amp --amp}
WARMUP=${WARMUP:-2}
WORKERS=${WORKERS:-4}
TRAINVAL=${TRAINVAL:-16}
TEST=${TEST:-8}
WEIGHTS=${WEIGHTS:-auto}
OUT=${OUT:-$(mktemp -d -t ohem-gpu-check.XXXXXX)}
if [[ -n "$DATA" ]]; then DATA=$(cd "$DATA" && pwd) || exit 2; fi
cd "$(dirname "$0")/.." || exit 2
REPO=$PWD
export PYTHONPATH="$REPO:$REPO/experiments/plugins${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"
STEPS="python3 $REPO/benchmarks/gpu_check_steps.py"
start=$SECONDS

record() {  # record NAME STATUS DETAIL
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RESULTS"
}

check() {  # check NAME COMMAND...: run it, log its output, record ok or FAIL with its last line
  local name=$1 log
  shift
  log="$OUT/$(echo "$name" | tr -c 'a-zA-Z0-9-' '_').log"
  if "$@" > "$log" 2>&1; then
    record "$name" ok "$(tail -n 1 "$log" | tr '\t|' '  ')"
  else
    record "$name" FAIL "$(tail -n 1 "$log" | tr '\t|' '  ') (log: $log)"
  fi
}

# 1. What the machine has; ohemcli installed when it does not import.
if ! python3 -c "import ohemcli, torch, torchvision" 2>/dev/null; then
  pip install -q -e "$REPO" > "$OUT/install.log" 2>&1 || {
    echo "gpu_check: ohemcli is not importable and 'pip install -e .' failed: $(tail -n 1 "$OUT/install.log")"
    exit 2
  }
fi
if [[ "$DEVICE" == cuda ]]; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "gpu_check: torch $(python3 -c 'import torch; print(torch.__version__)') sees no CUDA device"
    exit 2
  }
fi
python3 -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', \
torchvision.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version())"

# 2. Data: the given root, else the shared VOC sample beside the checkout, else synthetic.
if [[ -z "$DATA" && -d "$REPO/../shared/data/voc100/ImageSets" ]]; then
  DATA=$(cd "$REPO/../shared/data/voc100" && pwd)
fi
if [[ -z "$DATA" ]]; then
  DATA="$OUT/synth"
  $STEPS synth "$DATA" "$TRAINVAL" "$TEST" || exit 1
fi
echo "data: $DATA (results in $OUT)"
$STEPS config "$CONFIG" "$OUT/check.yaml" "$WEIGHTS" || exit 1
COMMON=(--data "$DATA" --config "$OUT/check.yaml" --device "$DEVICE" --workers "$WORKERS")
SAMPLERS=$(python3 -c "from ohemcli.samplers import SAMPLERS; print(','.join(SAMPLERS))")
SAMPLERS="$SAMPLERS,hard_after_warmup:HardAfterWarmup"

# 3. Every sampler, AMP off and on, in one process per mode.
for amp in $AMP_MODES; do
  if python3 -m ohemcli bench "${COMMON[@]}" "$amp" --samplers "$SAMPLERS" --iters "$ITERS" \
    --warmup "$WARMUP" --mining-runs 1 --json > "$OUT/bench$amp.json" 2> "$OUT/bench$amp.log"; then
    $STEPS bench-rows "$OUT/bench$amp.json" "$RESULTS" || true
  else
    record "bench $amp" FAIL "$(tail -n 1 "$OUT/bench$amp.log") (log: $OUT/bench$amp.log)"
  fi
done
last_amp=${AMP_MODES##* }

# 4. Train, then resume to twice the iterations.
RUN=(python3 -m ohemcli train "${COMMON[@]}" --sampler ohem --out "$OUT/resume")
check "train ohem $ITERS iters" "${RUN[@]}" "$last_amp" --iters "$ITERS"
check "resume ohem to $((2 * ITERS))" "${RUN[@]}" "$last_amp" --iters "$((2 * ITERS))" --resume
check "resumed summary" $STEPS summary-iters "$OUT/resume/summary.json" "$((2 * ITERS))"

# 5. The head trains under the last AMP mode.
check "head weights change ($last_amp)" $STEPS head-change "$OUT/check.yaml" "$DATA" "$DEVICE" \
  "$last_amp" "$OUT/head"

# 6. Two GPUs: one torchrun job.
gpus=$(python3 -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [[ "$DEVICE" == cuda && "$gpus" -ge 2 ]]; then
  check "torchrun 2 GPUs" torchrun --standalone --nproc_per_node 2 -m ohemcli train "${COMMON[@]}" \
    --sampler fixed --iters "$ITERS" --out "$OUT/ddp"
else
  record "torchrun 2 GPUs" skipped "$gpus GPU(s) visible on $DEVICE"
fi

# 7. One table, and the verdict.
$STEPS table "$RESULTS"
status=$?
echo "gpu_check: done in $((SECONDS - start)) s"
exit $status
