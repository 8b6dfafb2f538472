// Hand the package its wasm yourself (`pepperpy-caching/init`):
//   const { MemoryStore } = await init(source);
// where source is a WebAssembly.Module, the .wasm's bytes, its URL (string or
// URL, fetched), a fetch Response, or a Promise of one of these; or, without
// a wait, initSync(moduleOrBytes). Both return the API, the same object on
// every call. The .wasm is `pepperpy-caching/wasm`. The package's browser,
// workerd and Deno entries are this module with the source each runtime has.
import * as glue from "./wasm/pepperpy_caching.mjs";
import { bind } from "./api.mjs";

let api;

/** Instantiates the wasm from `source` (once) and returns the API. */
export async function init(source) {
  if (api === undefined) {
    await glue.default({ module_or_path: source });
    api ??= bind(glue);
  }
  return api;
}

/** Instantiates the wasm from a WebAssembly.Module or its bytes (once) and returns the API. */
export function initSync(module) {
  if (api === undefined) {
    glue.initSync({ module });
    api = bind(glue);
  }
  return api;
}
