#!/usr/bin/env bash
# Installs every Debian package the build, tests and benchmarks need. Idempotent: when all are
# present it only checks and returns.
set -euo pipefail

packages=(
  g++ cmake ninja-build make pkg-config
  libopenblas-openmp-dev   # sgemm; the OpenMP build shares one thread pool with our kernels
  nlohmann-json3-dev       # config.json, safetensors headers
  libcli11-dev             # command line
  libfmt-dev               # messages
  libgtest-dev             # tests
  libbenchmark-dev         # micro-benchmarks
  libpcre2-dev             # tokenizer pre-tokenizer regexes (Unicode classes, lookahead)
  libicu-dev               # Unicode NFC normalisation of tokenizer input
  libcpp-httplib-dev       # HTTP(S) client (remote teachers) and server
  libssl-dev zlib1g-dev libbrotli-dev  # headers that httplib.h includes with its HTTPS/compression support
  openssl                  # the HTTPS test makes a self-signed certificate
  jq bc                    # bench/kd_compare.sh reads metrics and times runs
  chromium                 # the browser tests of the web pages (driven by playwright-core from npm)
  libopenmpi-dev openmpi-bin  # data-parallel training (mpirun -np N distill train)
  curl                     # scripts wait for a server's /health
)

# `install-deps.sh fuzz`: what the libFuzzer build needs as well (clang, its OpenMP and runtimes).
if [ "${1:-}" = fuzz ]; then
  packages+=(clang libomp-dev libclang-rt-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
