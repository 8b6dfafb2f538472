// The package in Deno, run with no permission at all (`deno test`): the .wasm
// comes in through a source-phase import.
import {
  CacheError,
  CacheKeyError,
  CachePolicyError,
  LRUPolicy,
  ManualClock,
  MemoryStore,
  TTLPolicy,
} from "pepperpy-caching";
import { init } from "pepperpy-caching/init";
// Not in the package's exports: by path, to see that it loads in Deno too.
import * as web from "../../../node_modules/pepperpy-caching/web.mjs";

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

async function rejects(promise: Promise<unknown>, Class: new (...args: never[]) => Error): Promise<Error> {
  try {
    await promise;
  } catch (e) {
    assert(e instanceof Class, `expected ${Class.name}, got ${e}`);
    return e;
  }
  throw new Error(`expected ${Class.name}, nothing was thrown`);
}

Deno.test("the package resolves to its Deno build", () => {
  assert(import.meta.resolve("pepperpy-caching").endsWith("/deno.mjs"), import.meta.resolve("pepperpy-caching"));
});

Deno.test("the README quick start runs", async () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 1000 }) });
  await store.set("key", "value", { ttl: 60 });
  assert((await store.get("key")) === "value", "get");
  assert((await store.delete("key")) === true, "delete");
  await store.set("key", { any: ["JS", "value"] }, { metadata: { version: 1, author: "user" } });
  await store.updateMetadata("key", { version: 2 });
  const meta = await store.getMetadata("key");
  assert(meta?.version === 2 && meta.author === "user", "metadata");
  assert((await store.invalidate("user:*")) === 0, "invalidate");
  assert(await store.has("key"), "has");
  assert((await store.keys("k*")).length === 1, "keys");
  await store.clear();
  assert(store.size === 0, "size");
  const stats = store.getStats();
  assert(stats.hits === 1 && stats.sets === 2 && stats.hitRatio === 1, JSON.stringify(stats));
  new TTLPolicy({ ttl: 30, maxSize: 500 });
});

Deno.test("values come back as the same object", async () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  const value = { nested: [1, { deep: new Date(0) }], nil: null };
  await store.set("k", value);
  assert((await store.get("k")) === value, "identity");
});

Deno.test("errors are the exported classes", async () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 10 }) });
  // @ts-expect-error: keys are strings
  const e = await rejects(store.get(123), CacheKeyError);
  assert(e instanceof CacheError && e.name === "CacheKeyError", e.name);
  await rejects(store.get(""), CacheKeyError);
  let thrown: unknown;
  try {
    new LRUPolicy({ maxSize: 1.5 });
  } catch (err) {
    thrown = err;
  }
  assert(thrown instanceof CachePolicyError, String(thrown));
});

Deno.test("entries expire on a ManualClock and on the real clock", async () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ policy: new TTLPolicy({ ttl: 1 }), clock });
  await store.set("k", 1);
  clock.advance(1000);
  assert((await store.get("k")) === undefined, "manual expiry");

  const real = new MemoryStore({ policy: new TTLPolicy({ ttl: 0.02 }) });
  await real.set("k", 1);
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert((await real.get("k")) === undefined, "real expiry");
  assert(real.getStats().expirations === 1, "counted");
});

Deno.test("the Deno build, the browser build and init share one wasm instance", async () => {
  // The Deno build instantiated the wasm from a source-phase import, with no
  // permission; web.mjs and init then find it instantiated and fetch nothing.
  assert(web.MemoryStore === MemoryStore, "web.mjs: the same classes");
  const api = await init();
  assert(api.MemoryStore === MemoryStore, "init(): the same classes");
  const store = new web.MemoryStore({ policy: new web.LRUPolicy({ maxSize: 2 }) });
  await store.set("k", 1);
  assert((await store.get("k")) === 1, "web build get");
});

Deno.test("getOrSet shares one load between concurrent calls, and a failure with every waiter", async () => {
  const clock = new ManualClock();
  const store = new MemoryStore<{ id: number }>({ policy: new LRUPolicy({ maxSize: 10 }), clock });
  let runs = 0;
  const loader = async () => {
    runs++;
    await null;
    clock.advance(40);
    return { id: 1 };
  };
  const results = await Promise.all(Array.from({ length: 20 }, () => store.getOrSet("k", loader)));
  assert(runs === 1 && results.every((r) => r === results[0]), `one load, one value (${runs} runs)`);

  const error = new Error("down");
  const failing = Promise.allSettled([1, 2, 3].map(() => store.getOrSet("bad", () => Promise.reject(error))));
  assert((await failing).every((o) => o.status === "rejected" && o.reason === error), "the loader's own error");
  assert(!(await store.has("bad")), "nothing cached");
  await rejects(store.getOrSet("", loader), CacheKeyError);
  await rejects(store.getOrSet("k2", loader, { ttl: -1 }), CachePolicyError);
  assert(runs === 1, "bad calls ran no loader");

  const { loads, loadFailures, totalLoadTime } = store.getStats();
  assert(loads === 2 && loadFailures === 1 && totalLoadTime === 40, JSON.stringify(store.getStats()));
});
