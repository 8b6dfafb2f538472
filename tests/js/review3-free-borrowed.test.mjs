// review3 (session 10): a store call cut short inside wasm (a stack
// overflow: the JS layer catches it and the store works on) leaves
// wasm-bindgen's borrow count of that WasmStore taken for good, so the
// store's later `free()` throws "attempted to take ownership of Rust value
// while it was borrowed". MemoryStore.dispose() swallows that (`catch {}`):
//  - the engine's memory is never given back: a long-lived process that
//    creates and disposes stores, each once cut short, grows the wasm memory
//    by the whole engine each time (~800 KB for 50,000 entries), until the
//    instance has none;
//  - the failed free() leaves the shadow stack pointer 16 B below where it
//    rests, and the catch sets no `stackMoved`, so `unwind` never puts it
//    back.
// (#reset's `broken.free()` refuses the same way: every reset leaks its engine.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { MemoryStore, LRUPolicy, ManualClock } from "pepperpy-caching";
import { atEveryStackDepth } from "./support.mjs";

const glue = createRequire(import.meta.url)("../../pkg/wasm/pepperpy_caching.cjs");
const memory = glue.wasmExports().memory;
const stackPointer = glue.wasmExports().__stack_pointer;
const resting = stackPointer.value;

/** A set made at every stack depth until one completes: some are cut short inside wasm. */
function cutShort(store) {
  const dove = atEveryStackDepth((n) => store.setSync(`k${n % 16}`, n), { untilDone: true });
  assert.ok(dove.done && dove.overflowed > 0);
}

test("stores disposed after a call cut short inside wasm give their memory back", () => {
  const grown = [];
  for (let round = 0; round < 30; round++) {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 100_000 }) });
    for (let i = 0; i < 50_000; i++) store.setSync(`k${i}`, i);
    cutShort(store);
    assert.equal(store.getSync("k20000"), 20000, "the store works on after the cut");
    store.dispose();
    if (round === 4 || round === 29) grown.push(memory.buffer.byteLength);
  }
  // Without the cut, the memory stays flat from the first rounds on (one engine's worth).
  assert.ok(grown[1] <= grown[0] + (1 << 20), `wasm memory after 5 rounds ${grown[0]} B, after 30 ${grown[1]} B`);
});

test("dispose() of a store once cut short inside wasm leaves the shadow stack pointer where it rests", () => {
  for (let round = 0; round < 4; round++) {
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 16, ttl: 0.05 }), clock });
    for (let i = 0; i < 16; i++) store.setSync(`k${i}`, i);
    clock.advance(100);
    cutShort(store);
    store.dispose();
    // One more call into wasm: `unwind` runs before it, if it was told to.
    const next = new MemoryStore({ policy: new LRUPolicy({ maxSize: 3 }) });
    next.setSync("a", 1);
    assert.equal(next.getSync("a"), 1);
    next.dispose();
    assert.equal(resting - stackPointer.value, 0, `round ${round}: bytes of the shadow stack lost`);
  }
});
