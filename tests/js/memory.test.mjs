// Entries the store removes release their JS values: no growing handle table.
// Run with `node --expose-gc`: each case stores ~2 GB of 1 MiB buffers in a
// store of 8 entries, and the memory in use after a full GC must stay flat.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, LRUPolicy, TTLPolicy, ManualClock } from "pepperpy-caching";

const ROUNDS = 2000;
const MiB = 1 << 20;
const SLACK = 64 * MiB;

function used() {
  globalThis.gc();
  globalThis.gc();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

const big = (i) => {
  const bytes = new Uint8Array(MiB);
  bytes[0] = i & 0xff;
  return { bytes, label: `value ${i}` };
};

async function assertFlat(name, run) {
  assert.equal(typeof globalThis.gc, "function", "run with node --expose-gc");
  const before = used();
  await run();
  const after = used();
  assert.ok(
    after - before < SLACK,
    `${name}: ${((after - before) / MiB).toFixed(1)} MiB more in use than before`,
  );
}

test("evicted values are released", () =>
  assertFlat("eviction", async () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 8 }) });
    for (let i = 0; i < ROUNDS; i++) store.setSync(`k${i}`, big(i));
    assert.equal(store.size, 8);
    assert.equal(store.getStats().evictions, ROUNDS - 8);
  }));

test("overwritten values are released", () =>
  assertFlat("overwrite", async () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 8 }) });
    for (let i = 0; i < ROUNDS; i++) await store.set(`k${i % 4}`, big(i));
  }));

test("expired values are released, even unread", () =>
  assertFlat("expiry", async () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new TTLPolicy({ ttl: 1 }), clock });
    for (let i = 0; i < ROUNDS; i++) {
      await store.set(`k${i}`, big(i));
      clock.advance(100);
    }
    assert.ok(store.getStats().expirations > ROUNDS - 20);
  }));

test("deleted values are released", () =>
  assertFlat("delete", async () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 8 }) });
    for (let i = 0; i < ROUNDS; i++) {
      await store.set(`k${i}`, big(i));
      assert.equal(await store.delete(`k${i}`), true);
    }
  }));

test("cleared and invalidated values are released", () =>
  assertFlat("clear/invalidate", async () => {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 8 }) });
    for (let i = 0; i < ROUNDS; i++) {
      await store.set(`user:${i}`, big(i));
      if (i % 8 === 3) await store.clear();
      if (i % 8 === 7) assert.ok((await store.invalidate("user:*")) > 0);
    }
  }));

test("a value stays alive while the store holds it", async () => {
  const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 8 }) });
  store.setSync("k", big(7));
  used();
  assert.equal(store.getSync("k").bytes[0], 7);
  assert.equal(store.getSync("k").label, "value 7");
});

test("a store that is garbage collected releases its values", () =>
  assertFlat("dropped stores", async () => {
    for (let i = 0; i < ROUNDS / 4; i++) {
      const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 8 }) });
      store.setSync("k", big(i));
      // wasm-bindgen frees a store's Rust side from a FinalizationRegistry, which
      // runs only after a GC and a turn of the event loop.
      if (i % 100 === 99) {
        globalThis.gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }));

// Values live on the JS side (issue 11), so the garbage collector traces
// through them: a value that refers back to its own store, as objects that
// hold their cache do, no longer pins the store (and its wasm side) for ever.
test("10,000 dropped stores whose values refer to their store are all collected", () =>
  assertFlat("self-referencing stores", async () => {
    for (let i = 0; i < 10_000; i++) {
      const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 8 }) });
      store.setSync("self", { store, payload: new Uint8Array(16 * 1024) });
      store.setSync("meta", { owner: store }, { metadata: { i } });
      if (i % 500 === 499) {
        globalThis.gc();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }));
