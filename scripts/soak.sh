#!/usr/bin/env bash
# Soak: a RedisStore, two NearCache instances and a MemoryStore under mixed
# load while their own redis-server is restarted, stopped and flushed at
# random (examples/soak.rs says what is checked). Fails on any stale read
# beyond the documented windows, any lost acknowledged write, any RSS growth
# after warm-up.
#
#   bash scripts/soak.sh                 # 10 minutes
#   bash scripts/soak.sh --minutes 30    # longer
#   bash scripts/soak.sh --seconds 20    # a smoke run
#   options: --seed N (default 1), --release (an optimised build; slower to
#   build), --redis-server PATH (default: redis-server on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds=600 seed=1 profile=() server=redis-server
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) seconds=$(( $2 * 60 )); shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --release) profile=(--release); shift ;;
    --redis-server) server=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v "$server" >/dev/null || { echo "soak: $server not found (scripts/setup.sh installs it)" >&2; exit 1; }
cargo build "${profile[@]}" --features redis,tokio --example soak
dir=target/debug
[ ${#profile[@]} -gt 0 ] && dir=target/release
exec "$dir/examples/soak" --seconds "$seconds" --seed "$seed" --redis-server "$server"
