// Node `import`: the CommonJS build itself, so that code mixing `import` and
// `require` gets one wasm instance and `instanceof` works across both.
import api from "./node.cjs";

export const {
  MemoryStore,
  LRUPolicy,
  TTLPolicy,
  ManualClock,
  CacheError,
  CacheKeyError,
  CachePatternError,
  CachePolicyError,
  CacheSerializationError,
  CacheBackendError,
} = api;
