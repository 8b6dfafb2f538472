// review3 (session 10): a store whose engine trapped is replaced by #reset,
// which frees the broken engine with `broken.free()` inside a `catch {}`.
// The trapped call left wasm-bindgen's borrow of it taken, so free()
// always refuses ("attempted to take ownership of Rust value while it was
// borrowed"): every reset leaks the whole broken engine. In a memory-capped
// instance (as never-broken's capped tests make one, 4 MiB) a few trap/reset
// cycles of one store take the memory for good: after the hog gives its
// memory back, the store that was reset can no longer hold what it held
// before. (Same cause as review3-free-borrowed: dispose() of any store once
// cut short leaks its engine.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { capMemory, hogThenTrap } from "./support.mjs";

function cappedBytes() {
  const require = createRequire(import.meta.url);
  const dir = realpathSync(join(require.resolve("pepperpy-caching/package.json"), ".."));
  return { bytes: capMemory(readFileSync(join(dir, "wasm/pepperpy_caching_bg.wasm")), 64), dir };
}

test("trap-and-reset cycles in a capped memory: the reset store holds as much after them as before", async () => {
  const { bytes, dir } = cappedBytes();
  const { initSync } = await import(join(dir, "init.mjs"));
  const api = initSync(new WebAssembly.Module(bytes));
  // As never-broken's sizedVictim: S3-FIFO whose evictions for maxSize grow the ghost inside the engine.
  const victim = new api.MemoryStore({
    policy: new api.S3FIFOPolicy({ maxSize: 40_000 }),
    maxSize: 20_000,
    sizeCalculation: () => 1,
  });
  const N = 20_000;
  const fill = (tag) => {
    for (let i = 0; i < N; i++) victim.setSync(`${tag}${i}`, i);
  };
  fill("v");
  assert.equal(victim.size, N);
  for (let cycle = 0; cycle < 4; cycle++) {
    const hog = hogThenTrap(api, victim, `x${cycle}:`);
    hog.dispose();
    // The memory is back: the victim resets (empty) and fills again.
    try {
      fill(`c${cycle}:`);
    } catch (error) {
      assert.fail(`cycle ${cycle}: the reset store can no longer hold its ${N} entries: ${error} (size ${victim.size})`);
    }
    assert.equal(victim.size, N, `cycle ${cycle}`);
  }
  victim.dispose();
});
