// js/api/12-tags.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// Tags: the `tags` option of set and getOrSet (the core's rules, its limits
// read from `limits()`), the index kept beside the keys (slot id -> tags,
// tag -> ids: MemoryStore#tags and #byTag, cleaned in #drop, #place and
// #forgetAll, so evictions and expiries the engine reports clean it too),
// and invalidateTags / getTags. The engine in wasm knows nothing of tags.

/** A Set of slot ids whose methods are the built-ins of load time (see SlotMap). */
class IdSet extends Set {}
for (const name of ["add", "delete", "has", "forEach"]) {
  Object.defineProperty(IdSet.prototype, name, { value: Set.prototype[name], writable: true, configurable: true });
}
Object.defineProperty(IdSet.prototype, "size", Object.getOwnPropertyDescriptor(Set.prototype, "size"));

/** Files slot `id` under `tags` (it carries none). */
function tag(tagsOf, byTag, id, tags) {
  tagsOf.set(id, tags);
  for (let i = 0; i < tags.length; i++) {
    const ids = byTag.get(tags[i]);
    if (ids === undefined) byTag.set(tags[i], new IdSet().add(id));
    else ids.add(id);
  }
}

/** Forgets the tags of slot `id`, if it has any. */
function untag(tagsOf, byTag, id) {
  const tags = tagsOf.get(id);
  if (tags === undefined) return;
  // The slot's own list last: cut short (a stack overflow), this is run
  // again from the start (MemoryStore#finishDrop) and each step can be.
  for (let i = 0; i < tags.length; i++) {
    const ids = byTag.get(tags[i]);
    if (ids === undefined) continue;
    ids.delete(id);
    if (ids.size === 0) byTag.delete(tags[i]);
  }
  tagsOf.delete(id);
}

/** For the package's tests (MemoryStore's AUDIT): where the tag index disagrees with the entries. */
function auditTags(tagsOf, byTag, keys, problems) {
  tagsOf.forEach((tags, id) => {
    if (keys[id] === undefined) problems.push(`slot ${id}: tags without an entry`);
    for (const t of tags) if (!byTag.get(t)?.has(id)) problems.push(`slot ${id}: tag ${t} does not list it`);
  });
  byTag.forEach((ids, t) => {
    if (ids.size === 0) problems.push(`tag ${t}: an empty set`);
    ids.forEach((id) => {
      if (!tagsOf.get(id)?.includes(t)) problems.push(`tag ${t} lists slot ${id}, which does not carry it`);
    });
  });
}

const tagCalls = {
  /**
   * Removes every live entry carrying at least one of `tags`; how many. A
   * tagged getOrSet load under way stores nothing (its callers still get
   * the value).
   */
  async invalidateTags(tags) {
    return this.invalidateTagsSync(tags);
  },

  /** {@link invalidateTags} without the Promise. */
  invalidateTagsSync(tags) {
    // Read once each, and all checked before anything changes (the rule both stores share).
    const wanted = readInvalidateTags(tags);
    const n = wanted.length;
    const notices = inside.begin(this);
    let removed = 0;
    try {
      const byTag = inside.byTag(this);
      const chosen = [];
      if (byTag.size !== 0) {
        // An entry carrying two of the tags (or a tag named twice) is removed once.
        const seen = new IdSet();
        const pick = (id) => {
          if (seen.has(id)) return;
          seen.add(id);
          chosen[chosen.length] = id;
        };
        for (let i = 0; i < n; i++) byTag.get(wanted[i])?.forEach(pick);
      }
      if (chosen.length !== 0) removed = inside.removeSlots(this, chosen, notices);
      // Tagged loads under way store nothing; cancelled once the removal has happened.
      const placeholders = inside.placeholders(this);
      if (placeholders.size !== 0) {
        const cancelled = [];
        placeholders.forEach((load, key) => {
          if (load.tagged) cancelled[cancelled.length] = key;
        });
        for (const key of cancelled) placeholders.delete(key);
      }
    } catch (error) {
      inside.notify(this, notices);
      throw error;
    }
    inside.notify(this, notices);
    return removed;
  },

  /** The tags of the live entry under `key` (a fresh array, [] when it has none), or undefined. */
  async getTags(key) {
    // As getMetadata: no hit or miss counted, an expired entry reclaimed.
    if (!this.hasSync(key)) return undefined;
    const tags = inside.tags(this).get(inside.ids(this).get(key));
    return tags === undefined ? [] : Array.from(tags);
  },
};

// Installed as class methods are: not enumerable.
for (const name of Reflect.ownKeys(tagCalls)) {
  const descriptor = Object.getOwnPropertyDescriptor(tagCalls, name);
  descriptor.enumerable = false;
  Object.defineProperty(MemoryStore.prototype, name, descriptor);
}
