// The JS RedisStore's onRemove (pepperpy-caching/redis) against a real
// redis-server and a 3+3 cluster: the Rust RedisStore's semantics (what
// this process removes: delete, invalidate, invalidateTags, clear, what its
// set replaced, what its capacity scripts evicted for a write or a load,
// what a getOrSet refresh replaced; not Redis's own expiry, not other
// processes' calls) with the JS MemoryStore's API (value, key, reason; a
// listener that throws leaves the store whole and its first error is thrown
// by the call once it completed, or reported when no caller waits).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createClient, createCluster } from "redis5";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { startCluster, startServer } from "./redis-support.mjs";

const { CachePolicyError, LRUPolicy, TTLPolicy, MemoryStore } = main;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
let cluster;
const deployments = [];
let n = 0;
const fresh = () => `rm${++n}:`;

before(async () => {
  server = await startServer();
  const single = await createClient({ url: server.url }).connect();
  deployments.push({ name: "single", client: single, options: {} });
  cluster = await startCluster();
  const clustered = createCluster({ rootNodes: cluster.urls.map((url) => ({ url })) });
  clustered.on("error", () => {});
  await clustered.connect();
  // One bucket: a capacity of 2 is 2 for the whole store (16 buckets would share it out).
  deployments.push({ name: "cluster", client: clustered, options: { buckets: 1 } });
});
after(async () => {
  for (const d of deployments) await d.client.quit().catch(() => {});
  await cluster?.stop();
  await server?.stop();
});

/** A store of deployment `d` on a fresh prefix with the listener `onRemove`; `more`: other store options. */
function listened(d, onRemove, more = {}, prefix = fresh()) {
  return new RedisStore({ client: d.client, prefix, ...d.options, ...more, onRemove });
}

/** A store with a listener that logs [reason, key, value]; `more`: other store options. */
function logged(d, more = {}, prefix = fresh()) {
  const seen = [];
  const store = listened(d, (value, key, reason) => seen.push([reason, key, value]), more, prefix);
  return { store, seen, prefix };
}
const sorted = (seen) => [...seen].sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));

for (const name of ["single", "cluster"]) {
  const d = () => deployments.find((x) => x.name === name);
  describe(`onRemove on ${name}`, () => {
    test("delete and deleteMany report each entry they removed, with its value decoded; a miss reports nothing", async () => {
      const { store, seen } = logged(d());
      await store.set("a", { deep: [1, "x"] });
      await store.set("b", 2);
      await store.set("c", "three", { metadata: { m: 1 } });
      assert.equal(await store.delete("a"), true);
      assert.deepEqual(seen, [["deleted", "a", { deep: [1, "x"] }]]);
      assert.equal(await store.delete("a"), false);
      assert.equal(seen.length, 1);
      assert.equal(await store.deleteMany(["b", "c", "missing"]), 2);
      assert.deepEqual(sorted(seen.slice(1)), [
        ["deleted", "b", 2],
        ["deleted", "c", "three"],
      ]);
      assert.equal(store.getStats().deletes, 3);
    });

    test("invalidate reports the matching entries as invalidated, clear every entry as cleared", async () => {
      const { store, seen } = logged(d());
      for (const key of ["user:1", "user:2", "post:1"]) await store.set(key, key.toUpperCase());
      assert.equal(await store.invalidate("user:*"), 2);
      assert.deepEqual(sorted(seen), [
        ["invalidated", "user:1", "USER:1"],
        ["invalidated", "user:2", "USER:2"],
      ]);
      seen.length = 0;
      await store.set("x", null);
      await store.clear();
      assert.deepEqual(sorted(seen), [
        ["cleared", "post:1", "POST:1"],
        ["cleared", "x", null],
      ]);
      assert.equal(await store.size(), 0);
    });

    test("invalidateTags reports what it removed as invalidated (bounded and not)", async () => {
      for (const policy of [undefined, new LRUPolicy({ maxSize: 100 })]) {
        const { store, seen } = logged(d(), policy === undefined ? {} : { policy });
        await store.set("a", 1, { tags: ["t"] });
        await store.set("b", 2, { tags: ["t", "u"] });
        await store.set("c", 3, { tags: ["u"] });
        await store.set("d", 4);
        assert.equal(await store.invalidateTags(["t"]), 2);
        assert.deepEqual(sorted(seen), [
          ["invalidated", "a", 1],
          ["invalidated", "b", 2],
        ]);
        assert.equal(await store.get("c"), 3);
      }
    });

    test("a set reports the value it replaced (plain, tagged, with idle, bounded, setMany); a new key reports nothing", async () => {
      for (const policy of [undefined, new LRUPolicy({ maxSize: 100 }), new TTLPolicy({ maxSize: 100, ttl: 600 })]) {
        const { store, seen } = logged(d(), policy === undefined ? {} : { policy });
        await store.set("k", "first");
        assert.deepEqual(seen, []);
        await store.set("k", "second");
        await store.set("k", "third", { tags: ["t"] });
        await store.set("k", "fourth", { idle: 60 });
        await store.setMany([
          ["k", "fifth"],
          ["other", 1],
        ]);
        await store.setMany([["k", "sixth"]], { tags: ["t"] });
        assert.deepEqual(seen, [
          ["replaced", "k", "first"],
          ["replaced", "k", "second"],
          ["replaced", "k", "third"],
          ["replaced", "k", "fourth"],
          ["replaced", "k", "fifth"],
        ]);
        assert.equal(await store.get("k"), "sixth");
        assert.equal(store.getStats().sets, 7);
      }
    });

    test("capacity: what this process's LRU and TTL scripts evict for a set or setMany is reported as evicted", async () => {
      const lru = logged(d(), { policy: new LRUPolicy({ maxSize: 2 }) });
      await lru.store.set("a", "A");
      await lru.store.set("b", "B");
      await lru.store.get("a");
      await lru.store.set("c", "C");
      assert.deepEqual(lru.seen, [["evicted", "b", "B"]]);
      await lru.store.setMany([["d", "D"]]);
      assert.deepEqual(lru.seen[1], ["evicted", "a", "A"]);
      assert.equal(lru.store.getStats().evictions, 2);

      const ttl = logged(d(), { policy: new TTLPolicy({ maxSize: 2, ttl: 600 }) });
      await ttl.store.set("late", 1, { ttl: 600 });
      await ttl.store.set("soon", 2, { ttl: 60 });
      await ttl.store.set("new", 3, { ttl: 300 });
      assert.deepEqual(ttl.seen, [["evicted", "soon", 2]]);
    });

    test("a getOrSet load that evicts to make room reports it; a refresh that replaces the stale value reports it", async () => {
      const { store, seen } = logged(d(), { policy: new LRUPolicy({ maxSize: 1 }) });
      await store.set("old", "OLD");
      assert.equal(await store.getOrSet("k", () => "loaded"), "loaded");
      assert.deepEqual(seen, [["evicted", "old", "OLD"]]);

      const swr = logged(d());
      assert.equal(await swr.store.getOrSet("s", () => "v1", { ttl: 0.05, grace: 60 }), "v1");
      await sleep(80);
      // Stale: served at once, refreshed in the background.
      assert.equal(await swr.store.getOrSet("s", () => "v2", { ttl: 0.05, grace: 60 }), "v1");
      for (let i = 0; i < 100 && swr.seen.length === 0; i++) await sleep(10);
      assert.deepEqual(swr.seen, [["replaced", "s", "v1"]]);
      assert.equal(await swr.store.get("s"), "v2");
      // A first load replaces nothing.
      assert.equal(await swr.store.getOrSet("fresh", () => 1), 1);
      assert.equal(swr.seen.length, 1);
    });

    test("not reported, as the Rust store does not: Redis's own expiry, entries the capacity script reclaims, another process's removals", async () => {
      const { store, seen, prefix } = logged(d(), { policy: new LRUPolicy({ maxSize: 10 }) });
      await store.set("short", 1, { ttl: 0.03 });
      await sleep(60);
      assert.equal(await store.get("short"), undefined);
      await store.set("next", 2); // its script reclaims the expired member
      assert.ok(store.getStats().expirations >= 1);
      // Another store (another process) on the same prefix: its delete, set and clear are its own.
      const other = new RedisStore({ client: d().client, prefix, ...d().options, policy: new LRUPolicy({ maxSize: 10 }) });
      await other.set("next", 3);
      await other.delete("next");
      await store.set("x", 1);
      await other.clear();
      assert.deepEqual(seen, []);
      assert.equal(await store.size(), 0);
    });

    test("a listener that throws: the call completed (nothing left behind), every notice delivered, the first error thrown", async () => {
      const seen = [];
      const store = listened(d(), (value, key) => {
        seen.push(key);
        throw new Error(`listener ${key}`);
      });
      await store.set("a", 1);
      await assert.rejects(store.delete("a"), /listener a/);
      assert.equal(await store.has("a"), false);
      assert.equal(store.getStats().deletes, 1);
      await store.setMany([
        ["b", 1],
        ["c", 2],
        ["d", 3],
      ]);
      await assert.rejects(store.set("b", 10), /listener b/);
      assert.equal(await store.get("b"), 10, "the set happened");
      await assert.rejects(store.clear(), /listener [bcd]/);
      assert.deepEqual(seen.slice(2).sort(), ["b", "c", "d"], "every notice of the call is delivered");
      assert.equal(await store.size(), 0);
      // A refresh's listener error has no caller: it is reported as uncaught errors are.
      const reported = [];
      const saved = globalThis.reportError;
      globalThis.reportError = (error) => reported.push(error);
      try {
        assert.equal(await store.getOrSet("s", () => "v1", { ttl: 0.03, grace: 60 }), "v1");
        await sleep(50);
        assert.equal(await store.getOrSet("s", () => "v2", { ttl: 0.03, grace: 60 }), "v1");
        for (let i = 0; i < 100 && reported.length === 0; i++) await sleep(10);
      } finally {
        if (saved === undefined) delete globalThis.reportError;
        else globalThis.reportError = saved;
      }
      assert.equal(reported.length, 1);
      assert.match(reported[0].message, /listener s/);
      assert.equal(await store.get("s"), "v2");
    });

    test("a listener that calls the store: its calls run and see the removal done", async () => {
      const moves = [];
      const store = listened(d(), (value, key, reason) => {
        if (reason === "deleted") moves.push(store.has(key).then((has) => store.set(`archived-${key}`, { value, has })));
      });
      await store.set("a", "A");
      await store.delete("a");
      await Promise.all(moves);
      assert.deepEqual(await store.get("archived-a"), { value: "A", has: false });
    });
  });
}

test("concurrency: stores of two processes deleting and replacing the same keys at once report each removed value once, across both listeners", async () => {
  for (const d of deployments) {
    const seen = [];
    const prefix = fresh();
    const onRemove = (value, key, reason) => seen.push([reason, key, value]);
    const [a, b] = [listened(d, onRemove, {}, prefix), listened(d, onRemove, {}, prefix)];
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    await a.setMany(keys.map((key) => [key, `${key}:0`]));
    // Each key deleted by both at once: the script reads and unlinks atomically, one of them reports it.
    await Promise.all(keys.flatMap((key) => [a.delete(key), b.delete(key)]));
    assert.deepEqual(sorted(seen), sorted(keys.map((key) => ["deleted", key, `${key}:0`])), d.name);
    seen.length = 0;
    // Sets racing on each key: every value but the last standing is reported replaced, once.
    await Promise.all(keys.flatMap((key) => [1, 2, 3].map((n) => (n % 2 ? a : b).set(key, `${key}:${n}`))));
    for (const key of keys) {
      const standing = await a.get(key);
      const replaced = seen.filter(([, k]) => k === key).map(([reason, , value]) => (assert.equal(reason, "replaced"), value));
      assert.deepEqual([...replaced, standing].sort(), [`${key}:1`, `${key}:2`, `${key}:3`], `${d.name} ${key}`);
    }
    await a.clear();
  }
});

test("a walk that fails part way (the connection lost): the entries it did remove are still told, and the call rejects with CacheBackendError", async () => {
  const { conn } = await import("../../js/redis/clients.js");
  const real = conn(deployments[0].client);
  let dropped = false;
  let deletes = 0;
  const flaky = {
    kind: real.kind,
    clustered: false,
    // The first page's deletes go through, then the connection "drops".
    script: async (script, keys, args) => {
      if (dropped && script.name === "delete" && ++deletes > 1) throw new Error("connection lost (a delete)");
      return real.script(script, keys, args);
    },
    command: (args, key) => real.command(args, key),
    pipeline: (calls) => real.pipeline(calls),
    masters: async () => [flaky],
  };
  const seen = [];
  const store = new RedisStore({ client: flaky, prefix: fresh(), onRemove: (value, key, reason) => seen.push([reason, key, value]) });
  await store.setMany(Array.from({ length: 3000 }, (_, i) => [`k${i}`, i]));
  dropped = true;
  await assert.rejects(store.clear(), main.CacheBackendError);
  assert.ok(seen.length > 0 && seen.length < 3000, `told of the first page only: ${seen.length}`);
  for (const [reason, key, value] of seen) {
    assert.equal(reason, "cleared");
    assert.equal(key, `k${value}`);
    assert.equal(await store.has(key), false, `${key} told removed, and removed`);
  }
  dropped = false;
  await store.clear();
  assert.equal(seen.length, 3000, "the rest told by the clear that finished");
});

test("a bad onRemove is refused as the MemoryStore refuses it: same class, same message", async () => {
  const messages = [];
  for (const make of [
    (onRemove) => new MemoryStore({ policy: new LRUPolicy({ maxSize: 1 }), onRemove }),
    (onRemove) => new RedisStore({ client: deployments[0].client, prefix: fresh(), onRemove }),
  ]) {
    try {
      make("not a function");
      assert.fail("accepted");
    } catch (error) {
      assert.ok(error instanceof CachePolicyError, String(error));
      messages.push(error.message);
    }
  }
  assert.equal(messages[0], messages[1]);
  assert.match(messages[0], /onRemove must be a function/);
});
