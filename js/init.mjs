// Hand the package its wasm yourself (`pepperpy-caching/init`):
//   const { MemoryStore } = await init(source);
// where source is a WebAssembly.Module, the .wasm's bytes, its URL (string or
// URL: fetched, or read from disk for a file: URL in Node), a Request, a
// Response, a Blob, or a Promise of one of these; or, without a wait,
// initSync(moduleOrBytes). Anything else, or a module that is not this
// package's, is refused with a TypeError before the glue sees it.
// Both return the API, the same object on every call. The .wasm is
// `pepperpy-caching/wasm`. The package's browser, workerd and Deno entries
// are this module with the source each runtime has.
//
// The glue keeps only its synchronous instantiation (scripts/build-js.sh cuts
// wasm-bindgen's async loader from it): init() compiles here and hands the
// module to initSync, so a bundle that never calls init() carries no loader.
import * as glue from "./wasm/pepperpy_caching.mjs";
import { bind } from "./api.mjs";

let api;
// The compilation an init() has under way. initSync must not instantiate
// meanwhile: init() would then finish into an instance already taken.
let loading;

/** Where init() finds the .wasm when given no source (beside this file). */
const defaultSource = () => new URL("./wasm/pepperpy_caching_bg.wasm", import.meta.url);

const kind = (value) =>
  value === null ? "null" : typeof value !== "object" ? `a ${typeof value}` : `a ${value.constructor?.name ?? "object"}`.replace(/^a Object$/, "an object");

/** The bytes in `source` (any BufferSource: WebAssembly.compile itself refuses a DataView), or undefined. */
const bytesOf = (source) =>
  ArrayBuffer.isView(source)
    ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength)
    : /^\[object (Shared)?ArrayBuffer\]$/.test(Object.prototype.toString.call(source))
      ? source
      : undefined;

/**
 * `module`, if it is this package's wasm. The glue keeps whatever instance it
 * made, so a wrong module must be refused before it gets there: a module
 * without these exports would be installed, fail, and fail every later call.
 */
function checked(module) {
  const names = WebAssembly.Module.exports(module).map((e) => e.name);
  if (!["memory", "__wbindgen_start", "limits"].every((name) => names.includes(name))) {
    throw new TypeError(
      "pepperpy-caching: that WebAssembly module is not this package's .wasm (pepperpy-caching/wasm, of the same version as the package)",
    );
  }
  return module;
}

/** The compiled module from any source init() takes. */
async function compile(source) {
  source = await source;
  if (source instanceof WebAssembly.Module) return checked(source);
  if (typeof Request === "function" && source instanceof Request) source = await fetch(source);
  if (typeof Blob === "function" && source instanceof Blob) source = await source.arrayBuffer();
  if (typeof source === "string" || source instanceof URL) {
    let url;
    try {
      url = new URL(source, globalThis.location?.href);
    } catch {
      throw new TypeError(
        `pepperpy-caching: init() cannot resolve ${JSON.stringify(String(source))} as a URL (a relative URL needs a page's location): pass an absolute URL (a URL object resolved against your module or page) or the bytes`,
      );
    }
    if (url.protocol === "file:") {
      // fetch has no file: URLs in Node: read the file (through no import a bundler would follow).
      const fs = globalThis.process?.getBuiltinModule?.("node:fs");
      if (fs === undefined) {
        throw new Error(`pepperpy-caching: init() cannot read ${url} here (Node before 20.16 has no process.getBuiltinModule): pass the .wasm's bytes`);
      }
      source = fs.readFileSync(url);
    } else {
      source = await fetch(url);
    }
  }
  if (typeof Response === "function" && source instanceof Response) {
    if (!source.ok) throw new Error(`pepperpy-caching: fetching its wasm from ${source.url} failed: ${source.status} ${source.statusText}`);
    // Streaming compilation needs the wasm MIME type; without it, no warning, just the bytes.
    const type = source.headers.get("content-type") ?? "";
    if (typeof WebAssembly.compileStreaming === "function" && type.split(";")[0].trim() === "application/wasm") {
      return WebAssembly.compileStreaming(source);
    }
    source = await source.arrayBuffer();
  }
  const bytes = bytesOf(source);
  if (bytes === undefined) {
    throw new TypeError(
      `pepperpy-caching: init() takes a WebAssembly.Module, the .wasm's bytes (an ArrayBuffer or a typed array), its URL, a Request, a Response or a Blob, or a Promise of one; got ${kind(source)}`,
    );
  }
  return checked(await WebAssembly.compile(bytes));
}

/** Instantiates the wasm from `source` (once) and returns the API. */
export async function init(source) {
  if (api !== undefined) return api;
  loading ??= compile(source === undefined ? defaultSource() : source)
    .then((module) => {
      glue.initSync({ module });
      return (api ??= bind(glue));
    })
    .finally(() => {
      // Settled: a failed load lets a later call try again (another source),
      // and initSync is no longer told to wait.
      loading = undefined;
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
    if (!(module instanceof WebAssembly.Module)) {
      const bytes = bytesOf(module);
      if (bytes === undefined) {
        const wait = module instanceof Promise || (typeof Response === "function" && module instanceof Response);
        throw new TypeError(
          `pepperpy-caching: initSync() takes a WebAssembly.Module or the .wasm's bytes (an ArrayBuffer or a typed array); got ${kind(module)}${wait ? ": await init() instead" : ""}`,
        );
      }
      module = new WebAssembly.Module(bytes);
    }
    glue.initSync({ module: checked(module) });
    api = bind(glue);
  }
  return api;
}
