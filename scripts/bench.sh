#!/usr/bin/env bash
# Runs the three benchmark suites (native Rust, JS in Node, Redis), each
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

echo "== js"
bash scripts/build-js.sh >/dev/null
if [ ! -f bench/js/node_modules/.package-lock.json ] || [ bench/js/package-lock.json -nt bench/js/node_modules/.package-lock.json ]; then
  (cd bench/js && npm ci --no-audit --no-fund --loglevel=error)
fi
node bench/js/bench.mjs $quick --out "$results/js.json"

echo "== redis"
cargo run --quiet --release --manifest-path bench/redis/Cargo.toml -- $quick --out "$results/redis.json"

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
