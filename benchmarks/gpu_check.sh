#!/usr/bin/env bash
# The GPU check: the paper's preset (VGG16, 600 px, B=128, N=2) on real VOC images, each sampler
# for a few hundred iterations with AMP off and on. Prints per sampler: s/iter (median after
# warm-up; with hnm's mining pass spread over its epoch), peak CUDA memory (reset per sampler)
# and the loss after N iterations (an EMA, weight 0.1 per step); then a short end-to-end compare
# (loop, mining pass, evaluation) under AMP. Aimed at 3-4 minutes on an H100/H200, ITERS=200.
#
#   bash benchmarks/gpu_check.sh VOC_ROOT [ITERS]
#   e.g. bash benchmarks/gpu_check.sh ../shared/data/voc100 200
#
# ImageNet weights are used when torchvision's VGG16 file is in the torch hub cache; otherwise
# the network starts from random weights (--no-pretrained) and says so. Environment overrides
# (the test suite runs this script on the CPU with them): DEVICE (cuda), CONFIG (voc07_vgg16),
# AMP_MODES ("--no-amp --amp"), WARMUP (10), E2E_ITERS (60), WORKERS (4), OUT (a new temporary
# folder).
set -euo pipefail
DATA=${1:?usage: bash benchmarks/gpu_check.sh VOC_ROOT [ITERS]}
ITERS=${2:-200}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-voc07_vgg16}
AMP_MODES=${AMP_MODES:---no-amp --amp}
WARMUP=${WARMUP:-10}
E2E_ITERS=${E2E_ITERS:-60}
WORKERS=${WORKERS:-4}
OUT=${OUT:-$(mktemp -d -t ohem-gpu-check.XXXXXX)}
DATA=$(cd "$DATA" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OHEM_CACHE=${OHEM_CACHE:-$OUT/cache}
mkdir -p "$OUT"
start=$SECONDS

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python3 -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', \
torchvision.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version())"
PRETRAINED=$(python3 -c "
import os, torch
from torchvision.models import VGG16_Weights
name = os.path.basename(VGG16_Weights.IMAGENET1K_V1.url)
print('--pretrained' if os.path.isfile(os.path.join(torch.hub.get_dir(), 'checkpoints', name)) else '--no-pretrained')")
echo "VGG16 weights: $PRETRAINED (results in $OUT)"

# 1. Each sampler side by side in one process, AMP off then on (the first call also computes
#    and caches the selective-search proposals, outside the timed steps).
for amp in $AMP_MODES; do
  python3 -m ohemcli bench --data "$DATA" --config "$CONFIG" "$PRETRAINED" --device "$DEVICE" \
    "$amp" --iters "$ITERS" --warmup "$WARMUP" --workers "$WORKERS" --json > "$OUT/bench$amp.json"
done
python3 benchmarks/gpu_summary.py "$OUT"/bench*.json

# 2. End to end under the last AMP mode: training loop, hnm's mining pass, evaluation, summary.
amp=${AMP_MODES##* }
python3 -m ohemcli compare --data "$DATA" --config "$CONFIG" "$PRETRAINED" --device "$DEVICE" \
  "$amp" --iters "$E2E_ITERS" --eval-points 1 --workers "$WORKERS" --out "$OUT/compare" \
  --no-progress > "$OUT/compare.txt"
python3 benchmarks/gpu_summary.py "$OUT"/compare/runs/*/summary.json
echo "gpu_check: done in $((SECONDS - start)) s"
