// Inflate (a zlib stream, RFC 1950/1951), synchronous, for wasm/bytes.mjs: the
// browser build inlines the .wasm deflated and then base64-encoded, which
// gzips to within a few hundred bytes of the .wasm file itself, where base64
// of the raw bytes gzips to a third more. Decoding follows zlib's puff.c
// with each Huffman code decoded by one look-up in a table indexed by the
// next bits of input; the .wasm is inflated once, when the package loads.
// The stream's Adler-32 is checked, so bytes a tool mangled on the way fail
// here, with a message, rather than as a wasm that does something else.

const ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/** Base values and extra bits of the length (257..285) and distance (0..29) symbols. */
function table(n, start, extra) {
  const base = new Uint16Array(n);
  const bits = new Uint8Array(n);
  for (let i = 0, value = start; i < n; i++) {
    bits[i] = extra(i);
    base[i] = value;
    value += 1 << bits[i];
  }
  return { base, bits };
}
const LENGTH = table(29, 3, (i) => (i < 8 || i === 28 ? 0 : (i >> 2) - 1));
LENGTH.base[28] = 258;
const DISTANCE = table(30, 1, (i) => (i < 4 ? 0 : (i >> 1) - 1));

// Codes up to this many bits are decoded by one look-up; longer ones (rare by
// construction: each is used less than once in 512 symbols) from a Map. A
// table for all 15 bits would cost 32,768 writes per block to build, which is
// most of the time on a cold start.
const PRIMARY = 9;

/**
 * A canonical Huffman code from its code lengths, as a table indexed by the
 * next `bits` input bits (deflate sends codes from their first bit, so the
 * index is the code reversed): each entry is symbol << 4 | code length, 0
 * where the code is longer or none matches; the longer codes are in `long`,
 * by reversed code | length << 16.
 */
function huffman(lengths) {
  let max = 0;
  const count = new Uint16Array(16);
  for (const length of lengths) {
    count[length]++;
    if (length > max) max = length;
  }
  count[0] = 0;
  const next = new Uint16Array(16);
  for (let length = 1, code = 0; length < 16; length++) {
    code = (code + count[length - 1]) << 1;
    next[length] = code;
  }
  const bits = Math.min(max, PRIMARY);
  const table = new Uint16Array(1 << bits);
  const long = new Map();
  for (let s = 0; s < lengths.length; s++) {
    const length = lengths[s];
    if (length === 0) continue;
    let code = next[length]++;
    let reversed = 0;
    for (let i = 0; i < length; i++, code >>= 1) reversed = (reversed << 1) | (code & 1);
    const entry = (s << 4) | length;
    if (length > bits) long.set(reversed | (length << 16), entry);
    else for (let i = reversed; i < table.length; i += 1 << length) table[i] = entry;
  }
  return { table, bits, mask: (1 << bits) - 1, max, long };
}

/** The entry of a code longer than the table's `bits`, from the next input bits `held`; 0 if none. */
function longCode(code, held) {
  for (let length = code.bits + 1; length <= code.max; length++) {
    const entry = code.long.get((held & ((1 << length) - 1)) | (length << 16));
    if (entry !== undefined) return entry;
  }
  return 0;
}

/** Adler-32 of `bytes` (RFC 1950). */
function adler32(bytes) {
  let a = 1;
  let b = 0;
  for (let i = 0; i < bytes.length; ) {
    // 5552 bytes is the most that cannot overflow before the modulo.
    for (const end = Math.min(i + 5552, bytes.length); i < end; i++) {
      a += bytes[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
  }
  return ((b << 16) | a) >>> 0;
}

function fail(why) {
  throw new Error(`pepperpy-caching: the inlined wasm is corrupt (${why})`);
}

/**
 * The input and the bits read from it but not yet used. Past the end it
 * reads zeros: a code's table look-up may need more bits than the code has;
 * running out is caught by the length and checksum checks.
 */
class Reader {
  constructor(input) {
    this.input = input;
    this.at = 2; // after the zlib header
    this.held = 0;
    this.count = 0;
  }
  need(n) {
    while (this.count < n) {
      this.held |= (this.at < this.input.length ? this.input[this.at] : 0) << this.count;
      this.at++;
      this.count += 8;
    }
  }
  bits(n) {
    this.need(n);
    const value = this.held & ((1 << n) - 1);
    this.held >>>= n;
    this.count -= n;
    return value;
  }
  decode(code) {
    this.need(code.max);
    let entry = code.table[this.held & code.mask];
    if (entry === 0) entry = longCode(code, this.held);
    const length = entry & 15;
    if (length === 0) fail("a code that is in no table");
    this.held >>>= length;
    this.count -= length;
    return entry >> 4;
  }
  /** Drops the rest of a started byte; whole bytes read ahead go back to the input. */
  align() {
    this.at -= (this.count - (this.count & 7)) >> 3;
    this.held = 0;
    this.count = 0;
  }
}

let fixed;

/** The code tables of a block with dynamic codes (its header read from `r`). */
function dynamic(r) {
  const nLiterals = r.bits(5) + 257;
  const nDistances = r.bits(5) + 1;
  const nCodes = r.bits(4) + 4;
  const codeLengths = new Uint8Array(19);
  for (let i = 0; i < nCodes; i++) codeLengths[ORDER[i]] = r.bits(3);
  const lengthCode = huffman(codeLengths);
  const lengths = new Uint8Array(nLiterals + nDistances);
  for (let i = 0; i < lengths.length; ) {
    const symbol = r.decode(lengthCode);
    if (symbol < 16) {
      lengths[i++] = symbol;
      continue;
    }
    let value = 0;
    let repeat;
    if (symbol === 16) {
      if (i === 0) fail("a repeat with nothing before it");
      value = lengths[i - 1];
      repeat = 3 + r.bits(2);
    } else {
      repeat = symbol === 17 ? 3 + r.bits(3) : 11 + r.bits(7);
    }
    if (i + repeat > lengths.length) fail("too many code lengths");
    lengths.fill(value, i, i + repeat);
    i += repeat;
  }
  return [huffman(lengths.subarray(0, nLiterals)), huffman(lengths.subarray(nLiterals))];
}

/**
 * Inflates `input`, a zlib stream, into exactly `size` bytes.
 * @param {Uint8Array} input
 * @param {number} size
 * @returns {Uint8Array}
 */
export function inflate(input, size) {
  if (input.length < 6 || (input[0] & 15) !== 8 || ((input[0] << 8) | input[1]) % 31 !== 0 || input[1] & 32) {
    fail("no zlib header");
  }
  const out = new Uint8Array(size);
  const r = new Reader(input);
  let written = 0;
  let last;
  do {
    last = r.bits(1);
    const type = r.bits(2);
    if (type === 0) {
      r.align();
      const at = r.at;
      if (at + 4 > input.length) fail("it ends early");
      const length = input[at] | (input[at + 1] << 8);
      if (at + 4 + length > input.length || written + length > size) fail("a stored block that does not fit");
      out.set(input.subarray(at + 4, at + 4 + length), written);
      r.at += 4 + length;
      written += length;
      continue;
    }
    let codes;
    if (type === 1) {
      if (fixed === undefined) {
        const lengths = new Uint8Array(288 + 30);
        lengths.fill(8, 0, 144).fill(9, 144, 256).fill(7, 256, 280).fill(8, 280, 288).fill(5, 288);
        fixed = [huffman(lengths.subarray(0, 288)), huffman(lengths.subarray(288))];
      }
      codes = fixed;
    } else if (type === 2) {
      codes = dynamic(r);
    } else {
      fail("a block of type 3");
    }
    written = block(r, codes[0], codes[1], out, written);
  } while (!last);
  if (written !== size) fail("fewer bytes than expected");
  r.align();
  const at = r.at;
  if (at + 4 > input.length) fail("it ends early");
  const sum = ((input[at] << 24) | (input[at + 1] << 16) | (input[at + 2] << 8) | input[at + 3]) >>> 0;
  if (sum !== adler32(out)) fail("its checksum does not match");
  return out;
}

/**
 * The symbols of one block with Huffman codes, into `out` from `written`;
 * returns the new end. The hot loop: the reader's state is kept in locals
 * (registers) and the look-ups are written out.
 */
function block(r, literals, distances, out, written) {
  const { input } = r;
  const end = input.length;
  const size = out.length;
  let { held, count, at } = r;
  const lTable = literals.table;
  const lMax = literals.max;
  const lMask = literals.mask;
  const dTable = distances.table;
  const dMax = distances.max;
  const dMask = distances.mask;
  const lengthBase = LENGTH.base;
  const lengthBits = LENGTH.bits;
  const distanceBase = DISTANCE.base;
  const distanceBits = DISTANCE.bits;
  for (;;) {
    while (count < lMax) {
      held |= (at < end ? input[at] : 0) << count;
      at++;
      count += 8;
    }
    let entry = lTable[held & lMask];
    if (entry === 0) entry = longCode(literals, held);
    let length = entry & 15;
    if (length === 0) fail("a code that is in no table");
    held >>>= length;
    count -= length;
    let symbol = entry >> 4;
    if (symbol < 256) {
      if (written >= size) fail("more bytes than expected");
      out[written++] = symbol;
      continue;
    }
    if (symbol === 256) break;
    symbol -= 257;
    if (symbol >= 29) fail("a length symbol out of range");
    let extra = lengthBits[symbol];
    while (count < extra + dMax) {
      held |= (at < end ? input[at] : 0) << count;
      at++;
      count += 8;
    }
    const n = lengthBase[symbol] + (held & ((1 << extra) - 1));
    held >>>= extra;
    count -= extra;
    entry = dTable[held & dMask];
    if (entry === 0) entry = longCode(distances, held);
    length = entry & 15;
    if (length === 0) fail("a code that is in no table");
    held >>>= length;
    count -= length;
    const d = entry >> 4;
    if (d >= 30) fail("a distance symbol out of range");
    extra = distanceBits[d];
    while (count < extra) {
      held |= (at < end ? input[at] : 0) << count;
      at++;
      count += 8;
    }
    const distance = distanceBase[d] + (held & ((1 << extra) - 1));
    held >>>= extra;
    count -= extra;
    if (distance > written || written + n > size) fail("a copy out of range");
    if (distance >= n) {
      out.copyWithin(written, written - distance, written - distance + n);
      written += n;
    } else {
      for (let k = 0; k < n; k++, written++) out[written] = out[written - distance];
    }
  }
  r.held = held;
  r.count = count;
  r.at = at;
  return written;
}
