// js/api/15-dump.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// Warm restart: MemoryStore's dump() and load(entries), in lru-cache's
// format (an array of [key, entry] with `value`, and `ttl` and `start` in
// milliseconds), coldest entry first. Installed on MemoryStore's prototype
// below; they reach its state through `inside` (10-store.js).

// The fields of a dumped entry: lru-cache's (`size` counts in a store with
// maxSize, and is ignored by one without), then this store's own (`idle`:
// the time-to-idle in ms; `tags`: the entry's tags).
const DUMP_FIELDS = ["value", "ttl", "start", "size", "metadata", "hits", "probation", "idle", "tags"];

/** A load's error for entry `i` of the array. */
function dumpError(i, why) {
  return new CachePolicyError(`load: entry ${i} ${why}`);
}

/**
 * Checks one [key, entry] pair of a dump, reading each field once: the
 * fields a set needs, or undefined when its TTL ran out by `wallNow`.
 */
function readDumped(pair, i, wallNow) {
  if (!Array.isArray(pair) || pair.length !== 2) {
    throw dumpError(i, `must be a [key, entry] pair, got ${describe(pair)}`);
  }
  const [key, entry] = pair;
  if (typeof key !== "string") throw keyError(key);
  checkKey(key);
  if (typeof entry !== "object" || entry === null) {
    throw dumpError(i, `(${shownKey(key)}) must be an object like { value, ttl, start }, got ${describe(entry)}`);
  }
  checkNames(entry, "dump entry", DUMP_FIELDS);
  const { value, ttl, start, metadata, hits, probation, size, idle, tags } = entry;
  if (value === undefined) throw dumpError(i, `(${shownKey(key)}) has no value`);
  // Checked first: an entry skipped for its TTL is still checked.
  let idleSeconds;
  if (idle !== undefined) {
    if (typeof idle !== "number" || !(idle > 0) || idle === Infinity) {
      throw dumpError(i, `(${shownKey(key)}): idle must be a positive, finite number of milliseconds, got ${describe(idle)}`);
    }
    // Through the same check as a set's idle (at most MAX_IDLE).
    readSetOptions({ idle: idle / 1000 });
    idleSeconds = setOptions.idle;
  }
  // The rules of set's `tags`, checked before the TTL too.
  const tagged = readTags(tags);
  let seconds;
  // lru-cache dumps `ttl: 0` for an entry without one, once any entry had a TTL.
  if (ttl !== undefined && ttl !== 0) {
    if (typeof ttl !== "number" || !(ttl > 0) || ttl === Infinity) {
      throw dumpError(i, `(${shownKey(key)}): ttl must be a positive, finite number of milliseconds, got ${describe(ttl)}`);
    }
    if (start !== undefined && (typeof start !== "number" || !Number.isFinite(start))) {
      throw dumpError(i, `(${shownKey(key)}): start must be a Date.now() time in milliseconds, got ${describe(start)}`);
    }
    // lru-cache's rule: what is left of `ttl` set at `start` (wall clock).
    const left = start === undefined ? ttl : ttl - Math.max(0, wallNow - start);
    if (!(left > 0)) return undefined;
    // Through the same check as a set's ttl (the sub-nanosecond rest included).
    seconds = readTtl(left / 1000);
  }
  if (hits !== undefined && !(Number.isInteger(hits) && hits >= 0 && hits <= MAX_FREQ)) {
    throw dumpError(i, `(${shownKey(key)}): hits must be an integer from 0 to ${MAX_FREQ}, got ${describe(hits)}`);
  }
  if (probation !== undefined && typeof probation !== "boolean") {
    throw dumpError(i, `(${shownKey(key)}): probation must be a boolean, got ${describe(probation)}`);
  }
  const meta = metadata === undefined ? undefined : copyMetadata(metadata);
  return { key, value, seconds, meta, hits, probation, size, idle: idleSeconds, tags: tagged };
}

/** A TTL in seconds, checked as a set's is. */
function readTtl(seconds) {
  readSetOptions({ ttl: seconds });
  return setOptions.ttl;
}

const dumps = {
  /**
   * The live entries as [key, entry] pairs, coldest first (the entry the
   * policy would evict first comes first), in lru-cache's format: `value`;
   * for an entry with a TTL, `ttl` (the milliseconds it had left) and
   * `start` (`Date.now()` when the dump was taken); `metadata` if it has
   * any; under S3-FIFO, `hits` (its access count, 0 to 3) when not 0 and
   * `probation` (on the small queue); for an entry with a time-to-idle,
   * `idle` (in ms; `ttl` is then what is left of its TTL, not of its idle
   * time, and is absent if it has none); `tags` (an array) for a tagged
   * entry. Counts nothing and changes no order; expired entries are left out.
   */
  dump() {
    const ids = inside.liveSlots(this);
    const keys = inside.keys(this);
    const values = inside.values(this);
    const meta = inside.meta(this);
    const idles = inside.idles(this);
    const tagsOf = inside.tags(this);
    const [freq, deadline] = inside.views(this);
    const now = inside.now(this);
    const wall = Date.now();
    // Listed hottest first (see `entries`): reversed, coldest first. Under
    // TTLPolicy the soonest to expire goes first, the first set among equals;
    // under S3FIFOPolicy the small queue, then the main one, oldest first.
    let order = ids.reverse();
    const queues = inside.queues(this);
    if (inside.byDeadline(this)) {
      const due = (id) => deadline[id] ?? Infinity;
      order.sort((a, b) => due(a) - due(b));
    } else if (queues) {
      const small = order.filter((id) => inside.probation(this, id));
      order = small.concat(order.filter((id) => !inside.probation(this, id)));
    }
    const out = [];
    for (const id of order) {
      const key = keys[id];
      if (key === undefined) continue;
      const entry = { value: values[id] };
      // An idle entry's deadline is its idle one, if sooner: its TTL's is in its clock.
      const clock = idles.size === 0 ? undefined : idles.get(id);
      const at = clock === undefined ? deadline[id] : clock[1];
      if (at !== undefined && at !== Infinity) {
        entry.ttl = at - now;
        entry.start = wall;
      }
      const m = meta.get(id);
      if (m !== undefined) entry.metadata = copyJson(m, 0, "");
      const hits = freq.length === 0 ? 0 : freq[id] & FREQ_COUNT;
      if (hits !== 0) entry.hits = hits;
      if (queues) entry.probation = inside.probation(this, id);
      const sizes = inside.sizes(this);
      if (sizes !== undefined && sizes[id] !== undefined) entry.size = sizes[id];
      if (clock !== undefined) entry.idle = clock[0];
      const tags = tagsOf.size === 0 ? undefined : tagsOf.get(id);
      if (tags !== undefined) entry.tags = [...tags];
      out[out.length] = [key, entry];
    }
    return out;
  },

  /**
   * Stores the [key, entry] pairs of `entries` (a `dump()`'s, or
   * lru-cache's), in order, coldest first: into a store with the same
   * policy this rebuilds the order (each entry at the hot end of its queue,
   * with its access count), into a smaller one the policy evicts
   * as it would, keeping the hottest. `ttl` (ms) counts from `start`
   * (`Date.now()` ms), so an entry whose TTL ran out meanwhile is skipped;
   * one without `ttl` (or, as lru-cache writes it, `ttl: 0`) gets the policy's. An
   * `idle` (ms) is the entry's time-to-idle, its clock started at the load
   * (without one, the policy's). A key already held is replaced.
   * Unlike lru-cache's, `load` does not clear the store first. Every entry
   * is checked before any is stored: bad input throws and changes nothing.
   * Returns how many entries it stored.
   */
  load(entries) {
    if (!Array.isArray(entries)) {
      throw new CachePolicyError(`load takes an array of [key, entry] pairs (a dump()), got ${describe(entries)}`);
    }
    // A disposed or broken store throws here, before anything is read.
    inside.notify(this, inside.begin(this));
    const wall = Date.now();
    const checked = [];
    const sized = inside.sized(this);
    for (let i = 0; i < entries.length; i++) {
      const entry = readDumped(entries[i], i, wall);
      if (entry === undefined) continue;
      // Sized once, before anything is stored: the dump's size, or the
      // store's sizeCalculation (a bad or too large one throws here).
      entry.size = sized ? inside.sizeOf(this, entry.key, entry.value, entry.size) : undefined;
      checked[checked.length] = entry;
    }
    let failed = false;
    let error;
    let stored = 0;
    const queues = inside.queues(this);
    for (const { key, value, seconds, meta, hits, probation, size, idle, tags } of checked) {
      try {
        inside.put(this, key, value, seconds, meta, size, idle, tags);
      } catch (e) {
        // The listener's error (the entry is stored), or the engine's: the
        // rest still load, and the first error is thrown at the end.
        if (!failed) [failed, error] = [true, e];
      }
      const id = inside.ids(this).get(key);
      if (id === undefined) continue;
      stored++;
      // S3FIFOPolicy: back on the queue it came from, with its access count.
      if (queues && probation !== undefined) inside.place(this, id, probation);
      if (hits) {
        const [freq] = inside.views(this);
        if (freq.length !== 0) freq[id] = (freq[id] & ~FREQ_COUNT) | hits;
      }
    }
    if (failed) throw error;
    return stored;
  },
};

for (const name of Reflect.ownKeys(dumps)) {
  const descriptor = Object.getOwnPropertyDescriptor(dumps, name);
  descriptor.enumerable = false;
  Object.defineProperty(MemoryStore.prototype, name, descriptor);
}
