import * as cache from "pepperpy-caching";
import { createRequire } from "node:module";
import { check } from "./check.mjs";

const required = createRequire(import.meta.url)("pepperpy-caching");
if (required.MemoryStore !== cache.MemoryStore) throw new Error("import and require gave two instances");
console.log(JSON.stringify(await check(cache)));
