// Deno, with no permission (`deno run main.mjs`): the package's Deno build
// takes its .wasm through a source-phase import, so it reads and fetches nothing.
import * as cache from "pepperpy-caching";
import { check } from "./check.mjs";

console.log(JSON.stringify(await check(cache)));
