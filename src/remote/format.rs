//! The stored form of an entry: one JSON document per Redis string.
//!
//! ```text
//! {"v":<the value as JSON>}                      no metadata
//! {"v":<the value as JSON>,"m":{<metadata>}}     with metadata
//! {"t":[<tags>],"v":...}                         with tags (before the value,
//!                                                where a script finds them)
//! ```
//!
//! Before `"v"` may come, in this order, the stamp of an entry stored by
//! `get_or_refresh` (`"f":<ms>`) and the header of an entry with a
//! time-to-idle (`"i":<idle ms>,"d":<TTL deadline ms, 0: none>`, written by
//! the scripts, where Redis's clock is), then the tags. v0.2 wrote none of
//! them: its entries read as they did.
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
struct TagsOnly {
    #[serde(default)]
    t: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    v: &'a RawValue,
    #[serde(default)]
    m: Option<Metadata>,
    #[serde(default)]
    f: Option<u64>,
    #[serde(default)]
    i: Option<u64>,
    #[serde(default)]
    d: Option<u64>,
    #[serde(default)]
    t: Option<Vec<String>>,
}

/// The stored bytes of `value` with `metadata` (an empty map is not stored).
///
/// Refuses, as [`CacheError::Serialization`], what would not read back as
/// written: a value nested more than [`MAX_NESTING`] levels (serde_json reads
/// at most 127, envelope included), and NaN or an infinite float anywhere in
/// the value (serde_json writes them as `null`, so `f64::NAN` would be
/// unreadable and `Some(f64::NAN)` would read back as `None`).
// The stores write through `encode_tagged`; this form stays for the tests.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn encode<V: Serialize + ?Sized>(value: &V, metadata: Option<&Metadata>) -> Result<Vec<u8>> {
    encode_stamped(value, metadata, None, None, &[])
}

/// [`encode`] with the entry's `tags` (checked by the caller; none: the
/// same bytes as `encode`).
pub(crate) fn encode_tagged<V: Serialize + ?Sized>(
    value: &V,
    metadata: Option<&Metadata>,
    tags: &[String],
) -> Result<Vec<u8>> {
    encode_stamped(value, metadata, None, None, tags)
}

/// [`encode`], with the `"f"` stamp of an entry stored by `get_or_refresh`
/// (when it stops being fresh, in ms of Redis's clock) if `fresh_until`.
fn encode_stamped<V: Serialize + ?Sized>(
    value: &V,
    metadata: Option<&Metadata>,
    fresh_until: Option<u64>,
    idle: Option<(u64, u64)>,
    tags: &[String],
) -> Result<Vec<u8>> {
    let m = metadata.filter(|m| !m.is_empty());
    let mut out = Vec::with_capacity(64);
    out.push(b'{');
    if let Some(at) = fresh_until {
        out.extend_from_slice(format!(r#""f":{at},"#).as_bytes());
    }
    if let Some((idle, ttl_at)) = idle {
        out.extend_from_slice(format!(r#""i":{idle},"d":{ttl_at},"#).as_bytes());
    }
    if !tags.is_empty() {
        out.extend_from_slice(br#""t":"#);
        serde_json::to_writer(&mut out, tags).map_err(|e| encode_error("tags", &e))?;
        out.push(b',');
    }
    out.extend_from_slice(br#""v":"#);
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

/// A container's `begin` and `end` for [`Checked`]: one level deeper, then
/// back, around serde_json's own output.
macro_rules! nesting {
    ($begin:ident, $end:ident) => {
        fn $begin<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
            self.enter()?;
            CompactFormatter.$begin(writer)
        }

        fn $end<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
            self.depth -= 1;
            CompactFormatter.$end(writer)
        }
    };
}

impl Formatter for &mut Checked {
    fn write_null<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.nulls += 1;
        CompactFormatter.write_null(writer)
    }

    nesting!(begin_array, end_array);
    nesting!(begin_object, end_object);
}

/// The value stored in `bytes` (the entry under `key`).
pub(crate) fn decode_value<V: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<V> {
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

/// What follows `{"v":` (or `{"f":<digits>,"v":`, a `get_or_refresh` stamp,
/// and/or `"t":<tags>,` before `"v":`) up to the closing `}`: the value's
/// text if the document is exactly that envelope; the caller's parse decides.
fn value_text(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(b"{")?;
    let rest = match rest.strip_prefix(br#""f":"#) {
        Some(stamp) => stamp[stamp_digits(stamp)?..].strip_prefix(b",")?,
        None => rest,
    };
    let rest = match rest.strip_prefix(br#""i":"#) {
        Some(idle) => skip_time_field(skip_time_field(idle)?.strip_prefix(br#""d":"#)?)?,
        None => rest,
    };
    let rest = match rest.strip_prefix(br#""t":"#) {
        // One JSON value (any: the full parse ignores the field's content too), then `,`.
        Some(tags) => {
            let mut values = serde_json::Deserializer::from_slice(tags).into_iter::<serde::de::IgnoredAny>();
            values.next()?.ok()?;
            tags[values.byte_offset()..].strip_prefix(b",")?
        }
        None => rest,
    };
    rest.strip_prefix(br#""v":"#)?.strip_suffix(b"}")
}

/// Where the value's JSON text starts in `bytes` (it ends one byte before
/// the end: the envelope's `}`), if the document is exactly an envelope
/// around it (see [`value_text`]) and the text is one JSON value that
/// [`decode_value`] reads as it is, as `serde_json::Value` (nesting within
/// serde_json's limit, no lone surrogate escape, numbers it parses): then a
/// reader in another language may parse that text itself. `None` otherwise
/// (metadata after the value, another field order, or an error, which
/// [`decode_value`] reports).
#[cfg_attr(not(any(test, feature = "js-redis")), allow(dead_code))]
pub(crate) fn value_start(bytes: &[u8]) -> Option<usize> {
    let inner = value_text(bytes)?;
    // The usual value: one pass, no serde (which only confirms, or decides, the rest).
    if super::plain_json::surely_valid(inner) {
        return Some(bytes.len() - 1 - inner.len());
    }
    let mut de = serde_json::Deserializer::from_slice(inner);
    let Valid = serde::de::Deserialize::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(bytes.len() - 1 - inner.len())
}

/// Reads one JSON value and keeps nothing: accepts exactly what reading it
/// as `serde_json::Value` accepts (serde_json's own checks: its nesting
/// limit, string escapes, numbers), at the cost of a scan.
#[cfg_attr(not(any(test, feature = "js-redis")), allow(dead_code))]
struct Valid;

impl<'de> serde::Deserialize<'de> for Valid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(ValidVisitor)
    }
}

struct ValidVisitor;

impl<'de> serde::de::Visitor<'de> for ValidVisitor {
    type Value = Valid;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E>(self) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Valid, A::Error> {
        while map.next_entry::<Valid, Valid>()?.is_some() {}
        Ok(Valid)
    }
}

/// `text` past the digits of an integer field and its comma.
fn skip_time_field(text: &[u8]) -> Option<&[u8]> {
    text[stamp_digits(text)?..].strip_prefix(b",")
}

/// The idle-time header of an entry (`{"i":<ms>,"d":<ms>,`, after a
/// `get_or_refresh` stamp if any: the whole prefix through it), for the
/// read that must then move the entry's expiry; `None` for an entry
/// without one, known by its third byte for the usual `{"v":`.
#[inline]
pub(crate) fn idle_header(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.get(2) == Some(&b'v') {
        return None;
    }
    let after_stamp = match bytes.strip_prefix(br#"{"f":"#) {
        Some(stamp) => skip_time_field(stamp)?,
        None => bytes.strip_prefix(b"{")?,
    };
    let rest = skip_time_field(skip_time_field(after_stamp.strip_prefix(br#""i":"#)?)?.strip_prefix(br#""d":"#)?)?;
    Some(&bytes[..bytes.len() - rest.len()])
}

/// The tags stored in `bytes` (the entry under `key`), empty if none.
pub(crate) fn decode_tags(key: &str, bytes: &[u8]) -> Result<Vec<String>> {
    serde_json::from_slice::<TagsOnly>(bytes).map(|e| e.t.unwrap_or_default()).map_err(|e| undecodable(key, "tags", e))
}

/// How many bytes of `stamp` are the digits of a freshness stamp, if they
/// make a JSON integer (no leading zero): the fast path must accept only
/// what the full parse accepts (`{"f":00,"v":0}` and `{"f":,"v":0}` are not
/// JSON; the envelope fuzz test found both going through).
fn stamp_digits(stamp: &[u8]) -> Option<usize> {
    let digits = stamp.iter().take_while(|b| b.is_ascii_digit()).count();
    (digits == 1 || (digits > 1 && stamp[0] != b'0')).then_some(digits)
}

/// When an entry stored by `get_or_refresh` stops being fresh (ms of Redis's
/// clock), from its `{"f":<ms>,` stamp; `None` for other entries.
pub(crate) fn fresh_until(bytes: &[u8]) -> Option<u64> {
    let stamp = bytes.strip_prefix(br#"{"f":"#)?;
    let digits = stamp_digits(stamp)?;
    if stamp.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&stamp[..digits]).ok()?.parse().ok()
}

/// The metadata stored in `bytes` (the entry under `key`), empty if none.
pub(crate) fn decode_metadata(key: &str, bytes: &[u8]) -> Result<Metadata> {
    serde_json::from_slice::<MetadataOnly>(bytes)
        .map(|e| e.m.unwrap_or_default())
        .map_err(|e| undecodable(key, "metadata", e))
}

/// `bytes` with `extra` merged into its metadata (top-level keys replaced).
/// The value's JSON text is copied byte for byte, never re-encoded, and a
/// `get_or_refresh` freshness stamp is kept.
pub(crate) fn merge_metadata(key: &str, bytes: &[u8], extra: Metadata) -> Result<Vec<u8>> {
    let raw: Raw<'_> = serde_json::from_slice(bytes).map_err(|e| undecodable(key, "entry", e))?;
    let mut metadata = raw.m.unwrap_or_default();
    metadata.extend(extra);
    encode_stamped(&raw.v, Some(&metadata), raw.f, raw.i.zip(raw.d), raw.t.as_deref().unwrap_or_default())
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

macro_rules! compounds {
    ($($method:ident($($ty:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $ty),*) -> std::result::Result<Self, NonFinite> { Ok(self) })*
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
    // A container is probed element by element, by the same probe.
    compounds!(
        serialize_seq(Option<usize>),
        serialize_tuple(usize),
        serialize_tuple_struct(&'static str, usize),
        serialize_tuple_variant(&'static str, u32, &'static str, usize),
        serialize_map(Option<usize>),
        serialize_struct(&'static str, usize),
        serialize_struct_variant(&'static str, u32, &'static str, usize),
    );
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
    fn the_value_text_is_found_only_where_a_full_read_agrees() {
        for doc in [r#"{"v":"hi"}"#, r#"{"f":17,"v":[1,{"a":null}]}"#, r#"{"i":5,"d":0,"t":["x"],"v":1.5}"#] {
            let start = value_start(doc.as_bytes()).expect(doc);
            let text = &doc[start..doc.len() - 1];
            let read: serde_json::Value = decode_value("k", doc.as_bytes()).unwrap();
            assert_eq!(serde_json::from_str::<serde_json::Value>(text).unwrap(), read, "{doc}");
        }
        let deep = format!(r#"{{"v":{}1{}}}"#, "[".repeat(130), "]".repeat(130));
        for doc in
            [r#"{"v":1,"m":{"a":1}}"#, r#"{"m":{},"v":1}"#, r#"{"v":"\ud800"}"#, r#"{"v":1,}"#, r#"{"v":01}"#, &deep]
        {
            assert_eq!(value_start(doc.as_bytes()), None, "{doc}");
        }
        assert!(
            decode_value::<serde_json::Value>("k", br#"{"v":"\ud800"}"#).is_err(),
            "a lone surrogate: Rust refuses it too"
        );
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
        assert_eq!(value_text(br#"{"f":,"v":5}"#), None, "not JSON: the full parse refuses it");
        assert_eq!(value_text(br#"{"f":007,"v":5}"#), None, "not JSON either");
        assert!(decode_value::<u32>("k", br#"{"f":,"v":5}"#).is_err());
        assert!(decode_value::<u32>("k", br#"{"f":00,"v":0}"#).is_err());
        assert_eq!(decode_value::<u32>("k", br#"{"f":0,"v":5}"#).unwrap(), 5);
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
    fn idle_headers_are_read_past_found_and_kept_by_merges() {
        let idle = br#"{"i":30000,"d":0,"v":"a}","m":{"x":1}}"#;
        assert_eq!(decode_value::<String>("k", idle).unwrap(), "a}");
        assert_eq!(value_text(br#"{"i":30000,"d":1732560000123,"v":5}"#), Some(&b"5"[..]));
        assert_eq!(value_text(br#"{"f":17,"i":3,"d":0,"v":5}"#), Some(&b"5"[..]));
        assert_eq!(value_text(br#"{"i":3,"v":5}"#), None, "no d: the full parse decides");
        assert_eq!(decode_value::<u32>("k", br#"{"i":3,"v":5}"#).unwrap(), 5);
        assert_eq!(idle_header(idle), Some(&br#"{"i":30000,"d":0,"#[..]));
        assert_eq!(idle_header(br#"{"f":17,"i":3,"d":9,"v":5}"#), Some(&br#"{"f":17,"i":3,"d":9,"#[..]));
        assert_eq!(idle_header(br#"{"v":{"i":3,"d":9}}"#), None);
        assert_eq!(idle_header(br#"{"f":17,"v":5}"#), None);
        assert_eq!(idle_header(br#"{"i":03,"d":9,"v":5}"#), None, "not JSON");
        assert_eq!(idle_header(b"{"), None);
        assert_eq!(fresh_until(br#"{"f":17,"i":3,"d":9,"v":5}"#), Some(17));
        assert_eq!(decode_metadata("k", idle).unwrap()["x"], 1);
        let merged = merge_metadata("k", br#"{"f":17,"i":3,"d":9,"v":5}"#, meta(serde_json::json!({"y": 2}))).unwrap();
        assert_eq!(merged, br#"{"f":17,"i":3,"d":9,"v":5,"m":{"y":2}}"#);
        // What v0.2 wrote reads as before: no header.
        assert_eq!(idle_header(br#"{"v":1,"m":{"i":1}}"#), None);
        assert_eq!(decode_value::<u32>("k", br#"{"v":1}"#).unwrap(), 1);
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

/// What another process wrote is foreign input: arbitrary bytes, and valid
/// envelopes cut, flipped and spliced, must give a value or an error, never
/// a panic or a hang; and the fast path of `decode_value` must agree with
/// the full parse (it may only be faster).
// proptest is a native dev-dependency.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod fuzz_tests {
    use super::*;
    use proptest::prelude::*;

    fn cases(base: u32) -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(base)
    }

    /// Every reader of stored bytes, on `bytes`.
    fn read_all(bytes: &[u8]) {
        let _ = decode_value::<serde_json::Value>("k", bytes);
        let _ = decode_value::<String>("k", bytes);
        let _ = decode_value::<u64>("k", bytes);
        let _ = decode_value::<Vec<Option<f64>>>("k", bytes);
        let _ = decode_metadata("k", bytes);
        let _ = fresh_until(bytes);
        let _ = value_text(bytes);
        if let Some(head) = idle_header(bytes) {
            assert!(bytes.starts_with(head));
        }
        if let Ok(merged) = merge_metadata("k", bytes, Metadata::new()) {
            // What a merge writes reads back.
            assert!(decode_metadata("k", &merged).is_ok(), "{:?}", String::from_utf8_lossy(&merged));
        }
    }

    /// The full parse `decode_value` falls back to.
    fn full_parse(bytes: &[u8]) -> Option<serde_json::Value> {
        serde_json::from_slice::<ValueOnly<serde_json::Value>>(bytes).ok().map(|e| e.v)
    }

    /// Any JSON value (small, nested a few levels), for the fuzz tests of
    /// what reads and writes documents (here and `plain_json`).
    pub(crate) fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Pieces envelopes are made of, for splices near the fast path's edges.
    const PIECES: &[&str] = &[
        "{",
        "}",
        "\"v\":",
        "\"f\":",
        "\"m\":",
        ",",
        "0",
        "007",
        "1732560000123",
        "\"i\":",
        "\"t\":",
        "\"d\":",
        "-1",
        "\"",
        "{}",
        "[",
        "]",
        " ",
        "null",
    ];

    #[derive(Clone, Debug)]
    enum Mutation {
        Truncate(usize),
        Flip(usize, u8),
        Insert(usize, u8),
        Remove(usize),
        Splice(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Remove),
            (any::<usize>(), 0..PIECES.len()).prop_map(|(i, p)| Mutation::Splice(i, p)),
        ]
    }

    fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *m {
            Mutation::Truncate(i) => bytes.truncate(at(i, bytes.len())),
            Mutation::Flip(i, b) if !bytes.is_empty() => {
                let n = bytes.len();
                bytes[i % n] ^= b;
            }
            Mutation::Insert(i, b) => bytes.insert(at(i, bytes.len()), b),
            Mutation::Remove(i) if !bytes.is_empty() => {
                let n = bytes.len();
                bytes.remove(i % n);
            }
            Mutation::Splice(i, p) => {
                let i = at(i, bytes.len());
                bytes.splice(i..i, PIECES[p].bytes());
            }
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(3_000), ..ProptestConfig::default() })]

        #[test]
        fn fuzz_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            read_all(&bytes);
        }

        #[test]
        fn fuzz_envelope_like_text_never_panics_and_the_fast_path_agrees(
            pieces in proptest::collection::vec(0..PIECES.len(), 0..14)
        ) {
            let bytes: Vec<u8> = pieces.iter().flat_map(|&p| PIECES[p].bytes()).collect();
            read_all(&bytes);
            let fast = decode_value::<serde_json::Value>("k", &bytes).ok();
            prop_assert_eq!(fast, full_parse(&bytes), "{}", String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn fuzz_stamped_envelopes_near_the_fast_path(
            text in r#"\{( ?"f" ?: ?(0|00|007|[0-9]{0,3}|-1|1e3|) ?,)?( ?"v" ?: ?(0|1|"a}"|\[\]|\{\}|null|) ?)( ?,"m":\{\}| ?,"f":1)?\}"#
        ) {
            read_all(text.as_bytes());
            let fast = decode_value::<serde_json::Value>("k", text.as_bytes()).ok();
            prop_assert_eq!(fast, full_parse(text.as_bytes()), "{}", text);
        }

        #[test]
        fn fuzz_mutated_envelopes(
            value in json_value(),
            metadata in proptest::option::of(proptest::collection::btree_map("[a-z]{1,4}", json_value(), 0..4)),
            stamp in proptest::option::of(any::<u64>()),
            tags in proptest::collection::vec(r#"[a-z\]",:v{}]{1,6}"#, 0..3),
            idle in proptest::option::of((1..u64::MAX, any::<u64>())),
            mutations in proptest::collection::vec(mutation(), 0..4),
        ) {
            let metadata: Option<Metadata> = metadata.map(|m| m.into_iter().collect());
            let mut bytes = encode_stamped(&value, metadata.as_ref(), stamp, idle, &tags).unwrap();
            // Unmutated, it reads back exactly.
            if mutations.is_empty() {
                prop_assert_eq!(decode_tags("k", &bytes).unwrap(), tags.clone());
                prop_assert_eq!(decode_value::<serde_json::Value>("k", &bytes).unwrap(), value.clone());
                prop_assert_eq!(fresh_until(&bytes), stamp);
                prop_assert_eq!(idle_header(&bytes).is_some(), idle.is_some());
                prop_assert_eq!(decode_metadata("k", &bytes).unwrap(), metadata.clone().unwrap_or_default());
            }
            for m in &mutations {
                mutate(&mut bytes, m);
            }
            read_all(&bytes);
            let fast = decode_value::<serde_json::Value>("k", &bytes).ok();
            prop_assert_eq!(fast, full_parse(&bytes), "{}", String::from_utf8_lossy(&bytes));
        }
    }

    /// Found by `fuzz_mutated_envelopes`: without serde_json's
    /// `float_roundtrip`, this read back one unit in the last place off.
    #[test]
    fn every_float_reads_back_exactly() {
        for f in [1.5545998860365312e215, 5e-324, f64::MAX, f64::MIN_POSITIVE, 0.1 + 0.2, -2.2250738585072014e-308] {
            let bytes = encode(&f, None).unwrap();
            assert_eq!(decode_value::<f64>("k", &bytes).unwrap().to_bits(), f.to_bits(), "{f:e}");
            let nested = encode(&serde_json::json!({ "x": [f] }), None).unwrap();
            assert_eq!(decode_value::<serde_json::Value>("k", &nested).unwrap()["x"][0].as_f64(), Some(f));
        }
    }

    /// Nesting far past serde_json's limit is an error, not a stack overflow.
    #[test]
    fn deep_nesting_from_another_process_is_an_error() {
        for open in ["[", "{\"a\":"] {
            let mut bytes = b"{\"v\":".to_vec();
            bytes.extend(open.repeat(100_000).bytes());
            read_all(&bytes);
            assert!(decode_value::<serde_json::Value>("k", &bytes).is_err());
        }
    }
}
