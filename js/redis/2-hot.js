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

/** Rust's plainStart of a stored document: where its value's text starts if JS may parse it as it is and it has no idle header, else -1. */
function plainStartOf(bytes) {
  const n = bytes.length;
  if (n > SCRATCH_LENGTH) return wasm.plainStart(bytes);
  scratchView().set(bytes);
  return wasm.plainStartIn(n);
}

/** Rust's valueStart of a stored document (plainStartOf, an idle header allowed). */
function valueStartOf(bytes) {
  const n = bytes.length;
  if (n > SCRATCH_LENGTH) return wasm.valueStart(bytes);
  scratchView().set(bytes);
  return wasm.valueStartIn(n);
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
// or tags): a copy of the value made of what JSON.stringify and Rust's walk
// write alike (plain objects, arrays, strings, finite numbers, booleans,
// null), each property read once, as the walk reads it; JSON.stringify of
// that copy (no replacer: with one, V8 leaves its fast path and the call
// costs twice as much); Rust (wasm.plainText) says whether that text is byte
// for byte what it would write, and if so the document is Rust's template
// (wasm.envelope) around it. Anything else goes to the Rust walk
// (wasm.encode), which decides (and refuses with its own words). So the copy
// only notices, it judges nothing: a function, a symbol, a bigint, NaN or an
// infinity, an undefined array element, an object with a toJSON, or one
// that is neither an array nor a plain object, stops it; and it counts the
// nulls it copied, so that Rust can tell a `null` of the text that was none.
const NOT_PLAIN = Symbol("not plain");
const OBJECT_PROTO = Object.prototype;
const ARRAY_PROTO = Array.prototype;
const hasOwn = Object.hasOwn ?? ((object, key) => OBJECT_PROTO.hasOwnProperty.call(object, key));
const [ENVELOPE_HEAD, ENVELOPE_TAIL] = wasm.envelope();
let copiedNulls = 0;
let encodings = 0;

/** `value` as plain data JSON.stringify writes as Rust's walk does, `depth` levels down; throws NOT_PLAIN at anything else. */
function plainCopy(value, depth) {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      // NaN and the infinities: JSON.stringify writes null, the walk refuses.
      if (value - value !== 0) throw NOT_PLAIN;
      return value;
    case "object": {
      if (value === null) {
        copiedNulls++;
        return null;
      }
      // Past the walk's nesting (a cycle included): the walk refuses it.
      if (depth >= MAX_NESTING) throw NOT_PLAIN;
      if (Array.isArray(value)) {
        const n = value.length;
        // Pushed, not preallocated: a holey array takes JSON.stringify off its fast path.
        const copy = [];
        for (let i = 0; i < n; i++) {
          const item = value[i];
          if (item === undefined) throw NOT_PLAIN;
          copy.push(plainCopy(item, depth + 1));
          // An accessor for this index on Array.prototype or Object.prototype took the push.
          if (!hasOwn(copy, i)) throw NOT_PLAIN;
        }
        return copy;
      }
      const proto = Object.getPrototypeOf(value);
      if ((proto !== OBJECT_PROTO && proto !== null) || typeof value.toJSON === "function") throw NOT_PLAIN;
      const keys = Object.keys(value);
      const copy = {};
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        const item = value[key];
        // Left out, as JSON.stringify and the walk leave it out.
        if (item === undefined) continue;
        // An own "__proto__" would set the copy's prototype.
        if (key === "__proto__") throw NOT_PLAIN;
        copy[key] = plainCopy(item, depth + 1);
        // An accessor of that name on Object.prototype took the assignment.
        if (!hasOwn(copy, key)) throw NOT_PLAIN;
      }
      return copy;
    }
    default:
      throw NOT_PLAIN;
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
  let copy;
  try {
    copy = plainCopy(value, 0);
  } catch (error) {
    if (error !== NOT_PLAIN) refuseThrown(error);
    copy = NOT_PLAIN;
  }
  let text;
  if (copy !== NOT_PLAIN) {
    try {
      text = JSON.stringify(copy);
    } catch {
      text = undefined;
    }
  }
  // `turn`: a getter that stored something meanwhile reset the count.
  if (typeof text === "string" && turn === encodings && plainTextOf(text, copiedNulls)) return ENVELOPE_HEAD + text + ENVELOPE_TAIL;
  return core(() => wasm.encode(value, metadata, tags));
}
