//! Metadata between JS objects and the core's [`Metadata`] (a JSON map).
//!
//! The JS layer has already checked that the object holds only JSON values
//! and told the user where it does not; this walk still refuses anything else
//! rather than guess, so nothing is ever stored mangled.

use js_sys::{Array, Object};
use serde_json::{Map, Number, Value};
use wasm_bindgen::{JsCast, JsValue};

use crate::errors::{CacheError, Result};
use crate::store::Metadata;

/// Deeper than this is refused, which also stops a cycle.
const MAX_DEPTH: usize = 64;

/// A plain JS object of JSON values as a [`Metadata`] map.
pub(super) fn from_js(object: &JsValue) -> Result<Metadata> {
    match json_from_js(object, 0)? {
        Value::Object(map) => Ok(map),
        _ => Err(not_json("metadata must be a plain object")),
    }
}

/// A fresh JS object holding `metadata`.
pub(super) fn to_js(metadata: &Metadata) -> JsValue {
    object_to_js(metadata)
}

fn json_from_js(value: &JsValue, depth: usize) -> Result<Value> {
    if let Some(text) = value.as_string() {
        return Ok(Value::String(text));
    }
    if let Some(n) = value.as_f64() {
        return Number::from_f64(n).map(Value::Number).ok_or_else(|| not_json("numbers must be finite"));
    }
    if let Some(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if value.is_null() {
        return Ok(Value::Null);
    }
    if depth >= MAX_DEPTH {
        return Err(not_json("metadata is nested too deeply"));
    }
    if let Some(array) = value.dyn_ref::<Array>() {
        return array.iter().map(|item| json_from_js(&item, depth + 1)).collect::<Result<_>>().map(Value::Array);
    }
    if value.is_object() && !value.is_function() {
        let mut map = Map::new();
        for entry in Object::entries(value.unchecked_ref()).iter() {
            let entry: Array = entry.unchecked_into();
            let key = entry.get(0).as_string().unwrap_or_default();
            map.insert(key, json_from_js(&entry.get(1), depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    Err(not_json("metadata holds only JSON values"))
}

fn not_json(reason: &str) -> CacheError {
    CacheError::Serialization(reason.into())
}

fn json_to_js(value: &Value) -> JsValue {
    match value {
        Value::Null => JsValue::NULL,
        Value::Bool(b) => JsValue::from_bool(*b),
        Value::Number(n) => JsValue::from_f64(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => JsValue::from_str(s),
        Value::Array(items) => items.iter().map(json_to_js).collect::<Array>().into(),
        Value::Object(map) => object_to_js(map),
    }
}

fn object_to_js(map: &Map<String, Value>) -> JsValue {
    // `Object.fromEntries` defines own properties, so a key "__proto__" stays
    // data, as `JSON.parse` would have it.
    let entries: Array = map.iter().map(|(k, v)| Array::of2(&JsValue::from_str(k), &json_to_js(v))).collect();
    Object::from_entries(&entries).map_or(JsValue::UNDEFINED, JsValue::from)
}
