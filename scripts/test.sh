#!/usr/bin/env bash
# Runs every test of the project, installing what it needs first:
# Rust unit, property, integration and doc tests (with the `redis` feature,
# against redis-server processes the tests start themselves), then the wasm
# and JS side: wasm-bindgen tests, Node (ESM, CJS), TypeScript, Deno, workerd.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh

echo "== Rust tests (native, --features redis,tokio)"
cargo test --features redis,tokio

echo "== wasm and JS tests"
bash scripts/test-js.sh
