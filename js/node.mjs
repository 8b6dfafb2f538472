// `import` in Node itself (the "node-addons" condition, which Node sets and
// bundlers do not): inline.cjs, loaded by Node's `require`, so that code
// mixing `import` and `require` gets one wasm instance and `instanceof` works
// across both, as with inline.mjs. `import api from "./inline.cjs"` (what
// inline.mjs does, for the bundlers that take it) sends the CommonJS module
// through Node's ES module translator, which lexes it for named exports:
// 2-3 ms of every cold import (issue 19). Bundlers cannot follow
// createRequire(import.meta.url), so this file is for Node only.
import { createRequire } from "node:module";

const api = createRequire(import.meta.url)("./inline.cjs");

export const { /* the names in js/api/exports.txt: scripts/build-js.sh writes them here */ } = api;
