// Cloudflare Workers: workerd (and wrangler's bundler) import a .wasm file as
// a compiled WebAssembly.Module, which initSync instantiates without a fetch.
import module from "./wasm/web/pepperpy_caching_bg.wasm";
import * as wasm from "./wasm/web/pepperpy_caching.js";
import { bind } from "./api.mjs";

wasm.initSync({ module });

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
