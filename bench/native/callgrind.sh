#!/usr/bin/env bash
# Instructions per operation, counted by callgrind inside `instr`'s measured loop.
# usage: bash bench/native/callgrind.sh [--ops N] OP CACHE-FRAGMENT... (OP: get, set, churn)
# e.g.   bash bench/native/callgrind.sh get 'S3-FIFO)' quick_cache 'Mutex<lru'
# Builds bench/native in release first; leaves callgrind.out.<op>.<n> files in $OUT (default /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
ops=200000
if [ "${1:-}" = --ops ]; then ops=$2; shift 2; fi
op=$1; shift
out=${OUT:-/tmp}
cargo build --quiet --release --manifest-path bench/native/Cargo.toml
bin=bench/native/target/release/pepperpy-bench-native
n=0
for cache in "$@"; do
  n=$((n + 1))
  file="$out/callgrind.out.$op.$n"
  valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect='*instr*measured*' \
    "$bin" instr --cache "$cache" --op "$op" --ops "$ops" >/dev/null 2>"$file.log"
  total=$(grep -E '^(summary|totals):' "$file" | head -1 | awk '{print $2}')
  name=$("$bin" instr --list | grep -F -m1 -- "$cache")
  printf '%-42s %8.1f instructions per %s  (%s)\n' "$name" "$(echo "$total / $ops" | bc -l)" "$op" "$file"
done
