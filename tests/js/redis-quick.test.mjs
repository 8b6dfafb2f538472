// get's quick yes (js/redis/2-hot.js quickValue, issue 24 item 4): a stored
// document read without the wasm must be one Rust's plainStart says yes to,
// and read as the rest of get reads it. A differential fuzz against Rust
// (the wasm's plainStartIn and decodeValue, the one source for the format)
// on generated, mutated and foreign documents, through a store on a
// node-redis lookalike that answers each GET with the document's bytes.
//
// QUICK_CASES (default 20,000) sets how many generated documents; a failure
// prints the seed and the document.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as main from "pepperpy-caching";
import { RedisStore } from "pepperpy-caching/redis";
import { wasm } from "./redis-walk.mjs";

const CASES = Number(process.env.QUICK_CASES ?? 20_000);
const SEED = Number(process.env.QUICK_SEED ?? 0x5eed);
const [HEAD, TAIL] = wasm.envelope();

/**
 * A node-redis v5 lookalike, ready, whose GET answers `doc.current`: a
 * Buffer, as node-redis does, or (`plain`) a plain Uint8Array, as the bytes
 * of a client outside Node (no Buffer's decoder).
 */
function lookalike(doc, plain = false) {
  return {
    isReady: true,
    isOpen: true,
    withTypeMapping() {},
    once() {},
    on() {},
    sendCommand: (argv) => {
      if (argv[0] !== "GET") return Promise.resolve(Buffer.from("OK"));
      return Promise.resolve(plain ? new Uint8Array(doc.current) : Buffer.from(doc.current));
    },
  };
}

const original = { plainStartIn: wasm.plainStartIn };

/** Rust's plainStart of `bytes` (at most the scratch buffer's length): the scratch buffer written here. */
function rustPlainStart(bytes) {
  new Uint8Array(wasm.wasmMemory().buffer, wasm.scratchAddress(), bytes.length).set(bytes);
  return original.plainStartIn(bytes.length);
}

/** What get must give for `bytes`, by Rust alone: the value (its text parsed where plainStart says so, else decodeValue's), or decodeValue's error. */
function rustReading(bytes) {
  const start = rustPlainStart(bytes);
  if (start >= 0) return { start, value: JSON.parse(Buffer.from(bytes).toString("utf8", start, bytes.length - 1)) };
  try {
    return { start, value: JSON.parse(wasm.decodeValue("k", bytes)) };
  } catch (error) {
    return { start, error };
  }
}

/** A seeded PRNG (mulberry32). */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Generated JSON-ish texts: mostly JSON, with the forms where JSON.parse and serde_json differ, and junk. */
function generator(random) {
  const int = (n) => Math.floor(random() * n);
  const pick = (list) => list[int(list.length)];
  const digits = (n) => Array.from({ length: n }, () => String(int(10))).join("");
  const number = () => {
    const r = random();
    let text = (random() < 0.3 ? "-" : "") + (random() < 0.1 ? "0" + digits(int(3)) : String(1 + int(9)) + digits(r < 0.05 ? 290 + int(30) : int(20)));
    if (random() < 0.3) text += "." + digits(random() < 0.05 ? 290 + int(30) : 1 + int(12));
    if (random() < 0.2) text += pick(["e", "E"]) + pick(["", "+", "-"]) + digits(1 + int(4));
    if (random() < 0.03) text = pick([".5", "1.", "-", "01", "Infinity", "NaN", "-0", "1e", "0x10", "1_0"]);
    return text;
  };
  const piece = () =>
    pick([
      "a", "e", "E", "x1", "é", "\u00ff", "€", "😀", " ", "\t", "\\n", "\\\"", "\\\\", "\\/", "\\u00e9", "\\ud800", "\\udbff\\udfff",
      "\\u0000", "\\x", "\u0001", "\u007f", "\u2028", "\ufeff", "\ufffd", "\u0080", "\u{10ffff}", "1e5", "\\", "\"", "{", "[",
    ]);
  const string = () => '"' + Array.from({ length: int(8) }, piece).join("") + '"';
  const space = () => (random() < 0.9 ? "" : pick([" ", "  ", "\t", "\n", "\r"]));
  const value = (depth) => {
    const r = random();
    if (depth > 0 && r < 0.15) {
      const n = int(4);
      return "[" + Array.from({ length: n }, () => space() + value(depth - 1) + space()).join(",") + (random() < 0.02 ? "," : "") + "]";
    }
    if (depth > 0 && r < 0.3) {
      const n = int(4);
      const key = () => (random() < 0.1 ? pick(['"__proto__"', '"a"', '"v"', '"toJSON"']) : string());
      return "{" + Array.from({ length: n }, () => space() + key() + space() + ":" + value(depth - 1)).join(",") + "}";
    }
    if (r < 0.6) return number();
    if (r < 0.85) return string();
    return pick(["true", "false", "null", "tru", "nul", "True", ""]);
  };
  const deep = () => {
    const n = 90 + int(50);
    return "[".repeat(n) + (random() < 0.5 ? "1" : "") + "]".repeat(n - (random() < 0.1 ? 1 : 0));
  };
  return () => (random() < 0.03 ? deep() : value(1 + int(4)));
}

/** A document: the envelope around a text, sometimes another prefix or suffix, sometimes bytes changed. */
function documents(random, text) {
  const int = (n) => Math.floor(random() * n);
  const pick = (list) => list[int(list.length)];
  let doc = Buffer.from(
    random() < 0.9
      ? HEAD + text + TAIL
      : pick(['{"v" :', '{"i":5,"d":6,"v":', '{"f":12,"v":', '{"t":["a"],"v":', ' {"v":', '{"V":', "[", '{"v":1,"v":']) + text + pick(["}", "}}", "", ',"m":{}}', "} "]),
  );
  if (random() < 0.25) {
    const bytes = [...doc];
    for (let m = 1 + int(3); m > 0; m--) {
      const at = int(bytes.length + 1);
      const r = random();
      // Any byte: broken UTF-8, controls, quotes and brackets.
      if (r < 0.4) bytes[Math.min(at, bytes.length - 1)] = int(256);
      else if (r < 0.7) bytes.splice(at, 0, pick([int(256), 0x5c, 0x22, 0x7b, 0x5b, 0x65, 0xc3, 0xed, 0x80]));
      else bytes.splice(at, 1);
    }
    doc = Buffer.from(bytes);
  }
  return doc;
}

describe("get's quick yes (no wasm call) against Rust's plainStart", () => {
  test(`every document read without the wasm is one Rust reads as plain, and reads as Rust reads it (${CASES} generated documents, seed ${SEED})`, async () => {
    const doc = { current: Buffer.from(HEAD + "1" + TAIL) };
    // Buffers and plain Uint8Arrays, alternately.
    const stores = [new RedisStore({ client: lookalike(doc), prefix: "q:" }), new RedisStore({ client: lookalike(doc, true), prefix: "q:" })];
    let asked = 0;
    wasm.plainStartIn = function (...args) {
      asked++;
      return original.plainStartIn.apply(this, args);
    };
    const random = prng(SEED);
    const text = generator(random);
    let quick = 0;
    let plain = 0;
    try {
      for (let i = 0; i < CASES; i++) {
        const bytes = documents(random, text());
        doc.current = bytes;
        const before = asked;
        let got;
        try {
          got = { value: await stores[i % 2].get("k") };
        } catch (error) {
          got = { error };
        }
        const skipped = asked === before;
        const rust = rustReading(bytes);
        const shown = `case ${i} (seed ${SEED}, ${i % 2 ? "Uint8Array" : "Buffer"}): ${JSON.stringify(bytes.toString("latin1").slice(0, 200))}`;
        if (rust.start >= 0) plain++;
        if (skipped) {
          quick++;
          assert.equal(rust.start, Buffer.byteLength(HEAD), `a quick yes Rust does not give: ${shown}`);
        }
        if (rust.error !== undefined) {
          assert.ok(got.error instanceof main.CacheSerializationError, `${shown}: ${got.error ?? JSON.stringify(got.value)}`);
          assert.equal(got.error.message, rust.error.message, shown);
        } else {
          assert.equal(got.error, undefined, `${shown}: ${got.error}`);
          assert.deepEqual(got.value, rust.value, shown);
        }
      }
    } finally {
      wasm.plainStartIn = original.plainStartIn;
    }
    // Not vacuous: most plain documents take the quick way (none did before it).
    assert.ok(plain > CASES / 5, `${plain} plain documents of ${CASES}`);
    assert.ok(quick > plain / 3, `${quick} quick of ${plain} plain documents`);
    if (process.env.QUICK_SHOW) console.log({ quick, plain, CASES });
  });

  test("the documents where JSON.parse and serde_json differ go to Rust, and read as it reads them", async () => {
    const doc = { current: undefined };
    const stores = [new RedisStore({ client: lookalike(doc), prefix: "q:" }), new RedisStore({ client: lookalike(doc, true), prefix: "q:" })];
    const docs = [
      '{"v":1e400}',
      '{"v":-1E400}',
      '{"v":1e-400}',
      `{"v":1${"0".repeat(400)}}`,
      `{"v":0.${"0".repeat(400)}1}`,
      `{"v":${"[".repeat(128)}${"]".repeat(128)}}`,
      `{"v":${"[".repeat(129)}${"]".repeat(129)}}`,
      '{"v":"\\ud800"}',
      '{"v":"\\udbff"}',
      '{"v":"\xff"}',
      '{"v":"\xed\xa0\x80"}',
      '{"v":"\xc0\xaf"}',
      '{"v":"a\tb"}',
      '{"v":"\u0001"}',
      // A BOM before the value (a decoder drops it by default), broken and extreme UTF-8.
      '{"v":\xef\xbb\xbf1}',
      '{"v":\xef\xbb\xbf"x"}',
      '{"v":"\xf4\x90\x80\x80"}',
      '{"v":"\xf0\x8f\xbf\xbf"}',
      '{"v":"\xe0\x9f\xbf"}',
      '{"v":"\xed\xbf\xbf"}',
      '{"v":"\xc1\xbf"}',
      '{"v":"\xc2"}',
      '{"v":"\x80"}',
      '{"v":"\xf4\x8f\xbf\xbf\xef\xbf\xbd"}',
    ];
    for (const text of docs) {
      for (const store of stores) {
        const bytes = Buffer.from(text, "latin1");
        doc.current = bytes;
        let got;
        try {
          got = { value: await store.get("k") };
        } catch (error) {
          got = { error };
        }
        const rust = rustReading(bytes);
        if (rust.error !== undefined) {
          assert.ok(got.error instanceof main.CacheSerializationError, `${text.slice(0, 40)}: ${got.error ?? JSON.stringify(got.value)}`);
          assert.equal(got.error.message, rust.error.message);
        } else {
          assert.deepEqual(got, { value: rust.value }, text.slice(0, 40));
        }
      }
    }
    // And the plain ones take the quick way: the wasm is not asked.
    let asked = 0;
    wasm.plainStartIn = function (...args) {
      asked++;
      return original.plainStartIn.apply(this, args);
    };
    try {
      const ascii = [1, -0.5, "user 1", { id: 1, name: "user 1", tags: ["a", "b"], score: 1.5 }, [null, true, false, "x y"], { __proto__: null, x: "" }];
      for (const value of ascii) {
        doc.current = Buffer.from(HEAD + JSON.stringify(value) + TAIL);
        for (const store of stores) assert.deepEqual(await store.get("k"), JSON.parse(JSON.stringify(value)));
      }
      assert.equal(asked, 0, "a plain ASCII document is read without the wasm");
      // Past ASCII: Rust's plainStart decides (the quick yes is for ASCII only).
      for (const value of [{ id: 1, name: "usér 1", tags: ["a", "€"] }, ["😀\u2028", "\ufeff"]]) {
        doc.current = Buffer.from(HEAD + JSON.stringify(value) + TAIL);
        for (const store of stores) assert.deepEqual(await store.get("k"), value);
      }
      assert.equal(asked, 4, "a document past ASCII is Rust's to read");
    } finally {
      wasm.plainStartIn = original.plainStartIn;
    }
  });
});
