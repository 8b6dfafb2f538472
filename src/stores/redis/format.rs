//! The stored form of an entry: one JSON document per Redis string.
//!
//! ```text
//! {"v":<the value as JSON>}                      no metadata
//! {"v":<the value as JSON>,"m":{<metadata>}}     with metadata
//! ```
//!
//! This module only encodes and decodes; it never does I/O. Every failure is
//! [`CacheError::Serialization`], never a panic.

use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::value::RawValue;

use crate::errors::{CacheError, Result};
use crate::store::{MAX_NESTING, Metadata};

#[derive(Deserialize)]
struct ValueOnly<V> {
    v: V,
}

#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    m: Option<Metadata>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    v: &'a RawValue,
    #[serde(default)]
    m: Option<Metadata>,
    #[serde(default)]
    f: Option<u64>,
}

/// The stored bytes of `value` with `metadata` (an empty map is not stored).
///
/// Refuses, as [`CacheError::Serialization`], what would not read back as
/// written: a value nested more than [`MAX_NESTING`] levels (serde_json reads
/// at most 127, envelope included), and NaN or an infinite float anywhere in
/// the value (serde_json writes them as `null`, so `f64::NAN` would be
/// unreadable and `Some(f64::NAN)` would read back as `None`).
pub(super) fn encode<V: Serialize + ?Sized>(value: &V, metadata: Option<&Metadata>) -> Result<Vec<u8>> {
    encode_stamped(value, metadata, None)
}

/// [`encode`], with the `"f"` stamp of an entry stored by `get_or_refresh`
/// (when it stops being fresh, in ms of Redis's clock) if `fresh_until`.
fn encode_stamped<V: Serialize + ?Sized>(
    value: &V,
    metadata: Option<&Metadata>,
    fresh_until: Option<u64>,
) -> Result<Vec<u8>> {
    let m = metadata.filter(|m| !m.is_empty());
    let mut out = Vec::with_capacity(64);
    if let Some(at) = fresh_until {
        out.extend_from_slice(format!(r#"{{"f":{at},"v":"#).as_bytes());
    } else {
        out.extend_from_slice(br#"{"v":"#);
    }
    // The envelope is level 0: the value's own arrays and objects count from 1.
    let mut checked = Checked { depth: 0, nulls: 0 };
    let mut ser = serde_json::Serializer::with_formatter(&mut out, &mut checked);
    value.serialize(&mut ser).map_err(|e| encode_error("value", &e))?;
    if checked.nulls > 0 {
        // A `null` may be a NaN or an infinity: only now pay for a second walk.
        value.serialize(FiniteProbe).map_err(|NonFinite| non_finite())?;
    }
    if let Some(m) = m {
        out.extend_from_slice(br#","m":"#);
        let mut checked = Checked { depth: 0, nulls: 0 };
        let mut ser = serde_json::Serializer::with_formatter(&mut out, &mut checked);
        m.serialize(&mut ser).map_err(|e| encode_error("metadata", &e))?;
    }
    out.push(b'}');
    Ok(out)
}

fn encode_error(what: &str, e: &serde_json::Error) -> CacheError {
    if e.is_io() {
        // Our formatter's only error: see `Checked::enter`.
        CacheError::Serialization(format!(
            "the {what} is nested more than {MAX_NESTING} levels deep (arrays and objects), more than can be read back"
        ))
    } else {
        CacheError::Serialization(format!("cannot encode the {what} as JSON: {e}"))
    }
}

fn non_finite() -> CacheError {
    CacheError::Serialization(
        "the value holds NaN or an infinite number, which JSON cannot hold (it would be stored as null)".into(),
    )
}

/// serde_json's compact output, counting nesting (refused past
/// [`MAX_NESTING`], before anything is sent) and `null`s.
struct Checked {
    depth: usize,
    nulls: usize,
}

impl Checked {
    fn enter(&mut self) -> io::Result<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING { Err(io::Error::other("nested too deep")) } else { Ok(()) }
    }
}

impl Formatter for &mut Checked {
    fn write_null<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.nulls += 1;
        CompactFormatter.write_null(writer)
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.enter()?;
        CompactFormatter.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth -= 1;
        CompactFormatter.end_array(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.enter()?;
        CompactFormatter.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.depth -= 1;
        CompactFormatter.end_object(writer)
    }
}

/// The value stored in `bytes` (the entry under `key`).
pub(super) fn decode_value<V: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<V> {
    // Fast path for the usual `{"v":<value>}`: the value's text alone. It
    // parses only if it is exactly one JSON value, so the document was
    // exactly `{"v":<it>}`; anything else (metadata, other field order) takes
    // the full parse.
    if let Some(inner) = value_text(bytes)
        && let Ok(value) = serde_json::from_slice::<V>(inner)
    {
        return Ok(value);
    }
    serde_json::from_slice::<ValueOnly<V>>(bytes).map(|e| e.v).map_err(|e| undecodable(key, "value", e))
}

/// What follows `{"v":` (or `{"f":<digits>,"v":`, a `get_or_refresh` stamp)
/// up to the closing `}`: the value's text if the document is exactly that
/// envelope; the caller's parse decides.
fn value_text(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(b"{")?;
    let rest = match rest.strip_prefix(br#""f":"#) {
        Some(stamp) => {
            let digits = stamp.iter().take_while(|b| b.is_ascii_digit()).count();
            stamp[digits..].strip_prefix(b",")?
        }
        None => rest,
    };
    rest.strip_prefix(br#""v":"#)?.strip_suffix(b"}")
}

/// When an entry stored by `get_or_refresh` stops being fresh (ms of Redis's
/// clock), from its `{"f":<ms>,` stamp; `None` for other entries.
pub(super) fn fresh_until(bytes: &[u8]) -> Option<u64> {
    let stamp = bytes.strip_prefix(br#"{"f":"#)?;
    let digits = stamp.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || stamp.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&stamp[..digits]).ok()?.parse().ok()
}

/// The metadata stored in `bytes` (the entry under `key`), empty if none.
pub(super) fn decode_metadata(key: &str, bytes: &[u8]) -> Result<Metadata> {
    serde_json::from_slice::<MetadataOnly>(bytes)
        .map(|e| e.m.unwrap_or_default())
        .map_err(|e| undecodable(key, "metadata", e))
}

/// `bytes` with `extra` merged into its metadata (top-level keys replaced).
/// The value's JSON text is copied byte for byte, never re-encoded, and a
/// `get_or_refresh` freshness stamp is kept.
pub(super) fn merge_metadata(key: &str, bytes: &[u8], extra: Metadata) -> Result<Vec<u8>> {
    let raw: Raw<'_> = serde_json::from_slice(bytes).map_err(|e| undecodable(key, "entry", e))?;
    let mut metadata = raw.m.unwrap_or_default();
    metadata.extend(extra);
    encode_stamped(&raw.v, Some(&metadata), raw.f)
}

fn undecodable(key: &str, what: &str, e: serde_json::Error) -> CacheError {
    let mut shown: String = key.chars().take(64).collect();
    if shown.len() < key.len() {
        shown.push_str("...");
    }
    CacheError::Serialization(format!("the {what} stored under key {shown:?} cannot be decoded: {e}"))
}

/// Why [`FiniteProbe`] stopped.
#[derive(Debug)]
struct NonFinite;

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a float that is not finite")
    }
}

impl std::error::Error for NonFinite {}

impl serde::ser::Error for NonFinite {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NonFinite
    }
}

/// A serializer that writes nothing and fails on the first NaN or infinite
/// float: the slow path of [`encode`], run only when the JSON has a `null`.
/// Any other error of the value's own `Serialize` was already reported by
/// the first pass, so it is treated as "no float found" here.
#[derive(Clone, Copy)]
struct FiniteProbe;

type Probed = std::result::Result<(), NonFinite>;

macro_rules! ok_scalars {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Probed { Ok(()) })*
    };
}

impl serde::Serializer for FiniteProbe {
    type Ok = ();
    type Error = NonFinite;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    ok_scalars!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128, serialize_char: char, serialize_str: &str, serialize_bytes: &[u8],
        serialize_unit_struct: &'static str,
    );

    fn serialize_f32(self, v: f32) -> Probed {
        if v.is_finite() { Ok(()) } else { Err(NonFinite) }
    }
    fn serialize_f64(self, v: f64) -> Probed {
        if v.is_finite() { Ok(()) } else { Err(NonFinite) }
    }
    fn serialize_none(self) -> Probed {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Probed {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Probed {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Probed {
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, value: &T) -> Probed {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Probed {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> std::result::Result<Self, NonFinite> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> std::result::Result<Self, NonFinite> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> std::result::Result<Self, NonFinite> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self, NonFinite> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> std::result::Result<Self, NonFinite> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> std::result::Result<Self, NonFinite> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> std::result::Result<Self, NonFinite> {
        Ok(self)
    }
}

macro_rules! probe_compound {
    ($($trait:ident :: $method:ident($($name:ident),*)),* $(,)?) => {
        $(impl serde::ser::$trait for FiniteProbe {
            type Ok = ();
            type Error = NonFinite;
            fn $method<T: ?Sized + Serialize>(&mut self, $($name: &'static str,)* value: &T) -> Probed {
                value.serialize(*self)
            }
            fn end(self) -> Probed {
                Ok(())
            }
        })*
    };
}

probe_compound!(
    SerializeSeq::serialize_element(),
    SerializeTuple::serialize_element(),
    SerializeTupleStruct::serialize_field(),
    SerializeTupleVariant::serialize_field(),
    SerializeStruct::serialize_field(_name),
    SerializeStructVariant::serialize_field(_name),
);

impl serde::ser::SerializeMap for FiniteProbe {
    type Ok = ();
    type Error = NonFinite;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Probed {
        key.serialize(*self)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Probed {
        value.serialize(*self)
    }
    fn end(self) -> Probed {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: serde_json::Value) -> Metadata {
        json.as_object().cloned().unwrap()
    }

    #[test]
    fn round_trips_and_layout() {
        let bytes = encode(&"hi", None).unwrap();
        assert_eq!(bytes, br#"{"v":"hi"}"#);
        assert_eq!(decode_value::<String>("k", &bytes).unwrap(), "hi");
        assert!(decode_metadata("k", &bytes).unwrap().is_empty());
        let empty = Metadata::new();
        assert_eq!(encode(&1, Some(&empty)).unwrap(), br#"{"v":1}"#, "empty metadata is not stored");
        let bytes = encode(&[1, 2], Some(&meta(serde_json::json!({"a": 1})))).unwrap();
        assert_eq!(bytes, br#"{"v":[1,2],"m":{"a":1}}"#);
        assert_eq!(decode_metadata("k", &bytes).unwrap()["a"], 1);
    }

    #[test]
    fn merge_keeps_the_value_text_exactly() {
        // A number no f64 holds exactly and keys out of order: a re-encoding would change both.
        let stored = br#"{"v":{"z":123456789012345678901234567890,"a":1.0},"m":{"a":1,"b":2}}"#;
        let merged = merge_metadata("k", stored, meta(serde_json::json!({"b": 3, "c": 4}))).unwrap();
        let text = String::from_utf8(merged).unwrap();
        assert!(text.starts_with(r#"{"v":{"z":123456789012345678901234567890,"a":1.0},"m":"#), "{text}");
        assert_eq!(decode_metadata("k", text.as_bytes()).unwrap(), meta(serde_json::json!({"a": 1, "b": 3, "c": 4})));
    }

    fn nested(depth: usize) -> serde_json::Value {
        let mut v = serde_json::json!(1);
        for _ in 0..depth {
            v = serde_json::json!([v]);
        }
        v
    }

    #[test]
    fn what_cannot_come_back_is_refused() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(encode(&bad, None), Err(CacheError::Serialization(_))), "{bad}");
            assert!(matches!(encode(&Some(bad), None), Err(CacheError::Serialization(_))), "{bad}");
            assert!(matches!(encode(&vec![Some(1.0), None, Some(bad)], None), Err(CacheError::Serialization(_))));
            assert!(matches!(encode(&(1u8, bad as f32), None), Err(CacheError::Serialization(_))));
        }
        // Real nulls beside finite floats are fine.
        let ok = encode(&vec![Some(1.5), None], None).unwrap();
        assert_eq!(decode_value::<Vec<Option<f64>>>("k", &ok).unwrap(), vec![Some(1.5), None]);
        // Nesting: the deepest accepted value reads back, with metadata too.
        let deepest = nested(MAX_NESTING);
        let m = meta(serde_json::json!({"a": nested(MAX_NESTING - 1)}));
        let bytes = encode(&deepest, Some(&m)).unwrap();
        assert_eq!(decode_value::<serde_json::Value>("k", &bytes).unwrap(), deepest);
        assert_eq!(decode_metadata("k", &bytes).unwrap(), m);
        let r = encode(&nested(MAX_NESTING + 1), None);
        assert!(matches!(&r, Err(CacheError::Serialization(m)) if m.contains("nested")), "{r:?}");
        let too_deep = meta(serde_json::json!({"a": nested(MAX_NESTING)}));
        let r = encode(&1, Some(&too_deep));
        assert!(matches!(&r, Err(CacheError::Serialization(m)) if m.contains("metadata")), "{r:?}");
    }

    #[test]
    fn serde_json_reads_what_max_nesting_allows_with_room_to_spare() {
        // serde_json's reader stops at 128 levels: the envelope plus a value
        // at the limit must stay below it.
        let doc = format!(r#"{{"v":{}}}"#, nested(MAX_NESTING));
        assert!(serde_json::from_str::<serde_json::Value>(&doc).is_ok());
        let too_deep = format!(r#"{{"v":{}}}"#, nested(127));
        assert!(serde_json::from_str::<serde_json::Value>(&too_deep).is_err(), "the reader's limit moved");
    }

    #[test]
    fn the_fast_path_reads_only_whole_envelopes() {
        assert_eq!(decode_value::<String>("k", br#"{"v":"a}"}"#).unwrap(), "a}");
        assert_eq!(decode_value::<u32>("k", br#"{"v":1,"m":{"x":2}}"#).unwrap(), 1);
        assert_eq!(decode_value::<u32>("k", br#"{"m":{"x":2},"v":3}"#).unwrap(), 3);
        assert_eq!(decode_value::<serde_json::Value>("k", br#"{"v":{"m":1}}"#).unwrap(), serde_json::json!({"m": 1}));
        assert!(decode_value::<u32>("k", br#"{"v":1,}"#).is_err());
    }

    #[test]
    fn refresh_stamps_are_read_past_and_kept_by_merges() {
        let stamped = br#"{"f":1732560000123,"v":"a}","m":{"x":1}}"#;
        assert_eq!(decode_value::<String>("k", stamped).unwrap(), "a}");
        assert_eq!(decode_value::<u32>("k", br#"{"f":17,"v":5}"#).unwrap(), 5);
        assert_eq!(value_text(br#"{"f":17,"v":5}"#), Some(&b"5"[..]));
        assert_eq!(value_text(br#"{"f":,"v":5}"#), Some(&b"5"[..]), "the full parse decides");
        assert_eq!(decode_metadata("k", stamped).unwrap()["x"], 1);
        assert_eq!(fresh_until(stamped), Some(1732560000123));
        assert_eq!(fresh_until(br#"{"v":1}"#), None);
        assert_eq!(fresh_until(br#"{"f":,"v":1}"#), None);
        assert_eq!(fresh_until(br#"{"f":12"#), None);
        let merged = merge_metadata("k", stamped, meta(serde_json::json!({"y": 2}))).unwrap();
        assert_eq!(merged, br#"{"f":1732560000123,"v":"a}","m":{"x":1,"y":2}}"#);
        let plain = merge_metadata("k", br#"{"v":1}"#, meta(serde_json::json!({"y": 2}))).unwrap();
        assert_eq!(plain, br#"{"v":1,"m":{"y":2}}"#);
    }

    #[test]
    fn bad_data_is_a_serialization_error() {
        assert!(matches!(decode_value::<u32>("k", br#"{"v":"text"}"#), Err(CacheError::Serialization(_))));
        assert!(matches!(decode_value::<u32>("k", b"not json"), Err(CacheError::Serialization(_))));
        assert!(matches!(decode_value::<u32>("k", br#"{"m":{}}"#), Err(CacheError::Serialization(_))));
        let mut unencodable = std::collections::HashMap::new();
        unencodable.insert((1, 2), 3);
        assert!(matches!(encode(&unencodable, None), Err(CacheError::Serialization(_))));
    }
}
