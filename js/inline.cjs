// The package with its wasm inlined (wasm/bytes.cjs, base64) and instantiated
// synchronously: no file to find at run time, no top-level await. Node and
// Bun load this by default (`require` and `import`), so the package survives
// any bundler targeting them; `pepperpy-caching/inline` gives it to any
// other toolchain, e.g. esbuild or Vite 6 for the browser.
"use strict";
if (typeof WebAssembly !== "object") {
  // node --jitless: the glue would fail with "WebAssembly is not defined".
  throw new Error("pepperpy-caching needs WebAssembly, which this runtime does not have (node --jitless and Safari's Lockdown Mode turn it off)");
}
const { bind } = require("./api.cjs");
module.exports = bind(require("./wasm/pepperpy_caching.cjs"));
