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
// The instantiation an init() has under way. initSync must not start a
// second one meanwhile: the glue would end up calling whichever finished
// last, while the API was bound to the memory of the other.
let loading;

/** Instantiates the wasm from `source` (once) and returns the API. */
export async function init(source) {
  if (api !== undefined) return api;
  loading ??= glue
    .default({ module_or_path: source })
    .then(() => (api ??= bind(glue)))
    .catch((error) => {
      // A failed instantiation, or a bind that threw: a later call may try
      // again (another source), and initSync is no longer told to wait.
      loading = undefined;
      throw error;
    });
  return loading;
}

/**
 * Instantiates the wasm from a WebAssembly.Module or its bytes (once) and
 * returns the API. Throws while an init() is still loading: await that instead.
 */
export function initSync(module) {
  if (api === undefined) {
    if (loading !== undefined) {
      throw new Error("pepperpy-caching: init() is still loading the wasm: await it instead of calling initSync()");
    }
    glue.initSync({ module });
    api = bind(glue);
  }
  return api;
}
