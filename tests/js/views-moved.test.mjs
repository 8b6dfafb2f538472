// A set that has to grow the engine's per-slot arrays reserves that room
// (`prepare_set`, src/stores/memory/slots.rs) before the binding marks the
// engine busy, so that an allocation cut short by a stack overflow leaves an
// engine the JS layer may go on using. But the reservation moves the arrays
// one after the other (prev, next, deadline, seq, the expiry queue), each
// allocation behind its own stack probe, and publishes their new places
// (the header the JS views are made from) only at the end: a stack overflow
// in a later allocation left the engine intact with its header naming the
// freed memory of the arrays already moved. The JS layer's views then read
// deadlines from (and a hit wrote into) memory the allocator had taken
// back and handed to other stores: live entries reported "expired", another
// store's arrays overwritten (tests/js/stress-found.test.mjs, Node 20 seed
// 59: a store's deadlines read another store's slot ids). Fixed: `intact()`,
// which the JS layer asks before it takes new views after a failed call,
// publishes the arrays' places again if they moved.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, TTLPolicy, S3FIFOPolicy, LRUPolicy, ManualClock } from "pepperpy-caching";
import { atEveryStackDepth } from "./support.mjs";

const AUDIT = Symbol.for("pepperpy-caching.audit");

/**
 * A fresh store holding `fill` entries (each with its own TTL), then one
 * new key set at every depth near the end of the stack until a set goes
 * through; every entry must then still be there, with its own TTL, and no
 * entry reported removed. Returns how many sets were cut short.
 */
function growAtEveryDepth(policy, fill, pad, label) {
  const clock = new ManualClock();
  const removed = [];
  const onRemove = (_value, key, reason) => {
    // The warm call replaces k0; a set cut short after the engine stored
    // "new" is finished by the next call, and the next set replaces it.
    if (!(reason === "replaced" && (key === "k0" || key === "new"))) removed.push(`${key} ${reason}`);
  };
  const store = new MemoryStore({ policy, clock, onRemove });
  const ttls = new Map();
  for (let i = 0; i < fill; i++) {
    store.setSync(`k${i}`, i, { ttl: 100 + i });
    ttls.set(`k${i}`, 100 + i);
  }
  // The warm call (n = -1: compiles the path with the whole stack) sets
  // an existing key again, which grows nothing.
  const set = (n) => (n < 0 ? store.setSync("k0", 0, { ttl: 100 }) : store.setSync("new", "v", { ttl: 7 }));
  // `pad` more arguments below the call move it by that many words: the
  // dive's steps are coarser than the gap between two allocations' probes.
  const args = new Array(pad).fill(0);
  const dove = atEveryStackDepth((n) => Reflect.apply(set, null, [n, ...args]), { untilDone: true, warm: true });
  assert.ok(dove.done, label);
  ttls.set("new", 7);
  // Other stores allocate meanwhile: memory the engine freed is reused.
  const other = new MemoryStore({ policy: new TTLPolicy({ ttl: 1 }), clock });
  for (let i = 0; i < 4 * fill + 8; i++) other.setSync(`o${i}`, i);
  // A full S3-FIFO store evicts one entry for the new key; nothing else leaves.
  const evicted = removed.filter((notice) => notice.endsWith(" evicted"));
  assert.ok(evicted.length <= (policy instanceof S3FIFOPolicy ? 1 : 0), `${label}: ${removed}`);
  for (const notice of evicted) ttls.delete(notice.split(" ")[0]);
  assert.deepEqual(removed, evicted, `${label}: removed after ${dove.overflowed} sets cut short`);
  for (const [key, ttl] of ttls) {
    assert.equal(store.remainingTtl(key), ttl, `${label}: ${key}'s TTL after ${dove.overflowed} sets cut short`);
  }
  for (const [key] of ttls) assert.notEqual(store.getSync(key), undefined, `${label}: ${key}`);
  assert.deepEqual(store[AUDIT](), [], label);
  assert.equal(store.size, ttls.size, label);
  other.dispose();
  store.dispose();
  return dove.overflowed;
}

test("a set cut short while it grows the engine's arrays leaves the JS views on the arrays' new places", () => {
  let cut = 0;
  for (let pad = 0; pad < 24; pad++) {
    // Full: the new key's set grows every per-slot array, then reserves the ghost's room.
    for (const max of [4, 8, 16]) {
      cut += growAtEveryDepth(new S3FIFOPolicy({ maxSize: max }), max, pad, `S3-FIFO ${max} pad ${pad}`);
    }
    for (const fill of [4, 8, 16]) {
      cut += growAtEveryDepth(new TTLPolicy({ ttl: 60 }), fill, pad, `TTL fill ${fill} pad ${pad}`);
    }
  }
  assert.ok(cut > 0);
});
