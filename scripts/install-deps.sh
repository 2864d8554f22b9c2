#!/usr/bin/env bash
# Installs the Debian packages qwen3vl builds against (Debian 12). Safe to re-run.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config   # toolchain
  nlohmann-json3-dev                             # config.json, safetensors headers, HTTP API bodies
  libgtest-dev libgmock-dev                      # unit / parity tests
  libbenchmark-dev                               # kernel micro-benchmarks (bench/)
  libjpeg62-turbo-dev libpng-dev libwebp-dev     # image decoding (the decoders Pillow uses)
  libexif-dev                                    # EXIF orientation
  libutf8proc-dev                                # tokenizer: NFC + Unicode categories
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev  # video decoding (FFmpeg)
  libcpp-httplib-dev                             # HTTP server (serve)
)
# The web page's end-to-end test drives headless Chromium; skip it with QWEN3VL_NO_BROWSER=1.
[ "${QWEN3VL_NO_BROWSER:-0}" = 1 ] || PKGS+=(chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
