// pepperpy-caching/init under require(): its own instance (the CommonJS web
// glue), fed the .wasm by hand; with no source it says what to pass.
"use strict";
const { test } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");

test("require('pepperpy-caching/init'): initSync with the .wasm's bytes, init() without a source refused", async () => {
  const { init, initSync } = require("pepperpy-caching/init");
  await assert.rejects(init(), /needs the wasm: pass its bytes/);
  const bytes = fs.readFileSync(require.resolve("pepperpy-caching/wasm"));
  const api = initSync(bytes);
  assert.equal(initSync(bytes), api, "the same API on every call");
  assert.equal(await init(), api, "init() after initSync: the same API");
  const store = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 2 }) });
  store.setSync("k", 1);
  assert.equal(store.getSync("k"), 1);
  assert.notEqual(api.MemoryStore, require("pepperpy-caching").MemoryStore, "an instance of its own");
});
