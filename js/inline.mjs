// `import` of the inlined build: the CommonJS module itself, so that code
// mixing `import` and `require` gets one wasm instance and `instanceof` works
// across both.
import api from "./inline.cjs";

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
