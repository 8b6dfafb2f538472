// webpack, target "node": the default import resolves to the inlined build,
// so the bundle needs no file beside it.
import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

check(cache).then((result) => console.log(JSON.stringify(result)));
