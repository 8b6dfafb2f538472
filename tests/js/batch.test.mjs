// The batch calls of the JS store: getMany, setMany, deleteMany (and their
// Sync forms): order, duplicates, counters per key, shared options, the
// capacity, loads in flight, removal notices, and bad input that rejects
// the whole call and changes nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  MemoryStore,
  LRUPolicy,
  S3FIFOPolicy,
  ManualClock,
  CacheError,
  CacheKeyError,
  CachePolicyError,
  CacheSerializationError,
} from "pepperpy-caching";

const lru = (maxSize = 100, more = {}) => new MemoryStore({ policy: new LRUPolicy({ maxSize }), ...more });
const counts = (store) => {
  const { hits, misses, sets, deletes } = store.getStats();
  return { hits, misses, sets, deletes };
};

test("getMany answers in the order asked, each key counted", async () => {
  for (const store of [lru(), new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 1000 }) })]) {
    store.setSync("a", 1);
    store.setSync("b", 2);
    assert.deepEqual(await store.getMany(["b", "missing", "a", "b"]), [2, undefined, 1, 2]);
    assert.deepEqual(counts(store), { hits: 3, misses: 1, sets: 2, deletes: 0 });
    assert.deepEqual(await store.getMany([]), []);
    assert.deepEqual(store.getManySync(new Set(["a"])), [1], "any iterable of keys");
    assert.deepEqual(counts(store), { hits: 4, misses: 1, sets: 2, deletes: 0 });
  }
});

test("setMany stores every pair with the shared options, the last of a key winning", async () => {
  const clock = new ManualClock();
  const store = lru(100, { clock });
  await store.setMany(
    [
      ["a", 1],
      ["b", 2],
      ["a", 3],
    ],
    { ttl: 1, metadata: { source: "batch" } },
  );
  assert.deepEqual(store.getManySync(["a", "b"]), [3, 2]);
  assert.deepEqual(await store.getMetadata("b"), { source: "batch" });
  assert.equal(store.getStats().sets, 3, "each pair counts as a set");
  store.setManySync(new Map([["long", "kept"]]));
  await store.setMany([]);
  assert.equal(store.getStats().sets, 4);
  clock.advance(2000);
  assert.deepEqual(store.getManySync(["a", "b", "long"]), [undefined, undefined, "kept"], "the TTL applies to each");
  assert.deepEqual(await store.getMetadata("long"), {});
});

test("deleteMany counts each live entry once", async () => {
  const store = lru();
  store.setManySync([
    ["a", 1],
    ["b", 2],
    ["c", 3],
  ]);
  assert.equal(await store.deleteMany(["a", "missing", "a", "c"]), 2);
  assert.equal(store.getStats().deletes, 2);
  assert.deepEqual(await store.keys(), ["b"]);
  assert.equal(store.deleteManySync([]), 0);
});

test("bad input rejects the whole batch and changes nothing", async () => {
  const store = lru(3);
  store.setManySync([
    ["a", "a"],
    ["b", "b"],
  ]);
  store.resetStats();
  const before = counts(store);
  const long = "k".repeat(9000);
  for (const bad of ["", long, 42, null, undefined, "\ud800"]) {
    await assert.rejects(store.getMany(["a", bad, "b"]), CacheKeyError);
    await assert.rejects(store.setMany([["a", "new"], ["c", "c"], [bad, "x"]]), CacheKeyError);
    await assert.rejects(store.deleteMany(["a", "b", bad]), CacheKeyError);
  }
  await assert.rejects(store.setMany([["a", "new"], ["c", undefined]]), CacheSerializationError);
  await assert.rejects(store.setMany([["a", "new"], ["c", "c"]], { ttl: 0 }), CachePolicyError);
  await assert.rejects(store.setMany([["a", "new"]], { ttl: 1, nope: 1 }), CachePolicyError);
  await assert.rejects(store.setMany([["a", "new"], "c"]), TypeError);
  await assert.rejects(store.setMany("ab"), TypeError, "a string is not a list of pairs");
  await assert.rejects(store.getMany("ab"), TypeError, "nor a list of keys");
  await assert.rejects(store.getMany(undefined), TypeError);
  assert.deepEqual(counts(store), before, "failed batches count nothing");
  assert.deepEqual(await store.keys(), ["b", "a"]);
  assert.deepEqual(store.getManySync(["a", "b"]), ["a", "b"]);
});

test("what is checked is what is stored: a pair read once", async () => {
  const store = lru();
  let reads = 0;
  const pair = ["k", "v"];
  Object.defineProperty(pair, 0, {
    get() {
      reads++;
      return reads === 1 ? "k" : "";
    },
  });
  store.setManySync([pair]);
  assert.equal(reads, 1);
  assert.deepEqual(await store.keys(), ["k"]);
});

test("batches keep the capacity and the LRU order", () => {
  const store = lru(3);
  store.setManySync(["a", "b", "c", "d", "e"].map((k) => [k, k]));
  assert.deepEqual(store.keysSync(), ["e", "d", "c"]);
  assert.equal(store.getStats().evictions, 2);
  store.getManySync(["c", "d"]);
  store.setManySync([["f", "f"]]);
  assert.deepEqual(store.keysSync().sort(), ["c", "d", "f"]);
});

test("a batch write cancels a load in flight", async () => {
  for (const write of ["setMany", "deleteMany"]) {
    const store = lru();
    let release;
    const gate = new Promise((resolve) => (release = resolve));
    const load = store.getOrSet("user:1", async () => {
      await gate;
      return "stale";
    });
    if (write === "setMany") store.setManySync([["user:1", "fresh"]]);
    else assert.equal(store.deleteManySync(["user:1"]), 0);
    release();
    assert.equal(await load, "stale", "the caller gets its loader's value");
    assert.equal(store.getSync("user:1"), write === "setMany" ? "fresh" : undefined);
  }
});

test("a throwing onRemove listener does not cut a batch short", () => {
  const seen = [];
  const store = lru(2, {
    onRemove(value, key, reason) {
      seen.push(`${key}:${reason}`);
      throw new Error(`listener ${key}`);
    },
  });
  store.setManySync([
    ["a", 1],
    ["b", 2],
  ]);
  assert.throws(
    () =>
      store.setManySync([
        ["c", 3],
        ["d", 4],
      ]),
    /listener a/,
    "the first listener error, after the whole batch",
  );
  assert.deepEqual(seen, ["a:evicted", "b:evicted"]);
  assert.deepEqual(store.keysSync().sort(), ["c", "d"]);
  assert.throws(() => store.deleteManySync(["c", "d"]), /listener c/);
  assert.equal(store.size, 0, "both deleted");
});

test("a disposed store refuses batches, empty ones too", async () => {
  const store = lru();
  store.dispose();
  await assert.rejects(store.getMany([]), CacheError);
  await assert.rejects(store.setMany([]), CacheError);
  await assert.rejects(store.deleteMany([]), CacheError);
});

test("a listener that changes the keys array mid-batch changes nothing of the batch", () => {
  const clock = new ManualClock();
  const keys = ["a", "b"];
  const store = lru(100, {
    clock,
    onRemove() {
      keys[1] = ""; // a bad key, after the check
    },
  });
  store.setSync("a", 1, { ttl: 1 });
  store.setSync("b", 2);
  clock.advance(2000);
  assert.deepEqual(store.getManySync(keys), [undefined, 2], "the keys as they were when checked");
});

test("setMany reads its options once: a getter cannot make one entry differ", async () => {
  const store = lru();
  let reads = 0;
  const options = {
    get ttl() {
      reads++;
      return reads === 1 ? 60 : 0; // 0 would be refused
    },
    metadata: {
      get n() {
        return ++reads;
      },
    },
  };
  store.setManySync(
    [
      ["a", 1],
      ["b", 2],
    ],
    options,
  );
  assert.deepEqual(store.getManySync(["a", "b"]), [1, 2]);
  assert.deepEqual(await store.getMetadata("a"), await store.getMetadata("b"), "one metadata for all");
  assert.ok(store.remainingTtl("b") > 59);
});

test("a sized store checks every entry's size before a batch writes any", () => {
  const store = new MemoryStore({
    policy: new LRUPolicy({ maxSize: 100 }),
    maxSize: 10,
    sizeCalculation: (value) => {
      if (value === "boom") throw new Error("cannot size");
      return value.length;
    },
  });
  store.setSync("kept", "x");
  assert.throws(() => store.setManySync([["a", "aa"], ["b", "far too long"]]), CacheError);
  assert.throws(() => store.setManySync([["a", "aa"], ["b", "boom"]]), /cannot size/);
  assert.deepEqual(store.keysSync(), ["kept"], "nothing written, nothing evicted");
  store.setManySync([["a", "aa"], ["b", "bbb"]]);
  assert.deepEqual(store.getManySync(["a", "b", "kept"]), ["aa", "bbb", "x"]);
});

test("setMany's options reach each entry whatever set takes (tags here)", async () => {
  const store = lru();
  store.setManySync(
    [
      ["a", 1],
      ["b", 2],
    ],
    { tags: ["team:7"] },
  );
  store.setSync("c", 3);
  assert.equal(await store.invalidateTags(["team:7"]), 2);
  assert.deepEqual(store.getManySync(["a", "b", "c"]), [undefined, undefined, 3]);
});
