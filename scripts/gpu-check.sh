#!/usr/bin/env bash
# The device check, in one command on a machine with an NVIDIA GPU (driver installed; NVRTC comes from PyPI as for
# the tests):
#   1. the CUDA backend's tests on the real device: every catalogue kernel, the recorded protocol launches and a
#      recorded LeNet inference and training step replayed on the GPU through the buffer API, bit-exact against the
#      CPU backend (runtime/tests/nvrtc.rs), plus the NVRTC compile and cache tests;
#   2. `cryptgpu bench-gpu`: LeNet, AlexNet and VGG-16 private inference and training step with shares kept on the
#      device, each beside the GPU cost model's prediction for the same launches.
# Options are passed to bench-gpu (e.g. `--devices 0,1,2 --batch 8`). Results: results/gpu-check/.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || {
    echo "gpu-check: no nvidia-smi here; this script needs an NVIDIA GPU and its driver" >&2
    exit 1
}

NVRTC_DIR="$PWD/.tools/nvrtc"
NVRTC_LIB="$NVRTC_DIR/nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
if [ ! -f "$NVRTC_LIB" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$NVRTC_DIR" nvidia-cuda-nvrtc-cu12==12.9.86
fi
export CRYPTGPU_NVRTC_LIB="$NVRTC_LIB"
export LD_LIBRARY_PATH="$(dirname "$NVRTC_LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

out=results/gpu-check
mkdir -p "$out"
echo "== CUDA backend on the device (bit-exact vs the CPU backend)"
cargo test --release -p cryptgpu-runtime --test nvrtc -- --nocapture 2>&1 | tee "$out/tests.log"
grep -q "launches replayed bit-exactly on" "$out/tests.log" || {
    echo "gpu-check: the CUDA backend did not open a device (see $out/tests.log)" >&2
    exit 1
}
echo "== LeNet / AlexNet / VGG-16 on the device, beside the cost model"
cargo run --release -- bench-gpu "$@" | tee "$out/bench.md"
echo "gpu-check: results in $out/"
