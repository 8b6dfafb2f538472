// text.cjs, the UTF-8 encoder and decoder the CommonJS build falls back to
// where the host has none (Jest's jsdom environment), against Node's own on
// random strings and bytes: lone surrogates, malformed and truncated sequences,
// and encodeInto with too little room.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const fallback = createRequire(import.meta.url)("../../js/text.cjs");

let seed = 0x2545f491;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);

function randomText() {
  let text = "";
  const length = Math.floor(random() * 12);
  for (let i = 0; i < length; i++) {
    const r = random();
    const code = r < 0.3 ? random() * 0x80 : r < 0.5 ? random() * 0x800 : r < 0.7 ? 0xd800 + random() * 0x800 : random() * 0x10000;
    text += String.fromCharCode(code);
  }
  if (random() < 0.1) text += "😀";
  return text;
}

function randomBytes() {
  return Uint8Array.from({ length: Math.floor(random() * 10) }, () => {
    const r = random();
    return r < 0.4 ? random() * 0x80 : r < 0.6 ? 0x80 + random() * 0x40 : 0xc0 + random() * 0x40;
  });
}

test("text.cjs encodes as TextEncoder does", () => {
  const ours = new fallback.TextEncoder();
  const node = new TextEncoder();
  for (let i = 0; i < 20_000; i++) {
    const text = randomText();
    assert.deepEqual(ours.encode(text), node.encode(text), JSON.stringify(text));
    const room = Math.floor(random() * 20);
    const a = new Uint8Array(room);
    const b = new Uint8Array(room);
    assert.deepEqual(ours.encodeInto(text, a), node.encodeInto(text, b), JSON.stringify(text));
    assert.deepEqual(a, b);
  }
});

test("text.cjs decodes as TextDecoder (ignoreBOM) does, malformed input included", () => {
  const ours = new fallback.TextDecoder();
  const node = new TextDecoder("utf-8", { ignoreBOM: true });
  assert.equal(ours.decode(), "");
  assert.equal(ours.decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x61])), "\ufeffa");
  const long = "ключ🔑".repeat(5000);
  assert.equal(ours.decode(new TextEncoder().encode(long)), long);
  for (let i = 0; i < 20_000; i++) {
    const bytes = randomBytes();
    assert.equal(ours.decode(bytes), node.decode(bytes), String(bytes));
    const valid = new TextEncoder().encode(randomText());
    assert.equal(ours.decode(valid), node.decode(valid));
  }
});

// text.mjs, the small fallback of the ES module build (jsdom under Jest's ES
// module mode): it only sees what the glue and API give it.
test("text.mjs encodes as TextEncoder does, and encodeInto with 3 bytes of room per unit", async () => {
  // Its fallback classes, as a host with neither global would get them.
  const saved = [globalThis.TextEncoder, globalThis.TextDecoder];
  delete globalThis.TextEncoder;
  delete globalThis.TextDecoder;
  let text;
  try {
    ({ text } = await import(`../../js/text.mjs?fallback`));
  } finally {
    [globalThis.TextEncoder, globalThis.TextDecoder] = saved;
  }
  assert.notEqual(text.TextEncoder, TextEncoder, "the fallback, not the host's");
  const ours = new text.TextEncoder();
  const node = new TextEncoder();
  assert.deepEqual(ours.encode(), node.encode());
  for (let i = 0; i < 20_000; i++) {
    const s = randomText();
    assert.deepEqual(ours.encode(s), node.encode(s), JSON.stringify(s));
    const a = new Uint8Array(3 * s.length + 2);
    const b = new Uint8Array(3 * s.length + 2);
    assert.deepEqual(ours.encodeInto(s, a.subarray(2)), node.encodeInto(s, b.subarray(2)), JSON.stringify(s));
    assert.deepEqual(a, b);
  }
  // Decoding: well-formed UTF-8 (what the wasm hands out), any code point, a BOM kept.
  const decoder = new text.TextDecoder();
  assert.equal(decoder.decode(), "");
  assert.equal(decoder.decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x61])), "\ufeffa");
  for (let i = 0; i < 20_000; i++) {
    const s = randomText();
    const bytes = node.encode(s);
    const padded = new Uint8Array(bytes.length + 4);
    padded.set(bytes, 2);
    assert.equal(decoder.decode(padded.subarray(2, 2 + bytes.length)), new TextDecoder().decode(bytes), JSON.stringify(s));
  }
  for (const c of [0, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff]) {
    const s = String.fromCodePoint(c);
    assert.equal(decoder.decode(node.encode(s)), s, c.toString(16));
  }
});

test("text.mjs uses the host's own where it has both", async () => {
  const { text } = await import("../../js/text.mjs");
  assert.equal(text.TextEncoder, TextEncoder);
  assert.equal(text.TextDecoder, TextDecoder);
});
