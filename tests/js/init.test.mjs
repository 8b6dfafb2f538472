// pepperpy-caching/init: init() and initSync() hand back one API, bound to
// the one wasm instance the glue calls.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { init, initSync } from "pepperpy-caching/init";

const require = createRequire(import.meta.url);
const bytes = readFileSync(require.resolve("pepperpy-caching/wasm"));

test("initSync while init() is still loading: refused, and the API init() returns works", async () => {
  // A load that fails is not left pending: the next init() starts afresh.
  await assert.rejects(init(new Uint8Array([0, 97, 115, 109, 9, 9, 9, 9])));
  const loading = init(bytes);
  // The glue's async load would finish after this and take over from an
  // instance initSync made, leaving the API bound to the other one.
  assert.throws(() => initSync(bytes), /init\(\) is still loading/);
  const api = await loading;
  assert.equal(initSync(bytes), api, "then initSync returns the same API");
  assert.equal(await init(bytes), api);
  const store = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 10 }) });
  store.setSync("a", 1);
  store.setSync("b", 2);
  assert.equal(store.getSync("a"), 1);
  assert.equal(store.getSync("b"), 2);
  assert.equal(store.deleteSync("a"), true);
  assert.deepEqual(store.keysSync(), ["b"]);
  assert.equal(store.invalidateSync("b"), 1);
  assert.equal(store.size, 0);
});
