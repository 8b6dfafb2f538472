import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

console.log(JSON.stringify(await check(cache)));
