// review3 (session 10): getSync of an expired entry has the engine expire
// it (store.expire), then forgets it on the JS side (#drop: ids, values,
// keys, metadata, ..., then untag). A stack overflow inside #drop, after the
// engine freed the slot, leaves the slot's metadata and/or tags behind
// (seen: "slot 0: metadata without an entry", "slot 0: tags without an
// entry", "tag gone: an empty set"), and nothing marks the store for repair
// (the call into wasm completed). Cut before #drop began (Node 20, pad 0):
// "the engine holds 16 entries, JS 17": JS still maps the expired key to
// the freed slot. The next entry in that slot inherits
// them, and invalidateTags of the dead entry's tag removes it. The padding
// moves the call a word at a time (the gap is narrower than the dive's step).
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, LRUPolicy, ManualClock } from "pepperpy-caching";
import { atEveryStackDepth } from "./support.mjs";

const AUDIT = Symbol.for("pepperpy-caching.audit");

test("getSync of an expired entry cut short at every stack depth: the engine and JS agree, and the slot's next entry has no tags of the old one", () => {
  // Rounds: the JS tiers change as the code warms up, and with them the frames' sizes.
  for (let round = 0; round < 4; round++) for (let pad = 0; pad < 64; pad++) {
    const label = `round ${round} pad ${pad}`;
    const clock = new ManualClock();
    const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 32 }), clock });
    for (let i = 0; i < 16; i++) store.setSync(`k${i}`, i, { tags: ["t"], metadata: { i } });
    store.setSync("victim", "v", { ttl: 1, tags: ["t", "gone"], metadata: { victim: true } });
    clock.advance(5000);
    const get = () => store.getSync("victim");
    const args = new Array(pad).fill(0);
    const dove = atEveryStackDepth((n) => Reflect.apply(get, null, [n, ...args]), { untilDone: true });
    assert.ok(dove.done, label);
    // A new entry, without tags: whatever slot it takes, nothing of the dead entry applies to it.
    store.setSync("fresh", "f");
    assert.equal(store.getSync("victim"), undefined, `${label}: the expired key reads another entry's value`);
    assert.equal(store.hasSync("victim"), false, label);
    assert.deepEqual(store[AUDIT](), [], `${label}: after ${dove.overflowed} gets cut short`);
    assert.equal(store.invalidateTagsSync(["gone"]), 0, `${label}: invalidateTags(["gone"]) removed a live entry`);
    assert.equal(store.getSync("fresh"), "f", label);
    store.dispose();
  }
});
