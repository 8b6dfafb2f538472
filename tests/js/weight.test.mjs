// Capacity in size: the store's maxSize, sizeCalculation and set's { size }
// (lru-cache's names and rules), under every policy.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  MemoryStore,
  LRUPolicy,
  S3FIFOPolicy,
  TTLPolicy,
  ManualClock,
  CacheError,
  CacheEntryTooLargeError,
  CachePolicyError,
  CacheKeyError,
  toOpenTelemetry,
} from "pepperpy-caching";

const policies = {
  lru: () => new LRUPolicy({ maxSize: 1000 }),
  "lru (no refresh on get)": () => new LRUPolicy({ maxSize: 1000, refreshOnGet: false }),
  "s3-fifo": () => new S3FIFOPolicy({ maxSize: 1000 }),
  ttl: () => new TTLPolicy({ ttl: 3600, maxSize: 1000 }),
};

const byLength = (value) => value.length;

/** Everything observable, to check a refused call changed nothing. */
function snapshot(store) {
  const { totalWeight, sets, evictions, deletes } = store.getStats();
  return { entries: [...store.entries()], totalWeight, sets, evictions, deletes };
}

/** The invariants: the total is the sum of the sizes held, within maxSize. */
function checkTotal(store, sizeOf, maxSize) {
  let sum = 0;
  for (const [key, value] of store.entries()) sum += sizeOf(value, key);
  assert.equal(store.getStats().totalWeight, sum);
  assert.ok(sum <= maxSize, `${sum} > ${maxSize}`);
}

for (const [name, policy] of Object.entries(policies)) {
  describe(`maxSize under ${name}`, () => {
    test("a heavy entry evicts as many entries as it takes, never itself", () => {
      const removed = [];
      const store = new MemoryStore({
        policy: policy(),
        maxSize: 100,
        sizeCalculation: byLength,
        onRemove: (value, key, reason) => removed.push([key, reason]),
      });
      for (let i = 0; i < 10; i++) store.setSync(`k${i}`, "x".repeat(10));
      assert.equal(store.getStats().totalWeight, 100);
      store.setSync("big", "y".repeat(45));
      assert.equal(store.getSync("big"), "y".repeat(45));
      assert.equal(store.size, 6, "five entries of 10 made room for 45");
      assert.equal(removed.filter(([, r]) => r === "evicted").length, 5);
      assert.equal(store.getStats().evictions, 5);
      checkTotal(store, byLength, 100);
      // Growing an entry in place: the others make room, the key stays.
      store.setSync("big", "z".repeat(95));
      assert.equal(store.getSync("big"), "z".repeat(95));
      checkTotal(store, byLength, 100);
      assert.ok(removed.some(([k, r]) => k === "big" && r === "replaced"));
      assert.ok(!removed.some(([k, r]) => k === "big" && r === "evicted"));
    });

    test("an entry larger than maxSize is refused and nothing changes", () => {
      const store = new MemoryStore({ policy: policy(), maxSize: 50, sizeCalculation: byLength });
      store.setSync("a", "x".repeat(20));
      store.setSync("b", "x".repeat(20));
      const before = snapshot(store);
      assert.throws(() => store.setSync("c", "x".repeat(51)), CacheEntryTooLargeError);
      assert.throws(() => store.setSync("a", "x".repeat(51)), (e) => e instanceof CacheError && /maxSize of 50/.test(e.message));
      assert.deepEqual(snapshot(store), before, "the key's old entry stays too");
      store.setSync("c", "x".repeat(50));
      assert.deepEqual(store.keysSync(), ["c"]);
    });

    test("per-set size wins over sizeCalculation; getOrSet is sized by sizeCalculation", async () => {
      const store = new MemoryStore({ policy: policy(), maxSize: 10, sizeCalculation: () => 1 });
      store.setSync("a", "v", { size: 9 });
      store.setSync("b", "v");
      assert.equal(store.getStats().totalWeight, 10);
      store.setSync("c", "v", { size: 2 });
      assert.equal(store.getSync("c"), "v");
      assert.ok(store.getStats().totalWeight <= 10);
      assert.equal(await store.getOrSet("d", async () => "loaded"), "loaded");
      assert.ok(store.getStats().totalWeight <= 10);
    });

    test("delete, invalidate and clear give the size back", () => {
      const store = new MemoryStore({ policy: policy(), maxSize: 100, sizeCalculation: byLength });
      store.setSync("user:1", "abc");
      store.setSync("user:2", "abcd");
      store.setSync("post:1", "ab");
      assert.equal(store.getStats().totalWeight, 9);
      store.deleteSync("post:1");
      assert.equal(store.getStats().totalWeight, 7);
      store.invalidateSync("user:1");
      assert.equal(store.getStats().totalWeight, 4);
      store.clearSync();
      assert.equal(store.getStats().totalWeight, 0);
      store.resetStats();
      store.setSync("x", "abcde");
      assert.equal(store.getStats().totalWeight, 5, "resetStats leaves the total alone: it is no count");
    });

    test("random operations keep the total equal to the sizes held and within maxSize", () => {
      const clock = new ManualClock();
      const sizes = new Map();
      const store = new MemoryStore({ policy: policy(), clock, maxSize: 60, sizeCalculation: (v) => v.n });
      let seed = 7;
      const rand = (n) => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      };
      for (let step = 0; step < 3000; step++) {
        const key = `k${rand(30)}`;
        const op = rand(10);
        if (op < 5) {
          const n = 1 + rand(70);
          if (n > 60) {
            const before = snapshot(store);
            assert.throws(() => store.setSync(key, { n }), CacheEntryTooLargeError);
            assert.deepEqual(snapshot(store), before);
          } else {
            store.setSync(key, { n }, rand(4) === 0 ? { ttl: 1 + rand(3) } : undefined);
            assert.equal(store.getSync(key)?.n, n, "the key just set is held");
            sizes.set(key, n);
          }
        } else if (op < 8) {
          store.getSync(key);
        } else if (op < 9) {
          store.deleteSync(key);
        } else {
          clock.advance(1);
        }
        if (step % 50 === 0) checkTotal(store, (v) => v.n, 60);
      }
      checkTotal(store, (v) => v.n, 60);
    });
  });
}

describe("maxSize options follow lru-cache's rules", () => {
  const lru = () => new LRUPolicy({ maxSize: 10 });

  test("maxSize is a positive integer; sizeCalculation a function and needs maxSize", () => {
    for (const maxSize of [0, -1, 1.5, NaN, Infinity, "10", null, 2 ** 60]) {
      assert.throws(() => new MemoryStore({ policy: lru(), maxSize }), CachePolicyError, String(maxSize));
    }
    assert.throws(() => new MemoryStore({ policy: lru(), maxSize: 10, sizeCalculation: 5 }), CachePolicyError);
    assert.throws(() => new MemoryStore({ policy: lru(), sizeCalculation: byLength }), /needs the store's maxSize/);
  });

  test("every entry needs a size; a size must be a positive integer", () => {
    const store = new MemoryStore({ policy: lru(), maxSize: 10 });
    assert.throws(() => store.setSync("a", 1), /needs each entry's size/);
    for (const size of [0, -1, 1.5, NaN, "2", 2 ** 60]) {
      assert.throws(() => store.setSync("a", 1, { size }), CachePolicyError, String(size));
    }
    store.setSync("a", 1, { size: 3 });
    assert.equal(store.getStats().totalWeight, 3);
    const unsized = new MemoryStore({ policy: lru() });
    assert.throws(() => unsized.setSync("a", 1, { size: 1 }), /size needs the store's maxSize/);
    assert.equal(unsized.size, 0);
    assert.equal(unsized.getStats().totalWeight, 0);
  });

  test("sizeCalculation that throws or returns nonsense leaves the store unchanged", () => {
    let mode = "ok";
    const store = new MemoryStore({
      policy: lru(),
      maxSize: 10,
      sizeCalculation: (value, key) => {
        assert.equal(typeof key, "string");
        if (mode === "throw") throw new Error("boom");
        if (mode === "bad") return 0;
        return value;
      },
    });
    store.setSync("a", 4);
    store.setSync("b", 4);
    const before = snapshot(store);
    mode = "throw";
    assert.throws(() => store.setSync("a", 9), /boom/);
    assert.throws(() => store.setSync("c", 9), /boom/);
    mode = "bad";
    assert.throws(() => store.setSync("c", 9), /sizeCalculation's result must be a positive integer, got 0/);
    assert.deepEqual(snapshot(store), before);
    mode = "ok";
    store.setSync("c", 9);
    assert.deepEqual(store.keysSync(), ["c"]);
  });

  test("a bad key fails as a key error before sizeCalculation runs", () => {
    let calls = 0;
    const store = new MemoryStore({ policy: lru(), maxSize: 10, sizeCalculation: () => ++calls });
    assert.throws(() => store.setSync("", 1), CacheKeyError);
    assert.equal(calls, 0);
  });

  test("a sizeCalculation that uses the store sees it consistent", () => {
    let store;
    store = new MemoryStore({
      policy: lru(),
      maxSize: 10,
      sizeCalculation: (value, key) => {
        // Re-entry: writes another key, reads this one.
        if (key === "outer") store.setSync("inner", 2);
        store.getSync(key);
        return value;
      },
    });
    store.setSync("outer", 8);
    assert.deepEqual(new Set(store.keysSync()), new Set(["outer", "inner"]));
    assert.equal(store.getStats().totalWeight, 10);
  });
});

describe("maxSize under hostile callers", () => {
  test("a getOrSet load too large for the store rejects with CacheEntryTooLargeError and stores nothing", async () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }), maxSize: 10, sizeCalculation: byLength });
    await assert.rejects(store.getOrSet("k", async () => "x".repeat(20)), CacheEntryTooLargeError);
    assert.equal(store.size, 0);
    assert.equal(store.getStats().totalWeight, 0);
  });

  test("a listener that writes during a multi-entry eviction leaves the sizes consistent", () => {
    const store = new MemoryStore({
      policy: new S3FIFOPolicy({ maxSize: 100 }),
      maxSize: 20,
      sizeCalculation: (v) => v,
      onRemove: (value, key, why) => {
        if (why === "evicted" && key.startsWith("k")) store.setSync(`listener-${key}`, 1);
      },
    });
    for (let i = 0; i < 10; i++) store.setSync(`k${i}`, 2);
    store.setSync("big", 15);
    assert.equal(store.getSync("big"), 15);
    checkTotal(store, (v) => v, 20);
  });

  test("a sizeCalculation that disposes the store: the set fails, nothing is stored", () => {
    const store = new MemoryStore({
      policy: new LRUPolicy({ maxSize: 10 }),
      maxSize: 10,
      sizeCalculation: () => {
        store.dispose();
        return 1;
      },
    });
    assert.throws(() => store.setSync("a", 1), /disposed/);
  });
});

test("OpenTelemetry exports the total size as a gauge, not a sum", () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }), maxSize: 100, sizeCalculation: byLength });
  store.setSync("a", "abc");
  const metrics = toOpenTelemetry({ store }).resourceMetrics[0].scopeMetrics[0].metrics;
  const weight = metrics.find((m) => m.name === "pepperpy_cache.total_weight");
  assert.ok(weight.gauge && !weight.sum, "a level, not a cumulative count");
  const [point] = weight.gauge.dataPoints;
  assert.equal(Number(point.asDouble ?? point.asInt), 3);
});
