// The package with its wasm inlined (wasm/bytes.cjs, base64) and instantiated
// synchronously: no file to find at run time, no top-level await. Node and
// Bun load this by default (`require` and `import`), so the package survives
// any bundler targeting them; `pepperpy-caching/inline` gives it to any
// other toolchain, e.g. esbuild or Vite 6 for the browser.
"use strict";
const { bind } = require("./api.cjs");
module.exports = bind(require("./wasm/pepperpy_caching.cjs"));
