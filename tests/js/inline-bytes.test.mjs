// The inlined wasm decodes on every host: Uint8Array.fromBase64 where it
// exists, else Buffer (Node, Bun), else atob (browsers without
// fromBase64); each way gives the .wasm's exact bytes, in wasm/bytes.mjs (the
// browser build, inflated after) and wasm/bytes.cjs (the Node build).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../..", import.meta.url));
const hosts = {
  "Uint8Array.fromBase64": `Uint8Array.fromBase64 = (text) => ((globalThis.used = "fromBase64"), new Uint8Array(Buf.from(text, "base64")));`,
  Buffer: `delete Uint8Array.fromBase64; const from = Buffer.from; Buffer.from = (...args) => ((globalThis.used = "Buffer"), from.apply(Buffer, args));`,
  atob: `delete Uint8Array.fromBase64; const atob0 = globalThis.atob; globalThis.atob = (text) => ((globalThis.used = "atob"), atob0(text)); delete globalThis.Buffer;`,
};

for (const [way, setup] of Object.entries(hosts)) {
  test(`wasm/bytes.mjs and wasm/bytes.cjs decode through ${way}`, () => {
    const script = `
      import { readFileSync } from "node:fs";
      import { createRequire } from "node:module";
      const require = createRequire(import.meta.url);
      const wasm = readFileSync(require.resolve("pepperpy-caching/wasm"));
      const Buf = Buffer;
      ${setup}
      const { default: esm } = await import("./node_modules/pepperpy-caching/wasm/bytes.mjs");
      const used = globalThis.used;
      globalThis.used = undefined;
      const cjs = require("./node_modules/pepperpy-caching/wasm/bytes.cjs");
      console.log(JSON.stringify([used, globalThis.used, Buf.from(esm).equals(wasm), Buf.from(cjs.buffer, cjs.byteOffset, cjs.byteLength).equals(wasm)]));
    `;
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: repo, encoding: "utf8" });
    const want = way === "Uint8Array.fromBase64" ? "fromBase64" : way;
    assert.deepEqual(JSON.parse(out), [want, want, true, true]);
  });
}
