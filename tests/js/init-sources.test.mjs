// The sources init() takes, each in a fresh process (the API is made once
// per process): no source in Node (the .wasm read from beside the package,
// not fetched), a Response with and without the wasm MIME type (no warning
// either way), a Promise of bytes, a file: URL string; and a failed fetch.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("../..", import.meta.url));

/** Runs `body` as an ES module in a fresh Node, with `init` and `bytes` in scope; what it printed (stdout and stderr). */
function fresh(body) {
  const script = `
    import { init } from "pepperpy-caching/init";
    import { readFileSync } from "node:fs";
    import { createRequire } from "node:module";
    const bytes = readFileSync(createRequire(import.meta.url).resolve("pepperpy-caching/wasm"));
    const use = (api) => { const s = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 2 }) }); s.setSync("k", 42); return s.getSync("k"); };
    ${body}`;
  return execFileSync(process.execPath, ["--input-type=module", "-e", script], { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

const sources = {
  "no source (Node: read from beside the package)": "await init()",
  "a Response served as application/wasm": 'await init(new Response(bytes, { headers: { "content-type": "application/wasm" } }))',
  "a Response with another type": 'await init(new Response(bytes, { headers: { "content-type": "application/octet-stream" } }))',
  "a Promise of the bytes": "await init(Promise.resolve(bytes))",
  "a file: URL string": 'await init(createRequire(import.meta.url).resolve("pepperpy-caching/wasm").replace(/^/, "file://"))',
  "a compiled module": "await init(await WebAssembly.compile(bytes))",
};

// Reading a file: URL needs process.getBuiltinModule (Node 20.16, 22.3); before, init() says so.
const readsFiles = typeof process.getBuiltinModule === "function";

for (const [name, call] of Object.entries(sources)) {
  test(`init(): ${name}`, { skip: !readsFiles && /no source|file:/.test(name) && "Node before 20.16" }, () => {
    const out = fresh(`const api = ${call}; console.log(use(api)); console.log(use(${call}) === 42 && (${call}) === api);`);
    assert.equal(out, "42\ntrue\n", "works, says nothing, and later calls give the same API");
  });
}

test("init() with a Response that failed: a clear rejection, and the next init() may try again", () => {
  const out = fresh(`
    await init(new Response("", { status: 404, statusText: "Not Found" })).then(
      () => console.log("resolved"),
      (error) => console.log(error.message),
    );
    console.log(use(await init(bytes)));`);
  assert.match(out, /^pepperpy-caching: fetching its wasm from .* failed: 404 Not Found\n42\n$/);
});

test("init() with no source where Node cannot read files: says to pass the bytes", { skip: readsFiles && "this Node reads them" }, () => {
  const out = fresh("await init().then(() => console.log('resolved'), (error) => console.log(error.message));");
  assert.match(out, /cannot read file:.*pass the \.wasm's bytes/);
});
