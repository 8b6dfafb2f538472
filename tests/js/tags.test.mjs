// Tags (issue 23 item 1), the JS store: set/getOrSet with { tags },
// invalidateTags and getTags; the index follows evictions, expiry, replaces,
// deletes, invalidate and clear (checked by the audit after each step);
// bad tags are CachePolicyError and change nothing; a tagged load under way
// during invalidateTags stores nothing.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  MemoryStore,
  LRUPolicy,
  S3FIFOPolicy,
  TTLPolicy,
  ManualClock,
  CacheKeyError,
  CachePolicyError,
} from "pepperpy-caching";

const AUDIT = Symbol.for("pepperpy-caching.audit");
const audit = (store) => assert.deepEqual(store[AUDIT](), [], "the engine, the entries and the tag index agree");
const lru = (maxSize = 100, clock) => new MemoryStore({ policy: new LRUPolicy({ maxSize }), clock });

describe("tags", () => {
  test("invalidateTags removes every live entry carrying one of the tags, and counts each once", async () => {
    const store = lru();
    await store.set("page:home", "h", { tags: ["user:42", "team:7"] });
    await store.set("page:team", "t", { tags: ["team:7"] });
    await store.set("page:user", "u", { tags: ["user:42"], ttl: 60, metadata: { a: 1 } });
    await store.set("page:about", "a");
    store.setSync("page:other", "o", { tags: ["user:43"] });
    assert.deepEqual(await store.getTags("page:home"), ["user:42", "team:7"]);
    assert.deepEqual(await store.getTags("page:about"), []);
    assert.equal(await store.getTags("missing"), undefined);
    const copy = await store.getTags("page:home");
    copy.push("mutated");
    assert.deepEqual(await store.getTags("page:home"), ["user:42", "team:7"], "getTags hands out a copy");
    assert.equal(store.getSync("page:home"), "h");
    assert.equal(await store.invalidateTags([]), 0);
    assert.equal(await store.invalidateTags(["nobody"]), 0);
    assert.equal(await store.invalidateTags(["user:42", "team:7", "user:42"]), 3);
    assert.deepEqual((await store.keys()).sort(), ["page:about", "page:other"]);
    audit(store);
    assert.equal(store.invalidateTagsSync(["user:43"]), 1);
    assert.deepEqual(await store.keys(), ["page:about"]);
    assert.equal(store.getStats().deletes, 4);
  });

  test("tags follow replaces, deletes, metadata updates, invalidate and clear", async () => {
    const store = lru();
    await store.set("k", 1, { tags: ["a", "b"] });
    assert.equal(await store.updateMetadata("k", { m: 1 }), true);
    assert.deepEqual(await store.getTags("k"), ["a", "b"]);
    await store.set("k", 2, { tags: ["c"] });
    assert.equal(await store.invalidateTags(["a", "b"]), 0, "replaced tags no longer reach it");
    await store.set("k", 3);
    assert.deepEqual(await store.getTags("k"), []);
    assert.equal(await store.invalidateTags(["c"]), 0);
    await store.set("d", 1, { tags: ["c"] });
    await store.delete("d");
    await store.set("p:1", 1, { tags: ["c"] });
    await store.set("q:1", 1, { tags: ["c"] });
    assert.equal(await store.invalidate("p:*"), 1);
    audit(store);
    assert.equal(await store.invalidateTags(["c"]), 1);
    await store.set("r", 1, { tags: ["c"] });
    await store.clear();
    assert.equal(await store.invalidateTags(["c"]), 0);
    audit(store);
  });

  test("evicted and expired entries leave the tag index (onRemove sees why)", async () => {
    for (const policy of [new LRUPolicy({ maxSize: 3 }), new S3FIFOPolicy({ maxSize: 3 }), new TTLPolicy({ ttl: 1, maxSize: 3 })]) {
      const clock = new ManualClock();
      const removed = [];
      const store = new MemoryStore({ policy, clock, onRemove: (value, key, reason) => removed.push([key, reason]) });
      for (let i = 0; i < 20; i++) {
        store.setSync(`k${i}`, i, { tags: [`t${i % 3}`, "all"], ttl: i % 2 === 0 ? 0.5 : undefined });
        if (i % 5 === 4) clock.advance(600);
        audit(store);
      }
      const live = await store.keys();
      assert.equal(await store.invalidateTags(["all"]), live.length, `${policy.constructor.name}: only live entries count`);
      assert.equal(store.size, 0);
      audit(store);
      assert.ok(removed.some(([, reason]) => reason === "invalidated"));
      assert.ok(removed.some(([, reason]) => reason === "evicted"));
    }
  });

  test("bad tags are CachePolicyError and change nothing", async () => {
    const store = lru();
    await store.set("k", "old", { tags: ["keep"] });
    store.resetStats();
    const bad = [
      "tag",
      ["ok", ""],
      [""],
      ["x".repeat(257)],
      ["é".repeat(129)], // 258 bytes of UTF-8
      Array.from({ length: 33 }, (_, i) => `t${i}`),
      ["dup", "dup"],
      [1],
      [null],
      [Symbol("s")],
      ["\ud800"],
      { length: 1, 0: "array-like" },
    ];
    for (const [i, tags] of bad.entries()) {
      assert.throws(() => store.setSync("k", "new", { tags }), CachePolicyError, `bad[${i}]`);
      await assert.rejects(store.set("other", "new", { tags }), CachePolicyError);
      await assert.rejects(store.getOrSet("other", () => assert.fail("no loader runs"), { tags }), CachePolicyError);
    }
    for (const tags of [[""], "keep", [1], ["x".repeat(257)], Array(1025).fill("keep"), undefined, ["\udc00"]]) {
      assert.throws(() => store.invalidateTagsSync(tags), CachePolicyError);
      await assert.rejects(store.invalidateTags(tags), CachePolicyError);
    }
    await assert.rejects(store.getTags(""), CacheKeyError);
    await assert.rejects(store.getTags(42), CacheKeyError);
    assert.deepEqual(await store.keys(), ["k"]);
    assert.equal(store.getSync("k"), "old");
    assert.deepEqual(await store.getTags("k"), ["keep"]);
    const stats = store.getStats();
    assert.deepEqual([stats.sets, stats.deletes, stats.loads], [0, 0, 0]);
    // At the limits, accepted; a tag's getter runs once.
    const full = Array.from({ length: 32 }, (_, i) => `${i}`.padEnd(256, "x"));
    await store.set("full", 1, { tags: full });
    assert.deepEqual(await store.getTags("full"), full);
    let reads = 0;
    const tricky = ["a"];
    Object.defineProperty(tricky, 1, { get: () => (++reads === 1 ? "b" : ""), enumerable: true });
    await store.set("tricky", 1, { tags: tricky });
    assert.deepEqual(await store.getTags("tricky"), ["a", "b"]);
    assert.equal(reads, 1, "each tag read once");
    // A getter that throws: its error, and nothing stored.
    const throwing = ["a"];
    Object.defineProperty(throwing, 1, { get: () => { throw new Error("boom"); }, enumerable: true });
    assert.throws(() => store.setSync("thrown", 1, { tags: throwing }), /boom/);
    assert.equal(await store.has("thrown"), false);
    // A Proxy of an array is an array.
    const proxy = new Proxy(["p", "q"], {});
    await store.set("proxied", 1, { tags: proxy });
    assert.deepEqual(await store.getTags("proxied"), ["p", "q"]);
    // The caller's array changed later changes nothing stored.
    const mine = ["m"];
    await store.set("mine", 1, { tags: mine });
    mine[0] = "changed";
    assert.equal(await store.invalidateTags(["m"]), 1);
    audit(store);
  });

  test("a tagged getOrSet load under way during invalidateTags stores nothing; its caller still gets the value", async () => {
    const store = lru();
    let release;
    const gate = new Promise((resolve) => (release = resolve));
    const load = store.getOrSet("user:1", () => gate.then(() => "loaded"), { tags: ["user:1"] });
    const plain = store.getOrSet("plain", () => gate.then(() => "untagged"));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(await store.invalidateTags(["user:1"]), 0, "nothing stored yet");
    release();
    assert.equal(await load, "loaded");
    assert.equal(await plain, "untagged");
    assert.equal(store.getSync("user:1"), undefined, "the tagged load stored nothing");
    assert.equal(store.getSync("plain"), "untagged", "an untagged load is not cancelled");
    // A load that begins after the call stores, with its tags.
    assert.equal(await store.getOrSet("user:1", () => "after", { tags: ["user:1"] }), "after");
    assert.deepEqual(await store.getTags("user:1"), ["user:1"]);
    assert.equal(await store.invalidateTags(["user:1"]), 1);
    audit(store);
  });

  test("a tagged refresh under way during invalidateTags stores nothing", async () => {
    const clock = new ManualClock();
    const store = lru(100, clock);
    const options = { ttl: 1, grace: 60, tags: ["product:1"] };
    assert.equal(await store.getOrSet("p", () => "v1", options), "v1");
    assert.deepEqual(await store.getTags("p"), ["product:1"]);
    clock.advance(1500);
    let release;
    const gate = new Promise((resolve) => (release = resolve));
    assert.equal(await store.getOrSet("p", () => gate.then(() => "v2"), options), "v1", "stale, refresh started");
    assert.equal(await store.invalidateTags(["product:1"]), 1);
    release();
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(store.getSync("p"), undefined, "the refresh stored nothing");
    audit(store);
  });

  test("a listener that calls invalidateTags during invalidateTags sees a consistent store", async () => {
    const store = new MemoryStore({
      policy: new LRUPolicy({ maxSize: 10 }),
      onRemove: (value, key) => {
        if (key === "a") assert.equal(store.invalidateTagsSync(["t2"]), 1);
      },
    });
    store.setSync("a", 1, { tags: ["t1"] });
    store.setSync("b", 2, { tags: ["t2"] });
    store.setSync("c", 3, { tags: ["t3"] });
    assert.equal(store.invalidateTagsSync(["t1"]), 1);
    assert.deepEqual(await store.keys(), ["c"]);
    audit(store);
  });
});
