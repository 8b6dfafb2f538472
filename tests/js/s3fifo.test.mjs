// S3FIFOPolicy from JS: the same engine and rules as in Rust (scan resistance,
// capacity, TTL, strict options, typed errors), through the built package.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { MemoryStore, S3FIFOPolicy, LRUPolicy, ManualClock, CachePolicyError, CacheError } from "pepperpy-caching";

test("a scan of one-off keys does not flush the keys read again and again", () => {
  const run = (policy) => {
    const store = new MemoryStore({ policy });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 50; i++) if (store.getSync(`hot${i}`) === undefined) store.setSync(`hot${i}`, i);
    }
    for (let i = 0; i < 1000; i++) store.setSync(`scan${i}`, i);
    let kept = 0;
    for (let i = 0; i < 50; i++) if (store.getSync(`hot${i}`) === i) kept++;
    assert.equal(store.size, 100);
    return kept;
  };
  assert.equal(run(new S3FIFOPolicy({ maxSize: 100 })), 50, "S3-FIFO keeps every hot key");
  assert.equal(run(new LRUPolicy({ maxSize: 100 })), 0, "LRU lost them all to the scan");
});

test("capacity, evictions and a default TTL", async () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 10, ttl: 5 }), clock });
  for (let i = 0; i < 25; i++) await store.set(`k${i}`, { i });
  assert.equal(store.size, 10);
  assert.equal(store.getStats().evictions, 15);
  clock.advance(5000);
  assert.equal(await store.get("k24"), undefined, "expired after the policy's ttl");
  assert.equal(store.size, 0);
  await store.set("own", 1, { ttl: 60 });
  clock.advance(10_000);
  assert.equal(await store.get("own"), 1, "its own ttl wins");
});

test("options are checked: typed errors, unknown names refused", () => {
  for (const bad of [{}, { maxSize: 0 }, { maxSize: -1 }, { maxSize: 1.5 }, { maxSize: "10" }, { maxSize: 10, ttl: 0 }]) {
    assert.throws(() => new S3FIFOPolicy(bad), (e) => e instanceof CachePolicyError && e instanceof CacheError, JSON.stringify(bad));
  }
  assert.throws(() => new S3FIFOPolicy({ maxSize: 10, tll: 5 }), CachePolicyError);
  assert.throws(() => new S3FIFOPolicy(), CachePolicyError);
  const p = new S3FIFOPolicy({ maxSize: 7 });
  assert.deepEqual([p.maxSize, p.ttl, Object.isFrozen(p)], [7, undefined, true]);
});

test("CommonJS exports the same classes", () => {
  const require = createRequire(import.meta.url);
  const cjs = require("pepperpy-caching");
  assert.equal(cjs.S3FIFOPolicy, S3FIFOPolicy);
  assert.equal(typeof cjs.CacheReentrantLoadError, "function");
});
