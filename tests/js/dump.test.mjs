// Warm restart in JS: MemoryStore#dump() and #load(entries), lru-cache's
// format, coldest entry first.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, LRUPolicy, TTLPolicy, S3FIFOPolicy, ManualClock, CachePolicyError, CacheKeyError } from "pepperpy-caching";
import { rng } from "./support.mjs";

/** A store whose removals are logged as "reason key=value". */
function logged(policy, clock) {
  const log = [];
  const store = new MemoryStore({
    policy,
    clock,
    onRemove: (value, key, reason) => log.push(`${reason} ${key}=${value}`),
  });
  return { store, log };
}

/** The dump as read back from JSON, as if loaded the moment it was taken (no `start`: no downtime). */
const roundTrip = (dump) =>
  JSON.parse(JSON.stringify(dump)).map(([key, entry]) => {
    delete entry.start;
    return [key, entry];
  });
/** Key, value and TTL (to the microsecond) of each entry. */
const shape = (dump) => dump.map(([k, e]) => [k, e.value, e.ttl === undefined ? undefined : Math.round(e.ttl * 1000)]);

describe("dump", () => {
  test("coldest first, lru-cache's format, counting nothing", () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }), clock });
    store.setSync("a", 1);
    store.setSync("b", 2, { ttl: 60, metadata: { tag: "x" } });
    store.setSync("c", 3);
    store.getSync("a");
    store.resetStats();
    const before = Date.now();
    const dump = store.dump();
    assert.deepEqual(
      dump.map(([key]) => key),
      ["b", "c", "a"],
      "least recently used first",
    );
    assert.deepEqual(dump[1], ["c", { value: 3 }]);
    assert.deepEqual(dump[0][1].metadata, { tag: "x" });
    assert.equal(dump[0][1].ttl, 60_000);
    assert.ok(dump[0][1].start >= before && dump[0][1].start <= Date.now());
    assert.equal(store.getStats().hits + store.getStats().misses, 0, "nothing counted");
    assert.deepEqual(store.keysSync(), ["a", "c", "b"], "no order changed");
  });

  test("expired entries are left out, and the TTL left is what is dumped", () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }), clock });
    store.setSync("short", 1, { ttl: 1 });
    store.setSync("long", 2, { ttl: 10 });
    clock.advance(2_000);
    const dump = store.dump();
    assert.deepEqual(dump.map(([key]) => key), ["long"]);
    assert.equal(dump[0][1].ttl, 8_000);
  });

  test("TTLPolicy: the soonest to expire first", () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new TTLPolicy({ ttl: 100, maxSize: 10 }), clock });
    store.setSync("late", 1, { ttl: 50 });
    store.setSync("soon", 2, { ttl: 5 });
    store.setSync("default", 3);
    store.setSync("soon2", 4, { ttl: 5 });
    assert.deepEqual(store.dump().map(([key]) => key), ["soon", "soon2", "late", "default"]);
  });

  test("S3FIFOPolicy: access counts", () => {
    const store = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 100 }) });
    store.setSync("read", 1);
    store.setSync("unread", 2);
    store.getSync("read");
    store.getSync("read");
    const dump = Object.fromEntries(store.dump());
    assert.equal(dump.read.hits, 2);
    assert.equal(dump.unread.hits, undefined);
  });
});

describe("load", () => {
  test("into an equal store: the same entries, order and evictions (random workloads)", () => {
    for (const [name, make] of [
      ["LRU", () => new LRUPolicy({ maxSize: 16 })],
      ["TTL", () => new TTLPolicy({ ttl: 100, maxSize: 16 })],
    ]) {
      for (let seed = 1; seed <= 60; seed++) {
        const random = rng(seed);
        const pick = (n) => Math.floor(random() * n);
        const clockA = new ManualClock();
        const clockB = new ManualClock();
        const a = logged(make(), clockA);
        const b = logged(make(), clockB);
        let value = 0;
        const step = (stores, keys) => {
          const r = random();
          const key = `k${pick(keys)}`;
          const ttl = random() < 0.5 ? undefined : 1 + pick(20);
          const advance = 1_000 * (1 + pick(3));
          value++;
          for (const [store, clock] of stores) {
            if (r < 0.45) store.setSync(key, value, ttl === undefined ? undefined : { ttl });
            else if (r < 0.85) store.getSync(key);
            else if (r < 0.9) store.deleteSync(key);
            else clock.advance(advance);
          }
        };
        for (let i = pick(120); i > 0; i--) step([[a.store, clockA]], 24);
        const dump = a.store.dump();
        assert.equal(b.store.load(roundTrip(dump)), dump.length);
        assert.deepEqual(shape(b.store.dump()), shape(dump), `${name} ${seed}`);
        if (name === "LRU") assert.deepEqual(b.store.keysSync(), a.store.keysSync(), `${name} ${seed}: the same order`);
        a.log.length = 0;
        assert.deepEqual(b.log, []);
        for (let i = 1 + pick(120); i > 0; i--) {
          step([[a.store, clockA], [b.store, clockB]], 40);
          assert.deepEqual(
            b.log.filter((n) => n.startsWith("evicted")),
            a.log.filter((n) => n.startsWith("evicted")),
            `${name} seed ${seed}: the same evictions`,
          );
        }
        assert.deepEqual(
          b.store.dump().map(([k, e]) => [k, e.value]),
          a.store.dump().map(([k, e]) => [k, e.value]),
          `${name} seed ${seed}: the same contents in the same order`,
        );
      }
    }
  });

  test("S3FIFOPolicy into an equal store: each entry back on its queue, in order (random workloads)", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const random = rng(seed);
      const pick = (n) => Math.floor(random() * n);
      const a = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 16 }) });
      for (let i = 20 + pick(200); i > 0; i--) {
        const key = `k${pick(30)}`;
        if (random() < 0.5) a.setSync(key, i);
        else a.getSync(key);
      }
      const dump = a.dump();
      assert.ok(dump.every(([, e]) => typeof e.probation === "boolean"));
      const b = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 16 }) });
      b.load(roundTrip(dump));
      assert.deepEqual(b.keysSync(), a.keysSync(), `seed ${seed}: the same queues, in the same order`);
      assert.deepEqual(b.dump(), roundTrip(dump), `seed ${seed}: the same dump`);
    }
  });

  test("into a smaller LRU store: the most recently used", () => {
    const a = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) });
    for (let i = 0; i < 100; i++) a.setSync(`k${i}`, i);
    for (let i = 0; i < 100; i += 7) a.getSync(`k${i}`);
    const b = logged(new LRUPolicy({ maxSize: 10 }));
    assert.equal(b.store.load(a.dump()), 100);
    assert.deepEqual(b.store.keysSync(), a.keysSync().slice(0, 10));
    assert.equal(b.log.filter((n) => n.startsWith("evicted")).length, 90);
  });

  test("into a smaller S3-FIFO store: the entries read often", () => {
    const a = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 100 }) });
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 150; i++) {
        a.setSync(`cold${i}:${round}`, i);
        if (i % 10 === 0) {
          for (let h = 0; h < 15; h++) if (a.getSync(`hot${h}`) === undefined) a.setSync(`hot${h}`, h);
        }
      }
    }
    const hot = Array.from({ length: 15 }, (_, h) => `hot${h}`);
    assert.ok(hot.every((k) => a.hasSync(k)));
    const b = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 20 }) });
    b.load(a.dump());
    assert.deepEqual(hot.filter((k) => !b.hasSync(k)), [], "every hot key kept");
    assert.equal(b.size, 20);
  });

  test("TTLs run on while the process is down; lru-cache's entries load", () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }), clock });
    const now = Date.now();
    const stored = store.load([
      // lru-cache's dump: ttl as set, start when set (Date.now() ms), size.
      ["gone", { value: 1, ttl: 3_000, start: now - 5_000, size: 1 }],
      ["left", { value: 2, ttl: 10_000, start: now - 5_000, size: 1 }],
      ["forever", { value: 3 }],
      // lru-cache's entry without a TTL, in a cache where some have one.
      ["none", { value: 4, ttl: 0, start: 0, size: 1 }],
    ]);
    assert.equal(stored, 3);
    assert.equal(store.remainingTtl("none"), Infinity);
    assert.equal(store.getSync("gone"), undefined);
    const left = store.remainingTtl("left");
    assert.ok(left > 4.9 && left <= 5, `about 5 s left: ${left}`);
    assert.equal(store.remainingTtl("forever"), Infinity);
    clock.advance(5_100);
    assert.equal(store.getSync("left"), undefined);
    assert.equal(store.getSync("forever"), 3);
  });

  test("an entry without a TTL takes the policy's", () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new TTLPolicy({ ttl: 10 }), clock });
    store.load([["k", { value: 1 }]]);
    assert.equal(store.remainingTtl("k"), 10);
  });

  test("bad input throws and changes nothing", () => {
    const { store, log } = logged(new LRUPolicy({ maxSize: 10 }));
    store.setSync("there", 1);
    let deep = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    const good = ["good", { value: 2 }];
    const cases = [
      [undefined, CachePolicyError],
      ["not an array", CachePolicyError],
      [[good, "not a pair"], CachePolicyError],
      [[good, ["k"]], CachePolicyError],
      [[good, ["", { value: 1 }]], CacheKeyError],
      [[good, [42, { value: 1 }]], CacheKeyError],
      [[good, ["k", null]], CachePolicyError],
      [[good, ["k", { value: undefined }]], CachePolicyError],
      [[good, ["k", { value: 1, ttl: -5 }]], CachePolicyError],
      [[good, ["k", { value: 1, ttl: "60" }]], CachePolicyError],
      [[good, ["k", { value: 1, ttl: Infinity }]], CachePolicyError],
      [[good, ["k", { value: 1, ttl: 1000, start: "yesterday" }]], CachePolicyError],
      [[good, ["k", { value: 1, hits: 7 }]], CachePolicyError],
      [[good, ["k", { value: 1, probation: "yes" }]], CachePolicyError],
      [[good, ["k", { value: 1, tll: 1000 }]], CachePolicyError],
      [[good, ["k", { value: 1, metadata: { deep } }]], Error],
      [[good, ["k", { value: 1, metadata: "not an object" }]], Error],
      [[good, ["k", { value: 1, tags: "user:42" }]], CachePolicyError],
      [[good, ["k", { value: 1, tags: ["a", "a"] }]], CachePolicyError],
      [[good, ["k", { value: 1, tags: [""] }]], CachePolicyError],
      [[good, ["k", { value: 1, tags: [7] }]], CachePolicyError],
      // An entry whose TTL ran out is skipped, but its tags are checked first.
      [[good, ["k", { value: 1, ttl: 1, start: 0, tags: [""] }]], CachePolicyError],
    ];
    for (const [input, kind] of cases) {
      assert.throws(() => store.load(input), kind, JSON.stringify(input)?.slice(0, 80));
      assert.deepEqual(store.keysSync(), ["there"]);
      assert.equal(store.getSync("there"), 1);
    }
    assert.deepEqual(log, []);
  });

  test("tags go through a dump and a load, and invalidateTags finds them after", async () => {
    for (const policy of [new LRUPolicy({ maxSize: 10 }), new S3FIFOPolicy({ maxSize: 10 }), new TTLPolicy({ ttl: 60, maxSize: 10 })]) {
      const store = new MemoryStore({ policy });
      store.setSync("page:1", 1, { tags: ["user:42", "team:7"] });
      store.setSync("page:2", 2, { tags: ["team:7"] });
      store.setSync("plain", 3);
      const dumped = store.dump();
      const byKey = Object.fromEntries(dumped);
      assert.deepEqual(byKey["page:1"].tags, ["user:42", "team:7"]);
      assert.equal("tags" in byKey.plain, false);
      // The dump's arrays are copies: changing them changes nothing in the store.
      byKey["page:1"].tags.push("mutated");
      assert.deepEqual(await store.getTags("page:1"), ["user:42", "team:7"]);
      byKey["page:1"].tags.pop();
      const restarted = new MemoryStore({ policy });
      assert.equal(restarted.load(JSON.parse(JSON.stringify(dumped))), 3);
      assert.deepEqual(await restarted.getTags("page:1"), ["user:42", "team:7"]);
      assert.deepEqual(await restarted.getTags("plain"), []);
      assert.equal(restarted.invalidateTagsSync(["team:7"]), 2);
      assert.deepEqual(restarted.keysSync(), ["plain"]);
    }
  });

  test("a key already held is replaced, and a throwing listener does not stop the load", () => {
    let calls = 0;
    const store = new MemoryStore({
      policy: new LRUPolicy({ maxSize: 10 }),
      onRemove: () => {
        calls++;
        throw new Error(`listener ${calls}`);
      },
    });
    store.setSync("a", 1);
    store.setSync("b", 2);
    assert.throws(() => store.load([["a", { value: 10 }], ["b", { value: 20 }], ["c", { value: 30 }]]), /listener 1/);
    assert.equal(calls, 2);
    assert.deepEqual(Object.fromEntries(store.entries()), { a: 10, b: 20, c: 30 });
  });

  test("a disposed store refuses both", () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    store.dispose();
    assert.throws(() => store.dump());
    assert.throws(() => store.load([]));
  });
});

describe("load into a store with maxSize", () => {
  test("sizes: the dump's (lru-cache writes them) or the sizeCalculation's; too large fails first", () => {
    const a = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }) });
    for (let i = 0; i < 6; i++) a.setSync(`k${i}`, "x".repeat(i + 1));
    const sized = () =>
      new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), maxSize: 10, sizeCalculation: (v) => v.length });
    const b = sized();
    assert.equal(b.load(a.dump()), 6);
    // Loaded coldest first, LRU evicting for each: k4 (5) left only k3 (4)
    // beside it, and k5 (6) fits with neither (4 + 5 + 6 > 10).
    assert.deepEqual(b.keysSync(), ["k5"]);
    const dumped = Object.fromEntries(b.dump());
    assert.equal(dumped.k5.size, 6);
    const c = sized();
    c.setSync("there", "y");
    assert.throws(() => c.load([["light", { value: "z" }], ["heavy", { value: "x".repeat(11) }]]));
    assert.throws(() => c.load([["given", { value: "z", size: -1 }]]));
    assert.deepEqual(c.keysSync(), ["there"], "nothing changed");
    // An unsized store ignores lru-cache's sizes.
    const d = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
    assert.equal(d.load([["k", { value: 1, size: 5 }]]), 1);
  });
});
