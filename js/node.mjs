// `import` in Node itself (20.19+, 22.12+): the "node", "module-sync" and
// "node-addons" conditions together, which Node sets and no bundler does
// (webpack sets "module-sync", Bun's bundler "node-addons", even for the
// browser; esbuild and Rollup neither). It loads inline.cjs with Node's
// `require`, so that code mixing `import` and `require` gets one wasm
// instance and `instanceof` works across both, as with inline.mjs. `import api from "./inline.cjs"` (what
// inline.mjs does, for the bundlers that take it) sends the CommonJS module
// through Node's ES module translator, which lexes it for named exports:
// 0.5-0.6 ms of a cold import (issue 19). Bundlers do not follow
// createRequire(import.meta.url), so this file is for Node only.
import { createRequire } from "node:module";

const api = createRequire(import.meta.url)("./inline.cjs");

export const { /* the names in js/api/exports.txt: scripts/build-js.sh writes them here */ } = api;
