// webpack, target "web": the default import is the browser build; webpack
// ships the .wasm it names with `new URL(..., import.meta.url)` as an asset.
import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

check(cache).then(
  (result) => (globalThis.consumerResult = result),
  (error) => (globalThis.consumerResult = { error: String(error) }),
);
