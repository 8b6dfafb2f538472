// Issue 22, the JS side: a metadata update made while a refresh ran is
// not erased by it; a waitUntil that throws does not take the stale value from its
// caller; wasm memory grows geometrically; and the store under random call
// sequences with throwing callbacks agrees with a plain reference model.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { MemoryStore, LRUPolicy, S3FIFOPolicy, ManualClock } from "pepperpy-caching";
import { withReported } from "./support.mjs";

const AUDIT = Symbol.for("pepperpy-caching.audit");

/** Lets pending promise callbacks and microtasks run. */
const drain = () => new Promise((resolve) => setImmediate(resolve));

test("an updateMetadata made while a refresh ran wins: the refresh stores nothing, the next stale read refreshes", async () => {
  // The rule of every write, in Rust, Redis and JS: a load that began before
  // it stores nothing (here it used to store its value with the loader's
  // metadata, erasing the update).
  const clock = new ManualClock();
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }), clock });
  const options = { ttl: 1, grace: 60, metadata: { source: "loader" } };
  let runs = 0;
  assert.equal(await store.getOrSet("k", () => (runs++, "v1"), options), "v1");
  clock.advance(1500); // stale
  let release;
  const gate = new Promise((resolve) => {
    release = resolve;
  });
  assert.equal(await store.getOrSet("k", () => (runs++, gate), options), "v1", "the stale value, a refresh started");
  assert.equal(await store.updateMetadata("k", { reviewed: true, source: "editor" }), true);
  release("v2");
  await drain();
  assert.equal(store.peek("k"), "v1", "the refresh stored nothing");
  assert.deepEqual(await store.getMetadata("k"), { source: "editor", reviewed: true }, "the update survived");
  // Still stale and not stuck "refreshing": the next stale read starts a refresh.
  assert.equal(await store.getOrSet("k", () => (runs++, "v3"), options), "v1");
  await drain();
  assert.equal(runs, 3, "a new refresh ran");
  assert.equal(await store.getOrSet("k", () => (runs++, "never"), options), "v3", "fresh again");
  assert.deepEqual(await store.getMetadata("k"), { source: "loader" }, "a refresh with no update in between stores the options' metadata");
  assert.equal(store.getStats().refreshFailures, 0, "a cancelled refresh is not a failure");
  assert.deepEqual(store[AUDIT](), []);
});

test("a waitUntil that throws: the stale value still comes back, the refresh still stores", () =>
  withReported(async (reported) => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 10 }), clock });
    const boom = new Error("waitUntil refused");
    const waitUntil = () => {
      throw boom;
    };
    assert.equal(await store.getOrSet("k", () => "old", { ttl: 1, grace: 60, waitUntil }), "old");
    clock.advance(2000);
    assert.equal(await store.getOrSet("k", async () => "new", { ttl: 1, grace: 60, waitUntil }), "old");
    await drain();
    assert.equal(store.getSync("k"), "new", "the refresh ran and stored");
    assert.deepEqual(reported, [boom], "the error is reported, not lost");
    const stats = store.getStats();
    assert.equal(stats.refreshes, 1);
    assert.equal(stats.refreshFailures, 0);
  }));

test("wasm memory grows geometrically: 4,000 sets of 8 KiB keys take a handful of grows", async () => {
  // Its own instance (so no other test's stores move its memory), whose
  // memory is caught as the glue instantiates it.
  const require = createRequire(import.meta.url);
  const dir = realpathSync(join(require.resolve("pepperpy-caching/package.json"), ".."));
  const { initSync } = await import(`${join(dir, "init.mjs")}?own`);
  const module = new WebAssembly.Module(readFileSync(join(dir, "wasm/pepperpy_caching_bg.wasm")));
  const Instance = WebAssembly.Instance;
  let memory;
  WebAssembly.Instance = function (...args) {
    const instance = new Instance(...args);
    memory = instance.exports.memory;
    return instance;
  };
  let api;
  try {
    api = initSync(module);
  } finally {
    WebAssembly.Instance = Instance;
  }
  assert.ok(memory instanceof WebAssembly.Memory);
  for (const policy of [new api.TTLPolicy({ ttl: 600 }), new api.S3FIFOPolicy({ maxSize: 100_000 })]) {
    const store = new api.MemoryStore({ policy });
    const key = "k".repeat(8 * 1024 - 8);
    const sizes = new Set([memory.buffer.byteLength]);
    for (let i = 0; i < 4000; i++) {
      store.setSync(`${String(i).padStart(6, "0")}${key}`, i);
      sizes.add(memory.buffer.byteLength);
    }
    // It was 501 grows of one 64 KiB page each, every key copied into wasm.
    assert.ok(sizes.size <= 12, `the memory grew ${sizes.size - 1} times for 4,000 sets`);
    assert.equal(store.size, 4000);
    store.dispose();
  }
});

// A reference model of the store: a Map in LRU order, with deadlines.
class Model {
  constructor(max) {
    this.max = max;
    this.map = new Map(); // key -> { value, at }
  }
  live(key, now) {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    if (e.at <= now) {
      this.map.delete(key);
      return undefined;
    }
    return e;
  }
  get(key, now) {
    const e = this.live(key, now);
    if (e === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }
  set(key, value, at, now) {
    this.map.delete(key);
    for (const [k] of this.map) if (this.map.get(k).at <= now) this.map.delete(k);
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value);
    this.map.set(key, { value, at });
  }
}

test("random call sequences with throwing callbacks agree with a reference model (fixed seeds)", () =>
  withReported(async () => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    let state = seed;
    const rand = (n) => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return (state >>> 8) % n;
    };
    const clock = new ManualClock();
    let now = 0;
    const MAX = 16;
    const model = new Model(MAX);
    let throwing = false;
    const removed = [];
    const store = new MemoryStore({
      policy: new LRUPolicy({ maxSize: MAX }),
      clock,
      onRemove: (value, key, reason) => {
        removed.push([key, reason]);
        if (throwing) throw new Error("onRemove");
      },
    });
    const key = () => `k${rand(40)}`;
    for (let step = 0; step < 1500; step++) {
      const k = key();
      throwing = rand(4) === 0;
      const where = `seed ${seed} step ${step}`;
      switch (rand(9)) {
        case 0:
        case 1: {
          let got;
          try {
            got = store.getSync(k);
          } catch (error) {
            // The entry had expired, and its listener threw.
            assert.ok(throwing, `${where}: ${error}`);
          }
          assert.equal(got, model.get(k, now), `${where}: get ${k}`);
          break;
        }
        case 2:
        case 3: {
          const ttl = rand(3) === 0 ? 1 + rand(20) / 10 : undefined;
          try {
            store.setSync(k, step, ttl === undefined ? undefined : { ttl, metadata: { step } });
          } catch (error) {
            assert.ok(throwing, `${where}: only a listener throws: ${error}`);
          }
          model.set(k, step, ttl === undefined ? Infinity : now + ttl * 1000, now);
          break;
        }
        case 4: {
          let existed;
          try {
            existed = store.deleteSync(k);
          } catch (error) {
            assert.ok(throwing, `${where}: ${error}`);
            existed = model.live(k, now) !== undefined;
          }
          assert.equal(existed, model.live(k, now) !== undefined, `${where}: delete ${k}`);
          model.map.delete(k);
          break;
        }
        case 5: {
          // A loader that throws, or one that resolves; the store's answer is the model's.
          const fails = rand(2) === 0;
          const expected = model.get(k, now);
          const p = store.getOrSet(k, () => {
            if (fails) throw new Error("loader");
            return `loaded ${step}`;
          });
          const settled = p.then(
            (v) => ["ok", v],
            (e) => ["err", e.message],
          );
          await drain();
          const outcome = await settled;
          if (outcome[1] === "onRemove") assert.ok(throwing && expected === undefined, `${where}: expired, listener threw`);
          else if (expected !== undefined) assert.deepEqual(outcome, ["ok", expected], `${where}: hit`);
          else if (fails) assert.deepEqual(outcome, ["err", "loader"], `${where}: the loader's error`);
          else {
            assert.deepEqual(outcome, ["ok", `loaded ${step}`]);
            model.set(k, `loaded ${step}`, Infinity, now);
          }
          break;
        }
        case 6: {
          const prefix = `k${rand(4)}*`;
          let n;
          try {
            n = store.invalidateSync(prefix);
          } catch (error) {
            assert.ok(throwing, `${where}: ${error}`);
            n = undefined;
          }
          const doomed = [...model.map.keys()].filter((x) => x.startsWith(prefix.slice(0, -1)) && model.live(x, now));
          if (n !== undefined) assert.equal(n, doomed.length, `${where}: invalidate ${prefix}`);
          for (const x of doomed) model.map.delete(x);
          break;
        }
        case 7: {
          const by = rand(500);
          clock.advance(by);
          now += by;
          break;
        }
        default: {
          throwing = false;
          assert.deepEqual(store[AUDIT](), [], where);
          for (const [k2] of model.map) model.live(k2, now);
          assert.deepEqual(store.keysSync(), [...model.map.keys()].reverse(), `${where}: keys in LRU order`);
        }
      }
    }
    throwing = false;
    assert.deepEqual(store[AUDIT](), []);
    const stats = store.getStats();
    assert.ok(stats.sets > 0 && stats.hits > 0 && stats.misses > 0);
    assert.ok(removed.length > 0);
    store.dispose();
  }
  }));


test("random getOrSet with grace, throwing waitUntil, listeners and loaders, then dispose: invariants hold (fixed seeds)", () =>
  withReported(async (reported) => {
    // The only errors a caller may see: its loader's, a listener's, or the disposal's.
    const known = new Set(["loader", "onRemove", "this MemoryStore was disposed"]);
    // Seeds 1-40 (1-300 pass; 40 take ~0.3 s).
    for (let seed = 1; seed <= 40; seed++) {
      let state = seed;
      const rand = (n) => {
        state = (Math.imul(state, 1103515245) + 12345) >>> 0;
        return (state >>> 8) % n;
      };
      const clock = new ManualClock();
      // The audit walks the store, which reclaims what has expired and tells
      // the listener (and would rethrow its error, as keys() does): the
      // listener does not throw while the test audits.
      let auditing = false;
      const audit = () => {
        auditing = true;
        try {
          return store[AUDIT]();
        } finally {
          auditing = false;
        }
      };
      const store = new MemoryStore({
        policy: new S3FIFOPolicy({ maxSize: 12 }),
        clock,
        onRemove: () => {
          if (rand(5) === 0 && !auditing) throw new Error("onRemove");
        },
      });
      const pending = [];
      for (let step = 0; step < 800; step++) {
        const k = `k${rand(30)}`;
        const where = `seed ${seed} step ${step}`;
        switch (rand(6)) {
          case 0:
          case 1: {
            const waitUntil = rand(2) === 0 ? () => {
              throw new Error("waitUntil");
            } : undefined;
            const fails = rand(4) === 0;
            const late = rand(2) === 0;
            const loader = () => {
              if (fails && !late) throw new Error("loader");
              return late ? Promise.resolve().then(() => {
                if (fails) throw new Error("loader");
                return step;
              }) : step;
            };
            pending.push(
              store.getOrSet(k, loader, { ttl: 0.05, grace: 0.5, retryAfter: 0.01, waitUntil }).then(
                (value) => assert.ok(typeof value === "number", `${where}: a value`),
                (error) => assert.ok(known.has(error.message), `${where}: ${error.message}`),
              ),
            );
            break;
          }
          case 2:
            try {
              store.setSync(k, step, { metadata: { step } });
            } catch (error) {
              assert.equal(error.message, "onRemove", where);
            }
            break;
          case 3:
            try {
              await store.updateMetadata(k, { touched: step });
            } catch (error) {
              // It reclaims an expired entry first, telling the listener.
              assert.equal(error.message, "onRemove", where);
            }
            break;
          case 4:
            clock.advance(rand(80));
            break;
          default:
            await drain();
            assert.deepEqual(audit(), [], where);
        }
      }
      await drain();
      assert.deepEqual(audit(), []);
      store.dispose();
      await Promise.all(pending);
      assert.throws(() => store.getSync("k1"), /disposed/);
    }
    assert.ok(reported.every((e) => known.has(e.message) || e.message === "waitUntil"), "only the callbacks' own errors are reported");
    assert.ok(reported.some((e) => e.message === "waitUntil"), "stale reads started refreshes with a throwing waitUntil");
  }));
