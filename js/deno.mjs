// Deno: a source-phase import gives the compiled WebAssembly.Module through
// the module graph, so no permission is needed (no file read, no fetch).
import source module from "./wasm/pepperpy_caching_bg.wasm";
import { initSync } from "./init.mjs";

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
} = initSync(module);
