#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian machine.
# Every step is skipped when its tool is already there, so repeated runs are fast.
#   scripts/setup.sh          Rust toolchain pieces, wasm tools, redis-server, npm packages, chromium
#   scripts/setup.sh --rust   only what the native Rust demo needs
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[setup] %s\n' "$*" >&2; }

# apt-get as root, or through sudo for a normal user.
apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "${apt_updated:-}" ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cargo >/dev/null; then
  log "cargo not found: install Rust with rustup first"; exit 1
fi
# Rust links with the system C toolchain.
if ! command -v cc >/dev/null; then
  log "installing a C toolchain (cc) for linking"
  apt_install build-essential
fi
if [ "${1:-}" = "--rust" ]; then exit 0; fi

for target in wasm32-unknown-unknown wasm32-wasip1; do
  if ! rustup target list --installed | grep -qx "$target"; then
    log "adding the $target target"
    rustup target add "$target"
  fi
done

# wasm-bindgen-cli must be exactly the version of the wasm-bindgen crate in Cargo.lock.
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [ -z "$wb_version" ]; then log "no wasm-bindgen in Cargo.lock"; exit 1; fi
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wb_version"; then
  log "installing wasm-bindgen-cli $wb_version"
  cargo install --force wasm-bindgen-cli --version "$wb_version"
fi
wasm_pack_version=0.15.1
if ! wasm-pack --version 2>/dev/null | grep -qx "wasm-pack $wasm_pack_version"; then
  log "installing wasm-pack $wasm_pack_version"
  cargo install --force wasm-pack --version "$wasm_pack_version"
fi

if ! command -v redis-server >/dev/null; then
  log "installing redis-server"
  apt_install redis-server
  # The tests start their own servers; the packaged service is not needed.
  (service redis-server stop || true) >/dev/null 2>&1
fi
# The Redis Cluster tests join their servers with redis-cli --cluster create
# (Debian's redis-tools; redis-server depends on it, but check on its own).
if ! command -v redis-cli >/dev/null; then
  log "installing redis-tools (redis-cli)"
  apt_install redis-tools
fi
# The Redis TLS tests make a CA and a server certificate with openssl, and
# start redis-server with --tls-port (Debian's build links OpenSSL).
if ! command -v openssl >/dev/null; then
  log "installing openssl"
  apt_install openssl
fi

# npm packages from committed lockfiles: the JS tests' and benchmarks' tools at
# the root; in tests/consumers the bundlers and runtimes the packed package is
# tried with, and Node 18 (the oldest Node the package claims).
for dir in . tests/consumers; do
  if [ -f "$dir/package-lock.json" ]; then
    stamp=$dir/node_modules/.package-lock.json
    if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
      log "installing npm packages in $dir"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  fi
done

# A real browser for tests/consumers (driven by playwright-core; no browser download).
if ! command -v chromium >/dev/null; then
  log "installing chromium"
  apt_install chromium
fi
