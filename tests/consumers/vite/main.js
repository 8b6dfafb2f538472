// Vite (current): the default import is the browser build; Vite ships the
// .wasm it names with `new URL(..., import.meta.url)`, and its default build
// target has top-level await.
import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

check(cache).then(
  (result) => (globalThis.consumerResult = result),
  (error) => (globalThis.consumerResult = { error: String(error) }),
);
