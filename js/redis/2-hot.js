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
// trip). Inputs longer than the buffer take the allocating calls.

const SCRATCH_LENGTH = wasm.scratchLength();
const SCRATCH_AT = wasm.scratchAddress();
const WASM_MEMORY = wasm.wasmMemory();
let scratch = new Uint8Array(WASM_MEMORY.buffer, SCRATCH_AT, SCRATCH_LENGTH);

/** The view of the scratch buffer, made again after the wasm memory grew (which detaches the old one: length 0). */
function scratchView() {
  if (scratch.length === 0) scratch = new Uint8Array(WASM_MEMORY.buffer, SCRATCH_AT, SCRATCH_LENGTH);
  return scratch;
}

/** Copies `bytes` into the scratch buffer if they fit it: whether they did. */
function intoScratch(bytes) {
  if (bytes.length > SCRATCH_LENGTH) return false;
  scratchView().set(bytes);
  return true;
}

/**
 * Rust's plainStart of a stored document: where its value's text starts if
 * JS may parse it as it is and it has no idle header, else -1. Its bytes are
 * left in the scratch buffer when they fit (`inScratch` of the calls below).
 */
function plainStartOf(bytes) {
  return intoScratch(bytes) ? wasm.plainStartIn(bytes.length) : wasm.plainStart(bytes);
}

/** Rust's idleHeader of a stored document (`inScratch`: its bytes are in the scratch buffer already). */
function idleHeaderOf(bytes, inScratch) {
  return inScratch ? wasm.idleHeaderIn(bytes.length) : wasm.idleHeader(bytes);
}

/**
 * The value of the stored document `bytes` under `key`: its text parsed
 * here when Rust's valueStart says JS may, else Rust's reading of it
 * (decodeValue, which refuses what the Rust store refuses). `inScratch`: its
 * bytes are in the scratch buffer already (plainStartOf put them there and
 * nothing wrote it since); else they are copied into the wasm once, into the
 * scratch buffer when they fit.
 */
function decodeDocument(key, bytes, inScratch) {
  const n = bytes.length;
  const copied = inScratch || intoScratch(bytes);
  const start = copied ? wasm.valueStartIn(n) : wasm.valueStart(bytes);
  if (start >= 0) return JSON.parse(valueText(bytes, start));
  return JSON.parse(core(() => (copied ? wasm.decodeValueIn(key, n) : wasm.decodeValue(key, bytes))));
}

const NodeBuffer = globalThis.Buffer;

/** The value's JSON text in a document from `start` (its last byte is the envelope's `}`): a Buffer's own decoder where there is one. */
function valueText(bytes, start) {
  if (NodeBuffer !== undefined && bytes instanceof NodeBuffer) return bytes.toString("utf8", start, bytes.length - 1);
  return decoder.decode(bytes.subarray(start, bytes.length - 1));
}

/** Rust's plainText of `text` (JSON.stringify's), through the scratch buffer when its UTF-8 fits. */
function plainTextOf(text, nulls) {
  if (text.length <= SCRATCH_LENGTH) {
    const { read, written } = encoder.encodeInto(text, scratchView());
    if (read === text.length) return wasm.plainTextIn(written, nulls);
  }
  return wasm.plainText(encoder.encode(text), nulls);
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
let copiedNulls = 0;
let copiedOther = false;
let encodings = 0;

/** An own, enumerable data property, whatever the prototypes say (the rare path: an inherited setter took the assignment, or "__proto__"). */
function defineOwn(object, key, value) {
  Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
}

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
          copy.push(copied);
          // An accessor for this index on Array.prototype or Object.prototype took the push.
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
        // "__proto__" would set the copy's prototype; an accessor of that name on Object.prototype would take the assignment.
        if (key !== "__proto__") copy[key] = copied;
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
