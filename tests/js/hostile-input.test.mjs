// Input that fights back: getters and Proxies in metadata, keys that are not
// well-formed Unicode, absurd clock moves. Each is refused or neutralised in
// JS, before any call into wasm, and the store stays exactly as it was.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, LRUPolicy, ManualClock, CacheKeyError, CachePatternError, CacheSerializationError } from "pepperpy-caching";

const lru = (more = {}) => new MemoryStore({ policy: new LRUPolicy({ maxSize: 100 }), ...more });

async function contents(store) {
  const keys = (await store.keys()).sort();
  const out = [];
  for (const key of keys) out.push([key, store.getSync(key), await store.getMetadata(key)]);
  return out;
}

describe("metadata is copied once, in JS", () => {
  test("a getter runs once, before the store call, even if it calls into another store", async () => {
    const a = lru();
    const b = lru();
    let reads = 0;
    const metadata = {
      get tag() {
        reads++;
        b.hasSync("zz"); // would overwrite the shared key buffer if it ran mid-call
        return "x";
      },
    };
    a.setSync("user:1", "Ada", { metadata });
    assert.equal(reads, 1);
    assert.deepEqual(await a.keys(), ["user:1"]);
    assert.equal(a.getSync("user:1"), "Ada");
    assert.deepEqual(await a.getMetadata("user:1"), { tag: "x" });
  });

  test("a throwing getter fails the call (a CacheSerializationError, its error the cause) and leaves the store usable and unchanged", async () => {
    const store = lru();
    store.setSync("k", 1, { metadata: { v: 1 } });
    const before = await contents(store);
    const boom = new Error("getter says no");
    const metadata = {
      get tag() {
        throw boom;
      },
    };
    // As the RedisStore reports it (js/api/1-shared.js copyMetadata): the caller's error is the cause.
    const isBoom = (e) => e instanceof CacheSerializationError && e.cause === boom && /^reading the metadata threw: getter says no$/.test(e.message);
    assert.throws(() => store.setSync("k", 2, { metadata }), isBoom);
    await assert.rejects(store.updateMetadata("k", metadata), isBoom);
    await assert.rejects(store.getOrSet("new", () => 3, { metadata }), isBoom);
    assert.deepEqual(await contents(store), before);
    // Every call still works: nothing was left borrowed inside wasm.
    store.setSync("k2", 2);
    assert.equal(store.getSync("k2"), 2);
    assert.equal(store.size, 2);
    assert.equal(store.getStats().sets, 2);
  });

  test("a Proxy that calls back into the same store is read in JS, not during the store call", async () => {
    const store = lru();
    store.setSync("k", 1);
    const metadata = new Proxy(
      { a: 1 },
      {
        get(target, prop) {
          store.hasSync("k"); // re-entry would be refused inside a wasm call
          return Reflect.get(target, prop);
        },
      },
    );
    assert.equal(await store.updateMetadata("k", metadata), true);
    store.setSync("p", 2, { metadata });
    assert.deepEqual(await store.getMetadata("k"), { a: 1 });
    assert.deepEqual(await store.getMetadata("p"), { a: 1 });
  });

  test('"__proto__" in metadata stays a data key, as JSON.parse has it', async () => {
    const store = lru();
    store.setSync("k", 1, { metadata: JSON.parse('{"__proto__": {"x": 1}, "y": 2}') });
    const meta = await store.getMetadata("k");
    assert.equal(Object.getPrototypeOf(meta), Object.prototype);
    assert.deepEqual(Object.keys(meta).sort(), ["__proto__", "y"]);
    assert.deepEqual(meta["__proto__"], { x: 1 });
  });
});

describe("keys and patterns must be well-formed Unicode", () => {
  const lone = ["a\uD800", "a\uDC00", "\uD83D", "x\uDE00y"];

  test("a lone surrogate is a CacheKeyError on every call, and two such keys never meet", async () => {
    const store = lru();
    store.setSync("é", "accent");
    store.setSync("😀", "emoji");
    const before = await contents(store);
    for (const key of lone) {
      assert.throws(() => store.setSync(key, 1), CacheKeyError);
      assert.throws(() => store.getSync(key), CacheKeyError);
      assert.throws(() => store.hasSync(key), CacheKeyError);
      assert.throws(() => store.deleteSync(key), CacheKeyError);
      await assert.rejects(store.getMetadata(key), CacheKeyError);
      await assert.rejects(store.updateMetadata(key, { a: 1 }), CacheKeyError);
      await assert.rejects(store.getOrSet(key, () => 1), CacheKeyError);
    }
    assert.match(String(await store.get("a\uD800").catch((e) => e.message)), /well-formed Unicode/);
    assert.deepEqual(await contents(store), before);
  });

  test("a lone surrogate in a pattern is a CachePatternError", async () => {
    const store = lru();
    store.setSync("a\uFFFD", 1); // what a mangled "a\uD800" would have become
    await assert.rejects(store.invalidate("a\uD800"), CachePatternError);
    await assert.rejects(store.keys("\uDC00*"), CachePatternError);
    assert.equal(store.size, 1);
  });
});

test("ManualClock.advance saturates instead of trapping on a huge finite number", async () => {
  const clock = new ManualClock();
  const store = lru({ clock });
  store.setSync("k", 1, { ttl: 60 });
  clock.advance(1e300);
  assert.equal(store.getSync("k"), undefined);
  // The clock stands at the end of its range; the store keeps working.
  store.setSync("k", 2);
  assert.equal(store.getSync("k"), 2);
  assert.equal(store.getStats().expirations, 1);
});
