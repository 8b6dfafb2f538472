// Hostile review (session 9) of the JS MemoryStore's hit path (#tell, the one
// place a hit is written: the exact-LRU access ring or the S3-FIFO access
// count): getSync at every stack depth (an overflow anywhere in the hit, the
// ring's drain, the miss), then the stats must count exactly the calls that
// returned, and under exact LRU the eviction order must follow the hits that
// returned; the same after the wasm memory grew under the store.
import { test } from "node:test";
import assert from "node:assert/strict";
import { realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { MemoryStore, LRUPolicy, S3FIFOPolicy, TTLPolicy } from "pepperpy-caching";
import { atEveryStackDepth } from "./support.mjs";

const require = createRequire(import.meta.url);
const glue = require(join(realpathSync(join(require.resolve("pepperpy-caching/package.json"), "..")), "wasm/pepperpy_caching.cjs"));

/** Grows the wasm memory every store shares (the views detach). */
function growMemory() {
  const memory = glue.wasmMemory();
  const before = memory.buffer;
  const made = [];
  while (memory.buffer === before && made.length < 10_000) {
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 1 << 16 }) });
    store.setSync("big", 1);
    made[made.length] = store;
  }
  for (const store of made) store.dispose();
  assert.equal(before.byteLength, 0, "the memory grew");
}

const policies = {
  "exact LRU": () => new LRUPolicy({ maxSize: 3 }),
  "S3-FIFO": () => new S3FIFOPolicy({ maxSize: 3 }),
  TTL: () => new TTLPolicy({ maxSize: 3, ttl: 3_600_000 }),
};

// Expected: after getSync of present and absent keys at every stack depth
// (some calls overflowing inside the hit, the ring's drain or the miss), the
// stats count exactly the calls that returned (a call that throws counts
// nothing), the store works, and (exact LRU) the next eviction takes the key
// least recently hit by a call that returned. Actual (exact LRU): more hits
// than calls that returned: getSync counts the get (++#gets), then calls
// #timedGet (one get in 32) outside its try, so an overflow entering
// #timedGet throws from a get already counted (checked: moving that call
// inside the try's undo makes this pass).
for (const [name, policy] of Object.entries(policies)) {
  for (const grown of [false, true]) {
    test(`${name}${grown ? ", memory grown mid-run" : ""}: getSync at every stack depth counts exactly the calls that returned`, () => {
      const evicted = [];
      const store = new MemoryStore({
        policy: policy(),
        onRemove: (_v, key, reason) => {
          if (reason === "evicted") evicted[evicted.length] = key;
        },
      });
      for (const k of ["a", "b", "c"]) store.setSync(k, k);
      store.resetStats();
      const keys = ["a", "x", "b", "c", "b", "y", "a"];
      const log = [];
      let hits = 0;
      let misses = 0;
      let wrong = 0;
      const { calls, overflowed } = atEveryStackDepth(
        (i) => {
          const key = keys[(i < 0 ? 0 : i) % keys.length];
          const got = store.getSync(key);
          if (i < 0) return;
          if (got === undefined) misses++;
          else {
            if (got !== key) wrong++;
            hits++;
            log[log.length] = key;
          }
        },
        { warm: true },
      );
      if (grown) {
        growMemory();
        for (let i = 0; i < 3; i++) {
          const key = keys[i];
          const got = store.getSync(key);
          if (got === undefined) misses++;
          else {
            hits++;
            log[log.length] = key;
          }
        }
      }
      assert.ok(calls > 1000, `${calls} calls (${overflowed} overflowed)`);
      assert.equal(wrong, 0);
      const stats = store.getStats();
      // The warm call (-1) returned or threw before the counts were taken: it counted one get at most.
      const warmHit = stats.hits - hits;
      assert.ok(warmHit === 0 || warmHit === 1, `hits ${stats.hits}, calls that hit and returned ${hits}`);
      assert.equal(stats.misses, misses, "misses: the calls that missed and returned");
      if (name === "exact LRU") {
        const order = [];
        for (let i = log.length - 1; i >= 0 && order.length < 3; i--) if (!order.includes(log[i])) order.unshift(log[i]);
        store.setSync("d", "d");
        assert.deepEqual(evicted, [order[0]], `the least recently hit of ${order.join(",")} (by the calls that returned) is evicted`);
      }
      for (const k of ["a", "b", "c", "d"]) store.setSync(k, k);
      assert.equal(store.getSync("d"), "d");
      store.dispose();
    });
  }
}
