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
# VGG16's weights: Caffe's (the preset's model.pretrained: caffe, with Caffe's input
# normalisation) when `ohem data download vgg16-caffe` has put them in the cache; else
# torchvision's when its VGG16 file is in the torch hub cache; else random weights
# (--pretrained none); one line says which. Another backbone keeps its config's. The preset is
# fp32: AMP_MODES measures it against AMP. Environment overrides
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
# Caffe's VGG16 in the user's cache, looked up before the cache moves to OUT for the proposals.
CAFFE_VGG16=$(python3 -c "from ohemcli.model.caffe_vgg16 import caffe_vgg16_path as p; print(p())")
export OHEM_CACHE=${OHEM_CACHE:-$OUT/cache}
mkdir -p "$OUT"
start=$SECONDS

if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
python3 -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', \
torchvision.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version())"
read -r -a PRETRAINED <<< "$(python3 -c "
import os, sys, torch
from torchvision.models import VGG16_Weights
from ohemcli.cli.overrides import config_text
from ohemcli.config import parse_config
text, where = config_text(sys.argv[1], {})
if parse_config(text, where).model.backbone != 'vgg16':
    print('')
elif os.path.isfile(sys.argv[2]):
    print('--pretrained caffe --weights', sys.argv[2])
else:
    name = os.path.basename(VGG16_Weights.IMAGENET1K_V1.url)
    cached = os.path.isfile(os.path.join(torch.hub.get_dir(), 'checkpoints', name))
    print('--pretrained', 'torchvision' if cached else 'none')" "$CONFIG" "$CAFFE_VGG16")"
echo "weights: ${PRETRAINED[*]:-as the config says} (results in $OUT)"

# 1. Each sampler side by side in one process, AMP off then on (the first call also computes
#    and caches the selective-search proposals, outside the timed steps).
for amp in $AMP_MODES; do
  python3 -m ohemcli bench --data "$DATA" --config "$CONFIG" ${PRETRAINED[@]+"${PRETRAINED[@]}"} --device "$DEVICE" \
    "$amp" --iters "$ITERS" --warmup "$WARMUP" --workers "$WORKERS" --json > "$OUT/bench$amp.json"
done
python3 benchmarks/gpu_summary.py "$OUT"/bench*.json

# 2. End to end under the last AMP mode: training loop, hnm's mining pass, evaluation, summary.
amp=${AMP_MODES##* }
python3 -m ohemcli compare --data "$DATA" --config "$CONFIG" ${PRETRAINED[@]+"${PRETRAINED[@]}"} --device "$DEVICE" \
  "$amp" --iters "$E2E_ITERS" --eval-points 1 --workers "$WORKERS" --out "$OUT/compare" \
  --no-progress > "$OUT/compare.txt"
python3 benchmarks/gpu_summary.py "$OUT"/compare/runs/*/summary.json
echo "gpu_check: done in $((SECONDS - start)) s"
