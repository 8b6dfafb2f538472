// What a user who skips the README does: the default import, bundled by
// esbuild for the browser. esbuild does not ship the .wasm, so this must fail
// with a message that names the fix.
import * as cache from "pepperpy-caching";

globalThis.consumerResult = Object.keys(cache);
