// MemoryStore.dispose() (and #reset's free of a broken engine) made at every
// stack depth: a free cut short by a stack overflow inside wasm (the
// engine's drop, the allocator's probe) skips the epilogue that moves the
// shadow stack pointer back, so the catch around it must tell `unwind` to
// put it back (`stackMoved`); before, the pointer stayed below where it
// rests (320 B a store on Node 18, 20 and 22).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { MemoryStore, LRUPolicy, S3FIFOPolicy, ManualClock } from "pepperpy-caching";
import { atEveryStackDepth } from "./support.mjs";

const glue = createRequire(import.meta.url)("../../pkg/wasm/pepperpy_caching.cjs");
const stackPointer = glue.wasmExports().__stack_pointer;
const resting = stackPointer.value;

function filled(policy, n) {
  const store = new MemoryStore({ policy, clock: new ManualClock() });
  for (let i = 0; i < n; i++) store.setSync(`k${i}`, i);
  return store;
}

test("dispose() at every stack depth leaves the engine's shadow stack pointer where it rests", () => {
  // Rounds, each policy: the code's tiers (and frames) change as it warms up.
  for (let round = 0; round < 3; round++) {
    for (const [name, policy] of [
      ["LRU", () => new LRUPolicy({ maxSize: 64, ttl: 60 })],
      ["S3-FIFO", () => new S3FIFOPolicy({ maxSize: 64, ttl: 60 })],
    ]) {
      const stores = [];
      for (let i = 0; i < 4000; i++) stores.push(filled(policy(), 80));
      const state = atEveryStackDepth((n) => {
        if (n < stores.length) stores[n].dispose();
      });
      assert.ok(state.calls > 0);
      for (const s of stores) s.dispose();
      // One more call into the engine: `unwind` runs before it (if told to).
      const probe = new MemoryStore({ policy: new LRUPolicy({ maxSize: 3 }) });
      probe.setSync("a", 1);
      assert.equal(probe.getSync("a"), 1);
      probe.dispose();
      assert.equal(resting - stackPointer.value, 0, `round ${round} ${name}: bytes of the shadow stack lost`);
    }
  }
});
