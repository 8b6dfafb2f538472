// The package as a CommonJS user sees it: require by name.
"use strict";
const { test } = require("node:test");
const assert = require("node:assert/strict");
const {
  MemoryStore,
  LRUPolicy,
  TTLPolicy,
  CacheError,
  CacheKeyError,
  CachePolicyError,
} = require("pepperpy-caching");

test("require resolves to the CommonJS build", () => {
  assert.match(require.resolve("pepperpy-caching"), /[\\/]inline\.cjs$/);
});

test("the API works from CommonJS", async () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 2 }) });
  const value = { a: [1, 2] };
  await store.set("user:1", value, { ttl: 60, metadata: { v: 1 } });
  assert.equal(await store.get("user:1"), value);
  assert.deepEqual(await store.getMetadata("user:1"), { v: 1 });
  await store.set("user:2", 2);
  await store.set("user:3", 3);
  assert.equal(store.size, 2);
  assert.equal(await store.invalidate("user:*"), 2);
  assert.equal(store.getStats().evictions, 1);
  new TTLPolicy({ ttl: 30, maxSize: 500 });
});

test("errors are the exported classes", async () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 2 }) });
  await assert.rejects(store.get(123), (e) => e instanceof CacheKeyError && e instanceof CacheError && e.name === "CacheKeyError");
  assert.throws(() => new LRUPolicy({ maxSize: 1.5 }), CachePolicyError);
});
