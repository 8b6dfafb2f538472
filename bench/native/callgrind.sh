#!/usr/bin/env bash
# Instructions per operation, counted by callgrind inside `instr`'s measured loop.
# usage: bash bench/native/callgrind.sh [--ops N] [--runs R] [--capacity C] OP CACHE-FRAGMENT... (OP: get, set, update, churn)
# e.g.   bash bench/native/callgrind.sh get 'S3-FIFO)' quick_cache 'Mutex<lru'
# Each process hashes with a fresh random seed (which keys share a bucket,
# which the adaptive policy samples), so the count moves from run to run:
# R runs (default 5) give the mean and the range.
# Builds bench/native in release first; leaves callgrind.out.<op>.<n>.<run> in $OUT (default /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
ops=200000
runs=5
capacity=10000
while [ "${1:-}" = --ops ] || [ "${1:-}" = --runs ] || [ "${1:-}" = --capacity ]; do
  case $1 in
    --ops) ops=$2 ;;
    --runs) runs=$2 ;;
    --capacity) capacity=$2 ;;
  esac
  shift 2
done
op=$1; shift
out=${OUT:-/tmp}
cargo build --quiet --release --manifest-path bench/native/Cargo.toml
bin=bench/native/target/release/pepperpy-bench-native
n=0
for cache in "$@"; do
  n=$((n + 1))
  counts=()
  for run in $(seq "$runs"); do
    file="$out/callgrind.out.$op.$n.$run"
    valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect='*instr*measured*' \
      "$bin" instr --cache "$cache" --op "$op" --ops "$ops" --capacity "$capacity" >"$file.txt" 2>"$file.log"
    counts+=("$(grep -E '^(summary|totals):' "$file" | head -1 | awk '{print $2}')")
  done
  name=$("$bin" instr --list | grep -F -- "$cache" | sed -n 1p)
  found=$(sed -n 's/.*, \([0-9]*\) found.*/\1/p' "$file.txt")
  printf '%s\n' "${counts[@]}" | awk -v ops="$ops" -v name="$name" -v op="$op" -v found="$found" '
    { x = $1 / ops; s += x; if (NR == 1 || x < lo) lo = x; if (x > hi) hi = x }
    END { printf "%-42s %7.1f instructions per %s (%d runs: %.1f-%.1f; last run %.0f%% found)\n", name, s / NR, op, NR, lo, hi, 100 * found / ops }'
done
