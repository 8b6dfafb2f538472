import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

check(cache).then(
  (result) => postMessage(result),
  (error) => postMessage({ error: String(error) }),
);
