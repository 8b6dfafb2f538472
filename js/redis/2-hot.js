// js/redis/2-hot.js: a part of pepperpy-caching/redis (see 1-boundary.js).
//
// The hot path's work on a value (issue 24 item 4): a stored document read
// by get, a value encoded by set. Rust decides both (src/wasm_redis); what
// is here is how the bytes get to it cheaply.
//
// The scratch buffer (src/wasm_redis/scratch.rs): a fixed buffer in the wasm
// memory that this layer writes into itself (TextEncoder.encodeInto for a
// text, a typed-array copy for a reply's bytes), so a call passes only a
// length: no malloc, copy and free per call as a `&[u8]` argument costs,
// and no TextEncoder.encode, which allocates a fresh buffer each time (about
// a microsecond in Node 20, more than a pipelined SET's share of the round
// trip). A stored document longer than the buffer is read in a longer one,
// made for it and given back (fitScratch); a longer text to check takes the
// allocating call.

const SCRATCH_LENGTH = wasm.scratchLength();
const WASM_MEMORY = wasm.wasmMemory();
// The scratch buffer's place and length: SCRATCH_LENGTH, but while a longer document is read there (fitScratch).
let scratchAt = wasm.scratchAddress();
let scratchLength = SCRATCH_LENGTH;
let scratch = new Uint8Array(WASM_MEMORY.buffer, scratchAt, scratchLength);

/** The view of the scratch buffer, made again after the wasm memory grew (which detaches the old one: length 0). */
function scratchView() {
  if (scratch.length === 0) scratch = new Uint8Array(WASM_MEMORY.buffer, scratchAt, scratchLength);
  return scratch;
}

/** Makes the scratch buffer `length` bytes long (SCRATCH_LENGTH if less): Rust's scratchFit, which moves it. */
function fitScratch(length) {
  scratchAt = wasm.scratchFit(length);
  scratchLength = Math.max(length, SCRATCH_LENGTH);
  scratch = new Uint8Array(WASM_MEMORY.buffer, scratchAt, scratchLength);
}

/** Gives back a scratch buffer made longer for one document (intoScratch), once that is read. */
function releaseScratch() {
  if (scratchLength !== SCRATCH_LENGTH) fitScratch(0);
}

/**
 * Bytes, or a text's UTF-8 (encodeInto writes them there directly), put
 * into the scratch buffer: their length, or -1 for a text whose UTF-8 does
 * not fit (then it is read by the allocating call). Bytes always go in:
 * longer than SCRATCH_LENGTH, the buffer is made longer for them (give it
 * back with releaseScratch). A stored document (`doc` below) is its bytes,
 * or its text (its UTF-8 is the stored bytes).
 */
function intoScratch(doc) {
  if (typeof doc !== "string") {
    if (doc.length > scratchLength) fitScratch(doc.length);
    scratchView().set(doc);
    return doc.length;
  }
  if (doc.length > scratchLength) return -1;
  const { read, written } = encoder.encodeInto(doc, scratchView());
  return read === doc.length ? written : -1;
}

/** A stored document's bytes (`doc`: as intoScratch takes it). */
function bytesOf(doc) {
  return typeof doc === "string" ? encoder.encode(doc) : doc;
}

/**
 * The value of the stored document `doc` (bytes, or a text whose UTF-8 is
 * them) under `key`: its text parsed here when Rust's valueStart says JS
 * may, else Rust's reading of it (decodeValue, which refuses what the Rust
 * store refuses). `n`: its bytes are in the scratch buffer already
 * (intoScratch's answer, nothing wrote it since), or -1: then they go into
 * the wasm once.
 */
function decodeDocument(key, doc, n) {
  if (n < 0) n = intoScratch(doc);
  if (n < 0) {
    doc = bytesOf(doc);
    n = intoScratch(doc);
  }
  try {
    const start = wasm.valueStartIn(n);
    if (start >= 0) return JSON.parse(valueText(doc, start, n));
    return JSON.parse(core(() => wasm.decodeValueIn(key, n)));
  } finally {
    releaseScratch();
  }
}

const NodeBuffer = globalThis.Buffer;
// A Buffer's decoders without toString's checks of its arguments (in Node 20,
// `toString("utf8", start, end)` costs twice `utf8Slice(start, end)`, which
// it calls); toString where a Buffer has none.
const UTF8_SLICE = typeof NodeBuffer?.prototype.utf8Slice === "function" ? NodeBuffer.prototype.utf8Slice : undefined;
const LATIN1_SLICE = typeof NodeBuffer?.prototype.latin1Slice === "function" ? NodeBuffer.prototype.latin1Slice : undefined;

/**
 * The value's JSON text in a stored document from byte `start` (its last
 * byte is the envelope's `}`; `n`: the document's byte length, or -1): a
 * slice of a text, a Buffer's own decoder where there is one.
 */
function valueText(doc, start, n) {
  if (typeof doc === "string") return doc.slice(n === doc.length ? start : charIndex(doc, start), doc.length - 1);
  if (NodeBuffer !== undefined && doc instanceof NodeBuffer) {
    return UTF8_SLICE !== undefined ? UTF8_SLICE.call(doc, start, doc.length - 1) : doc.toString("utf8", start, doc.length - 1);
  }
  return decoder.decode(doc.subarray(start, doc.length - 1));
}

/** The index in `text` (well-formed) of the character whose UTF-8 starts at byte `at` of the text's UTF-8. */
function charIndex(text, at) {
  let i = 0;
  for (let bytes = 0; bytes < at; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c < 0xdc00 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      // A surrogate pair: one character, four bytes.
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return i;
}

/** Rust's plainText of `text` (JSON.stringify's), through the scratch buffer when its UTF-8 fits. */
function plainTextOf(text, nulls) {
  const n = intoScratch(text);
  return n >= 0 ? wasm.plainTextIn(n, nulls) : wasm.plainText(encoder.encode(text), nulls);
}

// The fast way to a stored document (the hot path of set, without metadata
// or tags): a copy of the value, each property read once, as the walk reads
// it; JSON.stringify of that copy (no replacer: with one, V8 leaves its fast
// path and the call costs twice as much); Rust (wasm.plainText) says whether
// that text is byte for byte what it would write, and if so the document is
// Rust's template (wasm.envelope) around it. Anything else goes to the Rust
// walk (wasm.encode) of the copy, which decides (and refuses with its own
// words). So the copy only notices, it judges nothing: a function, a symbol,
// a bigint, NaN or an infinity, an object with a toJSON (the toJSON read
// once, kept), or one that is neither an array nor a plain object, is kept
// as it was read and sends the copy to the walk; and the copy counts the
// nulls it copied (an undefined array element, or a hole, is one: both
// write null), so that Rust can tell a `null` of the text that was none.
const OBJECT_PROTO = Object.prototype;
const ARRAY_PROTO = Array.prototype;
const hasOwn = Object.hasOwn ?? ((object, key) => OBJECT_PROTO.hasOwnProperty.call(object, key));
const [ENVELOPE_HEAD, ENVELOPE_TAIL] = wasm.envelope();

// get's quick yes (quickValue): Rust's template as bytes, and its bounds.
const QUICK_HEAD = encoder.encode(ENVELOPE_HEAD);
const QUICK_TAIL = encoder.encode(ENVELOPE_TAIL);
// serde_json's nesting limit is 128, and a number overflows an f64 only past 308 digits.
const QUICK_MAX_OPEN = 100;
const QUICK_MAX_DIGITS = 300;

/**
 * The value of a stored document that is surely plain, or undefined: a
 * conservative quick yes to Rust's plainStart, which decides every other
 * document (the wasm call and the copy into it cost as much as the rest of
 * a get). Yes only for Rust's envelope template (wasm.envelope) around a
 * text that JSON.parse reads and that is printable ASCII without a
 * backslash (no escape, so no lone surrogate; no byte that is not UTF-8),
 * with no exponent and no run of more than 300 digits (no number out of an
 * f64's range) and at most 100 brackets (within serde_json's nesting
 * limit): serde_json reads such a text as JSON.parse does, so plainStart
 * says yes to it (tests/js/redis-quick.test.mjs checks that on generated,
 * mutated and foreign documents).
 */
function quickValue(bytes) {
  const n = bytes.length - QUICK_TAIL.length;
  const h = QUICK_HEAD.length;
  if (n <= h) return undefined;
  for (let i = 0; i < h; i++) if (bytes[i] !== QUICK_HEAD[i]) return undefined;
  for (let i = 0; i < QUICK_TAIL.length; i++) if (bytes[n + i] !== QUICK_TAIL[i]) return undefined;
  let digits = 0;
  let open = 0;
  for (let i = h; i < n; i++) {
    const b = bytes[i];
    if (b >= 0x30 && b <= 0x39) {
      if (++digits > QUICK_MAX_DIGITS) return undefined;
      continue;
    }
    // Not printable ASCII, a backslash, or an exponent (an e or E after a digit).
    if (b < 0x20 || b > 0x7e || b === 0x5c || ((b | 0x20) === 0x65 && digits !== 0)) return undefined;
    if ((b === 0x5b || b === 0x7b) && ++open > QUICK_MAX_OPEN) return undefined;
    digits = 0;
  }
  try {
    return JSON.parse(asciiText(bytes, h, n));
  } catch {
    // Rust decides (and refuses with its words).
    return undefined;
  }
}

/** `bytes[from..to]`, printable ASCII, as text. */
function asciiText(bytes, from, to) {
  if (NodeBuffer !== undefined && bytes instanceof NodeBuffer) {
    return LATIN1_SLICE !== undefined ? LATIN1_SLICE.call(bytes, from, to) : bytes.toString("latin1", from, to);
  }
  return decoder.decode(bytes.subarray(from, to));
}
let copiedNulls = 0;
let copiedOther = false;
let encodings = 0;

/**
 * `value` copied `depth` levels down, each property read once: plain
 * objects and arrays as fresh ones, other values as they are. What
 * JSON.stringify would not write as the walk does (NaN or an infinity, a
 * function, a symbol, a bigint, an object with a toJSON or that is neither
 * an array nor a plain object, nesting past
 * MAX_NESTING) is kept as read and marks the copy (`copiedOther`): the walk
 * then decides on the copy, so it sees what this read, and reads only what
 * this did not (inside a kept object).
 */
function plainCopy(value, depth) {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (value - value !== 0) copiedOther = true;
      return value;
    case "object": {
      if (value === null) {
        copiedNulls++;
        return null;
      }
      if (depth >= MAX_NESTING) {
        copiedOther = true;
        return value;
      }
      if (Array.isArray(value)) {
        const n = value.length;
        // Pushed, not preallocated: a holey array takes JSON.stringify off its fast path.
        const copy = [];
        for (let i = 0; i < n; i++) {
          const item = value[i];
          let copied = null;
          // An undefined element (or a hole): JSON.stringify and the walk both write null, counted as one.
          if (item === undefined) copiedNulls++;
          else copied = plainCopy(item, depth + 1);
          // An accessor for this index on Array.prototype or Object.prototype takes
          // the push (a setter) or refuses it (getter-only: a TypeError, strict
          // mode): the element is then defined, as the walk's copy defines it.
          try {
            copy.push(copied);
          } catch {
            // Defined below.
          }
          if (!hasOwn(copy, i)) defineOwn(copy, i, copied);
        }
        return copy;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== OBJECT_PROTO && proto !== null) {
        copiedOther = true;
        return value;
      }
      // Read once (a getter, a Proxy's trap): the walk calls what this read, and the keys below reuse it.
      const toJSON = value.toJSON;
      if (typeof toJSON === "function") {
        copiedOther = true;
        // The walk calls a toJSON with the object as `this`: this one calls the one read, on `value`.
        return { toJSON: () => toJSON.call(value) };
      }
      const keys = Object.keys(value);
      const copy = {};
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        const item = key === "toJSON" ? toJSON : value[key];
        // Left out, as JSON.stringify and the walk leave it out.
        if (item === undefined) continue;
        const copied = plainCopy(item, depth + 1);
        // "__proto__" would set the copy's prototype; an accessor of that name on
        // Object.prototype takes the assignment (a setter) or refuses it
        // (getter-only: a TypeError, strict mode): then it is defined.
        if (key !== "__proto__") {
          try {
            copy[key] = copied;
          } catch {
            // Defined below.
          }
        }
        if (!hasOwn(copy, key)) defineOwn(copy, key, copied);
      }
      return copy;
    }
    default:
      copiedOther = true;
      return value;
  }
}

/**
 * Reading the value threw `error` (a getter, a Proxy trap): refused as the
 * walk refuses it, in its words (a value whose one reading throws that,
 * walked by Rust), without reading the value again, which might answer then.
 */
function refuseThrown(error) {
  core(() =>
    wasm.encode(
      {
        get thrown() {
          throw error;
        },
      },
      undefined,
      [],
    ),
  );
  // Not reached: the walk refuses a value whose reading throws.
  throw error;
}

/** The stored document of `value` (text): Rust's, by the fast way when it vouches for it, else by its walk. */
function encodeEntry(value, metadata, tags) {
  if (metadata !== undefined || tags.length !== 0) return core(() => wasm.encode(value, metadata, tags));
  // A toJSON on Array.prototype or Object.prototype (a polyfill, a logger):
  // the copy would inherit it, where the walk calls only the value's own.
  if ("toJSON" in ARRAY_PROTO) return core(() => wasm.encode(value, metadata, tags));
  const turn = ++encodings;
  copiedNulls = 0;
  copiedOther = false;
  let copy;
  try {
    copy = plainCopy(value, 0);
  } catch (error) {
    refuseThrown(error);
  }
  // `turn`: a getter that stored something meanwhile reset the counts.
  if (!copiedOther && turn === encodings) {
    let text;
    try {
      text = JSON.stringify(copy);
    } catch {
      text = undefined;
    }
    if (typeof text === "string" && plainTextOf(text, copiedNulls)) return ENVELOPE_HEAD + text + ENVELOPE_TAIL;
  }
  // The walk decides, on what the copy read.
  return core(() => wasm.encode(copy, metadata, tags));
}
