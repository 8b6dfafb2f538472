// Browsers and bundlers with an asset pipeline for it (webpack, Vite): they
// see `new URL(..., import.meta.url)` below and ship the .wasm;
// a top-level await instantiates it, so the classes are ready once the import
// resolves. Toolchains without either: `pepperpy-caching/inline`, or hand the
// wasm over yourself with `pepperpy-caching/init`.
import { init } from "./init.mjs";

const wasmUrl = new URL("./wasm/pepperpy_caching_bg.wasm", import.meta.url);
const api = await init(wasmUrl).catch((error) => {
  throw new Error(
    `pepperpy-caching could not load its WebAssembly from ${wasmUrl}: is the file served there? ` +
      'A bundler without an asset pipeline for `new URL(..., import.meta.url)` (esbuild) does not ship it: ' +
      'import "pepperpy-caching/inline" instead, or see the package README',
    { cause: error },
  );
});

export const {
  MemoryStore,
  toOpenTelemetry,
  S3FIFOPolicy,
  LRUPolicy,
  TTLPolicy,
  ManualClock,
  CacheError,
  CacheKeyError,
  CachePatternError,
  CachePolicyError,
  CacheSerializationError,
  CacheBackendError,
  CacheReentrantLoadError,
  CacheTimeoutError,
} = api;
