#!/usr/bin/env bash
# Builds the npm package `pepperpy-caching` into the directory wasm-pack.toml
# names (pkg/), and links it as node_modules/pepperpy-caching so the tests and
# examples import it by name, exactly as users do.
#
# Per JS target in wasm-pack.toml: `wasm-pack build --release`, then binaryen's
# wasm-opt (from node_modules) with the flags there. Then the package: the
# wasm-bindgen glue under wasm/<target>/, the hand-written layer from js/ (with
# api.cjs generated from api.mjs), the types, and package.json with the
# crate's version.
#
# Needs: wasm-pack, the wasm32-unknown-unknown target, `npm ci` done at the root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
log() { printf '[build-js] %s\n' "$*" >&2; }

wasm_opt=$root/node_modules/.bin/wasm-opt
if [ ! -x "$wasm_opt" ]; then
  log "node_modules/.bin/wasm-opt missing: run 'npm ci' at the repository root first"
  exit 1
fi

# wasm-pack.toml -> shell variables (python3's tomllib reads TOML).
eval "$(python3 - <<'PY'
import shlex, tomllib
c = tomllib.load(open("wasm-pack.toml", "rb"))
print("out_dir=" + shlex.quote(c["out-dir"]))
print("targets=(" + " ".join(shlex.quote(t) for t in c["targets"]) + ")")
print("opt_level=" + shlex.quote(str(c.get("rust", {}).get("opt-level", "3"))))
print("opt_flags=(" + " ".join(shlex.quote(f) for f in c["wasm-opt"]["flags"]) + ")")
print("max_gzip=" + str(int(c.get("size", {}).get("max-gzip-bytes", 0))))
PY
)"
case "$out_dir" in ""|/*|*..*) log "out-dir must be a relative path inside the repository, got '$out_dir'"; exit 1;; esac
for t in "${targets[@]}"; do
  case "$t" in nodejs|web) ;; *) log "unsupported target '$t' (the package has entry points for nodejs and web)"; exit 1;; esac
done
version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)

stage=$root/target/wasm-pack
rm -rf "$out_dir" "$stage"
mkdir -p "$out_dir/wasm"

for target in "${targets[@]}"; do
  log "wasm-pack build --release --target $target (opt-level $opt_level)"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt_level \
    wasm-pack --log-level warn build --release --target "$target" --out-dir "$stage/$target" --no-pack
  wasm=$stage/$target/pepperpy_caching_bg.wasm
  log "wasm-opt ${opt_flags[*]}"
  "$wasm_opt" "${opt_flags[@]}" "$wasm" -o "$wasm.opt"
  mv "$wasm.opt" "$wasm"

  dest=$out_dir/wasm/$target
  mkdir -p "$dest"
  cp "$stage/$target"/pepperpy_caching.js "$stage/$target"/pepperpy_caching.d.ts \
     "$stage/$target"/pepperpy_caching_bg.wasm "$stage/$target"/pepperpy_caching_bg.wasm.d.ts "$dest/"
  # The package is "type": "module"; the nodejs glue is CommonJS.
  if [ "$target" = nodejs ]; then kind=commonjs; else kind=module; fi
  printf '{ "type": "%s" }\n' "$kind" > "$dest/package.json"
done

# wasm-bindgen emits the same .wasm for both targets: ship it once, in wasm/web/,
# and point the nodejs glue there (kept as two copies if that ever changes).
node_wasm=$out_dir/wasm/nodejs/pepperpy_caching_bg.wasm
node_glue=$out_dir/wasm/nodejs/pepperpy_caching.js
web_wasm=$out_dir/wasm/web/pepperpy_caching_bg.wasm
wasm_path='${__dirname}/pepperpy_caching_bg.wasm'
if [ -f "$node_wasm" ] && [ -f "$web_wasm" ] && cmp -s "$node_wasm" "$web_wasm" \
   && [ "$(grep -cF "$wasm_path" "$node_glue")" = 1 ]; then
  sed -i "s|\${__dirname}/pepperpy_caching_bg.wasm|\${__dirname}/../web/pepperpy_caching_bg.wasm|" "$node_glue"
  rm "$node_wasm" "$out_dir/wasm/nodejs/pepperpy_caching_bg.wasm.d.ts"
  log "one .wasm for both targets (wasm/web/)"
fi

# The hand-written layer. api.cjs is api.mjs with its one `export` rewritten.
cp js/api.mjs js/node.cjs js/node.mjs js/deno.mjs js/workerd.mjs js/web.mjs "$out_dir/"
PKG_VERSION=$version node - "$out_dir" <<'JS'
const fs = require("node:fs");
const dir = process.argv[2];
const src = fs.readFileSync(`${dir}/api.mjs`, "utf8");
const exports = src.match(/^export /gm) ?? [];
if (exports.length !== 1 || !/^export function bind\(/m.test(src) || /^import /m.test(src)) {
  console.error("[build-js] js/api.mjs must have exactly one export, `export function bind(`, and no import");
  process.exit(1);
}
const cjs = `"use strict";\n${src.replace(/^export function bind\(/m, "function bind(")}\nmodule.exports = { bind };\n`;
fs.writeFileSync(`${dir}/api.cjs`, cjs);
const pkg = JSON.parse(fs.readFileSync("js/package.json", "utf8"));
pkg.version = process.env.PKG_VERSION;
fs.writeFileSync(`${dir}/package.json`, `${JSON.stringify(pkg, null, 2)}\n`);
JS
cp js/index.d.ts "$out_dir/index.d.ts"
cp js/index.d.ts "$out_dir/index.d.cts"
[ -f README.md ] && cp README.md "$out_dir/"
[ -f LICENSE ] && cp LICENSE "$out_dir/"

# Tests and examples import the package by name.
mkdir -p node_modules
ln -sfn "../$out_dir" node_modules/pepperpy-caching

for wasm in "$out_dir"/wasm/*/pepperpy_caching_bg.wasm; do
  raw=$(wc -c < "$wasm")
  gz=$(gzip -9c "$wasm" | wc -c)
  log "$wasm: $raw bytes, $gz gzipped"
  if [ "$max_gzip" -gt 0 ] && [ "$gz" -gt "$max_gzip" ]; then
    log "$wasm is over the limit of $max_gzip gzipped bytes set in wasm-pack.toml"
    exit 1
  fi
done
log "package pepperpy-caching@$version ready in $out_dir/ (linked as node_modules/pepperpy-caching)"
