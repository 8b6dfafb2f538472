// webpack, target "web": the default import, the browser build with its wasm inlined.
import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

check(cache).then(
  (result) => (globalThis.consumerResult = result),
  (error) => (globalThis.consumerResult = { error: String(error) }),
);
