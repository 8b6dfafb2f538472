// esbuild --bundle for the browser, `pepperpy-caching/inline` by name.
import * as cache from "pepperpy-caching/inline";
import { check } from "./check.mjs";

check(cache).then(
  (result) => (globalThis.consumerResult = result),
  (error) => (globalThis.consumerResult = { error: String(error) }),
);
