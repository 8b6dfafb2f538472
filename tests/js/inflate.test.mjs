// inflate.mjs, which the browser build uses to unpack its inlined wasm,
// against zlib: every block type (stored, fixed and dynamic Huffman codes),
// every zlib strategy, copies that overlap themselves, the package's own
// .wasm; and corrupt input fails with an error instead of wrong bytes.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import zlib from "node:zlib";
import { inflate } from "../../js/inflate.mjs";

let seed = 0x9e3779b9;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);

function sample(n) {
  // Runs, repeats at short and long distances, and noise: every kind of symbol.
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = random();
    bytes[i] = r < 0.3 && i > 0 ? bytes[i - 1] : r < 0.6 && i > 300 ? bytes[i - 1 - Math.floor(random() * 300)] : Math.floor(random() * 256);
  }
  return bytes;
}

test("inflate gives back what zlib deflated, for every level and strategy", () => {
  const { Z_DEFAULT_STRATEGY, Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE, Z_FIXED } = zlib.constants;
  for (const level of [0, 1, 6, 9]) {
    for (const strategy of [Z_DEFAULT_STRATEGY, Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE, Z_FIXED]) {
      for (const n of [0, 1, 2, 3, 257, 258, 259, 4096, 70_000]) {
        const bytes = sample(n);
        const packed = zlib.deflateSync(bytes, { level, strategy });
        assert.deepEqual(inflate(packed, n), bytes, `level ${level}, strategy ${strategy}, ${n} bytes`);
      }
    }
  }
  const zeros = new Uint8Array(100_000); // one long self-overlapping copy after another
  assert.deepEqual(inflate(zlib.deflateSync(zeros), zeros.length), zeros);
});

test("inflate unpacks the package's .wasm as the browser build ships it", () => {
  const wasm = fs.readFileSync(new URL("../../pkg/wasm/pepperpy_caching_bg.wasm", import.meta.url));
  const packed = zlib.deflateSync(wasm, { level: 9 });
  assert.deepEqual(Buffer.from(inflate(packed, wasm.length)), wasm);
});

test("corrupt or cut input is an error, never wrong bytes", () => {
  const bytes = sample(20_000);
  const packed = zlib.deflateSync(bytes, { level: 9 });
  assert.throws(() => inflate(packed.subarray(0, packed.length >> 1), bytes.length), /corrupt/);
  assert.throws(() => inflate(packed, bytes.length + 1), /corrupt/);
  assert.throws(() => inflate(packed, bytes.length - 1), /corrupt/);
  assert.throws(() => inflate(Uint8Array.of(0x78, 0xda, 0x07, 0, 0, 0, 0), 10), /corrupt/); // block type 3
  assert.throws(() => inflate(zlib.deflateRawSync(bytes), bytes.length), /corrupt/); // no zlib header
  for (let i = 0; i < 300; i++) {
    const broken = Uint8Array.from(packed);
    broken[2 + Math.floor(random() * (broken.length - 2))] ^= 1 << Math.floor(random() * 8);
    assert.throws(() => inflate(broken, bytes.length), /corrupt/, `flip ${i}`);
  }
});
