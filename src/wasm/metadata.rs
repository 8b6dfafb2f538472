//! Metadata between the JS layer and the core's [`Metadata`] (a JSON map),
//! as text in a small format of our own.
//!
//! The JS layer makes a plain copy of the caller's object (reading each
//! property once, refusing what is not JSON) and writes it in this format;
//! it is read here. Walking a JS object from wasm instead would call JS
//! (`Object.entries`, getters, Proxy traps, globals a user may have replaced)
//! in the middle of a store call; text crosses without running anything.
//! Not JSON text: reading and printing JSON numbers would link a float parser
//! and printer with their tables into the `.wasm` (about 20 KB gzipped).
//!
//! The format, one value:
//! - `z` null, `t` true, `f` false;
//! - `n` and 16 hex digits: a number, the bits of its `f64`;
//! - `s`, the length in UTF-16 code units, `;`, the text: a string;
//! - `a`, the item count, `;`, the items: an array;
//! - `o`, the entry count, `;`, then per entry a string (the key) and a value.

use std::fmt::Write;

use serde_json::{Map, Number, Value};

use crate::errors::{CacheError, Result};
use crate::store::Metadata;

/// Deeper than this is refused (the JS layer refuses 64 levels already).
const MAX_DEPTH: usize = 100;

/// The text of a plain object as a [`Metadata`] map.
pub(super) fn parse(text: &str) -> Result<Metadata> {
    let mut reader = Reader { rest: text };
    match reader.value(0) {
        Some(Value::Object(map)) if reader.rest.is_empty() => Ok(map),
        _ => Err(CacheError::Serialization("metadata must arrive as the encoding of a plain object".into())),
    }
}

/// `metadata` as text, for the JS layer to read back.
pub(super) fn print(metadata: &Metadata) -> String {
    let mut out = String::new();
    write_object(&mut out, metadata);
    out
}

struct Reader<'a> {
    rest: &'a str,
}

impl Reader<'_> {
    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        let (tag, rest) = self.rest.split_at_checked(1)?;
        self.rest = rest;
        Some(match tag {
            "z" => Value::Null,
            "t" => Value::Bool(true),
            "f" => Value::Bool(false),
            "n" => {
                let (hex, rest) = self.rest.split_at_checked(16)?;
                self.rest = rest;
                Value::Number(Number::from_f64(f64::from_bits(u64::from_str_radix(hex, 16).ok()?))?)
            }
            "s" => Value::String(self.string()?),
            "a" => {
                let n = self.count()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            "o" => {
                let n = self.count()?;
                let mut map = Map::new();
                for _ in 0..n {
                    let (tag, rest) = self.rest.split_at_checked(1)?;
                    if tag != "s" {
                        return None;
                    }
                    self.rest = rest;
                    let key = self.string()?;
                    map.insert(key, self.value(depth + 1)?);
                }
                Value::Object(map)
            }
            _ => return None,
        })
    }

    /// A decimal count ended by `;`.
    fn count(&mut self) -> Option<usize> {
        let (digits, rest) = self.rest.split_once(';')?;
        self.rest = rest;
        digits.parse().ok()
    }

    /// A string: its length in UTF-16 code units, `;`, its text.
    fn string(&mut self) -> Option<String> {
        let units = self.count()?;
        let mut seen = 0;
        let mut end = 0;
        for c in self.rest.chars() {
            if seen == units {
                break;
            }
            seen += c.len_utf16();
            end += c.len_utf8();
        }
        if seen != units {
            return None;
        }
        let (text, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(text.to_string())
    }
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push('z'),
        Value::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        Value::Number(n) => {
            let _ = write!(out, "n{:016x}", n.as_f64().unwrap_or(f64::NAN).to_bits());
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            let _ = write!(out, "a{};", items.len());
            for item in items {
                write_value(out, item);
            }
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>) {
    let _ = write!(out, "o{};", map.len());
    for (key, value) in map {
        write_string(out, key);
        write_value(out, value);
    }
}

fn write_string(out: &mut String, s: &str) {
    let _ = write!(out, "s{};{s}", s.encode_utf16().count());
}
