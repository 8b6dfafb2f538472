// Types of `pepperpy-caching/init`: hand the package its wasm yourself.

/** What `init` and `initSync` return: the package's classes, bound to one wasm instance. */
export type Api = typeof import("pepperpy-caching");

/** Where the wasm comes from: a compiled module, its bytes, its URL, or a fetch Response. */
export type WasmSource = WebAssembly.Module | ArrayBuffer | ArrayBufferView | URL | string | Response;

/**
 * Instantiates the package's wasm from `source` (once; later calls return the
 * same API). Without a source, loads `wasm/pepperpy_caching_bg.wasm` from
 * beside the package's files: fetched, or read from disk in Node 20.16 or
 * later (under `require`, a source is needed).
 */
export function init(source?: WasmSource | Promise<WasmSource>): Promise<Api>;

/**
 * Instantiates the wasm synchronously from a compiled module or its bytes
 * (once). Throws while an {@link init} is still loading: await that instead.
 */
export function initSync(module: WebAssembly.Module | ArrayBuffer | ArrayBufferView): Api;

declare global {
  // Declared by lib.dom, lib.webworker, @types/node, Bun and Deno; merged here
  // (empty) so that these types also check in a project with none of them.
  namespace WebAssembly {
    interface Module {}
  }
  interface Response {}
  interface URL {}
}
