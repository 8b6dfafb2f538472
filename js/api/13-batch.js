// js/api/13-batch.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// MemoryStore's batch calls: getMany, setMany, deleteMany (and their Sync
// forms), as in cache-manager (mget/mset/mdel) and keyv. Every key, value
// and option is checked before anything is read or written, so bad input
// rejects the whole call and changes nothing; then each key goes through
// the single-key call (getSync, setSync, deleteSync), so the counters, the
// capacity, expiry, loads in flight and removal notices are theirs. The
// JS store has no locks or round trips to save: a batch costs what its
// single calls cost. Installed on MemoryStore's prototype, as the walks are.

/**
 * `keys` as an array, every key checked (`what` names the call): a key the
 * store holds was checked when it was stored.
 */
function checkedKeys(store, keys, what) {
  // A copy (listOf): what is checked is what is used, whatever a listener does to `keys` meanwhile.
  const list = listOf(keys, what, "an array of keys");
  const ids = inside.ids(store);
  for (let i = 0; i < list.length; i++) {
    const key = list[i];
    if (!ids.has(key)) checkKey(key);
  }
  return list;
}

/**
 * After `step(failed)` threw `error`: runs `step(i)` for the rest, then
 * throws that first error. A removal listener's error (or a trap) does not
 * cut a batch short, as a call's removal notices are all delivered (`#notify`).
 */
function finishThenThrow(n, failed, error, step) {
  for (let i = failed + 1; i < n; i++) {
    try {
      step(i);
    } catch {
      // Only the first error is thrown.
    }
  }
  throw error;
}

const batch = {
  /**
   * The values under `keys`, in their order (`undefined` for a miss). Each
   * key counts one hit or miss; a key given twice is read twice.
   */
  async getMany(keys) {
    return this.getManySync(keys);
  },

  /** {@link getMany} without the Promise. */
  getManySync(keys) {
    const list = checkedKeys(this, keys, "getMany");
    inside.live(this);
    const n = list.length;
    const values = new Array(n);
    let i = 0;
    try {
      for (; i < n; i++) values[i] = this.getSync(list[i]);
    } catch (error) {
      finishThenThrow(n, i, error, (j) => {
        values[j] = this.getSync(list[j]);
      });
    }
    return values;
  },

  /**
   * Stores each `[key, value]` of `entries` (an array of pairs, a Map, any
   * iterable of pairs) with the same `options`, in order: of a key given
   * twice, the last value stays. Each entry counts one set.
   */
  async setMany(entries, options) {
    this.setManySync(entries, options);
  },

  /** {@link setMany} without the Promise. */
  setManySync(entries, options) {
    const list = listOf(entries, "setMany", "[key, value] pairs");
    // Each pair read once, so what is checked is what is stored.
    const pairs = new Array(list.length);
    for (let i = 0; i < list.length; i++) {
      const pair = list[i];
      if (!Array.isArray(pair)) throw new TypeError(`setMany takes [key, value] pairs, got ${describe(pair)} at ${i}`);
      pairs[i] = [pair[0], pair[1]];
    }
    for (let i = 0; i < pairs.length; i++) {
      checkKey(pairs[i][0]);
      if (pairs[i][1] === undefined) throw undefinedValueError("setMany cannot store");
    }
    // Read once into a plain copy, checked before any write: a getter
    // cannot change them between entries. Every option set takes is kept.
    let shared;
    if (options !== undefined) {
      if (typeof options !== "object" || options === null) readSetOptions(options); // throws
      shared = { ...options };
      readSetOptions(shared);
      // The checked copy of the metadata: no getter runs again.
      if (shared.metadata !== undefined) shared.metadata = setOptions.meta;
    }
    // A sized store: every entry's size checked first (sizeCalculation then
    // runs twice per entry), so one too large or refused changes nothing.
    const size = shared?.size;
    for (let i = 0; i < pairs.length; i++) inside.checkSize(this, pairs[i][0], pairs[i][1], size);
    inside.live(this);
    const n = pairs.length;
    let i = 0;
    try {
      for (; i < n; i++) this.setSync(pairs[i][0], pairs[i][1], shared);
    } catch (error) {
      finishThenThrow(n, i, error, (j) => this.setSync(pairs[j][0], pairs[j][1], shared));
    }
  },

  /** Removes every key of `keys`; how many live entries were there (a key given twice counts once). */
  async deleteMany(keys) {
    return this.deleteManySync(keys);
  },

  /** {@link deleteMany} without the Promise. */
  deleteManySync(keys) {
    const list = checkedKeys(this, keys, "deleteMany");
    inside.live(this);
    const n = list.length;
    let removed = 0;
    let i = 0;
    const step = (j) => {
      if (this.deleteSync(list[j])) removed++;
    };
    try {
      for (; i < n; i++) step(i);
    } catch (error) {
      finishThenThrow(n, i, error, step);
    }
    return removed;
  },
};

// Installed as class methods are: not enumerable.
for (const name of Reflect.ownKeys(batch)) {
  const descriptor = Object.getOwnPropertyDescriptor(batch, name);
  descriptor.enumerable = false;
  Object.defineProperty(MemoryStore.prototype, name, descriptor);
}
