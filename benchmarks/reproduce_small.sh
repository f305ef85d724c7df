#!/usr/bin/env bash
# The small reproduction of Xie et al. (ICLR 2025): ResNet-18s trained on distance, translation,
# rotation and category, 3 seeds each, on an embedded dataset with full variability and on two
# reduced ones (one category; centred), with a snapshot half-way, plus untrained ResNet-18s, then
# `latentzoo reproduce` on all of them. Sized for about 1.5 hours on 2 quiet CPU cores (no GPU):
#   render   3 x 6,000 images at 64 px (35 degree field of view)              ~  1 min
#   train    30 runs x 200 steps of batch 32 at 32 px (~0.35 s a step)       ~ 35 min
#   score    30 models + 12 snapshots + 3 untrained on the 16 spatial-latent
#            benchmarks, first 320 of their 640 stimuli (~12 s each)        ~ 10 min
#   analyse  CKA, MDS, decoding (paper protocol) on 300 held-out images     ~ 30 min
# Category is not trained on the one-category set, nor translation on the centred one (their
# targets are constant there). With a GPU, raise STEPS/SIZE/N_IMAGES and set DEVICE=cuda.
#
# Usage: benchmarks/reproduce_small.sh [OUT]   (default ./reproduce-small; a rerun resumes)
set -euo pipefail

OUT=${1:-reproduce-small}
LZ=${LZ:-.venv/bin/latentzoo}
IMAGES=${IMAGES:-6000}
STEPS=${STEPS:-200}
N_IMAGES=${N_IMAGES:-300}  # evaluation images of the analyses (decoding costs ~45 CPU s per model at 300)
BENCHMARK_IMAGES=${BENCHMARK_IMAGES:-320}  # spatial-benchmark stimuli scored (of 640)
FOV=${FOV:-35}            # objects 1.7x larger in the frame than at the default 60 degrees
SIZE=${SIZE:-32}
DEVICE=${DEVICE:-auto}
BACKGROUNDS=${BACKGROUNDS:-none}  # as the quickstart: short runs at 32 px learn category and rotation on plain grey
SEEDS=(0 1 2)
# the quickstart's procedural families without a vertical symmetry axis (rotation is learnable)
CATEGORIES=(chair car airplane arrow letter_l hammer teapot bench bed table)
export BS_INSTALL_DEPENDENCIES=no AWS_EC2_METADATA_DISABLED=true

mkdir -p "$OUT"
render() {  # render NAME [options]
  local name=$1; shift
  "$LZ" render --out "$OUT/data/$name" --images "$IMAGES" --size 64 --seed 0 --shard-size 1000 \
    --backgrounds "$BACKGROUNDS" --fov "$FOV" --quiet "$@"
}
render full --categories "${CATEGORIES[@]}"
render one-category --categories car
render centred --categories "${CATEGORIES[@]}" --centered

models=()
for data in full one-category centred; do
  for objective in distance translation rotation category; do
    [[ $data == one-category && $objective == category ]] && continue
    [[ $data == centred && $objective == translation ]] && continue
    for seed in "${SEEDS[@]}"; do
      folder="$OUT/models/$data/$objective-s$seed"
      snapshots=()
      [[ $data == full ]] && snapshots=(--snapshot-steps $((STEPS / 2)))
      if [[ ! -f "$folder/model.safetensors" ]]; then
        "$LZ" train --data "$OUT/data/$data" --objective "$objective" --seed "$seed" --steps "$STEPS" \
          --batch-size 32 --size "$SIZE" --workers 1 --checkpoint-every 100 --device "$DEVICE" --quiet \
          --out "$folder" --resume "${snapshots[@]}"
      fi
      models+=("$folder")
    done
  done
done
for seed in "${SEEDS[@]}"; do models+=("untrained-r18-s$seed"); done

# Brain-Score scores on the spatial-latent benchmarks (the public ones need their data downloaded);
# trained folders get the authors' ResNet-18 category layer map (zoo ids keep theirs).
"$LZ" reproduce --models "${models[@]}" --data "$OUT/data/full" "$OUT/data/one-category" "$OUT/data/centred" \
  --benchmarks latentzoo.{Distance,Translation,Rotation,Category}-{V1,V2,V4,IT} \
  --layer-map V1=layer1 V2=layer3 V4=layer2 IT=layer3 --n-images "$N_IMAGES" \
  --benchmark-images "$BENCHMARK_IMAGES" --out "$OUT/report" --quiet
echo "report: $OUT/report/index.html"
