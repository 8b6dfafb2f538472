// UTF-8 for the ES module glue and API where the host has no TextEncoder or
// TextDecoder: jsdom, under Jest's ES module mode (its "browser" condition
// gives this build). Every browser bundle carries it, so it is small rather
// than general (text.cjs is the general one, for CommonJS): it encodes as the
// WHATWG encoder does (a lone surrogate becomes U+FFFD; encodeInto assumes
// room for 3 bytes per UTF-16 unit, which every caller here leaves), and
// decodes well-formed UTF-8 only, which is all the wasm ever hands out (Rust
// strings). The host's own are used wherever it has both.
class Encoder {
  encode(text = "") {
    const out = [];
    for (const char of text) {
      let c = char.codePointAt(0);
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
      if (c < 0x80) out.push(c);
      else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
      else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
    return Uint8Array.from(out);
  }
  encodeInto(text, into) {
    const bytes = this.encode(text);
    into.set(bytes);
    return { read: text.length, written: bytes.length };
  }
}

class Decoder {
  decode(bytes = new Uint8Array()) {
    bytes = ArrayBuffer.isView(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
    let text = "";
    for (let i = 0; i < bytes.length; ) {
      let c = bytes[i++];
      if (c > 0x7f) {
        const more = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
        c &= 0x7f >> (more + 1);
        for (let k = 0; k < more; k++) c = (c << 6) | (bytes[i++] & 63);
      }
      text += String.fromCodePoint(c);
    }
    return text;
  }
}

export const text =
  typeof globalThis.TextDecoder === "function" && typeof globalThis.TextEncoder === "function"
    ? globalThis
    : { TextEncoder: Encoder, TextDecoder: Decoder };
