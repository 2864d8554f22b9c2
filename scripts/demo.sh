#!/usr/bin/env bash
# The main job for a newcomer: install dependencies, build, make a tiny random-weight model and
# inspect it. Pass a checkpoint folder to inspect that instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
MODEL=${1:-}
if [ -z "$MODEL" ]; then
  MODEL=build/models/tiny
  [ -f "$MODEL/config.json" ] || build/bin/qwen3vl make-model --preset tiny --seed 0 --out "$MODEL"
fi
build/bin/qwen3vl inspect "$MODEL"
