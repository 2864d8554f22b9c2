#!/usr/bin/env bash
# Side-by-side benchmark: qwen3vl vs llama.cpp (and optionally HF transformers) on the same CPU, the
# same threads and the same weights (one HF Qwen3-VL checkpoint folder, written as GGUF for llama.cpp).
#
#   bench/compare_llamacpp.sh [options] [MODEL_DIR]
#
# MODEL_DIR defaults to a random-weight 2B bf16 checkpoint made once with
# `qwen3vl make-model --preset 2b --dtype bf16` in the cache. Everything downloaded or built lives in
# the cache dir (default /work/bench-cache, or $QWEN3VL_BENCH_CACHE), never in the repository:
#   dl/                   llama-cpp-python sdist (pinned below) from PyPI
#   llama.cpp-VERSION/    its vendored llama.cpp source, build/ inside (llama-bench, llama-quantize,
#                         llama-mtmd-cli; -DGGML_NATIVE=ON, Release, -j2, nice)
#   venv-gguf/            python venv: numpy, pyyaml, tqdm, requests, pillow + the sdist's gguf-py
#   gguf/NAME-HASH/       text-{bf16,q8_0,q4_0,q4_k_m}.gguf, mmproj-f16.gguf, vision-stub-bf16.gguf
#   images/               test images (assets/rocket.jpg resized to S x S, PNG)
#   results/STAMP/        round-K/{llama,qwen3vl}/ raw JSON, logs, /usr/bin/time -v output per round,
#                         summary.md (or --out DIR)
# See bench/README.md for what is measured and how.
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION=0.3.36   # pinned: its sdist vendors the llama.cpp we build

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${QWEN3VL_BENCH_CACHE:-/work/bench-cache}
THREADS=2
REPS=3
ROUNDS=1
PP=512
TG=128
VISION=448,1024
FORMATS=bf16,q8_0,q4_0,q4_k_m
ONLY=text,vision
QWEN3VL=$REPO/build/bin/qwen3vl
HF_PYTHON=/work/venv/bin/python
PRESET=2b
OUT=
NICE=0
JOBS=2

usage() {
  cat <<EOF
usage: bench/compare_llamacpp.sh [options] [MODEL_DIR]

  -t, --threads N     threads for every engine (default $THREADS)
  -r, --reps N        timed repetitions after one warm-up (default $REPS)
  --rounds N          run the whole comparison N times, the engines alternating (llama.cpp first in
                      odd rounds, qwen3vl first in even ones); the summary gives each round's ratios
                      and their median, so a drift of the machine's speed hits both engines alike
                      (default $ROUNDS)
  -p N                prefill length (default $PP)      -n N   decode tokens (default $TG)
  --vision LIST       square image sizes for the vision encoder (default $VISION; empty: none)
  --formats LIST      text formats among bf16,q8_0,q4_0,q4_k_m (default $FORMATS)
                      (q8_0/q4_0 run qwen3vl with --quant q8/q4 once bench has --quant; q4_k_m is
                       llama.cpp only)
  --only LIST         parts to run among text,vision,hf (default $ONLY; hf = HF transformers
                      float32 + bfloat16 via bench/hf_bench.py)
  --engines LIST      llama,qwen3vl (default both)
  --quick             smoke test: -p 64 -n 16 -r 1, vision 448, formats bf16,q4_0
  --qwen3vl BIN       qwen3vl binary (default build/bin/qwen3vl)
  --hf-python PY      python with torch+transformers for the hf part (default $HF_PYTHON)
  --preset NAME       preset of the default random model (default $PRESET)
  --cache DIR         cache dir (default $CACHE)
  --out DIR           results dir (default CACHE/results/UTC-STAMP)
  --nice N            run the benchmarks under nice -n N (default $NICE; builds always use nice)
  -h, --help
EOF
}

MODEL=
QUICK=0
ENGINES=llama,qwen3vl
while [[ $# -gt 0 ]]; do
  case $1 in
    -t|--threads) THREADS=$2; shift 2 ;;
    -r|--reps) REPS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -p) PP=$2; shift 2 ;;
    -n) TG=$2; shift 2 ;;
    --vision) VISION=$2; shift 2 ;;
    --formats) FORMATS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --engines) ENGINES=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --qwen3vl) QWEN3VL=$2; shift 2 ;;
    --hf-python) HF_PYTHON=$2; shift 2 ;;
    --preset) PRESET=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --nice) NICE=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) [[ -z $MODEL ]] || { echo "error: one MODEL_DIR only" >&2; exit 2; }; MODEL=$1; shift ;;
  esac
done
if [[ $QUICK == 1 ]]; then PP=64; TG=16; REPS=1; VISION=448; FORMATS=bf16,q4_0; fi

has() { [[ ",$1," == *",$2,"* ]]; }
for f in ${FORMATS//,/ }; do
  case $f in bf16|q8_0|q4_0|q4_k_m) ;; *) echo "error: unknown format $f" >&2; exit 2 ;; esac
done
for p in ${ONLY//,/ }; do
  case $p in text|vision|hf) ;; *) echo "error: unknown part $p (text, vision, hf)" >&2; exit 2 ;; esac
done
[[ -x $QWEN3VL ]] || { echo "error: $QWEN3VL not found: build it (cmake + ninja qwen3vl) or pass --qwen3vl" >&2; exit 1; }

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
OUT=${OUT:-$CACHE/results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "error: --rounds must be a positive integer" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/run.log
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }
RUN=(nice -n "$NICE")
TIMEV=(/usr/bin/time -v)
[[ -x /usr/bin/time ]] || { echo "error: /usr/bin/time (GNU time, Debian package 'time') is needed for peak RSS" >&2; exit 1; }

SRC=$CACHE/llama.cpp-$LLAMA_CPP_PYTHON_VERSION
BIN=$SRC/build/bin
VENV=$CACHE/venv-gguf
PY=$VENV/bin/python

setup_llama() {
# ------------------------------------------------------------------ python venv + llama.cpp source
if [[ ! -x $PY ]]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q numpy pyyaml tqdm requests pillow
fi
if [[ ! -f $SRC/CMakeLists.txt ]]; then
  SDIST=$CACHE/dl/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz
  if [[ ! -f $SDIST ]]; then
    log "downloading llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist from PyPI"
    "$VENV/bin/pip" download -q --no-binary :all: --no-deps "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$CACHE/dl"
  fi
  log "extracting vendor/llama.cpp"
  tmp=$(mktemp -d "$CACHE/extract.XXXXXX")
  tar -xzf "$SDIST" -C "$tmp" "llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
  mv "$tmp/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp" "$SRC"
  rm -rf "$tmp"
fi
if ! "$PY" -c "import gguf, PIL" 2>/dev/null; then
  log "installing gguf-py from $SRC/gguf-py into $VENV"
  "$VENV/bin/pip" install -q "$SRC/gguf-py" pillow
fi

# ------------------------------------------------------------------ build llama.cpp (cached)
if [[ ! -x $BIN/llama-bench || ! -x $BIN/llama-quantize || ! -x $BIN/llama-mtmd-cli ]]; then
  log "building llama.cpp $LLAMA_CPP_PYTHON_VERSION (llama-bench, llama-quantize, llama-mtmd-cli; -j$JOBS, nice)"
  gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
  nice -n 10 cmake -S "$SRC" -B "$SRC/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF >"$CACHE/llama-cmake.log" 2>&1 || { tail -20 "$CACHE/llama-cmake.log"; exit 1; }
  nice -n 10 cmake --build "$SRC/build" -j "$JOBS" --target llama-bench llama-quantize llama-mtmd-cli \
    >"$CACHE/llama-build.log" 2>&1 || { tail -30 "$CACHE/llama-build.log"; exit 1; }
fi
}
MEMBW=$CACHE/bin/membw
if [[ ! -x $MEMBW || $REPO/bench/membw.c -nt $MEMBW ]]; then
  mkdir -p "$CACHE/bin"
  cc -O3 -march=native -fopenmp "$REPO/bench/membw.c" -o "$MEMBW"
fi

# ------------------------------------------------------------------ model + GGUF files
if [[ -z $MODEL ]]; then
  MODEL=$CACHE/models/$PRESET-bf16
  if [[ ! -f $MODEL/config.json ]]; then
    log "making random $PRESET bf16 checkpoint in $MODEL"
    "$QWEN3VL" make-model --preset "$PRESET" --dtype bf16 --out "$MODEL" >>"$LOG" 2>&1
  fi
fi
MODEL=$(cd "$MODEL" && pwd)
[[ -f $MODEL/config.json ]] || { echo "error: $MODEL/config.json not found" >&2; exit 1; }
key=$( (cat "$MODEL/config.json"; stat -c '%n %s %Y' "$MODEL"/*.safetensors) | sha1sum | cut -c1-10)
G=$CACHE/gguf/$(basename "$MODEL")-$key
make_gguf() {
mkdir -p "$G"
if [[ ! -f $G/text-bf16.gguf || ! -f $G/mmproj-f16.gguf ]]; then
  log "converting $MODEL to GGUF (bench/safetensors_to_gguf.py)"
  nice -n 10 "$PY" "$REPO/bench/safetensors_to_gguf.py" "$MODEL" --text "$G/text-bf16.gguf.tmp" \
    --mmproj "$G/mmproj-f16.gguf.tmp" >>"$LOG" 2>&1
  mv "$G/text-bf16.gguf.tmp" "$G/text-bf16.gguf"; mv "$G/mmproj-f16.gguf.tmp" "$G/mmproj-f16.gguf"
fi
if [[ ! -f $G/vision-stub-bf16.gguf ]]; then
  nice -n 10 "$PY" "$REPO/bench/safetensors_to_gguf.py" "$MODEL" --text "$G/vision-stub-bf16.gguf.tmp" \
    --text-layers 1 --name vision-stub >>"$LOG" 2>&1  # 1 is raised to DeepStack count + 1
  mv "$G/vision-stub-bf16.gguf.tmp" "$G/vision-stub-bf16.gguf"
fi
for f in ${FORMATS//,/ }; do
  [[ $f == bf16 || -f $G/text-$f.gguf ]] && continue
  log "llama-quantize -> $f"
  nice -n 10 "$BIN/llama-quantize" "$G/text-bf16.gguf" "$G/text-$f.gguf.tmp" "${f^^}" "$THREADS" \
    >"$G/quantize-$f.log" 2>&1 || { tail -20 "$G/quantize-$f.log"; exit 1; }
  mv "$G/text-$f.gguf.tmp" "$G/text-$f.gguf"
done
mkdir -p "$CACHE/images"
for s in ${VISION//,/ }; do
  img=$CACHE/images/rocket-$s.png
  [[ -f $img ]] || "$PY" -c "
from PIL import Image; import sys
Image.open(sys.argv[1]).convert('RGB').resize((int(sys.argv[2]),) * 2, Image.BICUBIC).save(sys.argv[3])
" "$REPO/assets/rocket.jpg" "$s" "$img"
done
}
if has "$ENGINES" llama; then setup_llama; make_gguf; fi

# ------------------------------------------------------------------ run
HAS_QUANT=0; "$QWEN3VL" bench --help 2>&1 | grep -q -- '--quant' && HAS_QUANT=1
cat >"$OUT/meta.json" <<EOF
{"model": "$MODEL", "gguf_dir": "$G", "threads": $THREADS, "reps": $REPS, "rounds": $ROUNDS, "pp": $PP, "tg": $TG,
 "vision": "$VISION", "formats": "$FORMATS", "only": "$ONLY", "engines": "$ENGINES",
 "llama_cpp_python": "$LLAMA_CPP_PYTHON_VERSION", "qwen3vl": "$QWEN3VL", "qwen3vl_has_quant": $HAS_QUANT,
 "qwen3vl_git": "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet 2>/dev/null || echo +dirty)",
 "nice": $NICE, "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')",
 "nproc": $(nproc), "mem_gib": $(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo),
 "kernel": "$(uname -r)", "date_utc": "$(date -u +%FT%TZ)", "uptime_start": "$(uptime)"}
EOF
log "results -> $OUT ($(uptime | sed 's/.*load/load/'))"

quant_flag() {  # qwen3vl --quant value for a text format, or empty when it has no counterpart
  case $1 in bf16) echo none ;; q8_0) echo q8 ;; q4_0) echo q4 ;; *) echo "" ;; esac
}

# One engine's text run into round dir $1: format $2, part $3 (pp: prefill only; tg: decode only).
# Prefill and decode run as separate processes so that within a round the two engines' decode runs
# (and then their prefill runs) are adjacent: the machine's speed drifts within minutes.
text_llama() {
  local R=$1 f=$2 part=$3 p n
  if [[ $part == pp ]]; then p=$PP; n=0; else p=0; n=$TG; fi
  log "llama-bench $f $part: -p $p -n $n -t $THREADS -r $REPS"
  "${RUN[@]}" "${TIMEV[@]}" -o "$R/llama/bench-$f-$part.time" "$BIN/llama-bench" -m "$G/text-$f.gguf" \
    -p "$p" -n "$n" -t "$THREADS" -r "$REPS" -o json >"$R/llama/bench-$f-$part.json" 2>"$R/llama/bench-$f-$part.log" \
    || log "llama-bench $f $part failed (see $R/llama/bench-$f-$part.log)"
  # The bandwidth limit for llama.cpp's decode: the same GGUF pages it just streamed, read right after.
  if [[ $part == tg ]]; then
    "${RUN[@]}" "$MEMBW" "$THREADS" 0 3 "$G/text-$f.gguf" >"$R/llama/membw-$f.json" 2>>"$LOG" || true
  fi
}
text_qwen3vl() {
  local R=$1 f=$2 part=$3 q qarg=() p n bw
  q=$(quant_flag "$f")
  [[ -n $q ]] || return 0
  if [[ $q != none ]]; then
    if [[ $HAS_QUANT == 0 ]]; then log "qwen3vl bench has no --quant yet: skipping qwen3vl $f"; return 0; fi
    qarg=(--quant "$q")
  elif [[ $HAS_QUANT == 1 ]]; then
    qarg=(--quant none)
  fi
  # tg: --mem-bw 1 reads the decoder weights before and after each timed decode repetition
  # (outside the timed span) and reports each repetition as a fraction of that bandwidth limit.
  if [[ $part == pp ]]; then p=$PP; n=0; bw=0; else p=""; n=$TG; bw=1; fi
  log "qwen3vl bench $f $part: -p '$p' -n $n -t $THREADS -r $REPS ${qarg[*]}"
  "${RUN[@]}" "${TIMEV[@]}" -o "$R/qwen3vl/text-$f-$part.time" "$QWEN3VL" bench -m "$MODEL" -p "$p" -n "$n" \
    --depth 0 --ttft 0 --vision "" -t "$THREADS" -r "$REPS" "${qarg[@]}" --mem-bw "$bw" --json \
    >"$R/qwen3vl/text-$f-$part.json" 2>"$R/qwen3vl/text-$f-$part.log" || log "qwen3vl bench $f $part failed"
}
vision_llama() {
  local R=$1 s imgs ctx i
  for s in ${VISION//,/ }; do
    # one process, REPS+1 copies of the image: the first encode is the warm-up. The text model is a
    # 4-layer stand-in (same vocabulary and width) so the image tokens' prefill stays cheap: the
    # timed span ("mtmd batch encoding done in X ms") is the mmproj encoder only.
    imgs=$CACHE/images/rocket-$s.png; for ((i = 1; i <= REPS; i++)); do imgs+=",$CACHE/images/rocket-$s.png"; done
    ctx=$(( (REPS + 1) * (s / 32) * (s / 32) + 256 ))
    log "llama-mtmd-cli vision $s: $((REPS + 1)) images, ctx $ctx"
    "${RUN[@]}" "${TIMEV[@]}" -o "$R/llama/vision-$s.time" "$BIN/llama-mtmd-cli" -m "$G/vision-stub-bf16.gguf" \
      --mmproj "$G/mmproj-f16.gguf" -t "$THREADS" -c "$ctx" -b 2048 --image "$imgs" -p "Describe." -n 1 --temp 0 \
      >"$R/llama/vision-$s.log" 2>&1 || log "llama-mtmd-cli vision $s failed (see $R/llama/vision-$s.log)"
  done
}
vision_qwen3vl() {
  local R=$1 qarg=()
  [[ $HAS_QUANT == 1 ]] && qarg=(--quant none)
  log "qwen3vl bench vision $VISION -r $REPS"
  "${RUN[@]}" "${TIMEV[@]}" -o "$R/qwen3vl/vision.time" "$QWEN3VL" bench -m "$MODEL" -p "" -n 0 --depth 0 \
    --ttft 0 --vision "$VISION" -t "$THREADS" -r "$REPS" "${qarg[@]}" --mem-bw 0 --json \
    >"$R/qwen3vl/vision.json" 2>"$R/qwen3vl/vision.log" || log "qwen3vl vision bench failed"
}
# Engine order of round $1: llama.cpp first in odd rounds, qwen3vl first in even ones.
engine_order() {
  local e order=()
  if (( $1 % 2 == 1 )); then order=(llama qwen3vl); else order=(qwen3vl llama); fi
  for e in "${order[@]}"; do has "$ENGINES" "$e" && echo "$e"; done
  return 0
}

for ((round = 1; round <= ROUNDS; round++)); do
  R=$OUT/round-$round
  mkdir -p "$R/llama" "$R/qwen3vl"
  log "round $round of $ROUNDS ($(uptime | sed 's/.*load/load/'))"
  if has "$ONLY" text; then
    order=($(engine_order "$round"))
    for f in ${FORMATS//,/ }; do  # ABBA: decode runs adjacent, then prefill runs adjacent
      for ((i = 0; i < ${#order[@]}; i++)); do "text_${order[i]}" "$R" "$f" tg; done
      for ((i = ${#order[@]} - 1; i >= 0; i--)); do "text_${order[i]}" "$R" "$f" pp; done
    done
  fi
  if has "$ONLY" vision && [[ -n $VISION ]]; then
    for e in $(engine_order "$round"); do "vision_$e" "$R"; done
  fi
  log "memory read bandwidth ($THREADS threads, fresh 1 GiB buffer)"
  "${RUN[@]}" "$MEMBW" "$THREADS" 1024 5 >"$R/membw.json" 2>>"$LOG" || true
done

if has "$ONLY" hf; then
  log "HF transformers (float32, bfloat16) with $HF_PYTHON"
  "${RUN[@]}" "$HF_PYTHON" "$REPO/bench/hf_bench.py" -m "$MODEL" -t "$THREADS" -r "$REPS" -p "$PP" -n "$TG" \
    --vision "$VISION" --json "$OUT/hf.json" >"$OUT/hf.log" 2>&1 || log "HF bench failed (see $OUT/hf.log)"
fi

echo "\"$(uptime)\"" >"$OUT/uptime_end.json"

python3 "$REPO/bench/compare_report.py" "$OUT" | tee "$OUT/summary.md"
log "done: $OUT/summary.md"
