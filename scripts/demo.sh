#!/usr/bin/env bash
# The main job for a newcomer: install dependencies, build, and answer a question about an image
# with a Qwen3-VL checkpoint. With no argument it makes a tiny RANDOM-WEIGHT model (the answer is
# gibberish by design: it shows the whole pipeline running); pass a real checkpoint folder, e.g. one
# downloaded with `huggingface-cli download Qwen/Qwen3-VL-2B-Instruct --local-dir Qwen3-VL-2B-Instruct`.
#   bash scripts/demo.sh [MODEL_DIR] [IMAGE] [QUESTION]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
MODEL=${1:-}
IMAGE=${2:-assets/rocket.jpg}
QUESTION=${3:-What is in this image?}
if [ -z "$MODEL" ]; then
  MODEL=build/models/tiny
  [ -f "$MODEL/config.json" ] || build/bin/qwen3vl make-model --preset tiny --seed 0 --out "$MODEL"
  build/bin/qwen3vl inspect "$MODEL" --no-table
  echo "(tiny random-weight model: expect gibberish)"
fi
build/bin/qwen3vl run -m "$MODEL" --image "$IMAGE" -p "$QUESTION" -n 64 --verbose
