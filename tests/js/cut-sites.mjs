// Run by tests/js/engine-release.test.mjs, one process per call site:
// `node tests/js/cut-sites.mjs NAME` cuts the call NAME short at every
// stack depth (each padded a word at a time), under each policy, round
// after round: in the first, the functions run for the first time inside
// the dive (compiling them needs far more stack than running them: the
// widest gap for a cut); later rounds find them compiled (tiered up in
// between). After each dive both halves must agree, each removal is told
// once, and nothing of a removed entry (its tags, metadata) applies to the
// entry the engine puts in its slot next. Prints "ok NAME" and exits 0, or
// throws.
import assert from "node:assert/strict";
import { MemoryStore, LRUPolicy, S3FIFOPolicy, TTLPolicy, ManualClock } from "pepperpy-caching";
import { atEveryStackDepth } from "./support.mjs";

const AUDIT = Symbol.for("pepperpy-caching.audit");

const POLICIES = {
  LRU: () => new LRUPolicy({ maxSize: 32 }),
  "S3-FIFO": () => new S3FIFOPolicy({ maxSize: 32 }),
  TTL: () => new TTLPolicy({ ttl: 3600, maxSize: 32 }),
};

/** A store of 16 tagged entries with metadata, a sized one (each of size 1, maxSize 16) when `sized`. */
function filled(policy, clock, sized, removed) {
  // A bound built-in: no frame of its own that a stack overflow could cut
  // (a listener cut short at its entry would lose its notice, which is the
  // listener's failure, not the store's). Each notice: value, key, reason.
  const onRemove = Array.prototype.push.bind(removed);
  const store = new MemoryStore({ policy, clock, onRemove, ...(sized ? { maxSize: 16, sizeCalculation: () => 1 } : {}) });
  for (let i = 0; i < 16; i++) store.setSync(`k${i}`, i, { tags: ["t", `t${i % 3}`], metadata: { i } });
  return store;
}

// Each call into wasm whose bookkeeping here a cut can split: the call,
// made at every stack depth until one completes, then what must hold.
// (`n` < 0 would be a warm-up call on other entries: unused, the first
// round's dive is where each function is first called and compiled.)
const CALLS = {
  // A delete: the engine frees the slot, this side forgets it.
  deleteSync: (store, n) => store.deleteSync(n < 0 ? "k4" : "k3"),
  // A read of an expired entry (the clock moved past its TTL): the engine expires it.
  "getSync of an expired entry": (store, n) => store.getSync(n < 0 ? "w" : "e"),
  "hasSync of an expired entry": (store, n) => store.hasSync(n < 0 ? "w" : "e"),
  // A new key in a full sized store: the engine evicts for maxSize (#fit).
  "setSync that evicts for maxSize": (store, n) => store.setSync(`new${n}`, n, { tags: ["new"] }),
  invalidate: (store, n) => store.invalidateSync(n < 0 ? "k9" : "k1*"),
  invalidateTags: (store, n) => store.invalidateTagsSync(n < 0 ? ["w"] : ["t1"]),
  clearSync: (store, n) => {
    store.clearSync();
    if (n < 0) for (let i = 0; i < 16; i++) store.setSync(`r${i}`, i, { tags: ["t", `t${i % 3}`], metadata: { i } });
  },
  deleteManySync: (store, n) => store.deleteManySync(n < 0 ? ["k6", "w"] : ["k2", "k5", "e"]),
  resetStats: (store) => store.resetStats(),
  keysSync: (store) => store.keysSync(),
};

const name = process.argv[2];
const call = CALLS[name];
assert.ok(call !== undefined, `no call site ${name}`);
const [policyName, policy] = Object.entries(POLICIES)[Number(process.argv[3] ?? 0)];
for (let round = 0; round < 3; round++) for (let pad = 0; pad < 32; pad++) {
  const label = `${name} ${policyName} round ${round} pad ${pad}`;
  const clock = new ManualClock();
  const removed = [];
  const sized = name.includes("maxSize");
  const store = filled(policy(), clock, sized, removed);
  if (!sized) {
    store.setSync("e", "expiring", { ttl: 1, tags: ["gone"], metadata: { e: true } });
    store.setSync("w", "expiring", { ttl: 1, tags: ["w"] });
  }
  clock.advance(5000);
  const args = new Array(pad).fill(0);
  const dove = atEveryStackDepth((n) => Reflect.apply(call, null, [store, n, ...args]), { untilDone: true });
  assert.ok(dove.done && dove.overflowed > 0, label);
  assert.deepEqual(store[AUDIT](), [], label);
  // Each entry the store began with and no longer holds was told of once; the others not at all.
  const notices = [];
  for (let i = 0; i < removed.length; i += 3) notices.push(`${removed[i + 1]} ${removed[i + 2]}`);
  const held = new Set(store.keysSync());
  for (const key of [...Array.from({ length: 16 }, (_, i) => `k${i}`), ...(sized ? [] : ["e", "w"])]) {
    const told = notices.filter((r) => r.startsWith(`${key} `)).length;
    assert.equal(told, held.has(key) ? 0 : 1, `${label}: ${key} ${held.has(key) ? "held" : "gone"}, told ${told} times: ${notices}`);
  }
  // A new untagged entry, in whatever slot was freed: nothing of the removed entries applies to it.
  store.setSync("fresh", "f");
  assert.equal(store.getSync("fresh"), "f", label);
  assert.deepEqual(await store.getMetadata("fresh"), {}, label);
  assert.equal(store.invalidateTagsSync(["gone"]), 0, `${label}: the expired entry's tag removed a live entry`);
  assert.deepEqual(store[AUDIT](), [], label);
  assert.equal(store.getSync("fresh"), "f", label);
  assert.equal(store.getSync("e"), undefined, label);
  store.dispose();
}
console.log(`ok ${name} ${policyName}`);
