// Browsers and bundlers: fetches the .wasm next to the glue (bundlers see the
// `new URL(..., import.meta.url)` inside it and ship the file), with top-level
// await, so the classes are ready once the import resolves.
import * as wasm from "./wasm/web/pepperpy_caching.js";
import { bind } from "./api.mjs";

await wasm.default();

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
} = bind(wasm);
