// Deno: a source-phase import gives the compiled WebAssembly.Module through
// the module graph, so no permission is needed (no file read, no fetch).
import source module from "./wasm/pepperpy_caching_bg.wasm";
import { initSync } from "./init.mjs";

export const { /* the names in js/api/exports.txt: scripts/build-js.sh writes them here */ } = initSync(module);
