#!/usr/bin/env bash
# Builds the npm package `pepperpy-caching` into the directory wasm-pack.toml
# names (pkg/), and links it as node_modules/pepperpy-caching so the tests and
# examples import it by name, exactly as users do.
#
# `wasm-pack build --release --features js` for the nodejs and web targets,
# then binaryen's wasm-opt (from node_modules) with the flags in wasm-pack.toml.
# Then the package (js/README.md lists its files and says why each is there):
#   wasm/pepperpy_caching_bg.wasm   the one .wasm (the web, workerd, Deno and init entries)
#   wasm/pepperpy_caching.mjs       the web glue (ES module, init/initSync)
#   wasm/pepperpy_caching.cjs       the nodejs glue (CommonJS), fed by wasm/bytes.cjs,
#   wasm/bytes.cjs                  the .wasm inlined as base64 (Node, Bun, `require`)
#   wasm/bytes.mjs, inflate.mjs     the .wasm deflated (zopfli) and base64, and its inflater:
#                                   web.mjs, the default import everywhere else
#   text.cjs, text.mjs              UTF-8 for the glues where the host has none (jsdom)
#   init.cjs, wasm/pepperpy_caching_web.cjs   `/init` under `require`
# the hand-written entries from js/ (api.mjs concatenated from js/api/, api.cjs
# generated from api.mjs), the
# types, js/package.json with the crate's version, js/README.md and LICENSE.
#
# Needs: wasm-pack, the wasm32-unknown-unknown target, `npm ci` done at the root
# (binaryen's wasm-opt, @gfx/zopfli).
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
# (rcore) the entries with a .wasm of their own ([[entry]]).
print("entry_names=(" + " ".join(shlex.quote(e["name"]) for e in c.get("entry", [])) + ")")
print("entry_features=(" + " ".join(shlex.quote(e["features"]) for e in c.get("entry", [])) + ")")
print("entry_max_gzip=(" + " ".join(str(int(e.get("max-gzip-bytes", 0))) for e in c.get("entry", [])) + ")")
PY
)"
case "$out_dir" in ""|/*|*..*) log "out-dir must be a relative path inside the repository, got '$out_dir'"; exit 1;; esac
if [ "${targets[*]}" != "nodejs web" ]; then
  log "targets must be [\"nodejs\", \"web\"] (the package is built from both glues), got '${targets[*]}'"; exit 1
fi
version=$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)

stage=${CARGO_TARGET_DIR:-$root/target}/wasm-pack
rm -rf "$out_dir" "$stage"
mkdir -p "$out_dir/wasm"

for target in "${targets[@]}"; do
  log "wasm-pack build --release --target $target (opt-level $opt_level)"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt_level \
    wasm-pack --log-level warn build --release --target "$target" --out-dir "$stage/$target" --no-pack -- --features js
  wasm=$stage/$target/pepperpy_caching_bg.wasm
  log "wasm-opt ${opt_flags[*]}"
  "$wasm_opt" "${opt_flags[@]}" "$wasm" -o "$wasm.opt"
  mv "$wasm.opt" "$wasm"
done

# (rcore, issue 24) Each entry with a .wasm of its own (wasm-pack.toml [[entry]]):
# its bindings' feature only, the nodejs glue, then scripts/build-entry.cjs
# writes wasm/<name>.cjs (glue), wasm/<name>_bytes.cjs (base64), <name>.cjs /
# <name>.mjs (js/<name>/*.js) and the types, and checks the budget.
for i in "${!entry_names[@]}"; do
  name=${entry_names[$i]}
  log "wasm-pack build --release --target nodejs --features ${entry_features[$i]} (entry $name)"
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt_level \
    wasm-pack --log-level warn build --release --target nodejs --out-dir "$stage/entry-$name" --out-name "$name" \
    --no-pack -- --features "${entry_features[$i]}"
  # The web glue too, for workerd (a Worker imports its .wasm as a module: no compiling from bytes).
  CARGO_PROFILE_RELEASE_OPT_LEVEL=$opt_level \
    wasm-pack --log-level warn build --release --target web --out-dir "$stage/entry-$name-web" --out-name "$name" \
    --no-pack -- --features "${entry_features[$i]}"
  for wasm in "$stage/entry-$name/${name}_bg.wasm" "$stage/entry-$name-web/${name}_bg.wasm"; do
    "$wasm_opt" "${opt_flags[@]}" "$wasm" -o "$wasm.opt"
    mv "$wasm.opt" "$wasm"
  done
  node scripts/build-entry.cjs "$name" "$stage/entry-$name" "$out_dir" "${entry_max_gzip[$i]}" "$stage/entry-$name-web"
done

# The web build's .wasm ships as a file; the nodejs build's is inlined below
# (wasm-bindgen emits the same bytes for both, but each glue gets its own).
# The nodejs glue reads that file in Node (below): they must be the same bytes.
cp "$stage/web/pepperpy_caching_bg.wasm" "$out_dir/wasm/pepperpy_caching_bg.wasm"
if ! cmp -s "$stage/web/pepperpy_caching_bg.wasm" "$stage/nodejs/pepperpy_caching_bg.wasm"; then
  log "the nodejs and web builds' .wasm differ: the nodejs glue reads the web build's file in Node (update scripts/build-js.sh)"
  exit 1
fi
# The web glue (ES module, init/initSync): the browser, workerd, Deno and init entries.
# Its first line points Deno at a .d.ts the package does not ship (the types are index.d.ts).
sed '1{/@ts-self-types/d}' "$stage/web/pepperpy_caching.js" > "$out_dir/wasm/pepperpy_caching.mjs"
# --- package glue post-processing (the pkg helper's block) ---
# The nodejs glue (CommonJS, instantiates on require) takes its bytes from
# wasm/bytes.cjs instead of reading a file beside itself, which a bundle moves,
# and its TextEncoder/TextDecoder from text.cjs where the host has none (jsdom
# under Jest constructs nothing of the kind: the glue threw at load).
# wasm/bytes.mjs is the same bytes as an ES module, for web.mjs: the default
# import everywhere but Node, Bun, workerd and Deno, instantiated
# synchronously with no top-level await and no asset to ship. There the .wasm
# is deflated before base64 (inflate.mjs undoes it): a browser bundle then
# gzips to within a few hundred bytes of the .wasm file's own gzip, where
# base64 of the raw bytes adds a third (scripts/size.mjs measures both).
PKG_ROOT=$root PKG_WASM=$stage/nodejs/pepperpy_caching_bg.wasm node - "$stage/nodejs/pepperpy_caching.js" "$out_dir/wasm" <<'JS'
const fs = require("node:fs");
const [glueFile, dir] = process.argv.slice(2);
let glue = fs.readFileSync(glueFile, "utf8");
const fail = (what) => {
  console.error(`[build-js] the nodejs glue no longer ${what}: update scripts/build-js.sh`);
  process.exit(1);
};
const read = /^const wasmPath = .*\nconst wasmBytes = require\('fs'\)\.readFileSync\(wasmPath\);$/m;
if (!read.test(glue)) fail("reads the .wasm as expected");
// (jsimport, issue 19) In Node the glue reads the .wasm beside it instead of
// decoding bytes.cjs (scripts/wasm-from-file.cjs says where and why not).
const { wasmFromFileSource } = require(`${process.env.PKG_ROOT}/scripts/wasm-from-file.cjs`);
const fromFile = wasmFromFileSource(fs.readFileSync(process.env.PKG_WASM), "pepperpy_caching_bg.wasm");
glue = glue.replace(read, `${fromFile}const wasmBytes = wasmFromFile() ?? require('./bytes.cjs');`);
if (/\b(TextEncoder|TextDecoder)\s*=/.test(glue)) fail("leaves the names TextEncoder and TextDecoder free");
glue = glue.replace(/^\/\* @ts-self-types=.*\n/, "");
glue =
  `const { TextEncoder, TextDecoder } = typeof globalThis.TextDecoder === "function" && typeof globalThis.TextEncoder === "function" ? globalThis : require("../text.cjs");\n` +
  glue;
fs.writeFileSync(`${dir}/pepperpy_caching.cjs`, glue);
const base64 = fs.readFileSync(process.env.PKG_WASM).toString("base64");
// No free `Buffer`: Parcel would look for a polyfill package (and fail without one).
const decode = `typeof Uint8Array.fromBase64 === "function"
    ? Uint8Array.fromBase64(base64)
    : typeof globalThis.Buffer === "function"
      ? globalThis.Buffer.from(base64, "base64")
      : Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))`;
const header = "// pepperpy_caching_bg.wasm, base64, for the builds that must not look for a file.";
fs.writeFileSync(`${dir}/bytes.cjs`, `"use strict";\n${header}\nconst base64 = "${base64}";\nmodule.exports = ${decode};\n`);
// Zopfli (node_modules/@gfx/zopfli, zopfli compiled to wasm): a zlib stream
// about 6% smaller than zlib's level 9, so 2 KiB off every browser bundle.
const wasm = fs.readFileSync(process.env.PKG_WASM);
require(`${process.env.PKG_ROOT}/node_modules/@gfx/zopfli`)
  .zlibAsync(wasm, { numiterations: 15 })
  .then((packed) => {
    packed = Buffer.from(packed);
    if (!require("node:zlib").inflateSync(packed).equals(wasm)) throw new Error("its stream does not inflate to the .wasm");
    fs.writeFileSync(
      `${dir}/bytes.mjs`,
      `// pepperpy_caching_bg.wasm, deflated (a zlib stream, by zopfli), then base64: see inflate.mjs.
import { inflate } from "../inflate.mjs";
const base64 = "${packed.toString("base64")}";
export default inflate(${decode}, ${wasm.length});
`,
    );
  })
  .catch((error) => {
    console.error(`[build-js] zopfli failed (npm ci at the root installs it): ${error.stack}`);
    process.exit(1);
  });
JS
# The web glue keeps only its synchronous instantiation: wasm-bindgen's async
# loader (fetch, instantiateStreaming, its deprecation warnings) is cut, and
# init.mjs compiles the module itself, so a bundle that never calls init()
# (every default import) carries none of it: 1.5 KiB minified, 0.6 KiB gzipped.
# `pepperpy-caching/init` for `require`: that glue and init.mjs as CommonJS
# (init.cjs, wasm/pepperpy_caching_web.cjs). No default location for the
# .wasm there: `import.meta.url` has no CommonJS counterpart a bundler keeps.
node - "$stage/web/pepperpy_caching.js" js/init.mjs "$out_dir" <<'JS'
const fs = require("node:fs");
const [glueFile, initFile, dir] = process.argv.slice(2);
const fail = (what) => {
  console.error(`[build-js] ${what}: update scripts/build-js.sh`);
  process.exit(1);
};
let glue = fs.readFileSync(glueFile, "utf8").replace(/^\/\* @ts-self-types=.*\n/, "");
const tail = "export { initSync, __wbg_init as default };";
const load = glue.indexOf("async function __wbg_load(");
const sync = glue.indexOf("function initSync(");
const async = glue.indexOf("let __wbg_init_promise;");
const end = glue.indexOf(tail);
if (load < 0 || sync < load || async < sync || end < async) fail("the web glue's loaders are no longer where they were");
glue = `${glue.slice(0, load)}${glue.slice(sync, async)}export { initSync };${glue.slice(end + tail.length)}`;
const deprecated = /if \(module !== undefined\) \{\s*if \(Object\.getPrototypeOf\(module\) === Object\.prototype\) \{\s*\(\{module\} = module\)\s*\} else \{\s*console\.warn\([^\n]*\)\s*\}\s*\}/;
if (!deprecated.test(glue)) fail("initSync in the web glue no longer takes its argument as expected");
glue = glue.replace(deprecated, "({ module } = module);");
if (/import\.meta|__wbg_load|__wbg_init\b|console\./.test(glue)) fail("the web glue still has its async loader");
// Its TextEncoder/TextDecoder from text.mjs where the host has none: jsdom
// under Jest's ES module mode takes this glue (the "browser" condition) and threw at load.
if (/\b(TextEncoder|TextDecoder)\s*=/.test(glue)) fail("the web glue no longer leaves the names TextEncoder and TextDecoder free");
fs.writeFileSync(`${dir}/wasm/pepperpy_caching.mjs`, `import { text } from "../text.mjs";\nconst { TextEncoder, TextDecoder } = text;\n${glue}`);
const names = [];
let cjs = glue.replace(/^export (class|function) (\w+)/gm, (_, kind, name) => (names.push(name), `${kind} ${name}`));
cjs = cjs.replace("export { initSync };", `module.exports = { ${names.join(", ")}, initSync };`);
if (/^export |^import /m.test(cjs)) fail("the web glue has module syntax left");
const text = `const { TextEncoder, TextDecoder } = typeof globalThis.TextDecoder === "function" && typeof globalThis.TextEncoder === "function" ? globalThis : require("../text.cjs");\n`;
fs.writeFileSync(`${dir}/wasm/pepperpy_caching_web.cjs`, `"use strict";\n${text}${cjs}`);
let init = fs.readFileSync(initFile, "utf8");
const swaps = [
  ['import * as glue from "./wasm/pepperpy_caching.mjs";', 'const glue = require("./wasm/pepperpy_caching_web.cjs");'],
  ['import { bind } from "./api.mjs";', 'const { bind } = require("./api.cjs");'],
  ["export async function init(", "async function init("],
  ["export function initSync(", "function initSync("],
  [
    'const defaultSource = () => {\n  // A CommonJS or iife bundle leaves import.meta empty: nothing to resolve against.\n  if (typeof import.meta.url !== "string") throw new Error("pepperpy-caching: init() has no location for its .wasm in this bundle (no import.meta.url): pass the .wasm\'s URL or bytes (pepperpy-caching/wasm)");\n  return new URL("./wasm/pepperpy_caching_bg.wasm", import.meta.url);\n};',
    'const defaultSource = () => {\n  throw new Error(\'pepperpy-caching/init under require() needs the wasm: pass its bytes, e.g. fs.readFileSync(require.resolve("pepperpy-caching/wasm")), a WebAssembly.Module, a URL or a Response\');\n};',
  ],
];
for (const [from, to] of swaps) {
  if (!init.includes(from)) fail(`js/init.mjs no longer has \`${from}\``);
  init = init.replace(from, to);
}
if (/^export |^import |import\.meta/m.test(init)) fail("js/init.mjs has module syntax the CommonJS copy does not handle");
fs.writeFileSync(`${dir}/init.cjs`, `"use strict";\n${init}\nmodule.exports = { init, initSync };\n`);
JS
# --- end of the pkg helper's block ---

# --- api.mjs from js/api/ (issue 19: the JS layer split by concern) ---
# js/api/N-concern.js are the parts of the body of `bind(wasm)`, in order;
# they are concatenated into the one api.mjs (no import at run time). From
# the one list js/api/exports.txt come the API object it returns and the
# export list of each entry that re-exports it (inline.mjs, node.mjs, web.mjs,
# workerd.mjs, deno.mjs: their sources hold an empty list, marked); the
# types (index.d.ts) must declare each export: checked here.
node - "$out_dir/api.mjs" "$out_dir" <<'JS'
const fs = require("node:fs");
const [out, dir] = process.argv.slice(2);
const parts = fs.readdirSync("js/api").filter((f) => /^\d+-[a-z]+\.js$/.test(f)).sort((a, b) => parseInt(a) - parseInt(b));
const names = fs.readFileSync("js/api/exports.txt", "utf8").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
const indent = (text) => text.replace(/^(?=.)/gm, "  ");
const body = parts.map((f) => indent(fs.readFileSync(`js/api/${f}`, "utf8"))).join("\n");
const head = `// The JavaScript face of pepperpy-caching: option objects, Promises, Error
// classes and key checks, over the wasm bindings in src/wasm. Generated by
// scripts/build-js.sh from js/api/*.js (edit those) and js/api/exports.txt.
//
// One implementation for every runtime: a factory over the wasm-bindgen glue.
// inline.cjs (Node, Bun, \`/inline\`) binds the CommonJS glue, and init.mjs
// (behind web.mjs, workerd.mjs, deno.mjs and \`/init\`) the ES module glue.
// api.cjs is this file with its one \`export\` rewritten.

/** @param {typeof import("./wasm/pepperpy_caching.mjs")} wasm */
export function bind(wasm) {
  return bound(wasm);
}

// In parentheses: V8 compiles a parenthesized function as it parses the
// file, where a declared one is pre-parsed, then parsed again in full at
// its first call (every package load calls it once): 0.6 ms of import.
const bound = (function bound(wasm) {
`;
const tail = `\n  return {\n${names.map((n) => `    ${n},`).join("\n")}\n  };\n});\n`;
fs.writeFileSync(out, head + body + tail);
const marker = "export const { /* the names in js/api/exports.txt: scripts/build-js.sh writes them here */ }";
for (const entry of ["inline.mjs", "node.mjs", "web.mjs", "workerd.mjs", "deno.mjs"]) {
  const text = fs.readFileSync(`js/${entry}`, "utf8");
  if (text.split(marker).length !== 2) {
    console.error(`[build-js] js/${entry} must hold its export list once, as \`${marker}\``);
    process.exit(1);
  }
  fs.writeFileSync(`${dir}/${entry}`, text.replace(marker, `export const {\n${names.map((n) => `  ${n},`).join("\n")}\n}`));
}
const types = fs.readFileSync("js/index.d.ts", "utf8");
const missing = names.filter((name) => !new RegExp(`export declare (class|function) ${name}\\b`).test(types));
if (missing.length > 0) {
  console.error(`[build-js] js/index.d.ts does not declare these exports (js/api/exports.txt lists them): ${missing.join(", ")}`);
  process.exit(1);
}
JS
# --- end of api.mjs from js/api/ ---

# The hand-written layer. api.cjs is api.mjs with its one `export` rewritten.
# (inline.mjs, node.mjs, web.mjs, workerd.mjs and deno.mjs were written above, with their export lists.)
cp js/inline.cjs js/init.mjs js/text.cjs js/text.mjs js/inflate.mjs "$out_dir/"
PKG_VERSION=$version node - "$out_dir" <<'JS'
const fs = require("node:fs");
const dir = process.argv[2];
const src = fs.readFileSync(`${dir}/api.mjs`, "utf8");
const exports = src.match(/^export /gm) ?? [];
if (exports.length !== 1 || !/^export function bind\(/m.test(src) || /^import /m.test(src)) {
  console.error("[build-js] api.mjs must have exactly one export, `export function bind(`, and no import");
  process.exit(1);
}
// (pkg helper) The CommonJS API takes TextEncoder from text.cjs where the host has none (jsdom).
const text = `const { TextEncoder } = typeof globalThis.TextEncoder === "function" ? globalThis : require("./text.cjs");\n`;
const cjs = `"use strict";\n${text}${src.replace(/^export function bind\(/m, "function bind(")}\nmodule.exports = { bind };\n`;
fs.writeFileSync(`${dir}/api.cjs`, cjs);
// (pkg helper) And the ES module API from text.mjs (jsdom under Jest's ES module mode).
fs.writeFileSync(`${dir}/api.mjs`, `import { text } from "./text.mjs";\nconst { TextEncoder } = text;\n${src}`);
const pkg = JSON.parse(fs.readFileSync("js/package.json", "utf8"));
pkg.version = process.env.PKG_VERSION;
fs.writeFileSync(`${dir}/package.json`, `${JSON.stringify(pkg, null, 2)}\n`);
JS
cp js/index.d.ts "$out_dir/index.d.ts"
cp js/index.d.ts "$out_dir/index.d.cts"
cp js/init.d.ts "$out_dir/init.d.ts"
# (pkg helper) the CommonJS and node10 faces of the entries' types.
cp js/init.d.ts "$out_dir/init.d.cts"
cp js/inline.d.ts "$out_dir/inline.d.ts"
# (pkg helper) `pepperpy-caching/wasm`: the .wasm, typed as a source init() takes.
cp js/wasm.d.ts js/wasm.d.cts "$out_dir/"
# The npm README (JavaScript only) and the license.
cp js/README.md LICENSE "$out_dir/"

# Tests and examples import the package by name.
mkdir -p node_modules
ln -sfn "../$out_dir" node_modules/pepperpy-caching

wasm=$out_dir/wasm/pepperpy_caching_bg.wasm
raw=$(wc -c < "$wasm")
gz=$(gzip -9c "$wasm" | wc -c)
log "$wasm: $raw bytes, $gz gzipped"
if [ "$max_gzip" -gt 0 ] && [ "$gz" -gt "$max_gzip" ]; then
  log "$wasm is over the limit of $max_gzip gzipped bytes set in wasm-pack.toml"
  exit 1
fi
log "package pepperpy-caching@$version ready in $out_dir/ (linked as node_modules/pepperpy-caching)"
