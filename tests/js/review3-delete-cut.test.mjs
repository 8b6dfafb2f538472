// review3 (session 10): deleteSync cut short by a stack
// overflow AFTER the engine removed the entry (store.remove returned) and
// while the JS side forgets it (#drop: ids, values, keys, sizes, then
// metadata, fresh, idles, tags): the key is gone, but the slot keeps its
// metadata and its tags. Nothing marks the store for repair (the call into
// wasm completed), so they stay: the next entry the engine puts in that
// slot inherits them: getMetadata returns another entry's metadata,
// getTags its tags, and invalidateTags removes an entry that never had the
// tag. The padding moves the call by a word at a time (as
// tests/js/views-moved.test.mjs does): the gap is narrower than the dive's
// step. Seen at pad 1 (Node 20): the metadata was forgotten, the tags not
// (untag, a call, is where the stack ran out). Fails on Node 18 and 20;
// Node 22 passes here. (deleteManySync held.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore, LRUPolicy } from "pepperpy-caching";
import { atEveryStackDepth } from "./support.mjs";

const AUDIT = Symbol.for("pepperpy-caching.audit");

for (const method of ["deleteSync"]) {
  test(`${method} cut short at every stack depth: the next entry in the freed slot has no other entry's tags or metadata`, async () => {
    for (const listening of [false, true]) {
      // Rounds: the JS tiers change as the code warms up, and with them the frames' sizes.
      for (let round = 0; round < 8; round++) for (let pad = 0; pad < 64; pad++) {
        const label = `${method} round ${round} pad ${pad} listener ${listening}`;
        const removed = [];
        const onRemove = listening ? (_value, key, reason) => removed.push(`${key} ${reason}`) : undefined;
        const store = new MemoryStore({ policy: new LRUPolicy({ maxSize: 16 }), onRemove });
        for (let i = 0; i < 16; i++) store.setSync(`k${i}`, i, { tags: ["t"], metadata: { i } });
        // 2 to 5 tags: untag's loop (where the stack runs out) is longer.
        const tags = ["t", "gone", "a", "b", "c"].slice(0, 2 + (round % 4));
        store.setSync("victim", "v", { tags, metadata: { victim: true } });
        const del = (n) =>
          n < 0 ? store.deleteSync("k0") : method === "deleteSync" ? store.deleteSync("victim") : store.deleteManySync(["victim"]);
        const args = new Array(pad).fill(0);
        const dove = atEveryStackDepth((n) => Reflect.apply(del, null, [n, ...args]), { untilDone: true, warm: true });
        assert.ok(dove.done, label);
        assert.equal(store.hasSync("victim"), false, label);
        // A new entry, without tags or metadata: it takes the slot the victim left.
        store.setSync("fresh", "f");
        assert.deepEqual(await store.getMetadata("fresh"), {}, `${label}: fresh's metadata`);
        assert.deepEqual((await store.getTags("fresh")) ?? [], [], `${label}: fresh's tags`);
        assert.equal(store.invalidateTagsSync(["gone"]), 0, `${label}: invalidateTags(["gone"]) removed an entry that never had the tag`);
        assert.equal(store.getSync("fresh"), "f", label);
        assert.deepEqual(store[AUDIT](), [], label);
        store.dispose();
      }
    }
  });
}
