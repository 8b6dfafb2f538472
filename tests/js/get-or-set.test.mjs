// getOrSet: read-through loading where concurrent calls for one key share one
// loader run (issue 6). No test here waits on time: loads are ordered with
// promises the tests resolve themselves, and load time is read on a ManualClock.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  MemoryStore,
  LRUPolicy,
  TTLPolicy,
  ManualClock,
  CacheKeyError,
  CachePolicyError,
  CacheSerializationError,
} from "pepperpy-caching";

const lru = (maxSize = 100) => new MemoryStore({ policy: new LRUPolicy({ maxSize }) });

/** A promise and the functions that settle it. */
function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A loader that counts its runs and returns what `result` gives. */
function counting(result) {
  const loader = async () => {
    loader.runs++;
    return result();
  };
  loader.runs = 0;
  return loader;
}

describe("getOrSet", () => {
  test("returns the live value without running the loader", async () => {
    const store = lru();
    const value = { cached: true };
    await store.set("k", value);
    const loader = counting(() => "fresh");
    assert.equal(await store.getOrSet("k", loader), value, "the very object");
    assert.equal(loader.runs, 0);
    assert.equal(store.getStats().hits, 1);
  });

  test("on a miss stores what the loader returns, sync or async, and returns it", async () => {
    const store = lru();
    const object = { loaded: [1, 2] };
    assert.equal(await store.getOrSet("sync", () => object), object);
    assert.equal(await store.getOrSet("async", async () => null), null, "null is a value");
    assert.equal(await store.getOrSet("thenable", () => ({ then: (resolve) => resolve(7) })), 7);
    assert.equal(store.getSync("sync"), object);
    assert.equal(store.getSync("async"), null);
    assert.equal(store.getSync("thenable"), 7);
  });

  test("100 concurrent calls for a missing key run the loader once and all get its value", async () => {
    const store = lru();
    const gate = deferred();
    const value = { answer: 42 };
    const loader = counting(() => gate.promise);
    const calls = Array.from({ length: 100 }, () => store.getOrSet("k", loader));
    gate.resolve(value);
    const results = await Promise.all(calls);
    assert.equal(loader.runs, 1);
    assert.ok(results.every((result) => result === value));
    assert.equal(await store.getOrSet("k", loader), value, "cached now");
    assert.equal(loader.runs, 1);
    const { loads, loadFailures, sets, misses, hits } = store.getStats();
    // Every call missed, so all 100 were waiting on the one load.
    assert.deepEqual({ loads, loadFailures, sets, misses, hits }, { loads: 1, loadFailures: 0, sets: 1, misses: 100, hits: 1 });
  });

  test("a failing loader rejects every waiter with its own error, caches nothing, and the next call retries", async () => {
    const store = lru();
    const error = new Error("db down");
    const gate = deferred();
    const failing = counting(() => gate.promise);
    const calls = Array.from({ length: 50 }, () => store.getOrSet("k", failing));
    gate.reject(error);
    const outcomes = await Promise.allSettled(calls);
    assert.equal(failing.runs, 1);
    assert.ok(outcomes.every((o) => o.status === "rejected" && o.reason === error), "the same error, not wrapped");
    assert.equal(await store.has("k"), false);
    assert.equal(store.size, 0);

    const retry = counting(() => "second try");
    assert.equal(await store.getOrSet("k", retry), "second try");
    assert.equal(retry.runs, 1);
    const { loads, loadFailures, sets } = store.getStats();
    assert.deepEqual({ loads, loadFailures, sets }, { loads: 2, loadFailures: 1, sets: 1 });
  });

  test("a loader that throws synchronously rejects (never throws) and leaves no load behind", async () => {
    const store = lru();
    const error = new TypeError("bug in the loader");
    const throwing = () => {
      throw error;
    };
    const first = store.getOrSet("k", throwing);
    const second = store.getOrSet("k", throwing);
    assert.ok(first instanceof Promise);
    await assert.rejects(first, (e) => e === error);
    await assert.rejects(second, (e) => e === error);
    assert.equal(await store.getOrSet("k", () => "ok"), "ok", "the next call loads again");
  });

  test("a loader that returns undefined rejects with CacheSerializationError and stores nothing", async () => {
    const store = lru();
    const calls = [store.getOrSet("k", async () => undefined), store.getOrSet("k", () => "unused")];
    const outcomes = await Promise.allSettled(calls);
    assert.ok(outcomes[0].reason instanceof CacheSerializationError, String(outcomes[0].reason));
    assert.match(outcomes[0].reason.message, /undefined/);
    assert.equal(outcomes[1].reason, outcomes[0].reason, "the waiter shares the load's outcome");
    assert.equal(await store.has("k"), false);
    assert.equal(store.getStats().loadFailures, 1);
    assert.equal(await store.getOrSet("k", () => 0), 0);
  });

  test("different keys load in parallel: one key's loader can wait on another's", async () => {
    const store = lru();
    const bStarted = deferred();
    // A finishes only once B's loader has run; were loads serialised, this would never settle.
    const a = store.getOrSet("a", async () => {
      await bStarted.promise;
      return "A";
    });
    const b = store.getOrSet("b:a much longer key, so the key buffer changes while A loads", () => {
      bStarted.resolve();
      return "B";
    });
    assert.deepEqual(await Promise.all([a, b]), ["A", "B"]);
    assert.equal(store.getSync("a"), "A", "each value under its own key");
    assert.equal(store.getSync("b:a much longer key, so the key buffer changes while A loads"), "B");
    assert.equal(store.getStats().loads, 2);
  });

  test("a bad key, loader or options rejects with set's error class before any loader runs", async () => {
    const store = lru();
    await store.set("existing", "kept");
    store.resetStats();
    const loader = counting(() => "never");
    const cases = [
      [() => store.getOrSet(123, loader), CacheKeyError],
      [() => store.getOrSet(undefined, loader), CacheKeyError],
      [() => store.getOrSet("", loader), CacheKeyError],
      [() => store.getOrSet("k".repeat(8193), loader), CacheKeyError],
      [() => store.getOrSet("k", "not a function"), TypeError],
      [() => store.getOrSet("k", undefined), TypeError],
      [() => store.getOrSet("k", loader, { ttl: -5 }), CachePolicyError],
      [() => store.getOrSet("k", loader, { ttl: NaN }), CachePolicyError],
      [() => store.getOrSet("k", loader, { ttl: "10" }), CachePolicyError],
      [() => store.getOrSet("k", loader, "fast"), CachePolicyError],
      [() => store.getOrSet("k", loader, { metadata: [1] }), CacheSerializationError],
      [() => store.getOrSet("k", loader, { metadata: { when: new Date() } }), CacheSerializationError],
      // Checked on a hit too, so a bad option never depends on what is cached.
      [() => store.getOrSet("existing", loader, { ttl: 0 }), CachePolicyError],
    ];
    for (const [call, Class] of cases) {
      const promise = call();
      assert.ok(promise instanceof Promise, "never throws synchronously");
      await assert.rejects(promise, Class);
    }
    assert.equal(loader.runs, 0);
    assert.deepEqual(await store.keys(), ["existing"]);
    const { hits, misses, loads, sets } = store.getStats();
    assert.deepEqual({ hits, misses, loads, sets }, { hits: 0, misses: 0, loads: 0, sets: 0 });
  });

  test("options apply to the stored value: ttl and metadata", async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new TTLPolicy({ ttl: 60 }), clock });
    await store.getOrSet("k", () => "v", { ttl: 1, metadata: { source: "db" } });
    assert.deepEqual(await store.getMetadata("k"), { source: "db" });
    clock.advance(1000);
    const reload = counting(() => "v2");
    assert.equal(await store.getOrSet("k", reload), "v2", "expired, so loaded again");
    assert.equal(reload.runs, 1);
    assert.deepEqual(await store.getMetadata("k"), {}, "set without metadata this time");
  });

  test("stats: loads, failures and time spent loading on the store's clock", async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }), clock });
    await store.getOrSet("slow", async () => {
      clock.advance(250);
      return 1;
    });
    await assert.rejects(
      store.getOrSet("broken", () => {
        clock.advance(50);
        throw new Error("no");
      }),
      /no/,
    );
    await store.getOrSet("slow", () => 2); // a hit
    const stats = store.getStats();
    assert.deepEqual(
      { ...stats, avgGetLatency: 0 },
      {
        hits: 1, misses: 2, sets: 1, deletes: 0, evictions: 0, expirations: 0, hitRatio: 1 / 3, avgGetLatency: 0,
        loads: 2, loadFailures: 1, totalLoadTime: 300, staleHits: 0, refreshes: 0, refreshFailures: 0, totalWeight: 0,
      },
    );
    assert.equal(stats.avgGetLatency, 0, "the manual clock did not move during any get");
    store.resetStats();
    assert.deepEqual([store.getStats().loads, store.getStats().totalLoadTime], [0, 0]);
  });

  test("load time on the real clock is measured in milliseconds", async () => {
    const store = lru();
    await store.getOrSet("k", () => new Promise((resolve) => setTimeout(() => resolve(1), 20)));
    const { totalLoadTime, avgGetLatency } = store.getStats();
    assert.ok(totalLoadTime >= 15 && totalLoadTime < 5000, `totalLoadTime ${totalLoadTime} ms`);
    assert.ok(avgGetLatency >= 0 && avgGetLatency < 10, `avgGetLatency ${avgGetLatency} ms`);
  });
});
