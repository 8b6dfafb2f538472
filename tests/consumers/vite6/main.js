// Vite 6: its default build target has no top-level await; the default
// import has none (the wasm is inlined and instantiated synchronously).
import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

check(cache).then(
  (result) => (globalThis.consumerResult = result),
  (error) => (globalThis.consumerResult = { error: String(error) }),
);
