// js/api/11-walks.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// MemoryStore's walks over every entry: invalidate (patterns), keys,
// entries and values (iteration in the policy's order), clear and size.
// Each first reclaims the entries that expired. They are MemoryStore's
// methods (installed on its prototype below) and reach its state through
// `inside`, which its class gives (10-store.js).

/** Throws unless `pattern` is a well-formed string. */
function checkPattern(pattern) {
  if (typeof pattern !== "string") throw patternError(pattern);
  if (!isWellFormed(pattern)) throw notUnicode(CachePatternError, "pattern", pattern);
}

/** The slot ids of the live entries, all or those matching `pattern`, in the documented order. */
function slotsOf(store, pattern) {
  if (pattern !== undefined) checkPattern(pattern);
  const ids = inside.liveSlots(store);
  if (pattern === undefined) return ids;
  const keys = inside.keys(store);
  return matching(
    pattern,
    ids.map((id) => keys[id] ?? ""),
  ).map((i) => ids[i]);
}

const walks = {
  /** Removes the live entries whose keys match the Redis glob `pattern`; how many. */
  async invalidate(pattern) {
    return this.invalidateSync(pattern);
  },

  /** {@link invalidate} without the Promise. */
  invalidateSync(pattern) {
    checkPattern(pattern);
    const notices = inside.begin(this);
    let removed;
    try {
      const keys = [];
      const slots = [];
      inside.ids(this).forEach((id, key) => {
        keys[keys.length] = key;
        slots[slots.length] = id;
      });
      const hits = matching(pattern, keys);
      // Loads of matching keys store nothing (those with no entry too),
      // cancelled once the removal has happened: an invalidation that fails
      // changes nothing, so a refresh it would have cancelled still ends it.
      const placeholders = inside.placeholders(this);
      let loading;
      let cancelled;
      if (placeholders.size !== 0) {
        loading = [];
        placeholders.forEach((_, key) => {
          loading[loading.length] = key;
        });
        cancelled = matching(pattern, loading);
      }
      const chosen = [];
      for (let i = 0; i < hits.length; i++) chosen[i] = slots[hits[i]];
      removed = chosen.length === 0 ? 0 : inside.removeSlots(this, chosen, notices);
      if (cancelled !== undefined) for (const i of cancelled) placeholders.delete(loading[i]);
    } catch (error) {
      // The glob matcher trapped: the store's engine is checked by its next call.
      const failure = error instanceof RuntimeError ? inside.failed(this, error) : error;
      inside.notify(this, notices);
      throw failure;
    }
    inside.notify(this, notices);
    return removed;
  },

  /**
   * The keys of live entries, all or those matching `pattern`, in the
   * documented order (see `entries`).
   */
  async keys(pattern) {
    return this.keysSync(pattern);
  },

  /** {@link keys} without the Promise. */
  keysSync(pattern) {
    const ids = slotsOf(this, pattern);
    const keys = inside.keys(this);
    const out = [];
    for (let i = 0; i < ids.length; i++) {
      const key = keys[ids[i]];
      if (key !== undefined) out[out.length] = key;
    }
    return out;
  },

  /**
   * The live entries as [key, value] pairs, counting nothing and changing
   * no order. Order: LRUPolicy, most recently used first; TTLPolicy, most
   * recently set first; S3FIFOPolicy, the probationary queue newest first,
   * then the main queue newest first. The entries are those live when the
   * iteration starts; one removed meanwhile is skipped.
   */
  *entries() {
    const ids = slotsOf(this, undefined);
    // The keys as they were: a slot freed meanwhile and taken by another
    // key (or by the same key set again after a later slot was freed) is
    // not the entry the iteration started with.
    let now = inside.keys(this);
    const keys = [];
    for (let i = 0; i < ids.length; i++) keys[i] = now[ids[i]];
    for (let i = 0; i < ids.length; i++) {
      const key = keys[i];
      // Read again each time: the store replaces its arrays when it empties.
      now = inside.keys(this);
      if (key !== undefined && now[ids[i]] === key) yield [key, inside.values(this)[ids[i]]];
    }
  },

  /** The values of {@link entries}, in its order. */
  *values() {
    for (const [, value] of this.entries()) yield value;
  },

  [Symbol.iterator]() {
    return this.entries();
  },

  /** Removes every entry. */
  async clear() {
    this.clearSync();
  },

  /** {@link clear} without the Promise. */
  clearSync() {
    const notices = inside.begin(this);
    try {
      inside.clearAll(this, notices);
    } catch (error) {
      inside.notify(this, notices);
      throw error;
    }
    inside.notify(this, notices);
  },

  /** How many live entries there are. */
  get size() {
    inside.notify(this, inside.begin(this));
    return inside.ids(this).size;
  },
};

// Installed as class methods are: not enumerable.
for (const name of Reflect.ownKeys(walks)) {
  const descriptor = Object.getOwnPropertyDescriptor(walks, name);
  descriptor.enumerable = false;
  Object.defineProperty(MemoryStore.prototype, name, descriptor);
}
