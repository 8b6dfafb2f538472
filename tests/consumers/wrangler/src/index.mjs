// A Worker: wrangler bundles it (the package's `workerd` build imports its
// .wasm as a module, which wrangler ships beside the bundle), workerd runs it.
import * as cache from "pepperpy-caching";
import { check } from "../check.mjs";

export default {
  async fetch() {
    return Response.json(await check(cache));
  },
};
