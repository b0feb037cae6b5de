#!/usr/bin/env bash
# The README's main job on a fresh machine: fetch the datasets (sha256-checked) if needed, then run private LeNet
# inference and a short private training run among three in-process parties on the CPU. Arguments go to the
# example (`./scripts/run.sh --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
scripts/fetch-data.sh >&2
exec cargo run --release --locked --example lenet_mnist -- "$@"
