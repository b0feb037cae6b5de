#!/usr/bin/env bash
# Set up everything on a fresh machine and run the whole test suite: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== fetching Rust crates"
cargo fetch --locked

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
