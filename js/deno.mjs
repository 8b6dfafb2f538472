// Deno: reads the .wasm beside this file (needs --allow-read for it) and
// instantiates it synchronously.
import * as wasm from "./wasm/web/pepperpy_caching.js";
import { bind } from "./api.mjs";

wasm.initSync({ module: Deno.readFileSync(new URL("./wasm/web/pepperpy_caching_bg.wasm", import.meta.url)) });

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
