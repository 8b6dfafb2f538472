// Cloudflare Workers: workerd (and wrangler's bundler) import a .wasm file as
// a compiled WebAssembly.Module, which is instantiated without a fetch (a
// Worker may not compile wasm from bytes).
import module from "./wasm/pepperpy_caching_bg.wasm";
import { initSync } from "./init.mjs";

export const { /* the names in js/api/exports.txt: scripts/build-js.sh writes them here */ } = initSync(module);
