// Vite 6: its default build target has no top-level await, which the
// browser build needs, so this imports the inlined build (no await, no asset).
import * as cache from "pepperpy-caching/inline";
import { check } from "./check.mjs";

check(cache).then(
  (result) => (globalThis.consumerResult = result),
  (error) => (globalThis.consumerResult = { error: String(error) }),
);
