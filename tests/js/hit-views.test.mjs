// A getSync hit writes into the engine's memory (the access ring under exact
// LRU, the access count under S3-FIFO) through views it does not re-check on
// every hit: the view's own bounds stand for the version check. These cases
// make each view out of date in turn (the memory grown by another store,
// clear, dispose) and check that the hit still reaches the engine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { MemoryStore, LRUPolicy, S3FIFOPolicy } from "pepperpy-caching";

const AUDIT = Symbol.for("pepperpy-caching.audit");

// The wasm instance the stores above run in (the glue `pepperpy-caching` loads in Node).
const require = createRequire(import.meta.url);
const glue = require(join(realpathSync(join(require.resolve("pepperpy-caching/package.json"), "..")), "wasm/pepperpy_caching.cjs"));

/**
 * Grows the one wasm memory every store shares (its views detach): stores
 * whose arrays take the free memory until it has to grow, then freed (the
 * next call finds that room free again and takes more).
 */
function growMemory() {
  const memory = glue.wasmMemory();
  const before = memory.buffer;
  const size = before.byteLength;
  const made = [];
  while (memory.buffer === before && made.length < 10_000) {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 1 << 16 }) });
    store.setSync("big", 1);
    made.push(store);
  }
  for (const store of made) store.dispose();
  assert.ok(memory.buffer.byteLength > size, `the memory grew (${size} bytes, then ${memory.buffer.byteLength})`);
  assert.equal(before.byteLength, 0, "the views taken before it are detached");
}

/** An exact-LRU store of 3 that reports what it evicts. */
function lru() {
  const evicted = [];
  const store = new MemoryStore({
    policy: new LRUPolicy({ maxSize: 3 }),
    onRemove: (_value, key, reason) => {
      if (reason === "evicted") evicted.push(key);
    },
  });
  for (const k of ["a", "b", "c"]) store.setSync(k, k);
  return { store, evicted };
}

test("an exact-LRU hit after the memory grew under the store still moves its entry", () => {
  const { store, evicted } = lru();
  growMemory();
  assert.equal(store.getSync("a"), "a");
  store.setSync("d", "d");
  assert.deepEqual(evicted, ["b"], "b was the least recently used: a was read after the memory grew");
  assert.deepEqual(store[AUDIT](), []);
  assert.equal(store.getStats().hits, 1);
});

test("an exact-LRU hit that fills the ring after the memory grew is replayed in order", () => {
  const { store, evicted } = lru();
  // 1,023 hits on c, then the memory grows, then the hit that fills the ring is on a.
  for (let i = 0; i < 1023; i++) store.getSync("c");
  growMemory();
  store.getSync("b");
  for (let i = 0; i < 2000; i++) store.getSync(i % 2 === 0 ? "c" : "a");
  store.setSync("d", "d");
  assert.deepEqual(evicted, ["b"]);
  assert.deepEqual(store[AUDIT](), []);
});

test("hits after clear() reach the new engine arrays", () => {
  const { store, evicted } = lru();
  store.clear();
  for (const k of ["a", "b", "c"]) store.setSync(k, k);
  store.getSync("a");
  store.setSync("d", "d");
  assert.deepEqual(evicted, ["b"]);
  assert.deepEqual(store[AUDIT](), []);
});

test("S3-FIFO hits after the memory grew count, and nothing is written to freed memory", () => {
  const stores = Array.from({ length: 4 }, () => new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 50 }) }));
  for (const [n, store] of stores.entries()) for (let i = 0; i < 50; i++) store.setSync(`k${i}`, n * 100 + i);
  growMemory();
  for (const [n, store] of stores.entries()) {
    for (let i = 0; i < 50; i++) assert.equal(store.getSync(`k${i}`), n * 100 + i);
    // Read twice, then 100 new keys: the entries read survive the small queue.
    for (let i = 0; i < 50; i++) store.getSync(`k${i}`);
    for (let i = 0; i < 100; i++) store.setSync(`new${i}`, i);
    assert.deepEqual(store[AUDIT](), []);
    const kept = Array.from({ length: 50 }, (_, i) => store.peek(`k${i}`)).filter((v) => v !== undefined).length;
    assert.ok(kept >= 40, `store ${n}: ${kept} of the 50 entries read twice kept`);
    assert.equal(store.getStats().hits, 100);
  }
});

test("a hit after dispose() throws, under every policy", () => {
  for (const policy of [new LRUPolicy({ maxSize: 4 }), new S3FIFOPolicy({ maxSize: 4 })]) {
    const store = new MemoryStore({ policy });
    store.setSync("a", 1);
    assert.equal(store.getSync("a"), 1);
    store.dispose();
    assert.throws(() => store.getSync("a"), /disposed/);
  }
});
