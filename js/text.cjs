"use strict";
// UTF-8 for hosts with no TextEncoder or TextDecoder: jsdom, as Jest 30's
// "jsdom" environment sets it up, has neither. The CommonJS glue and API use
// these only when the globals are missing (scripts/build-js.sh puts the
// choice at their top), so no global is ever set. Encoding follows the
// WHATWG encoder (a lone surrogate becomes U+FFFD); decoding the decoder with
// ignoreBOM (a malformed sequence becomes one U+FFFD per maximal subpart).

class TextEncoder {
  get encoding() {
    return "utf-8";
  }
  encode(text = "") {
    const out = new Uint8Array(text.length * 3);
    return out.slice(0, this.encodeInto(text, out).written);
  }
  encodeInto(text, out) {
    let read = 0;
    let written = 0;
    const n = text.length;
    while (read < n) {
      let c = text.charCodeAt(read);
      let units = 1;
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = c <= 0xdbff && read + 1 < n ? text.charCodeAt(read + 1) : 0;
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          units = 2;
        } else {
          c = 0xfffd;
        }
      }
      if (c < 0x80) {
        if (written + 1 > out.length) break;
        out[written++] = c;
      } else if (c < 0x800) {
        if (written + 2 > out.length) break;
        out[written++] = 0xc0 | (c >> 6);
        out[written++] = 0x80 | (c & 63);
      } else if (c < 0x10000) {
        if (written + 3 > out.length) break;
        out[written++] = 0xe0 | (c >> 12);
        out[written++] = 0x80 | ((c >> 6) & 63);
        out[written++] = 0x80 | (c & 63);
      } else {
        if (written + 4 > out.length) break;
        out[written++] = 0xf0 | (c >> 18);
        out[written++] = 0x80 | ((c >> 12) & 63);
        out[written++] = 0x80 | ((c >> 6) & 63);
        out[written++] = 0x80 | (c & 63);
      }
      read += units;
    }
    return { read, written };
  }
}

class TextDecoder {
  get encoding() {
    return "utf-8";
  }
  decode(input) {
    if (input === undefined) return "";
    const bytes = ArrayBuffer.isView(input)
      ? new Uint8Array(input.buffer, input.byteOffset, input.byteLength)
      : new Uint8Array(input);
    const units = [];
    let text = "";
    const n = bytes.length;
    let i = 0;
    while (i < n) {
      const b = bytes[i++];
      let c = 0xfffd;
      if (b < 0x80) {
        c = b;
      } else if (b >= 0xc2 && b <= 0xf4) {
        // Lead byte of a 2-, 3- or 4-byte sequence, and the range its first
        // continuation byte must fall in (no overlong form, no surrogate, at most U+10FFFF).
        const need = b < 0xe0 ? 1 : b < 0xf0 ? 2 : 3;
        let lo = 0x80;
        let hi = 0xbf;
        if (b === 0xe0) lo = 0xa0;
        else if (b === 0xed) hi = 0x9f;
        else if (b === 0xf0) lo = 0x90;
        else if (b === 0xf4) hi = 0x8f;
        let value = b & (need === 1 ? 0x1f : need === 2 ? 0x0f : 0x07);
        let k = 0;
        while (k < need && i < n && bytes[i] >= lo && bytes[i] <= hi) {
          value = (value << 6) | (bytes[i++] & 63);
          lo = 0x80;
          hi = 0xbf;
          k++;
        }
        if (k === need) c = value;
      }
      if (c >= 0x10000) {
        c -= 0x10000;
        units.push(0xd800 + (c >> 10), 0xdc00 + (c & 1023));
      } else {
        units.push(c);
      }
      if (units.length >= 8192) {
        text += String.fromCharCode.apply(null, units);
        units.length = 0;
      }
    }
    return text + String.fromCharCode.apply(null, units);
  }
}

module.exports = { TextEncoder, TextDecoder };
