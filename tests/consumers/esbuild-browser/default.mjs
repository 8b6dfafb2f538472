// What a user who skips the README does: the default import, bundled by
// esbuild for the browser. It holds the wasm inlined, as /inline does.
import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

check(cache).then(
  (result) => (globalThis.consumerResult = result),
  (error) => (globalThis.consumerResult = { error: String(error) }),
);
