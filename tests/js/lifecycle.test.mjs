// Lifecycle and parity with lru-cache and the Rust engine (issue 11): dispose,
// the onRemove listener and its reasons, peek, remainingTtl, iteration in the
// documented order, strict option names everywhere.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  MemoryStore,
  LRUPolicy,
  S3FIFOPolicy,
  TTLPolicy,
  ManualClock,
  CacheError,
  CachePolicyError,
} from "pepperpy-caching";

function listening(policy, clock) {
  const seen = [];
  const store = new MemoryStore({ policy, clock, onRemove: (value, key, reason) => seen.push([key, value, reason]) });
  return { store, seen };
}

describe("onRemove: every value that leaves, with its key and why", () => {
  test("evicted, replaced, deleted, invalidated, cleared", async () => {
    const { store, seen } = listening(new LRUPolicy({ maxSize: 2 }));
    store.setSync("a", 1);
    store.setSync("b", 2);
    store.setSync("c", 3);
    assert.deepEqual(seen.splice(0), [["a", 1, "evicted"]]);
    store.setSync("b", 20);
    assert.deepEqual(seen.splice(0), [["b", 2, "replaced"]]);
    assert.equal(store.deleteSync("b"), true);
    assert.deepEqual(seen.splice(0), [["b", 20, "deleted"]]);
    store.setSync("user:1", "u");
    assert.equal(await store.invalidate("user:*"), 1);
    assert.deepEqual(seen.splice(0), [["user:1", "u", "invalidated"]]);
    await store.clear();
    assert.deepEqual(seen.splice(0), [["c", 3, "cleared"]]);
    assert.equal(store.size, 0);
  });

  test("expired: when a read finds it, when a write reclaims it, when the store counts", () => {
    const clock = new ManualClock();
    const { store, seen } = listening(new TTLPolicy({ ttl: 1 }), clock);
    store.setSync("read", 1);
    store.setSync("counted", 2);
    clock.advance(1000);
    assert.equal(store.getSync("read"), undefined);
    assert.deepEqual(seen.splice(0), [["read", 1, "expired"]]);
    assert.equal(store.size, 0);
    assert.deepEqual(seen.splice(0), [["counted", 2, "expired"]]);
    assert.equal(store.getStats().expirations, 2);
  });

  test("a listener may use the store; one that throws leaves it working", () => {
    let store;
    const seen = [];
    store = new MemoryStore({
      policy: new LRUPolicy({ maxSize: 2 }),
      onRemove: (value, key, reason) => {
        seen.push(key);
        if (reason === "evicted" && !key.startsWith("archived:")) store.setSync(`archived:${key}`, value);
        if (key === "boom") throw new Error("listener failed");
      },
    });
    store.setSync("a", 1);
    store.setSync("b", 2);
    store.setSync("c", 3); // evicts a, whose archive evicts b, whose archive evicts c...
    assert.deepEqual(seen, ["a", "b", "c", "archived:a"]);
    assert.deepEqual(store.keysSync(), ["archived:c", "archived:b"]);
    store.setSync("boom", 0);
    assert.throws(() => store.deleteSync("boom"), /listener failed/);
    assert.equal(store.hasSync("boom"), false, "the delete completed");
    store.setSync("after", 1);
    assert.equal(store.getSync("after"), 1);
  });

  test("onRemove must be a function", () => {
    assert.throws(() => new MemoryStore({ policy: new LRUPolicy({ maxSize: 1 }), onRemove: "no" }), CachePolicyError);
  });
});

describe("peek, remainingTtl and iteration", () => {
  test("peek counts nothing and leaves LRU's order alone", () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 2 }) });
    store.setSync("old", 1);
    store.setSync("new", 2);
    assert.equal(store.peek("old"), 1);
    assert.equal(store.peek("missing"), undefined);
    store.setSync("third", 3);
    assert.equal(store.hasSync("old"), false, "peek did not make it recently used");
    const { hits, misses } = store.getStats();
    assert.deepEqual({ hits, misses }, { hits: 0, misses: 0 });
  });

  test("remainingTtl in seconds, Infinity without expiry, undefined without an entry", () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }), clock });
    store.setSync("ttl", 1, { ttl: 10 });
    store.setSync("forever", 2);
    clock.advance(2500);
    assert.equal(store.remainingTtl("ttl"), 7.5);
    assert.equal(store.remainingTtl("forever"), Infinity);
    assert.equal(store.remainingTtl("missing"), undefined);
    clock.advance(7500);
    assert.equal(store.remainingTtl("ttl"), undefined);
  });

  test("entries, keys and values in the documented order, as the engine keeps it", async () => {
    const lru = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    for (const k of ["a", "b", "c"]) lru.setSync(k, k.toUpperCase());
    lru.getSync("a");
    assert.deepEqual([...lru.entries()], [["a", "A"], ["c", "C"], ["b", "B"]], "LRU: most recently used first");
    assert.deepEqual([...lru], [...lru.entries()]);
    assert.deepEqual([...lru.values()], ["A", "C", "B"]);
    assert.deepEqual(await lru.keys(), ["a", "c", "b"]);
    assert.deepEqual(lru.keysSync("[bc]"), ["c", "b"]);
    assert.equal(lru.getStats().hits, 1, "iterating counted nothing");

    const ttl = new MemoryStore({ policy: new TTLPolicy({ ttl: 60 }) });
    for (const k of ["a", "b", "c"]) ttl.setSync(k, 1);
    ttl.getSync("a");
    assert.deepEqual(ttl.keysSync(), ["c", "b", "a"], "TTL: most recently set first");

    const s3 = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 10 }) });
    for (let i = 0; i < 12; i++) s3.setSync(`k${i}`, i);
    const keys = s3.keysSync();
    assert.equal(keys.length, 10);
    assert.deepEqual(new Set(keys).size, 10);
  });

  test("an entry removed during iteration is skipped", () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    for (const k of ["a", "b", "c"]) store.setSync(k, k);
    const seen = [];
    for (const [key] of store) {
      seen.push(key);
      if (key === "c") store.deleteSync("b");
    }
    assert.deepEqual(seen, ["c", "a"]);
  });
});

describe("dispose", () => {
  test("pending loads reject and their loaders are told; every later call throws a CacheError", async () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    store.setSync("k", 1);
    let signal;
    const pending = store.getOrSet("slow", (context) => {
      signal = context.signal;
      return new Promise(() => {});
    });
    const waiter = store.getOrSet("slow", () => 2);
    store.dispose();
    await assert.rejects(pending, (e) => e instanceof CacheError && /disposed/.test(e.message));
    await assert.rejects(waiter, CacheError);
    assert.equal(signal.aborted, true);
    assert.throws(() => store.getSync("k"), CacheError);
    assert.throws(() => store.setSync("k", 2), CacheError);
    assert.throws(() => store.size, CacheError);
    await assert.rejects(store.getOrSet("k", () => 3), CacheError);
    store.dispose(); // again: nothing
  });

  test("a refresh under way when the store is disposed still settles the promise waitUntil holds", async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }), clock });
    await store.getOrSet("k", () => 1, { ttl: 1, grace: 10 });
    clock.advance(1000);
    let kept;
    let signal;
    const hung = (context) => {
      signal = context.signal;
      return new Promise(() => {});
    };
    assert.equal(await store.getOrSet("k", hung, { ttl: 1, grace: 10, waitUntil: (p) => (kept = p) }), 1);
    store.dispose();
    await kept; // settles (it would hang the test otherwise)
    assert.equal(signal.aborted, true);
  });

  test("Symbol.dispose where the runtime has it", { skip: typeof Symbol.dispose !== "symbol" }, () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    store[Symbol.dispose]();
    assert.throws(() => store.setSync("k", 1), CacheError);
  });
});

test("unknown option names are refused everywhere", async () => {
  const policy = new LRUPolicy({ maxSize: 10 });
  assert.throws(() => new LRUPolicy({ maxSize: 10, tll: 1 }), CachePolicyError);
  assert.throws(() => new S3FIFOPolicy({ maxsize: 10 }), CachePolicyError);
  assert.throws(() => new TTLPolicy({ ttl: 1, max: 10 }), CachePolicyError);
  assert.throws(() => new MemoryStore({ policy, dispose: () => {} }), CachePolicyError);
  const store = new MemoryStore({ policy });
  assert.throws(() => store.setSync("k", 1, { tll: 60 }), /unknown set option "tll"/);
  await assert.rejects(store.set("k", 1, { ttl: 60, meta: {} }), CachePolicyError);
  await assert.rejects(store.getOrSet("k", () => 1, { ttl: 60, grase: 5 }), CachePolicyError);
  assert.equal(store.size, 0);
});
