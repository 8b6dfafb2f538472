// `import` of the inlined build: the CommonJS module itself, so that code
// mixing `import` and `require` gets one wasm instance and `instanceof` works
// across both.
import api from "./inline.cjs";

export const { /* the names in js/api/exports.txt: scripts/build-js.sh writes them here */ } = api;
