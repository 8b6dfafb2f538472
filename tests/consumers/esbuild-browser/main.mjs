// esbuild --bundle for the browser: esbuild has no asset pipeline for
// `new URL(..., import.meta.url)`, so this imports the inlined build.
import * as cache from "pepperpy-caching/inline";
import { check } from "./check.mjs";

check(cache).then(
  (result) => (globalThis.consumerResult = result),
  (error) => (globalThis.consumerResult = { error: String(error) }),
);
