// Parcel 2 for the browser, the default import and `/inline` (they are one build).
import * as cache from "pepperpy-caching";
import * as inline from "pepperpy-caching/inline";
import { check } from "./check.mjs";

Promise.all([check(cache), check(inline)]).then(
  ([result, again]) => (globalThis.consumerResult = JSON.stringify(result) === JSON.stringify(again) ? result : { again }),
  (error) => (globalThis.consumerResult = { error: String(error) }),
);
