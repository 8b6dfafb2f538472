// js/api/2-keys.js: a part of the body of bind(wasm) in the built api.mjs
// (scripts/build-js.sh concatenates js/api/*.js in order; not a module on
// its own: it uses the names the other parts declare).
//
// Keys: the core's rules checked in JS (keys never enter wasm), the hash
// S3-FIFO's ghost remembers a key by, and glob patterns matched by the core's
// matcher over batches of keys (a literal prefix: a startsWith per key).

// Up to this many UTF-16 units, a well-formed key has at most MAX_KEY_LEN bytes of UTF-8.
const SAFE_KEY_UNITS = Math.floor(MAX_KEY_LEN / 3);

/** Checks `key` as the core would (a non-empty string of at most MAX_KEY_LEN bytes of UTF-8, without RESERVED_KEY_CHAR). */
function checkKey(key) {
  if (typeof key !== "string") throw keyError(key);
  const n = key.length;
  if (n !== 0 && n <= SAFE_KEY_UNITS && isWellFormed(key) && !holdsReserved(key)) return;
  if (!isWellFormed(key)) throw notUnicode(CacheKeyError, "key", key);
  // The core's own message (and verdict) for an empty or long key.
  const error = wasm.keyError(key);
  if (error !== undefined) throw translate(error);
}

// Random per load: S3-FIFO's ghost is filed by these hashes.
const HASH_SEED = (Math.random() * 0x100000000) >>> 0;
/**
 * FNV-1a of the key's UTF-16 units, seeded, then mixed (murmur3's
 * finalizer: FNV's low bits depend only on the characters' low bits):
 * what the engine's ghost remembers a key by.
 */
function hashKey(key) {
  let h = 0x811c9dc5 ^ HASH_SEED;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Which of `keys` match `pattern` (checked a well-formed string): the
 * core's glob matcher (src/pattern.rs), fed in batches; a literal prefix
 * costs a startsWith per key. Returns the indexes of the matches.
 */
function matching(pattern, keys) {
  let matcher;
  try {
    matcher = new WasmPattern(pattern);
  } catch (error) {
    stackMoved = true; // a plain write: see `stackMoved`
    throw translate(error);
  }
  try {
    const kind = matcher.kind();
    const out = [];
    if (kind !== 0) {
      // The prefix before the trailing stars, without a RegExp: one compiled
      // on its first use at the end of the stack aborts the process (V8:
      // "RegExpCompiler Allocation failed - process out of memory").
      let end = pattern.length;
      if (kind === 1) while (end > 0 && pattern.charCodeAt(end - 1) === 42) end--;
      const literal = pattern.slice(0, end);
      for (let i = 0; i < keys.length; i++) {
        if (kind === 3 || (kind === 1 ? keys[i].startsWith(literal) : keys[i] === literal)) out[out.length] = i;
      }
      return out;
    }
    let bytes = new U8(buffer(), BATCH_BYTES_AT, BATCH_BYTES);
    let ends = new U32(buffer(), BATCH_ENDS_AT, BATCH_KEYS);
    let first = 0;
    let n = 0;
    let at = 0;
    const flush = () => {
      matcher.matchBatch(n);
      const results = new U8(buffer(), BATCH_RESULTS_AT, BATCH_KEYS);
      for (let j = 0; j < n; j++) if (results[j] === 1) out[out.length] = first + j;
      first += n;
      n = 0;
      at = 0;
      bytes = new U8(buffer(), BATCH_BYTES_AT, BATCH_BYTES);
      ends = new U32(buffer(), BATCH_ENDS_AT, BATCH_KEYS);
    };
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i];
      if (n === BATCH_KEYS || at + 3 * key.length > BATCH_BYTES) flush();
      let j = 0;
      for (; j < key.length; j++) {
        const code = key.charCodeAt(j);
        if (code > 0x7f) break;
        bytes[at + j] = code;
      }
      if (j === key.length) at += j;
      else at += j + encoder.encodeInto(key.slice(j), bytes.subarray(at + j)).written;
      ends[n++] = at;
    }
    if (n > 0) flush();
    return out;
  } catch (error) {
    stackMoved = true; // a plain write: see `stackMoved`
    throw error;
  } finally {
    matcher.free();
  }
}
