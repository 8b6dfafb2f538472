// pepperpy-caching/init handed the wrong thing, each in a fresh process (the
// API is made once per process): a value of the wrong type, bytes that are
// not wasm, a WebAssembly module that is not this package's, a relative URL
// with no page to resolve it against. Each is refused with an error that
// names the package and what to pass, and leaves the package usable: the next
// init() with the right bytes works. (Before, a valid module that was not the
// package's was installed by the glue and then failed, "wasm.__wbindgen_start
// is not a function"; every later init() failed too.) Also the sources a user
// has at hand that WebAssembly.compile itself refuses: a DataView, a Blob.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/** In a fresh Node: `attempt` (an expression), then init(bytes); prints one line for each. */
function fresh(attempt) {
  const script = `
    import { init, initSync } from "pepperpy-caching/init";
    import { readFileSync } from "node:fs";
    import { createRequire } from "node:module";
    const bytes = readFileSync(createRequire(import.meta.url).resolve("pepperpy-caching/wasm"));
    // A valid WebAssembly module that is not the package's: no import, one exported memory.
    const other = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 5, 3, 1, 0, 1, 7, 10, 1, 6, 109, 101, 109, 111, 114, 121, 2, 0]);
    try { await ${attempt}; console.log("accepted"); } catch (error) { console.log(error.constructor.name + ": " + error.message); }
    const api = await init(bytes);
    const store = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 2 }) });
    store.setSync("k", 42);
    console.log(store.getSync("k"));`;
  return execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
    .trim()
    .split("\n");
}

const refused = {
  "init(123)": /^TypeError: pepperpy-caching: init\(\) takes a WebAssembly\.Module, the \.wasm's bytes.*got a number$/,
  "init({})": /^TypeError: pepperpy-caching: init\(\) takes .*got an object$/,
  "initSync(new Response(bytes))": /^TypeError: pepperpy-caching: initSync\(\) takes a WebAssembly\.Module or the \.wasm's bytes.*got a Response: await init\(\) instead$/,
  "initSync(Promise.resolve(bytes))": /^TypeError: pepperpy-caching: initSync\(\) takes .*got a Promise: await init\(\) instead$/,
  "init(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]))": /^TypeError: pepperpy-caching: that WebAssembly module is not this package's \.wasm/,
  "init(other)": /^TypeError: pepperpy-caching: that WebAssembly module is not this package's \.wasm/,
  "initSync(other)": /^TypeError: pepperpy-caching: that WebAssembly module is not this package's \.wasm/,
  "init(WebAssembly.compile(other))": /^TypeError: pepperpy-caching: that WebAssembly module is not this package's \.wasm/,
  'init("pepperpy_caching_bg.wasm")': /^TypeError: pepperpy-caching: init\(\) cannot resolve "pepperpy_caching_bg\.wasm" as a URL/,
  "init(new Uint8Array([1, 2, 3]))": /^CompileError: /,
};

for (const [attempt, error] of Object.entries(refused)) {
  test(`${attempt}: refused clearly, and init(bytes) works after it`, () => {
    const [first, after] = fresh(attempt);
    assert.match(first, error);
    assert.equal(after, "42");
  });
}

for (const attempt of [
  "init(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength))",
  "initSync(new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength))",
  "init(new Blob([bytes]))",
  "init(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength))",
]) {
  test(`${attempt}: accepted`, () => {
    assert.deepEqual(fresh(attempt), ["accepted", "42"]);
  });
}
