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

/**
 * Recurses until the stack overflows, then makes `call(n)` (n = 0, 1, ...)
 * at each depth on the way back up, the deepest first: near the bottom of
 * the stack each call overflows somewhere inside, at every point it can.
 * A RangeError from `call` (the stack) is counted; any other error is thrown
 * (from however deep it came), unless `tolerate(error)` passes over it.
 * With `untilDone`, the calls stop at the first that returns. With `warm`,
 * `call(-1)` runs once first, with the whole stack, and what it throws is
 * passed over: a function compiled on its first call needs far more stack
 * to compile than to run, and near the bottom every depth below the first
 * where `call` could compile would be lost (seen: ~400 depths, the whole
 * band where a set overflows inside). Returns how many calls were made (the
 * warm one not counted), how many overflowed, and whether one returned.
 */
export function atEveryStackDepth(call, { untilDone = false, tolerate, warm = false } = {}) {
  const state = { calls: 0, overflowed: 0, done: false };
  // The bookkeeping, out of the recursion's frame (the step between two depths tried).
  const attempt = (warming) => {
    if (warming) return;
    const n = state.calls++;
    try {
      call(n);
      if (untilDone) state.done = true;
    } catch (error) {
      if (error instanceof RangeError) state.overflowed++;
      else if (tolerate === undefined || !tolerate(error)) throw error;
    }
  };
  const dive = (warming) => {
    if (warming) return;
    try {
      dive();
    } catch (error) {
      // The recursion's own overflow, or a deeper call's: only the stack is passed over.
      if (!(error instanceof RangeError)) throw error;
    }
    if (!state.done) attempt();
  };
  // Compiled with the stack to do it (see `warm`).
  attempt(true);
  dive(true);
  if (warm) {
    try {
      call(-1);
    } catch {}
  }
  dive();
  return state;
}

/** A small deterministic PRNG (mulberry32): a function giving numbers in [0, 1) from `seed`. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * In a memory-capped instance (`capMemory`): a hog store takes every byte it
 * can (its last set refused with CacheBackendError), then sets on `victim`
 * (keys `${tag}${i}`) until one traps inside the store. Returns the hog,
 * whose dispose() gives the memory back.
 */
export function hogThenTrap(api, victim, tag = "x") {
  const hog = new api.MemoryStore({ policy: new api.LRUPolicy({ maxSize: 10_000_000 }) });
  for (let hogged = 0; ; hogged++) {
    try {
      hog.setSync(`hog:${hogged}`, hogged);
    } catch (error) {
      assert.ok(error instanceof api.CacheBackendError, `refused: ${error}`);
      break;
    }
  }
  let trapped = false;
  for (let i = 0; i < 200_000 && !trapped; i++) {
    try {
      victim.setSync(`${tag}${i}`, i);
    } catch (error) {
      assert.ok(error instanceof api.CacheBackendError, `a CacheBackendError: ${error}`);
      trapped = /trapped/.test(error.message);
    }
  }
  assert.ok(trapped, `${tag}: a set trapped inside the store`);
  return hog;
}
