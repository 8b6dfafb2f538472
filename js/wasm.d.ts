// Types of `pepperpy-caching/wasm`, the package's .wasm file. What importing
// it gives is your bundler's choice (a URL with esbuild's file loader or
// webpack's asset modules, a WebAssembly.Module in wrangler): each is a
// source that `init` (pepperpy-caching/init) takes.
import type { WasmSource } from "./init.js";

declare const wasm: WasmSource;
export default wasm;
