// scripts/build-entry.cjs NAME STAGE OUT MAX_GZIP WEBSTAGE: the package files of an
// entry with a .wasm of its own (wasm-pack.toml [[entry]]; scripts/build-js.sh
// runs this after wasm-pack and wasm-opt built STAGE/NAME_bg.wasm and its
// nodejs glue STAGE/NAME.js). Writes into OUT (pkg/):
//   wasm/NAME.cjs        the glue: in Node its bytes from wasm/NAME_bg.wasm beside it,
//                        elsewhere (bundles) from wasm/NAME_bytes.cjs
//   wasm/NAME_bytes.cjs  the .wasm as base64
//   NAME.cjs             js/NAME/*.js concatenated into one CommonJS module (see below)
//   NAME.mjs             `import` of it: the CommonJS module itself, so `import` and
//                        `require` share one instance (as inline.mjs does)
//   NAME.d.ts, NAME.d.cts  js/NAME.d.ts
//   wasm/NAME_bg.wasm, wasm/NAME_web.mjs  the .wasm as a file and the web glue
//                        (WEBSTAGE: wasm-pack --target web), its async loader cut
//   NAME-workerd.mjs     the same layer as an ES module for workerd: the .wasm
//                        imported as a module (a Worker may not compile bytes)
//   NAME-deno.mjs        the same for Deno (the `deno` condition): the .wasm by a
//                        source-phase import (no permission), and `main` the
//                        module Deno's own `import "pepperpy-caching"` gives
//                        (deno.mjs), not the CommonJS one a `require` would load:
//                        one instance, so `instanceof` works across the entries
// and fails if the gzipped .wasm is over MAX_GZIP bytes (0: no budget).
//
// NAME.cjs: `main` (the package's default entry, by its own name: the same
// module the application imports, so the error and policy classes are the
// same classes and `instanceof` works across entries) and `wasm` (the glue),
// then js/NAME/clients.js (the client adapters: `conn(client)`) and
// js/NAME/clients-rest.js if there is one (the REST client's), then
// js/NAME/N-concern.js in order, each with its `export ` keywords
// removed (the parts share one scope), then `module.exports` of the names
// js/NAME/exports.txt lists. Each form declares `hostAsyncLocalStorage`,
// node:async_hooks' class where the host has one (Node, Bun, Deno), else
// undefined (workerd).
"use strict";
const fs = require("node:fs");
const zlib = require("node:zlib");

const [name, stage, out, maxGzip, webStage] = process.argv.slice(2);
const fail = (what) => {
  console.error(`[build-entry] ${name}: ${what}`);
  process.exit(1);
};

// The glue: the same rewrite as the default entry's nodejs glue (build-js.sh).
let glue = fs.readFileSync(`${stage}/${name}.js`, "utf8");
const read = /^const wasmPath = .*\nconst wasmBytes = require\('fs'\)\.readFileSync\(wasmPath\);$/m;
if (!read.test(glue)) fail("the nodejs glue no longer reads the .wasm as expected: update scripts/build-entry.cjs");
// (jsimport, issue 19) In Node the glue reads wasm/NAME_bg.wasm beside it
// instead of decoding NAME_bytes.cjs (scripts/wasm-from-file.cjs): it must be
// the same bytes as this build's, which the web build's file is (checked).
const nodeWasm = fs.readFileSync(`${stage}/${name}_bg.wasm`);
if (!nodeWasm.equals(fs.readFileSync(`${webStage}/${name}_bg.wasm`))) fail("the nodejs and web builds' .wasm differ: the nodejs glue reads the web build's file in Node");
const fromFile = require("./wasm-from-file.cjs").wasmFromFileSource(nodeWasm, `${name}_bg.wasm`);
glue = glue.replace(read, `${fromFile}const wasmBytes = wasmFromFile() ?? require('./${name}_bytes.cjs');`);
if (/\b(TextEncoder|TextDecoder)\s*=/.test(glue)) fail("the nodejs glue no longer leaves TextEncoder and TextDecoder free");
glue = glue.replace(/^\/\* @ts-self-types=.*\n/, "");
glue =
  `const { TextEncoder, TextDecoder } = typeof globalThis.TextDecoder === "function" && typeof globalThis.TextEncoder === "function" ? globalThis : require("../text.cjs");\n` +
  glue;
fs.mkdirSync(`${out}/wasm`, { recursive: true });
fs.writeFileSync(`${out}/wasm/${name}.cjs`, glue);
const wasm = fs.readFileSync(`${stage}/${name}_bg.wasm`);
const decode = `typeof Uint8Array.fromBase64 === "function"
    ? Uint8Array.fromBase64(base64)
    : typeof globalThis.Buffer === "function"
      ? globalThis.Buffer.from(base64, "base64")
      : Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))`;
fs.writeFileSync(
  `${out}/wasm/${name}_bytes.cjs`,
  `"use strict";\n// ${name}_bg.wasm, base64.\nconst base64 = "${wasm.toString("base64")}";\nmodule.exports = ${decode};\n`,
);

// The JS layer.
const dir = `js/${name}`;
const files = fs.readdirSync(dir);
if (!files.includes("clients.js")) fail(`${dir} has no clients.js`);
// clients-rest.js (the REST client's adapter, which clients.js's `conn` calls) right after.
const parts = ["clients.js", ...(files.includes("clients-rest.js") ? ["clients-rest.js"] : []), ...files.filter((f) => /^\d+-[a-z-]+\.js$/.test(f)).sort((a, b) => parseInt(a) - parseInt(b))];
const names = fs
  .readFileSync(`${dir}/exports.txt`, "utf8")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith("#"));
// Parts of the default entry's API that every entry shares (one source for
// how a value is described in an error message and what a plain object is).
const shared = ["js/api/1-shared.js"];
const body = [...shared, ...parts.map((f) => `${dir}/${f}`)]
  .map((f) => {
    const text = fs.readFileSync(f, "utf8");
    if (/^import /m.test(text)) fail(`${f} has an import: the parts share one scope, with \`main\` and \`wasm\``);
    return `// ---- ${f}\n${text.replace(/^export (?=(async )?(function|class|const|let) )/gm, "")}`;
  })
  .join("\n");
const cjs = `"use strict";
// pepperpy-caching/${name}: generated by scripts/build-entry.cjs from ${dir}/*.js (edit those).
const main = require("pepperpy-caching");
const wasm = require("./wasm/${name}.cjs");
const hostAsyncLocalStorage = (() => {
  try {
    return require("node:async_hooks").AsyncLocalStorage;
  } catch {
    return undefined;
  }
})();
${body}
module.exports = { ${names.join(", ")} };
`;
fs.writeFileSync(`${out}/${name}.cjs`, cjs);
fs.writeFileSync(
  `${out}/${name}.mjs`,
  `// \`import\` of pepperpy-caching/${name}: the CommonJS module itself (one instance for \`import\` and \`require\`).\nimport api from "./${name}.cjs";\n\nexport const { ${names.join(", ")} } = api;\n`,
);
// workerd: the web glue, initialized with the imported module, and the same parts as an ES module.
let web = fs.readFileSync(`${webStage}/${name}.js`, "utf8").replace(/^\/\* @ts-self-types=.*\n/, "");
const tail = "export { initSync, __wbg_init as default };";
const load = web.indexOf("async function __wbg_load(");
const sync = web.indexOf("function initSync(");
const asyncInit = web.indexOf("let __wbg_init_promise;");
const end = web.indexOf(tail);
if (load < 0 || sync < load || asyncInit < sync || end < asyncInit) fail("the web glue's loaders are no longer where they were");
web = `${web.slice(0, load)}${web.slice(sync, asyncInit)}export { initSync };${web.slice(end + tail.length)}`;
if (/import\.meta|__wbg_load|__wbg_init\b/.test(web)) fail("the web glue still has its async loader");
fs.writeFileSync(`${out}/wasm/${name}_web.mjs`, web);
fs.copyFileSync(`${webStage}/${name}_bg.wasm`, `${out}/wasm/${name}_bg.wasm`);
fs.writeFileSync(
  `${out}/${name}-workerd.mjs`,
  `// pepperpy-caching/${name} on workerd: generated by scripts/build-entry.cjs from ${dir}/*.js (edit those).
// The .wasm is imported as a compiled module (a Worker may not compile wasm from bytes).
import * as main from "pepperpy-caching";
import module from "./wasm/${name}_bg.wasm";
import * as wasm from "./wasm/${name}_web.mjs";
wasm.initSync({ module });
const hostAsyncLocalStorage = undefined;
${body}
export { ${names.join(", ")} };
`,
);
fs.writeFileSync(
  `${out}/${name}-deno.mjs`,
  `// pepperpy-caching/${name} on Deno: generated by scripts/build-entry.cjs from ${dir}/*.js (edit those).
// \`main\` is the module Deno's \`import "pepperpy-caching"\` gives (deno.mjs): the same error and
// policy classes as the application's. The .wasm comes by a source-phase import (no permission).
import * as main from "pepperpy-caching";
import source module from "./wasm/${name}_bg.wasm";
import * as wasm from "./wasm/${name}_web.mjs";
import { AsyncLocalStorage as hostAsyncLocalStorage } from "node:async_hooks";
wasm.initSync({ module });
${body}
export { ${names.join(", ")} };
`,
);

const types = fs.readFileSync(`js/${name}.d.ts`, "utf8");
const missing = names.filter((n) => !new RegExp(`export declare (class|function) ${n}\\b`).test(types));
if (missing.length > 0) fail(`js/${name}.d.ts does not declare ${missing.join(", ")}`);
fs.writeFileSync(`${out}/${name}.d.ts`, types);
fs.writeFileSync(`${out}/${name}.d.cts`, types);

const gz = zlib.gzipSync(wasm, { level: 9 }).length;
console.error(`[build-entry] ${name}: ${wasm.length} bytes of wasm, ${gz} gzipped`);
if (Number(maxGzip) > 0 && gz > Number(maxGzip)) {
  fail(`the .wasm is ${gz} gzipped bytes, over the budget of ${maxGzip} in wasm-pack.toml`);
}
