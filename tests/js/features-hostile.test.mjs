// A hostile user's review of this session's new JS calls (capacity in size,
// batch calls, dump/load): bad input at each parameter, and a stack
// overflow at every depth of each new call site.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { capMemory, atEveryStackDepth } from "./support.mjs";
import { MemoryStore, LRUPolicy, S3FIFOPolicy, TTLPolicy, CacheError } from "pepperpy-caching";

const KEYS = Array.from({ length: 40 }, (_, i) => `k${i}`);
const weigh = (value) => (value.i % 5) + 1;

/** The engine and JS agree, and a sized store's total is the sum of what it holds, within maxSize. */
function consistent(store, maxSize) {
  assert.deepEqual(store[Symbol.for("pepperpy-caching.audit")](), [], "the engine and JS agree slot by slot");
  const entries = [...store.entries()];
  assert.equal(entries.length, store.size);
  if (maxSize !== undefined) {
    const held = entries.reduce((sum, [, value]) => sum + weigh(value), 0);
    assert.equal(store.getStats().totalWeight, held, "totalWeight is the sum of the sizes held");
    assert.ok(held <= maxSize, `${held} within ${maxSize}`);
  }
}

function stores(sized) {
  const extra = sized ? { maxSize: 40, sizeCalculation: weigh } : {};
  return {
    lru: new MemoryStore({ policy: new LRUPolicy({ maxSize: 30, ttl: 600 }), ...extra }),
    s3fifo: new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 30 }), ...extra }),
    ttl: new MemoryStore({ policy: new TTLPolicy({ ttl: 600, maxSize: 30 }), ...extra }),
  };
}

const calls = {
  getManySync: (s, i) => s.getManySync([KEYS[i % 40], "absent", KEYS[(i + 7) % 40]]),
  setManySync: (s, i) => s.setManySync([[KEYS[i % 40], { i }], [KEYS[(i + 3) % 40], { i: i + 1 }]], { ttl: 60 }),
  deleteManySync: (s, i) => s.deleteManySync([KEYS[i % 40], KEYS[(i + 11) % 40]]),
  dump: (s) => s.dump(),
  load: (s, i) => s.load([[KEYS[i % 40], { value: { i }, ttl: 5000, start: Date.now() }], [KEYS[(i + 5) % 40], { value: { i: i + 2 } }]]),
  setSync: (s, i) => s.setSync(KEYS[i % 40], { i }),
};

describe("a stack overflow at every depth of the new call sites", () => {
  for (const sized of [false, true]) {
    for (const [name, call] of Object.entries(calls)) {
      test(`${name}${sized ? " (sized store)" : ""}`, () => {
        for (const store of Object.values(stores(sized))) {
          for (let i = 0; i < 20; i++) store.setSync(KEYS[i], { i });
          const { calls } = atEveryStackDepth((i) => call(store, i), { tolerate: (error) => error instanceof CacheError });
          assert.ok(calls > 1000);
          store.getSync("k1"); // the next call repairs what was cut short
          consistent(store, sized ? 40 : undefined);
          store.setSync("after", { i: 1 });
          assert.deepEqual(store.getSync("after"), { i: 1 });
          consistent(store, sized ? 40 : undefined);
        }
      });
    }
  }
});

describe("setMany and sizes", () => {
  test("setMany's { size } sizes each entry, as set's does", () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: 10 });
    store.setManySync([["a", 1], ["b", 2]], { size: 3 });
    assert.deepEqual(store.getManySync(["a", "b"]), [1, 2]);
    assert.equal(store.getStats().totalWeight, 6);
  });

  test("setMany's { size } on a store without maxSize is refused, as set's is, and changes nothing", () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) });
    assert.throws(() => store.setSync("a", 1, { size: 3 }), { name: "CachePolicyError" });
    assert.throws(() => store.setManySync([["a", 1]], { size: 3 }), { name: "CachePolicyError" });
    assert.equal(store.size, 0);
    assert.equal(store.getStats().sets, 0);
  });

  test("an entry larger than maxSize in the middle of setMany refuses the whole batch: nothing stored, nothing counted", () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: 10, sizeCalculation: (v) => v });
    store.setSync("old", 4);
    assert.throws(() => store.setManySync([["a", 1], ["old", 50], ["c", 1]]), { name: "CacheEntryTooLargeError" });
    assert.deepEqual(store.getManySync(["a", "old", "c"]), [undefined, 4, undefined]);
    const stats = store.getStats();
    assert.equal(stats.sets, 1);
    assert.equal(stats.totalWeight, 4);
  });

  test("a sizeCalculation that throws in the middle of setMany refuses the whole batch", () => {
    const boom = new Error("boom");
    const store = new MemoryStore({
      policy: new LRUPolicy({ maxSize: 100 }),
      maxSize: 10,
      sizeCalculation: (v) => {
        if (v === 2) throw boom;
        return 1;
      },
    });
    assert.throws(() => store.setManySync([["a", 1], ["b", 2], ["c", 3]]), (e) => e === boom);
    assert.equal(store.size, 0);
    assert.equal(store.getStats().sets, 0);
    assert.equal(store.getStats().totalWeight, 0);
  });

  test("a sized setMany keeps its ttl and metadata", async () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: 10, sizeCalculation: () => 2 });
    store.setManySync([["a", 1], ["b", 2]], { ttl: 60, metadata: { m: 1 } });
    assert.deepEqual(await store.getMetadata("b"), { m: 1 });
    const left = store.remainingTtl("a");
    assert.ok(left > 59 && left <= 60, `ttl left ${left}`);
    assert.equal(store.getStats().totalWeight, 4);
  });
});

describe("dump and load of a sized store", () => {
  test("dump writes each entry's size and load reads it (lru-cache's format): a store sized by set's { size } restarts warm", () => {
    const from = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: 10 });
    from.setSync("a", "x", { size: 2 });
    from.setSync("b", "y", { size: 5 });
    const dumped = from.dump();
    assert.deepEqual(dumped.map(([k, e]) => [k, e.size]), [["a", 2], ["b", 5]]);
    const to = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: 10 });
    assert.equal(to.load(dumped), 2);
    assert.deepEqual(to.getManySync(["a", "b"]), ["x", "y"]);
    assert.equal(to.getStats().totalWeight, 7);
  });

  test("load of lru-cache's sized dump into a smaller sized store keeps the hottest", () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: 6 });
    const stored = store.load([
      ["cold", { value: 1, size: 4 }],
      ["warm", { value: 3, size: 3 }],
      ["hot", { value: 4, size: 3 }],
    ]);
    assert.deepEqual(store.getManySync(["cold", "warm", "hot"]), [undefined, 3, 4]);
    assert.equal(stored, 3, "cold was stored, then evicted for warm and hot");
    assert.equal(store.getStats().totalWeight, 6);
  });

  test("an entry heavier than maxSize (its size or sizeCalculation's) refuses the whole load: nothing stored or counted", () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: 10, sizeCalculation: (v) => v });
    store.setSync("old", 2);
    for (const dump of [
      [["a", { value: 1 }], ["b", { value: 50 }], ["c", { value: 2 }]],
      [["a", { value: 1, size: 1 }], ["b", { value: 1, size: 11 }]],
    ]) {
      assert.throws(() => store.load(dump), { name: "CacheEntryTooLargeError" });
      assert.deepEqual(store.getManySync(["a", "b", "c", "old"]), [undefined, undefined, undefined, 2]);
      assert.equal(store.getStats().sets, 1);
      assert.equal(store.getStats().totalWeight, 2);
    }
  });

  test("a bad size in a dump is refused before anything loads", () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: 10 });
    for (const size of [0, -1, NaN, 1.5, "2", Infinity]) {
      assert.throws(() => store.load([["a", { value: 1, size: 1 }], ["b", { value: 2, size }]]), { name: "CachePolicyError" });
      assert.equal(store.size, 0);
    }
  });
});

test("totalWeight stays exact with sizes near Number.MAX_SAFE_INTEGER (or such a maxSize is refused)", () => {
  const M = Number.MAX_SAFE_INTEGER;
  let store;
  try {
    store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: M });
  } catch (error) {
    assert.equal(error.name, "CachePolicyError");
    return;
  }
  store.setSync("a", 1, { size: M });
  store.setSync("b", 1, { size: M - 1 });
  assert.equal(store.getStats().totalWeight, M - 1);
  store.deleteSync("b");
  assert.equal(store.getStats().totalWeight, 0);
});

describe("the new calls in a capped wasm memory", () => {
  test("setMany, load and dump of a sized store when memory runs out: refused or done, the store consistent, its total exact", async () => {
    const require = createRequire(import.meta.url);
    const dir = realpathSync(join(require.resolve("pepperpy-caching/package.json"), ".."));
    const bytes = capMemory(readFileSync(join(dir, "wasm/pepperpy_caching_bg.wasm")), 64);
    const { initSync } = await import(join(dir, "init.mjs"));
    const api = initSync(new WebAssembly.Module(bytes));
    for (const Policy of [api.LRUPolicy, api.S3FIFOPolicy]) {
      const victim = new api.MemoryStore({ policy: new Policy({ maxSize: 1_000_000 }), maxSize: 5_000_000, sizeCalculation: weigh });
      const hog = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 10_000_000 }) });
      for (let i = 0; ; i++) {
        try {
          hog.setSync(`hog:${i}`, i);
        } catch (error) {
          assert.ok(error instanceof api.CacheBackendError, `refused: ${error}`);
          break;
        }
      }
      let failures = 0;
      for (let round = 0; round < 4000 && failures < 6; round++) {
        const batch = Array.from({ length: 50 }, (_, j) => [`v${round}:${j}`, { i: round + j }]);
        try {
          if (round % 2 === 0) victim.setManySync(batch);
          else victim.load(batch.map(([k, value]) => [k, { value, ttl: 60_000, start: Date.now() }]));
        } catch (error) {
          assert.ok(error instanceof api.CacheError, `a CacheError: ${error}`);
          failures++;
        }
        if (round % 20 === 0) {
          try {
            victim.dump();
          } catch (error) {
            assert.ok(error instanceof api.CacheError, `a CacheError: ${error}`);
          }
        }
      }
      assert.ok(failures > 0, "the memory ran out");
      hog.dispose();
      victim.getSync("v0:0");
      assert.deepEqual(victim[Symbol.for("pepperpy-caching.audit")](), []);
      const entries = [...victim.entries()];
      assert.equal(victim.getStats().totalWeight, entries.reduce((n, [, v]) => n + weigh(v), 0));
      victim.setManySync([["after", { i: 1 }]]);
      assert.deepEqual(victim.getManySync(["after"]), [{ i: 1 }]);
      assert.equal(victim.load(victim.dump()), victim.size);
      victim.dispose();
    }
  });
});


describe("a removal listener that throws or disposes the store mid-batch", () => {
  test("throws: every key of the batch is still handled, every notice delivered, the first error thrown", () => {
    const seen = [];
    const boom = new Error("listener");
    const store = new MemoryStore({
      policy: new LRUPolicy({ maxSize: 2 }),
      onRemove: (value, key, reason) => {
        seen.push(`${key}:${reason}`);
        throw boom;
      },
    });
    store.setManySync([["a", 1], ["b", 2]]);
    assert.throws(() => store.setManySync([["c", 3], ["d", 4]]), (e) => e === boom);
    assert.deepEqual(store.keysSync().sort(), ["c", "d"]);
    assert.deepEqual(seen.splice(0), ["a:evicted", "b:evicted"]);
    assert.throws(() => store.deleteManySync(["c", "d", "zz"]), (e) => e === boom);
    assert.equal(store.size, 0);
    assert.deepEqual(seen.splice(0), ["c:deleted", "d:deleted"]);
    assert.equal(store.getStats().deletes, 2);
    assert.deepEqual(store[Symbol.for("pepperpy-caching.audit")](), []);
  });

  for (const [name, call] of [
    ["setMany", (s) => s.setManySync([["c", 3], ["d", 4], ["e", 5]])],
    ["deleteMany", (s) => s.deleteManySync(["a", "b"])],
    ["load", (s) => s.load([["c", { value: 3 }], ["d", { value: 4 }], ["e", { value: 5 }]])],
  ]) {
    test(`disposes the store during ${name}: a CacheError, and every later call says the store is disposed`, () => {
      const store = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 2 }), maxSize: 4, sizeCalculation: () => 2, onRemove: () => store.dispose() });
      store.setManySync([["a", 1], ["b", 2]]);
      try {
        call(store);
      } catch (error) {
        assert.ok(error instanceof CacheError, `${error}`);
      }
      assert.throws(() => store.getManySync(["a"]), CacheError);
      assert.throws(() => store.setManySync([["x", 1]]), CacheError);
      assert.throws(() => store.dump(), CacheError);
    });
  }
});
