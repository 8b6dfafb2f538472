// A Worker bundled without the `workerd` export condition (esbuild or any
// bundler for the browser, not wrangler) gets the browser build, which
// compiles the inlined wasm from bytes: workerd forbids that ("Wasm code
// generation disallowed by embedder", which says nothing of the fix). The
// error must name the package and say how to build the Worker instead.
// The Worker imports the package's browser bundle dynamically, to catch the
// error and return it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const repo = join(dirname(fileURLToPath(import.meta.url)), "../..");

test("the browser build on workerd: compiling from bytes is refused with an error that says to use the workerd condition", async (t) => {
  let esbuild;
  try {
    esbuild = createRequire(join(repo, "tests/consumers/package.json"))("esbuild");
  } catch {
    t.skip("tests/consumers has no esbuild (npm ci there)");
    return;
  }
  const built = await esbuild.build({
    stdin: { contents: 'export * from "pepperpy-caching";', resolveDir: repo },
    bundle: true,
    platform: "browser",
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  const worker = `export default {
    async fetch() {
      try {
        const { MemoryStore, LRUPolicy } = await import("./package.mjs");
        const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 2 }) });
        store.setSync("k", 1);
        return new Response("loaded " + store.getSync("k"));
      } catch (error) {
        return new Response(error.constructor.name + ": " + error.message, { status: 500 });
      }
    },
  };`;
  const mf = new Miniflare({
    compatibilityDate: "2026-04-01",
    modulesRoot: "/",
    modules: [
      { type: "ESModule", path: "worker.mjs", contents: worker },
      { type: "ESModule", path: "package.mjs", contents: built.outputFiles[0].text },
    ],
  });
  try {
    const response = await mf.dispatchFetch("http://localhost/");
    const body = await response.text();
    assert.equal(response.status, 500, body);
    assert.match(body, /^CompileError: pepperpy-caching: this runtime forbids compiling WebAssembly from bytes .*"workerd" export condition/);
  } finally {
    await mf.dispose();
  }
});
