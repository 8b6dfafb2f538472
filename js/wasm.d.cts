// Types of `pepperpy-caching/wasm` under `require`: see wasm.d.ts.
import type { WasmSource } from "./init.cjs";

declare const wasm: WasmSource;
export = wasm;
