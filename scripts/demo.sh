#!/usr/bin/env bash
# Runs the demo: a MemoryStore, or a RedisStore when a redis:// URL is given.
#   scripts/demo.sh
#   scripts/demo.sh redis://127.0.0.1:6379/0
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh --rust
if [ $# -gt 0 ]; then
  exec cargo run --quiet --example demo --features redis -- "$@"
fi
exec cargo run --quiet --example demo
