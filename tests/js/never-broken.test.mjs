// Never left broken (issue 11): whatever throws or traps during a store call,
// the store is as it was before that call and every later call works. The
// store's two halves (values and the key -> slot map in JS, the engine in
// wasm) must also still agree: `consistent` checks that after every attack.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { capMemory, atEveryStackDepth, hogThenTrap } from "./support.mjs";
import { MemoryStore, LRUPolicy, S3FIFOPolicy, TTLPolicy, ManualClock, CacheError, CacheSerializationError } from "pepperpy-caching";

// Taken before any test replaces them.
const defineProperty = Object.defineProperty;
const getDescriptor = Object.getOwnPropertyDescriptor;

const KEYS = Array.from({ length: 40 }, (_, i) => `k${i}`);

/** Checks that both halves of `store` agree, and returns its contents. */
function consistent(store) {
  // The engine's own count and slots, against the JS side's: an entry the
  // engine holds but JS has no value for would be invisible to the lists below.
  assert.deepEqual(store[Symbol.for("pepperpy-caching.audit")](), [], "the engine and JS agree slot by slot");
  const listed = store.keysSync();
  assert.equal(new Set(listed).size, listed.length, "no key listed twice");
  assert.equal(listed.length, store.size, "size agrees with the engine's keys");
  const entries = [...store.entries()];
  assert.deepEqual(
    entries.map(([k]) => k),
    listed,
  );
  for (const [key, value] of entries) {
    assert.equal(store.peek(key), value, `${key}: the engine's entry has its value`);
    assert.ok(value !== undefined);
  }
  for (const key of KEYS) {
    assert.equal(store.hasSync(key), listed.includes(key), `${key}: JS and engine agree`);
  }
  return new Map(entries);
}

/** Sets, gets and removes through every kind of call: the store works. */
async function usable(store) {
  store.setSync("usable", 1, { ttl: 6000, metadata: { ok: true } });
  assert.equal(store.getSync("usable"), 1);
  assert.deepEqual(await store.getMetadata("usable"), { ok: true });
  assert.equal(store.deleteSync("usable"), true);
  assert.equal(await store.getOrSet("usable:load", () => 2), 2);
  assert.equal(store.invalidateSync("usable*"), 1);
  consistent(store);
}

function stores() {
  return {
    lru: new MemoryStore({ policy: new LRUPolicy({ maxSize: 30, ttl: 600 }) }),
    s3fifo: new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 30 }) }),
    ttl: new MemoryStore({ policy: new TTLPolicy({ ttl: 600, maxSize: 30 }) }),
  };
}

function fill(store, n = 20) {
  for (let i = 0; i < n; i++) store.setSync(KEYS[i], { i }, i % 3 === 0 ? { metadata: { i } } : undefined);
}

// Every call site, each as a function of a store and a counter.
const calls = {
  "getSync (hit)": (s) => s.getSync("k1"),
  "getSync (miss)": (s) => s.getSync("absent"),
  "setSync": (s, i) => s.setSync(KEYS[i % KEYS.length], { i }),
  "setSync with ttl and metadata": (s, i) => s.setSync(KEYS[i % KEYS.length], { i }, { ttl: 60, metadata: { i, tags: ["a"] } }),
  "deleteSync": (s, i) => s.deleteSync(KEYS[i % KEYS.length]),
  "hasSync": (s) => s.hasSync("k2"),
  "peek": (s) => s.peek("k3"),
  "remainingTtl": (s) => s.remainingTtl("k4"),
  "invalidateSync": (s, i) => s.invalidateSync(`k${i % 10}*`),
  "keysSync": (s) => s.keysSync("k1*"),
  "entries": (s) => [...s.entries()],
  "size": (s) => s.size,
  "clearSync": (s, i) => i % 50 === 0 && s.clearSync(),
  "getStats": (s) => s.getStats(),
  "getMetadata": (s) => s.getMetadata("k0"),
  "updateMetadata": (s) => s.updateMetadata("k0", { more: [1, 2] }),
  "getOrSet": (s, i) => s.getOrSet(KEYS[i % KEYS.length], () => ({ loaded: i }), { ttl: 30 }),
  "getOrSet with grace": (s, i) => s.getOrSet(KEYS[i % KEYS.length], () => ({ loaded: i }), { ttl: 30, grace: 30 }),
  // Tags and time-to-idle (issue 23): a tagged or idle set and the call that
  // uses it, by turns, so that each depth finds tagged and idle entries.
  "setSync with tags and idle": (s, i) =>
    s.setSync(KEYS[i % KEYS.length], { i }, { tags: [`t${i % 3}`, "all"], idle: 30, ttl: i % 2 ? 60 : undefined }),
  "invalidateTagsSync": (s, i) =>
    i % 2 ? s.setSync(KEYS[i % KEYS.length], { i }, { tags: [`t${i % 3}`] }) : s.invalidateTagsSync([`t${i % 3}`, "none", `t${i % 3}`]),
  "getSync (idle hit)": (s, i) =>
    i % 2 ? s.setSync(KEYS[i % KEYS.length], { i }, { idle: 30 }) : s.getSync(KEYS[(i - 1) % KEYS.length]),
  "getTags": (s, i) => (i % 2 ? s.setSync(KEYS[i % KEYS.length], { i }, { tags: ["g"] }) : s.getTags(KEYS[i % KEYS.length])),
  "getOrSet with tags and idle": (s, i) =>
    s.getOrSet(KEYS[i % KEYS.length], () => ({ loaded: i }), { ttl: 30, idle: 10, tags: [`t${i % 3}`] }),
};

// Node 18 dies (exit 7) when a promise is rejected with the stack already
// exhausted, inside its own rejection tracking: the async call sites are
// attacked on Node 20 and later only.
const asyncCalls = new Set(["getMetadata", "updateMetadata", "getOrSet", "getOrSet with grace", "getTags", "getOrSet with tags and idle"]);
const oldNode = Number(process.versions.node.split(".")[0]) < 20;

describe("a stack overflow at every depth of every call site", () => {
  for (const [name, call] of Object.entries(calls)) {
    test(name, { skip: oldNode && asyncCalls.has(name) && "Node 18 cannot survive the attack itself" }, async () => {
      for (const [kind, store] of Object.entries(stores())) {
        fill(store);
        const pending = [];
        const { calls } = atEveryStackDepth(
          (i) => {
            // No call here that could itself overflow: the promise is awaited later.
            pending[pending.length] = call(store, i);
          },
          { tolerate: (error) => error instanceof CacheError, warm: true },
        );
        await Promise.allSettled(pending.filter((p) => p instanceof Promise));
        assert.ok(calls > 1000);
        consistent(store);
        await usable(store);
        assert.ok(kind);
      }
    });
  }
});

test("a set cut short by a stack overflow leaves no entry behind that JS has no value for", () => {
  // Room for every key, and each key set once: nothing evicts or replaces an
  // entry the overflow left in the engine alone, so the audit would see it.
  const big = {
    lru: new MemoryStore({ policy: new LRUPolicy({ maxSize: 100_000 }) }),
    s3fifo: new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 100_000 }) }),
    ttl: new MemoryStore({ policy: new TTLPolicy({ ttl: 600, maxSize: 100_000 }) }),
  };
  for (const [kind, store] of Object.entries(big)) {
    for (const options of [undefined, { ttl: 60, metadata: { a: 1 } }]) {
      const { calls: i, overflowed } = atEveryStackDepth((n) => store.setSync(`dive:${n}`, n + 1, options), {
        warm: true,
        // The stack can also run out while the metadata is copied: that is
        // reported as what the reading threw (copyMetadata), before any change.
        tolerate: (error) => error instanceof CacheSerializationError && error.cause instanceof RangeError,
      });
      assert.ok(overflowed > 0, "some sets overflowed");
      assert.deepEqual(store[Symbol.for("pepperpy-caching.audit")](), [], `${kind}: the engine and JS agree`);
      for (let k = 0; k < i; k++) {
        if (!store.hasSync(`dive:${k}`)) assert.equal(store.getSync(`dive:${k}`), undefined);
      }
      store.clearSync();
    }
  }
});

test("a stack overflow in a call into the engine fails the call before it changes the engine: no entry is lost", () => {
  // The engine probes the stack before it changes anything (src/wasm/mod.rs
  // \`probe\`): an overflow inside it is a RangeError with the engine intact.
  // Without the probe, an overflow half-way through an update leaves the
  // engine broken, and the store starts again empty ("cleared"). The deepest
  // chain of calls is a set that grows the engine's arrays: each store here
  // is one new key short of that (16 entries, no room reserved), and each
  // depth near the bottom of the stack gets a store of its own.
  const cleared = [];
  const pool = Array.from({ length: 400 }, (_, n) => {
    const store = new MemoryStore({
      policy: new TTLPolicy({ ttl: 600 }),
      onRemove: (value, key, reason) => {
        if (reason === "cleared") cleared.push(key);
      },
    });
    for (let i = 0; i < 16; i++) store.setSync(`k${i}`, i, { ttl: 60 + i });
    return store;
  });
  // Hot first: optimized, the layer's own probe (\`headroom\`) may take less stack.
  const warm = new MemoryStore({ policy: new TTLPolicy({ ttl: 600, maxSize: 1000 }) });
  for (let i = 0; i < 200_000; i++) warm.setSync(`w${i % 2000}`, i, { ttl: 60 });
  const { overflowed } = atEveryStackDepth((level) => pool[level]?.setSync("grows", level + 1, { ttl: 30 }), { warm: true });
  assert.ok(overflowed > 0, "some sets overflowed");
  for (const store of pool) {
    assert.equal(store.getSync("k0"), 0);
    assert.deepEqual(store[Symbol.for("pepperpy-caching.audit")](), []);
  }
  assert.deepEqual(cleared, [], "no store started again empty");
});

test("a set cut short by a stack overflow is finished before another store's call can overwrite its report", () => {
  // Two small stores: their sets evict, so each set's report of what it
  // removed (a buffer the wasm instance shares between stores) has content.
  const removed = { a: [], b: [] };
  const make = (name) =>
    new MemoryStore({
      policy: new LRUPolicy({ maxSize: 50 }),
      onRemove: (value, key, reason) => removed[name].push([key, value, reason]),
    });
  const a = make("a");
  const b = make("b");
  let cut = 0;
  atEveryStackDepth(
    (n) => {
      // One frame up from where `a` was cut, `b` goes first: on the way back
      // up, a call of `b` comes between `a`'s cut set and `a`'s next call.
      for (const [name, store] of [["b", b], ["a", a]]) {
        try {
          store.setSync(`${name}:${n}`, n);
        } catch (error) {
          if (!(error instanceof RangeError)) throw error;
          cut++;
        }
      }
    },
    { warm: true },
  );
  assert.ok(cut > 0, "some sets overflowed");
  a.setSync("a:last", -1);
  b.setSync("b:last", -1);
  for (const [name, store] of [["a", a], ["b", b]]) {
    assert.deepEqual(store[Symbol.for("pepperpy-caching.audit")](), [], `${name}: the engine and JS agree`);
    for (const [key, value, reason] of removed[name]) {
      assert.ok(key.startsWith(`${name}:`), `${name} was told of ${key}, another store's entry`);
      assert.equal(value, Number(key.slice(2)), `${key}: its own value`);
      assert.equal(reason, "evicted");
    }
    consistent(store);
  }
});

describe("globals that throw, getters and Proxies: the call fails, the store is as it was", () => {
  const boom = new Error("hostile global");
  const overrides = {
    "performance.now": [performance, "now"],
    "Object.entries": [Object, "entries"],
    "Object.keys": [Object, "keys"],
    "Object.defineProperty": [Object, "defineProperty"],
    "Array.prototype.push": [Array.prototype, "push"],
    "Array.prototype.join": [Array.prototype, "join"],
    "Array.prototype.includes": [Array.prototype, "includes"],
    "JSON.stringify": [JSON, "stringify"],
    "JSON.parse": [JSON, "parse"],
    "String.prototype.slice": [String.prototype, "slice"],
    "Map.prototype.get": [Map.prototype, "get"],
    "Map.prototype.set": [Map.prototype, "set"],
    "Map.prototype.delete": [Map.prototype, "delete"],
    "TextEncoder.prototype.encodeInto": [TextEncoder.prototype, "encodeInto"],
    "TextEncoder.prototype.encode": [TextEncoder.prototype, "encode"],
    "TextDecoder.prototype.decode": [TextDecoder.prototype, "decode"],
    "Uint32Array.prototype.slice": [Uint32Array.prototype, "slice"],
    "DataView.prototype.setFloat64": [DataView.prototype, "setFloat64"],
    "Promise.prototype.then": [Promise.prototype, "then"],
    "Math.random": [Math, "random"],
    "Error": [globalThis, "Error"],
  };
  for (const [name, [owner, prop]] of Object.entries(overrides)) {
    test(name, async () => {
      for (const store of Object.values(stores())) {
        fill(store);
        for (const [callName, call] of Object.entries(calls)) {
          const before = consistent(store);
          const statsBefore = store.getStats();
          let threw = false;
          let result;
          // defineProperty: on Node 18 performance.now is read-only.
          const descriptor = getDescriptor(owner, prop);
          defineProperty(owner, prop, {
            value: function hostile() {
              throw boom;
            },
            configurable: true,
            writable: true,
          });
          try {
            result = call(store, 7);
          } catch {
            threw = true;
          } finally {
            if (descriptor === undefined) delete owner[prop];
            else defineProperty(owner, prop, descriptor);
          }
          if (result instanceof Promise) {
            try {
              await result;
            } catch {
              threw = true;
            }
          }
          // A replaced Promise.prototype.then breaks the adoption of a
          // promise an async call returns: the caller sees the error of the
          // user's `then` although the call itself (a load) went through.
          const adoptionOnly = name === "Promise.prototype.then" && result instanceof Promise;
          if (threw && !adoptionOnly) {
            assert.deepEqual(consistent(store), before, `${callName} threw and changed nothing`);
            const { avgGetLatency: _a, ...now } = store.getStats();
            const { avgGetLatency: _b, ...then } = statsBefore;
            assert.deepEqual(now, then, `${callName}: nothing counted`);
          } else {
            consistent(store);
          }
        }
        await usable(store);
      }
    });
  }

  test("Proxies and getters as options and metadata, re-entering the store from their traps", async () => {
    const store = stores().lru;
    fill(store);
    const trap = (target) =>
      new Proxy(target, {
        get(t, p) {
          store.setSync("k5", "from a trap");
          store.deleteSync("k6");
          store.clearSync();
          fill(store);
          return Reflect.get(t, p);
        },
        ownKeys(t) {
          store.invalidateSync("k1*");
          return Reflect.ownKeys(t);
        },
      });
    store.setSync("p1", 1, trap({ ttl: 60, metadata: { a: 1 } }));
    assert.equal(store.getSync("p1"), 1);
    assert.deepEqual(await store.getMetadata("p1"), { a: 1 });
    store.setSync("p2", 2, { metadata: trap({ a: [1, 2] }) });
    assert.deepEqual(await store.getMetadata("p2"), { a: [1, 2] });
    assert.equal(await store.getOrSet("p3", () => 3, trap({ ttl: 5 })), 3);
    assert.equal(store.getSync("p3"), 3);
    assert.throws(() => store.setSync("p4", 4, trap({ tll: 5 })), CacheError);
    assert.equal(store.hasSync("p4"), false);
    store.setSync("p1", 1, { metadata: { a: 1 } });
    // The trap clears the store while the metadata is read: p1 is gone by the update.
    assert.equal(await store.updateMetadata("p1", trap({ b: 2 })), false);
    consistent(store);
    await usable(store);
  });
});

describe("callbacks that re-enter the store", () => {
  test("a listener that throws on a set's eviction: the set throws it once, and the store is whole", () => {
    const boom = new Error("listener");
    const seen = [];
    const store = new MemoryStore({
      policy: new LRUPolicy({ maxSize: 2 }),
      onRemove: (value, key, reason) => {
        seen.push([key, reason]);
        throw boom;
      },
    });
    store.setSync("a", 1);
    store.setSync("b", 2);
    assert.throws(() => store.setSync("c", 3), (e) => e === boom);
    assert.deepEqual(seen, [["a", "evicted"]]);
    assert.equal(store.getSync("c"), 3, "the set completed");
    assert.deepEqual(seen, [["a", "evicted"]], "not told again by the next call");
    consistent(store);
  });

  test("loaders that write, delete, invalidate or clear their own key synchronously", async () => {
    const store = stores().s3fifo;
    const writes = [
      (k) => store.setSync(k, "written"),
      (k) => store.deleteSync(k),
      (k) => store.invalidateSync(k),
      () => store.clearSync(),
    ];
    for (const [n, write] of writes.entries()) {
      const key = `load${n}`;
      assert.equal(
        await store.getOrSet(key, () => {
          write(key);
          return "loaded";
        }),
        "loaded",
      );
      consistent(store);
      assert.equal(store.peek(key), n === 0 ? "written" : undefined, "the write during the load won");
    }
    await usable(store);
  });

  test("an onRemove listener that uses the store, and one that throws", async () => {
    const seen = [];
    let failedOnce = false;
    let store;
    const listener = (value, key, reason) => {
      seen.push([key, reason]);
      if (reason === "evicted" && !key.startsWith("echo:")) store.setSync(`echo:${key}`, value);
      if (reason === "deleted") store.clearSync();
      if (reason === "invalidated" && !failedOnce) {
        failedOnce = true;
        throw new Error("listener fails");
      }
    };
    store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 3 }), onRemove: listener });
    store.setSync("a", 1);
    store.setSync("b", 2);
    store.setSync("c", 3);
    store.setSync("d", 4); // evicts a, whose echo evicts b, whose echo evicts c...
    consistent(store);
    assert.equal(store.size, 3);
    assert.throws(() => store.invalidateSync("*"), /listener fails/);
    assert.equal(store.size, 0, "the invalidate completed before the listener's error");
    store.setSync("x", 1);
    store.deleteSync("x");
    consistent(store);
    assert.ok(seen.some(([k, r]) => k === "x" && r === "deleted"));
    await usable(store);
  });
});

describe("wasm memory exhausted", () => {
  // The package's own .wasm with its memory capped at 4 MiB, instantiated
  // through pepperpy-caching/init (its own instance in this process).
  function cappedApi() {
    const require = createRequire(import.meta.url);
    const dir = realpathSync(join(require.resolve("pepperpy-caching/package.json"), ".."));
    const bytes = readFileSync(join(dir, "wasm/pepperpy_caching_bg.wasm"));
    return { bytes: capMemory(bytes, 64), dir };
  }

  // Another store (the hog) takes the memory until a set finds no room (refused
  // with CacheBackendError, not a trap); then new keys in `victim` (see
  // `sizedVictim`) make S3-FIFO evict for the store's maxSize and remember the
  // evicted keys' hashes in its ghost, whose table grows without asking: that
  // traps inside the engine. (A set reserves the ghost's room before it
  // changes anything and is refused instead; the eviction for a store's
  // maxSize still allocates inside the engine.) Returns the hog.
  // An S3-FIFO store whose evictions are the store's (maxSize in entries of
  // size 1, below the policy's), so that they run through the engine's evict.
  function sizedVictim(api, onRemove) {
    return new api.MemoryStore({
      policy: new api.S3FIFOPolicy({ maxSize: 40_000 }),
      maxSize: 20_000,
      sizeCalculation: () => 1,
      onRemove,
    });
  }


  test("stores fill a capped memory: the call that finds no room fails, every store stays usable", async () => {
    const { bytes, dir } = cappedApi();
    const { initSync } = await import(join(dir, "init.mjs"));
    const api = initSync(new WebAssembly.Module(bytes));
    const small = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 100 }) });
    small.setSync("kept", "value", { metadata: { a: 1 } });
    // Keys live in JS: the engine holds a few bytes per entry, so it takes
    // many entries to fill the 4 MiB.
    const big = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 10_000_000 }) });
    const longKey = "x";
    let stored = 0;
    let failure;
    for (let i = 0; i < 5_000_000; i++) {
      try {
        big.setSync(`${i}:${longKey}`, i);
        stored++;
      } catch (error) {
        failure = error;
        break;
      }
    }
    assert.ok(failure !== undefined, "the memory ran out");
    assert.ok(stored > 10, `${stored} entries fitted`);
    assert.ok(failure instanceof api.CacheBackendError, `a CacheBackendError, not a trap: ${failure}`);
    // (Listing the big store needs room for its ids: it may be refused now.)
    assert.equal(small.keysSync().length, small.size);
    assert.equal(big.size, stored, "the failed set changed nothing");
    assert.equal(big.getSync(`0:${longKey}`), 0);
    assert.equal(small.getSync("kept"), "value");
    assert.deepEqual(await small.getMetadata("kept"), { a: 1 });
    big.clearSync();
    big.setSync("after", 1);
    assert.equal(big.getSync("after"), 1);
    // The next test needs the memory back.
    big.dispose();
    small.dispose();
  });

  test("tagged and idle entries in a full memory: invalidateTags either removes them all or changes nothing", async () => {
    const { bytes, dir } = cappedApi();
    const { initSync } = await import(join(dir, "init.mjs"));
    const api = initSync(new WebAssembly.Module(bytes));
    const removed = [];
    const tagged = new api.MemoryStore({
      policy: new api.S3FIFOPolicy({ maxSize: 10_000_000 }),
      onRemove: (value, key, reason) => removed.push(reason),
    });
    let stored = 0;
    for (;;) {
      try {
        tagged.setSync(`${stored}`, stored, { tags: [`t${stored % 7}`, "all"], idle: 600 });
        stored++;
      } catch (error) {
        assert.ok(error instanceof api.CacheBackendError, `refused, not a trap: ${error}`);
        break;
      }
    }
    assert.ok(stored > 10);
    assert.deepEqual(tagged[Symbol.for("pepperpy-caching.audit")](), [], "the failed set left no trace");
    assert.equal(tagged.size, stored);
    // Each invalidation is whole or nothing, and the store agrees with itself after it.
    for (const tag of ["t1", "t2", "all"]) {
      const before = tagged.size;
      const live = [];
      for (let i = 0; i < stored; i++) if (tagged.hasSync(`${i}`)) live.push(i);
      const carrying = tag === "all" ? live.length : live.filter((i) => `t${i % 7}` === tag).length;
      try {
        assert.equal(tagged.invalidateTagsSync([tag]), carrying, tag);
        assert.equal(tagged.size, before - carrying);
      } catch (error) {
        assert.ok(error instanceof api.CacheBackendError, `refused, not a trap: ${error}`);
        assert.equal(tagged.size, before, `${tag}: a refused invalidation changed nothing`);
      }
      assert.deepEqual(tagged[Symbol.for("pepperpy-caching.audit")](), [], tag);
      for (let i = 0; i < stored; i += 97) {
        const value = tagged.getSync(`${i}`);
        if (value !== undefined) assert.equal(value, i);
      }
    }
    assert.ok(removed.every((reason) => reason === "invalidated"), `${new Set(removed)}`);
    tagged.clearSync();
    tagged.setSync("after", 1, { tags: ["x"], idle: 1 });
    assert.equal(tagged.getSync("after"), 1);
    assert.equal(tagged.invalidateTagsSync(["x"]), 1);
    tagged.dispose();
  });

  test("a trap inside the engine, then a stack overflow at every depth of the repair: the store starts again empty once, whole", async () => {
    // The repair replaces the broken engine, then forgets its entries here:
    // cut short in between (a stack overflow), the next call must finish it,
    // or JS keeps entries the new engine never had.
    const { bytes, dir } = cappedApi();
    const { initSync } = await import(join(dir, "init.mjs"));
    const api = initSync(new WebAssembly.Module(bytes));
    const removed = [];
    const victim = sizedVictim(api, (value, key, reason) => removed.push([key, reason]));
    const N = 20_000;
    for (let i = 0; i < N; i++) victim.setSync(`v${i}`, { i });
    const hog = hogThenTrap(api, victim);
    hog.clearSync();
    const before = removed.length;
    // The repair asks the engine whether it is intact (`intact`), then
    // replaces it and locates the new one (`header`, once per engine): more
    // than one of these during the dive means an overflow landed inside the
    // repair, after it began, and the next call began it again. The
    // wrappers run once first, so that none is compiled inside the dive.
    const { WasmEngines } = await import(join(dir, "wasm/pepperpy_caching.mjs"));
    const original = { intact: WasmEngines.intact, header: WasmEngines.header };
    const steps = { intact: 0, header: 0 };
    for (const name of ["intact", "header"]) {
      WasmEngines[name] = function (...args) {
        steps[name]++;
        return original[name].apply(this, args);
      };
      // Compiled here, on no engine (`intact` says false, `header` traps).
      try {
        WasmEngines[name](0xffffffff);
      } catch {}
      steps[name] = 0;
    }
    let dove;
    try {
      // A bound method: compiled already (a closure compiled on its first
      // call fails to compile at the depths where the repair could be cut).
      dove = atEveryStackDepth(victim.getSync.bind(victim, "v1"), { untilDone: true });
    } finally {
      Object.assign(WasmEngines, original);
    }
    assert.ok(dove.done);
    assert.ok(dove.overflowed > 0);
    assert.ok(steps.intact + steps.header >= 3, `an overflow landed inside the repair (${JSON.stringify(steps)})`);
    assert.deepEqual(victim[Symbol.for("pepperpy-caching.audit")](), [], "the engine and JS agree");
    assert.equal(victim.size, 0);
    const cleared = removed.slice(before).filter(([, reason]) => reason === "cleared").map(([key]) => key);
    assert.equal(new Set(cleared).size, cleared.length, "each entry left once");
    assert.ok(cleared.length > 0);
    victim.setSync("after", 1);
    assert.equal(victim.getSync("after"), 1);
    hog.dispose();
    victim.dispose();
  });

  test("a trap inside the engine: that store starts again empty, says so to onRemove, and works on", async () => {
    const { bytes, dir } = cappedApi();
    const { initSync } = await import(join(dir, "init.mjs"));
    const api = initSync(new WebAssembly.Module(bytes));
    const removed = [];
    const victim = sizedVictim(api, (value, key, reason) => removed.push([key, value, reason]));
    const N = 20_000;
    for (let i = 0; i < N; i++) victim.setSync(`v${i}`, { i }, { metadata: { i } });
    const statsBefore = victim.getStats();
    const hog = hogThenTrap(api, victim);
    const cleared = () => removed.filter(([, , reason]) => reason === "cleared").map(([key]) => key);
    // The next call replaces the engine (or, with no memory even for an
    // empty one, fails): no value is served from the broken engine.
    try {
      assert.equal(victim.getSync("v1"), undefined);
    } catch (error) {
      assert.ok(error instanceof api.CacheBackendError, `a CacheBackendError: ${error}`);
      assert.deepEqual(cleared(), [], "nothing left yet");
    }
    // With memory back, the next call starts the store again, empty.
    const hogSize = hog.size;
    hog.clearSync();
    assert.equal(victim.size, 0);
    // Every entry left as "cleared", once; the engine and JS agree.
    assert.ok(cleared().length > 0);
    assert.equal(new Set(cleared()).size, cleared().length, "each entry left once");
    assert.deepEqual(victim[Symbol.for("pepperpy-caching.audit")](), []);
    assert.equal(victim.getSync("v1"), undefined);
    assert.equal(await victim.getMetadata("v1"), undefined);
    assert.equal(victim.getStats().sets, 0, "the counters start again");
    assert.ok(statsBefore.sets >= N);
    assert.ok(hogSize > 0);
    hog.dispose();
    // And the store works on, with its capacity whole.
    for (let i = 0; i < 1000; i++) victim.setSync(`w${i}`, i, { metadata: { i } });
    assert.equal(victim.size, 1000);
    assert.equal(victim.getSync("w999"), 999);
    assert.deepEqual(await victim.getMetadata("w5"), { i: 5 });
    assert.deepEqual(victim[Symbol.for("pepperpy-caching.audit")](), []);
    victim.dispose();
  });

  test("an onRemove listener that disposes the store while a trapped engine is replaced: the call throws the disposed CacheError", async () => {
    const { bytes, dir } = cappedApi();
    const { initSync } = await import(join(dir, "init.mjs"));
    const api = initSync(new WebAssembly.Module(bytes));
    let disposeOnClear = false;
    const victim = sizedVictim(api, (value, key, reason) => {
      if (disposeOnClear && reason === "cleared") victim.dispose();
    });
    for (let i = 0; i < 20_000; i++) victim.setSync(`v${i}`, i);
    const hog = hogThenTrap(api, victim);
    hog.dispose();
    disposeOnClear = true;
    // The set's first step replaces the engine and tells the listener, which disposes the store.
    assert.throws(
      () => victim.setSync("after", 1),
      (error) => error instanceof api.CacheError && /disposed/.test(error.message),
    );
    assert.throws(() => victim.getSync("after"), (error) => error instanceof api.CacheError && /disposed/.test(error.message));
  });
});

test("a walk that reclaims expired entries, cut by a stack overflow at every depth: the engine and JS agree", () => {
  // A walk (keys, entries, invalidate, size) first has the engine reclaim
  // what expired, then reads the report of it: cut in between, the engine
  // has freed entries JS still holds. Each policy, with and without a
  // listener (its notices are made in between), on every depth.
  for (const make of [
    (clock, onRemove) => new MemoryStore({ policy: new S3FIFOPolicy({ maxSize: 33, ttl: 0.05 }), clock, onRemove }),
    (clock, onRemove) => new MemoryStore({ policy: new LRUPolicy({ maxSize: 33, ttl: 0.05 }), clock, onRemove }),
    (clock, onRemove) => new MemoryStore({ policy: new TTLPolicy({ ttl: 0.05, maxSize: 33 }), clock, onRemove }),
  ]) {
    for (const listening of [false, true]) {
      for (const walk of ["keysSync", "invalidateSync", "clearSync"]) {
        const clock = new ManualClock();
        const removed = [];
        const store = make(clock, listening ? (value, key, reason) => removed.push(`${key} ${reason}`) : undefined);
        for (let i = 0; i < 30; i++) store.setSync(`k${i}`, i);
        clock.advance(100); // every entry expired, none reclaimed yet
        // Bound methods: compiled already (see atEveryStackDepth), their
        // first argument fixed (the depth's number comes after it).
        const call = store[walk].bind(store, walk === "invalidateSync" ? "k*" : undefined);
        const dove = atEveryStackDepth(call, { untilDone: true });
        assert.ok(dove.done && dove.overflowed > 0);
        assert.deepEqual(store[Symbol.for("pepperpy-caching.audit")](), [], `${walk}: the engine and JS agree`);
        assert.deepEqual(store.keysSync(), []);
        // No entry's notice twice, though the reclaim that freed it was cut
        // short (a notice a stack overflow cuts off is not sent again).
        assert.equal(new Set(removed).size, removed.length, walk);
        assert.ok(removed.every((notice) => notice.endsWith(" expired")));
        store.dispose();
      }
    }
  }
});
