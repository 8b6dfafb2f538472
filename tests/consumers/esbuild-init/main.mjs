// Handing the package its wasm: esbuild's file loader copies the .wasm
// (`pepperpy-caching/wasm`) into the output and gives its URL to `init`.
import { init } from "pepperpy-caching/init";
import wasmUrl from "pepperpy-caching/wasm";
import { check } from "./check.mjs";

init(wasmUrl)
  .then(check)
  .then(
    (result) => (globalThis.consumerResult = result),
    (error) => (globalThis.consumerResult = { error: String(error) }),
  );
