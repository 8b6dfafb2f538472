#!/usr/bin/env bash
# Runs every test of the project, installing what it needs first:
# Rust unit, property, integration and doc tests (with the `redis` feature,
# against redis-server processes the tests start themselves), then the wasm
# and JS side: wasm-bindgen tests, Node (ESM, CJS), TypeScript, Deno, workerd.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh

echo "== Rust unit tests (native, no features: a memory-only user's build)"
cargo test --lib

echo "== Rust tests (native, --features redis,tokio)"
# Every test binary runs even after one fails, so one run shows every failure.
cargo test --no-fail-fast --features redis,tokio

# The fuzz tests (every test named fuzz_*: the Redis envelope decoder and the
# push messages on arbitrary and mutated input, the glob matcher against
# Redis's, the engine under random operations with panicking Clone/Drop
# values) ran above with a few thousand random cases each; here, with a fixed
# seed and a larger budget (a few minutes). Longer runs on demand:
#   FUZZ_CASES=1000000 FUZZ_SEED=$RANDOM bash scripts/test.sh
# or just that step: PROPTEST_CASES=1000000 cargo test --release --features redis,tokio fuzz_
# A failing case is saved under proptest-regressions/ (commit it with the fix).
echo "== fuzz (seed ${FUZZ_SEED:-20261207}, ${FUZZ_CASES:-20000} cases per test)"
PROPTEST_RNG_SEED="${FUZZ_SEED:-20261207}" PROPTEST_CASES="${FUZZ_CASES:-20000}" \
  cargo test --features redis,tokio fuzz_

echo "== wasm and JS tests"
bash scripts/test-js.sh
