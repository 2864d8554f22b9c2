#!/usr/bin/env bash
# Regenerate tests/fixtures/model/ (see tools/reference/README.md). Extra arguments go to
# make_fixtures.py, e.g. --only tiny-f32 or --qwen3vl build/bin/qwen3vl.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${QWEN3VL_PYTHON:-python3}"
exec "$py" "$here/make_fixtures.py" "$@"
