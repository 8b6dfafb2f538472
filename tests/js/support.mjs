// Helpers shared by the tests in tests/js (not a test file itself).

import assert from "node:assert/strict";

/**
 * Runs `body(reported)` with `globalThis.reportError` stubbed to collect what
 * the store reports (errors with no caller to go to), then restores it.
 */
export async function withReported(body) {
  const reported = [];
  const had = Object.hasOwn(globalThis, "reportError");
  const previous = globalThis.reportError;
  globalThis.reportError = (error) => reported.push(error);
  try {
    await body(reported);
  } finally {
    if (had) globalThis.reportError = previous;
    else delete globalThis.reportError;
  }
}

/** `bytes` with its memory's maximum set to `pages` (64 KiB each). */
export function capMemory(bytes, pages) {
  const pieces = [bytes.subarray(0, 8)];
  let at = 8;
  const readLeb = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[at++];
      result |= (byte & 0x7f) << shift;
      shift += 7;
      if ((byte & 0x80) === 0) return result >>> 0;
    }
  };
  const leb = (n) => {
    const b = [];
    do {
      let byte = n & 0x7f;
      n >>>= 7;
      if (n !== 0) byte |= 0x80;
      b.push(byte);
    } while (n !== 0);
    return b;
  };
  let capped = false;
  while (at < bytes.length) {
    const id = bytes[at++];
    const size = readLeb();
    const start = at;
    if (id === 5) {
      const count = readLeb();
      assert.equal(count, 1, "one memory");
      const flags = bytes[at++];
      const min = readLeb();
      if (flags & 1) readLeb();
      assert.ok(min <= pages, `the module starts with ${min} pages`);
      const body = [...leb(1), 1, ...leb(min), ...leb(pages)];
      pieces.push(Uint8Array.from([5, ...leb(body.length), ...body]));
      capped = true;
    } else {
      pieces.push(Uint8Array.from([id, ...leb(size)]), bytes.subarray(start, start + size));
    }
    at = start + size;
  }
  assert.ok(capped, "the module has a memory section");
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}
