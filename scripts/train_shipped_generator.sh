#!/bin/sh
# Reproduce the shipped EfficientNet-Lite0 generator (neuronscope/generators/weights/).
# Photos: the offline photo set (`make photos`, ~/.cache/neuronscope/photos); 10% held out by file-name hash.
# One CPU thread; the run is resumable: re-run the same command after an interruption.
set -e
PHOTOS=${NEURONSCOPE_PHOTOS:-$HOME/.cache/neuronscope/photos}
OUT=${1:-generator_run_lite0}
RESUME=""
[ -f "$OUT/checkpoint.pt" ] || [ -f "$OUT/bank.pt" ] && RESUME="--resume"
exec neuronscope train-generator efficientnet_lite0 --layer head.act --grid 2 --images "$PHOTOS/images" \
  --size 64 --code-size 128 --augs 10 --batch 16 --full-every 3 --lr 6e-4 --steps 6000 --hours 1.35 \
  --ckpt-minutes 4 --threads 1 --seed 0 --out "$OUT" $RESUME
