// The README's JavaScript quick start, run as written, then checked.
import { test } from "node:test";
import assert from "node:assert/strict";
// --- README quick start, verbatim (its body runs in the test below) ---
import { MemoryStore, LRUPolicy, TTLPolicy, CacheError, CacheKeyError, CachePolicyError } from "pepperpy-caching";

test("the README quick start works as written", async () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 1000 }) });
  await store.set("key", "value", { ttl: 60 });          // ttl in seconds
  const value = await store.get("key");                   // undefined on a miss
  await store.delete("key");                              // true if it existed
  await store.set("key", { any: ["JS", "value"] }, { metadata: { version: 1, author: "user" } });
  const meta = await store.getMetadata("key");            // a plain object, or undefined
  await store.updateMetadata("key", { version: 2 });      // merges: { version: 2, author: "user" }
  const removed = await store.invalidate("user:*");       // Redis glob syntax, returns a count
  await store.has("key"); await store.keys("user:*"); await store.clear(); store.size;
  const stats = store.getStats();  // { hits, misses, sets, deletes, evictions, expirations, hitRatio, avgGetLatency } (ms)
  new TTLPolicy({ ttl: 30, maxSize: 500 });
  // --- end of quick start ---

  assert.equal(value, "value");
  assert.deepEqual(meta, { version: 1, author: "user" });
  assert.equal(removed, 0);
  assert.equal(store.size, 0);
  assert.deepEqual(Object.keys(stats).sort(), [
    "avgGetLatency", "deletes", "evictions", "expirations", "hitRatio", "hits", "loadFailures", "loads", "misses",
    "refreshFailures", "refreshes", "sets", "staleHits", "totalLoadTime", "totalWeight",
  ]);
  assert.equal(stats.hits, 1);
  assert.equal(stats.sets, 2);
  assert.ok(new CacheKeyError("x") instanceof CacheError);
  assert.ok(new CachePolicyError("x") instanceof Error);
});
