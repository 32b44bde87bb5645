#!/usr/bin/env bash
# The CUDA check for a session that is lent a GPU (see DEVELOPERS.md): one short script that
# exercises AMP, timings and peak memory on real VOC images, and prints the figures to report.
# Usage (from the repository root, with ../shared/data copied into shared-data/ or DATA set):
#   DATA=path/to/voc100 bash benchmarks/gpu_check.sh
set -euo pipefail
DATA=${DATA:-../shared/data/voc100}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -m pip install -q -e . --no-deps
# 1. The paper's network (random init: the GPU machine has no network for ImageNet weights),
#    each sampler timed side by side, without and with AMP.
for amp in --no-amp --amp; do
  ohem bench --data "$DATA" --config voc07_vgg16 --no-pretrained --device cuda $amp \
    --iters 20 --warmup 5 --workers 4 --json
done
# 2. A short end-to-end run per sampler on CUDA with AMP: the loop, the mining pass, evaluation.
ohem compare --data "$DATA" --config voc07_vgg16 --no-pretrained --device cuda --amp \
  --iters 60 --eval-points 1 --workers 4 --out "${OUT:-/tmp}/gpu-compare" --no-progress
