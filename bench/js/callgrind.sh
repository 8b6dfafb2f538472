#!/usr/bin/env bash
# Instructions per operation of bench/js/workload.mjs, counted by callgrind:
# the count of a run of 1M operations less that of 200k, over the 800k
# between (start-up, the trace and warm-up cancel out). Node runs with
# --single-threaded (no background compiler or GC threads, whose share
# otherwise moves the count by 10%). Two runs of one package agree within
# about 1%; a time ratio on this shared machine moves by 30%.
#   usage: bash bench/js/callgrind.sh WORKLOAD PACKAGE...
#   e.g.   bash bench/js/callgrind.sh asideLRU lru-cache "$PWD/pkg"
set -euo pipefail
cd "$(dirname "$0")"
work=$1
shift
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null node --single-threaded --hash-seed=42 --random-seed=42 workload.mjs "$work" "$1" "$2" 2>&1 >/dev/null |
    grep -o 'Collected : [0-9]*' | awk '{print $3}'
}
for pkg in "$@"; do
  a=$(count "$pkg" 200000)
  b=$(count "$pkg" 1000000)
  echo "$work $pkg: $(((b - a) / 800000)) instructions per op"
done
