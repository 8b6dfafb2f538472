// Time-to-idle in the JS store: { idle } per entry and per policy, alongside
// the TTL (whichever comes first); a hit moves the deadline without entering
// wasm, and the engine's expiry queue stays right as deadlines move later.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, LRUPolicy, S3FIFOPolicy, TTLPolicy, ManualClock, CachePolicyError } from "pepperpy-caching";

const audit = (store) => store[Symbol.for("pepperpy-caching.audit")]();

function storeWith(policy) {
  const clock = new ManualClock();
  const removed = [];
  const store = new MemoryStore({ policy, clock, onRemove: (value, key, reason) => removed.push([key, reason]) });
  return { store, clock, removed };
}

describe("idle", () => {
  test("an entry read within its idle time stays; one left unread leaves", async () => {
    const { store, clock, removed } = storeWith(new LRUPolicy({ maxSize: 10 }));
    store.setSync("idle", 1, { idle: 10, ttl: 60 });
    store.setSync("plain", 2);
    for (let i = 0; i < 5; i++) {
      clock.advance(8_000);
      assert.equal(store.getSync("idle"), 1, `read ${i}: 8 s after the last read`);
    }
    clock.advance(10_000);
    assert.equal(store.getSync("idle"), undefined);
    assert.deepEqual(removed, [["idle", "expired"]]);
    assert.equal(store.getSync("plain"), 2);
    assert.deepEqual(await store.keys(), ["plain"]);
    assert.deepEqual(audit(store), []);
    const stats = store.getStats();
    assert.equal(stats.expirations, 1);
    assert.equal(stats.hits, 6);
  });

  test("the TTL or the idle time, whichever comes first", async () => {
    const { store, clock } = storeWith(new LRUPolicy({ maxSize: 10 }));
    store.setSync("ttl-first", "t", { ttl: 5, idle: 100 });
    store.setSync("idle-first", "i", { idle: 5 });
    for (let i = 0; i < 2; i++) {
      clock.advance(3_000);
      assert.equal(store.getSync("ttl-first"), i === 0 ? "t" : undefined);
    }
    assert.equal(store.remainingTtl("idle-first"), undefined, "6 s unread");
    assert.equal(store.size, 0);
  });

  test("has, peek, getMetadata and remainingTtl are not reads; getOrSet hits are", async () => {
    const { store, clock } = storeWith(new S3FIFOPolicy({ maxSize: 10 }));
    store.setSync("k", "v", { idle: 10, metadata: { a: 1 } });
    clock.advance(6_000);
    assert.equal(store.hasSync("k"), true);
    assert.equal(store.peek("k"), "v");
    assert.deepEqual(await store.getMetadata("k"), { a: 1 });
    assert.equal(store.remainingTtl("k"), 4);
    clock.advance(6_000);
    assert.equal(store.hasSync("k"), false, "none of them counted as a read");
    const options = { idle: 10 };
    assert.equal(await store.getOrSet("g", () => "loaded", options), "loaded");
    for (let i = 0; i < 3; i++) {
      clock.advance(8_000);
      assert.equal(await store.getOrSet("g", () => "again", options), "loaded", "a hit keeps it");
    }
    assert.equal(store.remainingTtl("g"), 10);
    clock.advance(10_000);
    assert.equal(await store.getOrSet("g", () => "reloaded", options), "reloaded");
    assert.deepEqual(audit(store), []);
  });

  test("the policy's idle time, and an entry's own", () => {
    for (const policy of [
      new LRUPolicy({ maxSize: 10, idle: 5 }),
      new S3FIFOPolicy({ maxSize: 10, idle: 5 }),
      new TTLPolicy({ ttl: 100, idle: 5 }),
    ]) {
      assert.equal(policy.idle, 5);
      const { store, clock } = storeWith(policy);
      store.setSync("default", 1);
      store.setSync("own", 2, { idle: 50 });
      clock.advance(4_000);
      assert.equal(store.getSync("default"), 1);
      clock.advance(5_000);
      assert.equal(store.getSync("default"), undefined, `${policy.constructor.name}: the default idle time`);
      assert.equal(store.getSync("own"), 2);
      // A set starts the clock again, and one without an idle time... takes the default.
      clock.advance(40_000);
      store.setSync("own", 3);
      clock.advance(6_000);
      assert.equal(store.getSync("own"), undefined);
      assert.deepEqual(audit(store), []);
    }
    // Without a default, a set without idle makes a plain entry.
    const { store, clock } = storeWith(new LRUPolicy({ maxSize: 10 }));
    store.setSync("k", 1, { idle: 1 });
    store.setSync("k", 2);
    clock.advance(10_000);
    assert.equal(store.getSync("k"), 2);
  });

  test("a zero, negative, non-number or absurd idle time is refused and changes nothing", async () => {
    const { store } = storeWith(new LRUPolicy({ maxSize: 10 }));
    store.setSync("k", "old");
    store.resetStats();
    for (const bad of [0, -1, NaN, Infinity, "5", null, 1e13, 2 ** 64, 1e-10]) {
      assert.throws(() => store.setSync("k", "bad", { idle: bad }), CachePolicyError, String(bad));
      assert.throws(() => store.setSync("new", "bad", { idle: bad }), CachePolicyError, String(bad));
      await assert.rejects(store.getOrSet("new", () => "bad", { idle: bad }), CachePolicyError);
      assert.throws(() => new LRUPolicy({ maxSize: 1, idle: bad }), CachePolicyError);
      assert.throws(() => new S3FIFOPolicy({ maxSize: 1, idle: bad }), CachePolicyError);
      assert.throws(() => new TTLPolicy({ ttl: 1, idle: bad }), CachePolicyError);
    }
    assert.equal(store.getSync("k"), "old");
    assert.equal(store.getSync("new"), undefined);
    const stats = store.getStats();
    assert.deepEqual([stats.sets, stats.hits, stats.misses], [0, 1, 1]);
    store.setSync("k", "max", { idle: 1e12 });
    assert.equal(store.getSync("k"), "max");
    assert.deepEqual(audit(store), []);
  });

  test("at capacity under TTLPolicy, the entry that really expires first goes", () => {
    const { store, clock, removed } = storeWith(new TTLPolicy({ ttl: 100, maxSize: 2 }));
    store.setSync("idle", 1, { idle: 3 }); // due at 3 s
    clock.advance(2_000);
    assert.equal(store.getSync("idle"), 1); // due at 5 s now
    store.setSync("short", 2, { ttl: 2 }); // due at 4 s
    store.setSync("new", 3);
    assert.deepEqual(removed, [["short", "evicted"]]);
    assert.equal(store.peek("idle"), 1);
    assert.deepEqual(audit(store), []);
  });

  // A model: the entries in recency order with their deadlines, purged at
  // every step; random calls on both, the same answers after every one.
  for (const [name, make, lruOrder] of [
    ["LRU", () => new LRUPolicy({ maxSize: 5 }), true],
    ["LRU with a default idle", () => new LRUPolicy({ maxSize: 5, idle: 3 }), true],
    ["TTL", () => new TTLPolicy({ ttl: 6, maxSize: 5, idle: 4 }), false],
    ["TTL unbounded", () => new TTLPolicy({ ttl: 6 }), false],
  ]) {
    test(`matches a model: ${name}`, async () => {
      let seed = 7;
      const random = (n) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      for (let run = 0; run < 30; run++) {
        const policy = make();
        const { store, clock } = storeWith(policy);
        const model = new Map();
        let now = 0;
        let setSeq = 0;
        const deadline = (e) => Math.min(e.ttlAt, e.idle === undefined ? Infinity : e.readAt + e.idle);
        const purge = () => {
          for (const [key, e] of model) if (deadline(e) <= now) model.delete(key);
        };
        for (let step = 0; step < 120; step++) {
          const key = `k${random(8)}`;
          const op = random(10);
          purge();
          if (op < 4) {
            const ttl = random(3) === 0 ? 1 + random(5) : undefined;
            const idle = random(2) === 0 ? 1 + random(4) : undefined;
            store.setSync(key, step, { ttl, idle });
            const ttlS = ttl ?? policy.ttl;
            const idleS = idle ?? policy.idle;
            const entry = {
              value: step,
              ttlAt: ttlS === undefined ? Infinity : now + ttlS * 1000,
              idle: idleS === undefined ? undefined : idleS * 1000,
              readAt: now,
              seq: setSeq++,
            };
            if (model.has(key)) model.delete(key);
            else if (model.size >= (policy.maxSize ?? Infinity)) {
              let victim;
              if (lruOrder) victim = model.keys().next().value;
              else {
                let best;
                for (const [k, e] of model) {
                  const d = deadline(e);
                  if (best === undefined || d < best[0] || (d === best[0] && e.seq < best[1])) best = [d, e.seq, k];
                }
                victim = best[2];
              }
              model.delete(victim);
            }
            model.set(key, entry);
          } else if (op < 8) {
            const e = model.get(key);
            const got = store.getSync(key);
            assert.equal(got, e?.value, `${name} run ${run} step ${step}: get ${key}`);
            if (e !== undefined) {
              e.readAt = now;
              if (lruOrder) {
                model.delete(key);
                model.set(key, e);
              }
            }
          } else if (op === 8) {
            assert.equal(store.hasSync(key), model.has(key), `${name} run ${run} step ${step}: has ${key}`);
          } else {
            const by = random(3) * 1000 + random(2) * 500;
            clock.advance(by);
            now += by;
            purge();
          }
          if (step % 10 === 0) {
            assert.deepEqual((await store.keys()).sort(), [...model.keys()].sort(), `${name} run ${run} step ${step}`);
            assert.equal(store.size, model.size);
            assert.deepEqual(audit(store), []);
          }
        }
      }
    });
  }
});

describe("idle with batches, warm restart and sizes", () => {
  test("setMany passes { idle } to every entry; getMany hits are reads", () => {
    const { store, clock, removed } = storeWith(new LRUPolicy({ maxSize: 10 }));
    store.setManySync([["a", 1], ["b", 2], ["c", 3]], { idle: 10, ttl: 60 });
    clock.advance(8_000);
    assert.deepEqual(store.getManySync(["a", "b"]), [1, 2]);
    clock.advance(8_000);
    assert.deepEqual(store.getManySync(["a", "b", "c"]), [1, 2, undefined], "c: 16 s unread");
    assert.deepEqual(removed, [["c", "expired"]]);
    clock.advance(50_000);
    assert.deepEqual(store.getManySync(["a", "b"]), [undefined, undefined], "a and b: past their TTL, read or not");
    assert.deepEqual(audit(store), []);
    assert.throws(() => store.setManySync([["d", 4]], { idle: 0 }), CachePolicyError);
    assert.equal(store.hasSync("d"), false, "a bad idle time stores nothing");
  });

  test("dump writes an idle entry's TTL and idle time; load restarts its clock", () => {
    const { store, clock } = storeWith(new LRUPolicy({ maxSize: 10 }));
    store.setSync("both", 1, { ttl: 100, idle: 10 });
    store.setSync("idle", 2, { idle: 20 });
    store.setSync("plain", 3, { ttl: 50 });
    clock.advance(5_000);
    assert.equal(store.getSync("both"), 1);
    clock.advance(8_000);
    const dump = Object.fromEntries(store.dump());
    assert.equal(dump.both.ttl, 87_000, "the TTL left, not the idle deadline (15 s)");
    assert.equal(dump.both.idle, 10_000);
    assert.equal(dump.idle.ttl, undefined, "an idle entry without a TTL has none");
    assert.equal(dump.idle.idle, 20_000);
    assert.equal(dump.plain.idle, undefined);
    assert.equal(dump.plain.ttl, 37_000);

    const b = storeWith(new LRUPolicy({ maxSize: 10 }));
    assert.equal(b.store.load(store.dump()), 3);
    b.clock.advance(9_000);
    assert.equal(b.store.hasSync("both"), true, "has is no read");
    assert.equal(b.store.getSync("idle"), 2);
    b.clock.advance(2_000);
    assert.equal(b.store.getSync("both"), undefined, "10 s without a read since the load");
    b.clock.advance(17_000);
    assert.equal(b.store.getSync("idle"), 2, "read at 9 s, idle 20 s");
    assert.equal(b.store.getSync("plain"), 3);
    assert.deepEqual(b.removed, [["both", "expired"]]);
    assert.deepEqual(audit(b.store), []);

    // A policy's default idle time applies to a loaded entry without one, as to a set.
    const c = storeWith(new LRUPolicy({ maxSize: 10, idle: 5 }));
    c.store.load([["k", { value: 1 }], ["own", { value: 2, idle: 60_000 }]]);
    c.clock.advance(6_000);
    assert.equal(c.store.getSync("k"), undefined);
    assert.equal(c.store.getSync("own"), 2);

    // A bad idle time: load throws and stores nothing.
    for (const idle of [0, -1, Infinity, NaN, "10", 1e20]) {
      const d = storeWith(new LRUPolicy({ maxSize: 10 }));
      assert.throws(() => d.store.load([["ok", { value: 1 }], ["k", { value: 2, idle }]]), CachePolicyError, String(idle));
      assert.equal(d.store.size, 0, `idle ${idle}: nothing stored`);
    }
    // Checked even on an entry whose TTL ran out (which load skips).
    assert.throws(() => c.store.load([["old", { value: 1, ttl: 1, start: 0, idle: -5 }]]), CachePolicyError);
  });

  test("with maxSize: an expired idle entry frees its size; a heavier value keeps its idle time", () => {
    const clock = new ManualClock();
    const removed = [];
    const store = new MemoryStore({
      policy: new LRUPolicy({ maxSize: 100 }),
      clock,
      maxSize: 10,
      sizeCalculation: (value) => value.length,
      onRemove: (value, key, reason) => removed.push([key, reason]),
    });
    store.setSync("idle", "xxxx", { idle: 2 });
    store.setSync("kept", "yyyy");
    assert.equal(store.getStats().totalWeight, 8);
    clock.advance(3_000);
    store.setSync("new", "zzzz");
    assert.deepEqual(removed, [["idle", "expired"]], "the expired entry made the room, nothing evicted");
    assert.equal(store.getStats().totalWeight, 8);
    store.setSync("h", "h", { idle: 2 });
    store.setSync("h", "hhhhhh", { idle: 2 }); // 4 + 4 + 6 > 10
    assert.equal(store.getSync("h"), "hhhhhh");
    clock.advance(1_500);
    assert.equal(store.getSync("h"), "hhhhhh");
    clock.advance(1_500);
    assert.equal(store.getSync("h"), "hhhhhh", "the read moved its deadline");
    clock.advance(2_500);
    assert.equal(store.getSync("h"), undefined);
    let sum = 0;
    for (const [, value] of store.entries()) sum += value.length;
    assert.equal(store.getStats().totalWeight, sum);
    assert.deepEqual(audit(store), []);
  });
});

describe("idle with tags", () => {
  test("an idle tagged entry: invalidateTags removes it, its idle expiry untags it", () => {
    const { store, clock, removed } = storeWith(new LRUPolicy({ maxSize: 10 }));
    store.setSync("a", 1, { idle: 2, tags: ["t"] });
    store.setSync("b", 2, { idle: 2, tags: ["t"] });
    clock.advance(1_500);
    assert.equal(store.getSync("a"), 1);
    clock.advance(1_000); // b: unread for 2.5 s
    assert.equal(store.getSync("b"), undefined);
    assert.equal(store.invalidateTagsSync(["t"]), 1, "only a, still live, is counted");
    assert.equal(store.getSync("a"), undefined);
    assert.deepEqual(removed, [["b", "expired"], ["a", "invalidated"]]);
    assert.deepEqual(audit(store), []);
  });
});
