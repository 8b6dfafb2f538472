// Bun: `bun main.mjs`, and `bun build` into one file run elsewhere. Bun
// resolves the default import to the inlined build, so no path is baked in.
import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

check(cache).then((result) => console.log(JSON.stringify(result)));
