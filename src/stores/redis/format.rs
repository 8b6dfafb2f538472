//! The stored form of an entry: one JSON document per Redis string.
//!
//! ```text
//! {"v":<the value as JSON>}                      no metadata
//! {"v":<the value as JSON>,"m":{<metadata>}}     with metadata
//! ```
//!
//! This module only encodes and decodes; it never does I/O. Every failure is
//! [`CacheError::Serialization`], never a panic.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::errors::{CacheError, Result};
use crate::store::Metadata;

#[derive(Serialize)]
struct Envelope<'a, V> {
    v: &'a V,
    #[serde(skip_serializing_if = "Option::is_none")]
    m: Option<&'a Metadata>,
}

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
}

/// The stored bytes of `value` with `metadata` (an empty map is not stored).
pub(super) fn encode<V: Serialize>(value: &V, metadata: Option<&Metadata>) -> Result<Vec<u8>> {
    let m = metadata.filter(|m| !m.is_empty());
    serde_json::to_vec(&Envelope { v: value, m })
        .map_err(|e| CacheError::Serialization(format!("cannot encode the value as JSON: {e}")))
}

/// The value stored in `bytes` (the entry under `key`).
pub(super) fn decode_value<V: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<V> {
    serde_json::from_slice::<ValueOnly<V>>(bytes).map(|e| e.v).map_err(|e| undecodable(key, "value", e))
}

/// The metadata stored in `bytes` (the entry under `key`), empty if none.
pub(super) fn decode_metadata(key: &str, bytes: &[u8]) -> Result<Metadata> {
    serde_json::from_slice::<MetadataOnly>(bytes)
        .map(|e| e.m.unwrap_or_default())
        .map_err(|e| undecodable(key, "metadata", e))
}

/// `bytes` with `extra` merged into its metadata (top-level keys replaced).
/// The value's JSON text is copied byte for byte, never re-encoded.
pub(super) fn merge_metadata(key: &str, bytes: &[u8], extra: Metadata) -> Result<Vec<u8>> {
    let raw: Raw<'_> = serde_json::from_slice(bytes).map_err(|e| undecodable(key, "entry", e))?;
    let mut metadata = raw.m.unwrap_or_default();
    metadata.extend(extra);
    encode(&raw.v, Some(&metadata))
}

fn undecodable(key: &str, what: &str, e: serde_json::Error) -> CacheError {
    let mut shown: String = key.chars().take(64).collect();
    if shown.len() < key.len() {
        shown.push_str("...");
    }
    CacheError::Serialization(format!("the {what} stored under key {shown:?} cannot be decoded: {e}"))
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
