#!/usr/bin/env bash
# Runs the benchmark suites (native Rust, JS in Node, Redis, JS on Redis), each
# measuring pepperpy-caching against its peers in the same run, then writes
# bench/REPORT.md and the charts in bench/charts/.
#   scripts/bench.sh           full size (several minutes)
#   scripts/bench.sh --quick   tiny sizes, to check that the benches still run
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
quick=""
[ "${1:-}" = "--quick" ] && quick="--quick"

bash scripts/setup.sh
mkdir -p bench/results
results=bench/results
[ -n "$quick" ] && results=$(mktemp -d)

echo "== native"
cargo run --quiet --release --manifest-path bench/native/Cargo.toml -- $quick --out "$results/native.json"

echo "== stale-while-revalidate latency (memory store)"
bench/native/target/release/pepperpy-bench-native swr $quick

echo "== traces (hit ratio on the ARC paper's traces)"
# TRACES: the folder with OLTP.lis.zst and P3.lis.zst (default ../shared/traces).
traces=${TRACES:-../shared/traces}
if [ -f "$traces/OLTP.lis.zst" ] && [ -f "$traces/P3.lis.zst" ]; then
  replay() { "bench/native/target/release/pepperpy-bench-native" trace --trace "$1" --capacity "$2" --policy "$3"; }
  if [ -n "$quick" ]; then
    cells=("OLTP 250")
    policies=(s3-fifo lru)
  else
    cells=("OLTP 250" "OLTP 1000" "OLTP 2000" "P3 8192" "P3 65536" "P3 262144")
    mapfile -t policies < <(bench/native/target/release/pepperpy-bench-native trace --list-policies)
  fi
  {
    for cell in "${cells[@]}"; do
      set -- $cell
      for policy in "${policies[@]}"; do
        replay "$traces/$1.lis.zst" "$2" "$policy" | sed "s/^{/{\"trace\":\"$1\",/"
      done
    done
  } > "$results/traces.jsonl"
  cat "$results/traces.jsonl"
else
  echo "(no traces in $traces: skipped)"
fi

echo "== js"
bash scripts/build-js.sh >/dev/null
if [ ! -f bench/js/node_modules/.package-lock.json ] || [ bench/js/package-lock.json -nt bench/js/node_modules/.package-lock.json ]; then
  (cd bench/js && npm ci --no-audit --no-fund --loglevel=error)
fi
node bench/js/bench.mjs $quick --out "$results/js.json"

echo "== redis"
cargo run --quiet --release --manifest-path bench/redis/Cargo.toml -- $quick --out "$results/redis.json"

echo "== JS on redis (RedisStore against the raw clients, keyv, cache-manager)"
node bench/js/redis.mjs $quick --out "$results/js-redis.json"

[ -n "$quick" ] && exit 0

if ! python3 -c "import matplotlib" 2>/dev/null; then
  echo "[bench] installing matplotlib for the charts" >&2
  # pip where it may install (a venv, pyenv); Debian's package where the system Python refuses it.
  python3 -m pip install --quiet matplotlib 2>/dev/null || {
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get install -y -qq python3-matplotlib >/dev/null
  }
fi
python3 bench/report.py
