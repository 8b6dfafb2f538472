//! The bindings of the npm entry `pepperpy-caching/redis` (feature
//! `js-redis`, wasm32 only): a .wasm of its own, so memory-only users
//! download none of it.
//!
//! The JS `RedisStore` (js/redis/) does the I/O through the user's Redis
//! client; what it asks of wasm is what the Rust `RedisStore` shares with it
//! (`remote/`): the stored form of an entry (encoded from a JS value under
//! Rust's rules: no NaN or infinity, at most `MAX_NESTING` levels; decoded
//! to JSON text that the JS layer parses), metadata merges and tags, the
//! keyspace (entry keys, index keys as bytes, locks, tag sets, cluster
//! buckets, SCAN's MATCH, which Redis keys are the store's entries), the
//! Lua scripts with their SHA1s, the glob matcher, and the limits. Errors
//! are thrown as `Error`s named after their JS class (`CacheKeyError`...),
//! which the JS layer rethrows as the main entry's classes.

use wasm_bindgen::prelude::*;

mod scratch;

use crate::errors::{CacheError, Result};
use crate::key::{Key, MAX_KEY_LEN};
use crate::pattern::{MAX_PATTERN_LEN, Pattern};
use crate::policies::{MAX_IDLE, check_idle};
use crate::remote::keyspace::{self, Keyspace, MAX_BUCKETS};
use crate::remote::plain_json::js_integer;
use crate::remote::{self, DEFAULT_LOCK_LEASE, SLACK_MS, format, scripts, ttl_millis};
use crate::store::{MAX_NESTING, Metadata, check_metadata};
use crate::tags::{MAX_INVALIDATE_TAGS, MAX_TAG_LEN, MAX_TAGS, check_entry_tags};

type JsResult<T> = std::result::Result<T, JsValue>;

/// An `Error` named after the JS class of `err`'s kind.
fn to_js(err: CacheError) -> JsValue {
    let error = js_sys::Error::new(&err.to_string());
    error.set_name(err.kind().js_class());
    error.into()
}

fn js<T>(result: Result<T>) -> JsResult<T> {
    result.map_err(to_js)
}

/// The limits the JS layer reads once at load: `[MAX_KEY_LEN, MAX_NESTING,
/// MAX_BUCKETS, SAMPLE_EVERY, MAX_TAGS, MAX_TAG_LEN, MAX_INVALIDATE_TAGS,
/// MAX_PATTERN_LEN, DEFAULT_BUCKETS, the default lock lease in ms, the tag
/// sets' SLACK_MS, LATENCY_SAMPLE_EVERY, then the walks' and loads' numbers:
/// WALK_BATCH, UPDATE_ATTEMPTS, SIZE_CONCURRENCY, SLOT_LIST_MAX, POLL_FIRST
/// and POLL_MAX in ms, SCRIPT_CHUNK, DELETE_CHUNK, MAX_IDLE in ms, and how
/// many characters of a key an error message shows (SHOWN_CHARS), the code
/// point no key and no prefix may hold (RESERVED_KEY_CHAR, U+FFFF)]`.
#[wasm_bindgen]
pub fn limits() -> Vec<f64> {
    [
        MAX_KEY_LEN as u64,
        MAX_NESTING as u64,
        MAX_BUCKETS as u64,
        scripts::SAMPLE_EVERY,
        MAX_TAGS as u64,
        MAX_TAG_LEN as u64,
        MAX_INVALIDATE_TAGS as u64,
        MAX_PATTERN_LEN as u64,
        keyspace::DEFAULT_BUCKETS as u64,
        ttl_millis(DEFAULT_LOCK_LEASE),
        SLACK_MS,
        crate::metrics::LATENCY_SAMPLE_EVERY,
        remote::WALK_BATCH as u64,
        remote::UPDATE_ATTEMPTS as u64,
        remote::SIZE_CONCURRENCY as u64,
        remote::SLOT_LIST_MAX,
        ttl_millis(remote::POLL_FIRST),
        ttl_millis(remote::POLL_MAX),
        remote::SCRIPT_CHUNK as u64,
        remote::DELETE_CHUNK as u64,
        ttl_millis(MAX_IDLE),
        crate::errors::SHOWN_CHARS as u64,
        u64::from(u32::from(crate::key::RESERVED_KEY_CHAR)),
    ]
    .map(|n| n as f64)
    .to_vec()
}

/// The Redis Cluster slot of a key (CRC16 of its hash tag).
#[wasm_bindgen]
pub fn slot(key: &[u8]) -> u16 {
    keyspace::slot(key)
}

/// The scripts the stores send: `[name, Lua source, SHA1]` for each.
#[wasm_bindgen]
pub fn scripts() -> js_sys::Array {
    scripts::table().into_iter().map(|s| js_sys::Array::of3(&s.name.into(), &s.source.into(), &s.sha1.into())).collect()
}

/// The counter table (`metrics.rs`): a line per figure of `getStats()`, in
/// its order: the field's Rust name, a tab, its help text.
#[wasm_bindgen]
pub fn counters() -> String {
    crate::metrics::JS_COUNTERS.into()
}

/// A TTL (or lease) of `seconds` (positive and finite: the JS layer checked)
/// as Redis gets it: whole milliseconds, rounded up, capped
/// (`remote::ttl_millis`); -1 if it is no positive duration (under a
/// nanosecond), -2 if it is too large for one (or not a number). The JS
/// layer words the messages: formatting a float here would link Rust's
/// float printer.
#[wasm_bindgen(js_name = ttlMillis)]
pub fn ttl_ms(seconds: f64) -> f64 {
    millis(seconds, Some)
}

/// A time-to-idle of `seconds` in whole milliseconds, as [`ttl_ms`], and -3
/// past the longest (`MAX_IDLE`, the idle rules).
#[wasm_bindgen(js_name = idleMillis)]
pub fn idle_ms(seconds: f64) -> f64 {
    millis(seconds, |idle| check_idle(idle).ok())
}

/// `seconds` as a positive `Duration` that passes `rule`, in whole
/// milliseconds; -1, -2 or -3 as [`ttl_ms`] and [`idle_ms`] say.
fn millis(seconds: f64, rule: impl FnOnce(std::time::Duration) -> Option<std::time::Duration>) -> f64 {
    match std::time::Duration::try_from_secs_f64(seconds) {
        Ok(duration) if duration.is_zero() => -1.0,
        Ok(duration) => rule(duration).map_or(-3.0, |duration| ttl_millis(duration) as f64),
        Err(_) => -2.0,
    }
}

/// A `CachePolicyError` if `getOrSet`'s options break a rule between them
/// (`refresh::js_option_rules`), else `undefined`.
#[wasm_bindgen(js_name = refreshError)]
pub fn refresh_error(ttl: bool, grace: bool, retry_after: bool) -> JsValue {
    match crate::refresh::js_option_rules(ttl, grace, retry_after) {
        Some(message) => to_js(CacheError::Policy(message.into())),
        None => JsValue::UNDEFINED,
    }
}

/// The wait in ms before the next refresh after `failures` failed ones in a
/// row, with `retry_after_ms` (`NaN`: the core's default): `refresh::backoff`.
#[wasm_bindgen(js_name = refreshBackoff)]
pub fn refresh_backoff(retry_after_ms: f64, failures: u32) -> f64 {
    let retry_after = if retry_after_ms.is_nan() {
        crate::refresh::DEFAULT_RETRY_AFTER
    } else {
        std::time::Duration::from_millis(retry_after_ms as u64)
    };
    ttl_millis(crate::refresh::backoff(retry_after, failures)) as f64
}

/// Whether a refresh lock holding `held` is a back-off marker whose retry
/// time has come at `now_ms` (Redis's clock): a refresh may start.
#[wasm_bindgen(js_name = backoffOver)]
pub fn backoff_is_over(held: &[u8], now_ms: f64) -> bool {
    crate::remote::backoff_over(held, now_ms as u64)
}

/// Checks a key against the rules every store shares (a `CacheKeyError`).
#[wasm_bindgen(js_name = checkKey)]
pub fn check_key(key: &str) -> JsResult<()> {
    js(Key::new(key).map(drop))
}

/// Whether `key` matches the glob `pattern` (as Redis matches; checked: a
/// `CachePatternError`).
#[wasm_bindgen(js_name = globMatches)]
pub fn glob_matches(pattern: &str, key: &str) -> JsResult<bool> {
    Ok(js(Pattern::new(pattern))?.matches(key))
}

/// Checks a glob pattern (a `CachePatternError`).
#[wasm_bindgen(js_name = checkPattern)]
pub fn check_pattern(pattern: &str) -> JsResult<()> {
    js(Pattern::new(pattern).map(drop))
}

/// The stored document of `value` with `metadata` (a plain object, or
/// undefined/null: none) and `tags` (checked; none: the untagged document),
/// as text (JSON is UTF-8: the client sends the same bytes, and a string
/// argument costs it less than bytes).
#[wasm_bindgen]
pub fn encode(value: JsValue, metadata: JsValue, tags: Vec<String>) -> JsResult<String> {
    let metadata = js(metadata_from_js(metadata))?;
    js(check_entry_tags(&tags))?;
    // The value is serialized straight from JS, in its own key order (as
    // JSON.stringify writes it), through the envelope's own checks.
    js(format::encode_tagged(&JsJson(value), metadata.as_ref(), &tags).and_then(utf8))
}

/// The stored document of a value with no metadata and no tags, as a
/// template: what comes before the value's JSON and what after (the JS
/// layer fills in a text [`plain_text`] vouched for).
#[wasm_bindgen]
pub fn envelope() -> JsResult<Vec<String>> {
    // `format` writes a unit value as `null`, the only `null` of this document.
    let doc = js(format::encode_tagged(&(), None, &[]).and_then(utf8))?;
    let (head, tail) = doc.split_once("null").unwrap_or((&doc, ""));
    Ok(vec![head.to_owned(), tail.to_owned()])
}

/// Whether `text`, the `JSON.stringify` text of a value, is byte for byte
/// what [`encode`] writes for that value: then the document is
/// [`envelope`] around it; if not, [`encode`] walks the value (and refuses
/// it with its own words). The JS layer asks only for a value whose
/// stringify met no `toJSON`, function, symbol, bigint or object that is
/// neither an array nor a plain object (which JSON.stringify writes
/// differently from [`encode`], or leaves out), and says how many of its
/// values were `null` (`nulls`). Here: no lone surrogate (JSON.stringify
/// escapes it, [`encode`] refuses it), nested at most [`MAX_NESTING`]
/// levels, every `null` of the text a null (not NaN or an infinity; an
/// `undefined` array element, which both write as `null`, counts as one),
/// and every number as serde_json writes it by
/// [`JsJson`]'s rule (JSON.stringify writes `1152921504606846976`,
/// serde_json `1.152921504606847e+18`). The check itself:
/// `remote::plain_json::plain_text` (tested there against serde_json).
///
/// `text` comes as its UTF-8 bytes: `TextEncoder` copies them faster than
/// the bindings copy a string.
#[wasm_bindgen(js_name = plainText)]
pub fn plain_text(bytes: &[u8], nulls: u32) -> bool {
    crate::remote::plain_json::plain_text(bytes, nulls)
}

/// serde_json's output as text (always UTF-8).
fn utf8(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| CacheError::Serialization(format!("the document is not UTF-8: {e}")))
}

/// The JSON text of the value stored in `bytes` (the entry under `key`),
/// read by Rust's rules (a `CacheSerializationError` for a document the Rust
/// store could not read either); the JS layer parses it.
#[wasm_bindgen(js_name = decodeValue)]
pub fn decode_value(key: &str, bytes: &[u8]) -> JsResult<String> {
    let value: serde_json::Value = js(format::decode_value(key, bytes))?;
    Ok(value.to_string())
}

/// Where the value's JSON text starts in `bytes` (it ends one byte before
/// the end), if the JS layer may parse it as it is (`format::value_start`);
/// -1 otherwise ([`decode_value`] then). The JS layer calls it on the
/// scratch buffer (`valueStartIn`).
fn value_start(bytes: &[u8]) -> i32 {
    format::value_start(bytes).and_then(|at| i32::try_from(at).ok()).unwrap_or(-1)
}

/// [`value_start`] of a document without an idle header; -1 for one with
/// it (or one [`value_start`] refuses): a get that finds none reads its
/// value with this one call (the header asks for a touch: [`idle_header`]).
/// The JS layer calls it on the scratch buffer (`plainStartIn`).
fn plain_start(bytes: &[u8]) -> i32 {
    if format::idle_header(bytes).is_some() {
        return -1;
    }
    value_start(bytes)
}

/// The JSON text of the metadata stored in `bytes` (`{}` if none).
#[wasm_bindgen(js_name = decodeMetadata)]
pub fn decode_metadata(key: &str, bytes: &[u8]) -> JsResult<String> {
    let metadata = js(format::decode_metadata(key, bytes))?;
    Ok(serde_json::Value::Object(metadata).to_string())
}

/// The tags stored in `bytes` (empty if none).
#[wasm_bindgen(js_name = decodeTags)]
pub fn decode_tags(key: &str, bytes: &[u8]) -> JsResult<Vec<String>> {
    js(format::decode_tags(key, bytes))
}

/// `bytes` with `extra` (a plain object) merged into its metadata, the
/// value's text kept byte for byte.
#[wasm_bindgen(js_name = mergeMetadata)]
pub fn merge_metadata(key: &str, bytes: &[u8], extra: JsValue) -> JsResult<Vec<u8>> {
    let extra = js(metadata_from_js(extra))?.unwrap_or_default();
    // Bytes: the value's text is copied byte for byte, whatever it holds.
    js(format::merge_metadata(key, bytes, extra))
}

/// The idle-time header of a stored entry, if it has one.
#[wasm_bindgen(js_name = idleHeader)]
pub fn idle_header(bytes: &[u8]) -> Option<Vec<u8>> {
    format::idle_header(bytes).map(<[u8]>::to_vec)
}

/// When an entry stored by a refresh stops being fresh (ms of Redis's
/// clock), if it has the stamp.
#[wasm_bindgen(js_name = freshUntil)]
pub fn fresh_until(bytes: &[u8]) -> Option<f64> {
    format::fresh_until(bytes).map(|ms| ms as f64)
}

/// A store's keyspace (`remote/keyspace.rs`): its prefix checked, and on a
/// cluster its buckets.
#[wasm_bindgen(js_name = RedisSpace)]
pub struct WasmSpace {
    space: Keyspace,
}

#[wasm_bindgen(js_class = RedisSpace)]
impl WasmSpace {
    /// The keyspace of `prefix` (the prefix rule: a `CachePolicyError`), on
    /// a cluster in `buckets` buckets (with the cluster's own rules, and
    /// `max_size`, if bounded, at least the bucket count).
    #[wasm_bindgen(constructor)]
    pub fn new(prefix: &str, clustered: bool, buckets: u32, max_size: Option<f64>) -> JsResult<WasmSpace> {
        js(keyspace::check_prefix(prefix))?;
        if !clustered {
            return Ok(WasmSpace { space: Keyspace::new(prefix) });
        }
        let buckets = buckets as usize;
        js(keyspace::check_cluster_layout(prefix, buckets, max_size.map(|n| n as usize)))?;
        Ok(WasmSpace { space: Keyspace::clustered(prefix, buckets) })
    }

    /// How many buckets (1 on a single node).
    #[wasm_bindgen(js_name = bucketCount)]
    pub fn bucket_count(&self) -> u32 {
        self.space.buckets().len() as u32
    }

    /// The bucket of `key` (checked: a `CacheKeyError`).
    #[wasm_bindgen(js_name = bucketIndex)]
    pub fn bucket_index(&self, key: &str) -> JsResult<u32> {
        Ok(self.space.bucket_index(js(Key::new(key))?) as u32)
    }

    /// The Redis key of the entry under `key` (checked).
    pub fn entry(&self, key: &str) -> JsResult<Vec<u8>> {
        Ok(self.space.entry(js(Key::new(key))?).to_vec())
    }

    /// What comes before the user key in the Redis key of an entry of bucket
    /// `index`: the prefix and the bucket's tag (`Entry::parts`), as text
    /// (both are UTF-8), for the JS layer to append checked keys to.
    #[wasm_bindgen(js_name = entryHead)]
    pub fn entry_head(&self, index: u32) -> String {
        let [prefix, tag, _] = self.space.entry_of_bucket(index as usize, "").parts();
        [prefix, tag].concat()
    }

    /// The Redis key of `key`'s refresh lock (checked).
    pub fn lock(&self, key: &str) -> JsResult<Vec<u8>> {
        Ok(self.space.lock(js(Key::new(key))?))
    }

    /// Bucket `index`'s recency index (LRU).
    pub fn recency(&self, index: u32) -> Vec<u8> {
        self.space.buckets()[index as usize].recency.clone()
    }

    /// Bucket `index`'s expiry index.
    pub fn expiry(&self, index: u32) -> Vec<u8> {
        self.space.buckets()[index as usize].expiry.clone()
    }

    /// The tag set of `tag` in bucket `index` (the tag is checked by the caller).
    #[wasm_bindgen(js_name = tagSet)]
    pub fn tag_set(&self, index: u32, tag: &str) -> Vec<u8> {
        self.space.tag_set(index as usize, tag)
    }

    /// Bucket `index`'s share of a capacity of `max_size`.
    pub fn share(&self, max_size: f64, index: u32) -> f64 {
        self.space.share(max_size as usize, index as usize) as f64
    }

    /// Where a cluster store records its bucket count.
    #[wasm_bindgen(js_name = recordKey)]
    pub fn record_key(&self) -> Vec<u8> {
        keyspace::record_key(self.space.prefix())
    }

    /// SCAN's MATCH for the entries matching `pattern` (all if undefined;
    /// checked: a `CachePatternError`), of bucket `bucket` only if given.
    #[wasm_bindgen(js_name = scanMatch)]
    pub fn scan_match(&self, pattern: Option<String>, bucket: Option<u32>) -> JsResult<Vec<u8>> {
        let pattern = js(pattern.as_deref().map(Pattern::new).transpose())?;
        Ok(self.space.scan_match(pattern.as_ref(), bucket.map(|b| b as usize)))
    }

    /// For a page of Redis keys (their bytes end to end, `ends[i]` the end
    /// of the `i`-th): the user key of each that is an entry of this store
    /// matching `pattern` (all if undefined), else `null`.
    #[wasm_bindgen(js_name = userKeys)]
    pub fn user_keys(&self, bytes: &[u8], ends: &[u32], pattern: Option<String>) -> JsResult<js_sys::Array> {
        let pattern = js(pattern.as_deref().map(Pattern::new).transpose())?;
        let out = js_sys::Array::new_with_length(ends.len() as u32);
        let mut start = 0usize;
        for (i, &end) in ends.iter().enumerate() {
            let end = (end as usize).clamp(start, bytes.len());
            if let Some(key) = self.space.user_key(&bytes[start..end], pattern.as_ref()) {
                out.set(i as u32, key.as_str().into());
            } else {
                out.set(i as u32, JsValue::NULL);
            }
            start = end;
        }
        Ok(out)
    }
}

/// A JS value as JSON, by Rust's rules: refused (`CacheSerializationError`)
/// if it holds NaN or an infinity, nests deeper than [`MAX_NESTING`] (a
/// cycle included), or holds what JSON cannot hold as it is: a string that
/// is not well-formed Unicode (a lone surrogate: UTF-8 has no form for it),
/// a bigint, a symbol, a function, or an object that is neither an array, a
/// plain object nor one with `toJSON` (a `Date`: its `toJSON()` is stored,
/// as `JSON.stringify` stores it). As `JSON.stringify`, an `undefined`
/// property is left out and an `undefined` array element is `null`; unlike
/// it, a function or a symbol is refused rather than left out.
fn from_js(value: &JsValue, what: &'static str) -> Result<serde_json::Value> {
    to_json(value, 0, what)
}

fn not_json(what: &str, why: &str) -> CacheError {
    CacheError::Serialization(format!("the {what} holds {why}, which JSON cannot hold"))
}

fn to_json(value: &JsValue, depth: usize, what: &'static str) -> Result<serde_json::Value> {
    use serde_json::Value;
    if let Some(text) = value.dyn_ref::<js_sys::JsString>() {
        if !text.is_valid_utf16() {
            return Err(not_json(what, "a string that is not well-formed Unicode (a lone surrogate)"));
        }
        return Ok(Value::String(String::from(text)));
    }
    if let Some(n) = value.as_f64() {
        if !n.is_finite() {
            return Err(CacheError::Serialization(format!(
                "the {what} holds NaN or an infinite number, which JSON cannot hold (it would be stored as null)"
            )));
        }
        // Whole numbers as JSON integers (`1`, not `1.0`), as JSON.stringify
        // writes them and as a Rust reader of an integer type needs them.
        if let Some(i) = js_integer(n) {
            return Ok(Value::from(i));
        }
        return Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number));
    }
    if let Some(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if value.is_null() || value.is_undefined() {
        return Ok(Value::Null);
    }
    if !value.is_object() {
        return Err(not_json(what, not_json_kind(value)));
    }
    if depth >= MAX_NESTING {
        return Err(CacheError::Serialization(format!(
            "the {what} is nested more than {MAX_NESTING} levels deep (arrays and objects), more than can be read back"
        )));
    }
    let thrown = |e: JsValue| {
        let message =
            e.dyn_ref::<js_sys::Error>().map_or_else(|| "an exception".to_string(), |e| String::from(e.message()));
        CacheError::Serialization(format!("reading the {what} threw: {message}"))
    };
    if try_is_array(value).map_err(thrown)? {
        let array = try_copy(value).map_err(thrown)?;
        let mut items = Vec::with_capacity(array.length() as usize);
        for i in 0..array.length() {
            items.push(to_json(&array.get(i), depth + 1, what)?);
        }
        return Ok(Value::Array(items));
    }
    let to_json_fn = js_sys::Reflect::get(value, &JsValue::from_str("toJSON")).map_err(thrown)?;
    if let Some(f) = to_json_fn.dyn_ref::<js_sys::Function>() {
        let replaced = f.call0(value).map_err(thrown)?;
        if replaced.is_undefined() {
            return Ok(Value::Null);
        }
        return to_json(&replaced, depth, what);
    }
    if let Some(class) = foreign_class(value).map_err(thrown)? {
        return Err(not_json(
            what,
            &format!("an object of class {class} (not a plain object, an array, or one with toJSON)"),
        ));
    }
    let keys = try_keys(value).map_err(thrown)?;
    let mut map = serde_json::Map::new();
    for i in 0..keys.length() {
        let key = keys.get(i);
        let item = js_sys::Reflect::get(value, &key).map_err(thrown)?;
        if item.is_undefined() {
            // Left out, as JSON.stringify leaves it out.
            continue;
        }
        let name = key.dyn_ref::<js_sys::JsString>().map(String::from).unwrap_or_default();
        if !key.dyn_ref::<js_sys::JsString>().is_some_and(js_sys::JsString::is_valid_utf16) {
            return Err(not_json(what, "a property name that is not well-formed Unicode (a lone surrogate)"));
        }
        map.insert(name, to_json(&item, depth + 1, what)?);
    }
    Ok(Value::Object(map))
}

/// A JS value serialized as JSON straight from JS, property order kept:
/// what [`from_js`] accepts, refused with the same words (as a serde error,
/// which `format::encode_tagged` reports as `CacheSerializationError`); its
/// nesting, NaN and infinities are refused by the envelope's own checks.
struct JsJson(JsValue);

impl serde::Serialize for JsJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        let value = &self.0;
        let fail = |why: &str| S::Error::custom(format!("it holds {why}, which JSON cannot hold"));
        if let Some(text) = value.dyn_ref::<js_sys::JsString>() {
            if !text.is_valid_utf16() {
                return Err(fail("a string that is not well-formed Unicode (a lone surrogate)"));
            }
            return serializer.serialize_str(&String::from(text));
        }
        if let Some(n) = value.as_f64() {
            if let Some(i) = js_integer(n) {
                return serializer.serialize_i64(i);
            }
            return serializer.serialize_f64(n);
        }
        if let Some(b) = value.as_bool() {
            return serializer.serialize_bool(b);
        }
        if value.is_null() || value.is_undefined() {
            return serializer.serialize_unit();
        }
        if !value.is_object() {
            return Err(fail(not_json_kind(value)));
        }
        let thrown = |e: JsValue| {
            let message =
                e.dyn_ref::<js_sys::Error>().map_or_else(|| "an exception".to_string(), |e| String::from(e.message()));
            S::Error::custom(format!("reading it threw: {message}"))
        };
        if try_is_array(value).map_err(thrown)? {
            // A copy (its elements read once, in JS): a Proxy's traps or an element's getter throw here, caught.
            let array = try_copy(value).map_err(thrown)?;
            let mut seq = serializer.serialize_seq(Some(array.length() as usize))?;
            for i in 0..array.length() {
                seq.serialize_element(&JsJson(array.get(i)))?;
            }
            return seq.end();
        }
        let to_json_fn = js_sys::Reflect::get(value, &JsValue::from_str("toJSON")).map_err(thrown)?;
        if let Some(f) = to_json_fn.dyn_ref::<js_sys::Function>() {
            return JsJson(f.call0(value).map_err(thrown)?).serialize(serializer);
        }
        if let Some(class) = foreign_class(value).map_err(thrown)? {
            return Err(fail(&format!(
                "an object of class {class} (not a plain object, an array, or one with toJSON)"
            )));
        }
        let keys = try_keys(value).map_err(thrown)?;
        let mut map = serializer.serialize_map(None)?;
        for i in 0..keys.length() {
            let key = keys.get(i);
            let item = js_sys::Reflect::get(value, &key).map_err(thrown)?;
            if item.is_undefined() {
                continue;
            }
            let name = key.unchecked_ref::<js_sys::JsString>();
            if !name.is_valid_utf16() {
                return Err(fail("a property name that is not well-formed Unicode (a lone surrogate)"));
            }
            map.serialize_entry(&String::from(name), &JsJson(item))?;
        }
        map.end()
    }
}

/// The class of an object that is not plain (its prototype is neither null
/// nor a prototype whose own is null), for the message refusing it.
/// An `Err` if a Proxy's trap threw (or the Proxy is revoked).
fn foreign_class(value: &JsValue) -> std::result::Result<Option<String>, JsValue> {
    let proto = try_prototype_of(value)?;
    if proto.is_null() || try_prototype_of(&proto)?.is_null() {
        return Ok(None);
    }
    Ok(Some(
        js_sys::Reflect::get(&proto, &JsValue::from_str("constructor"))
            .ok()
            .and_then(|c| js_sys::Reflect::get(&c, &JsValue::from_str("name")).ok())
            .and_then(|n| n.as_string())
            .unwrap_or_else(|| "unknown".into()),
    ))
}

// The reads of a value to store that can run user code (a Proxy's traps) or
// throw (a revoked Proxy), imported with `catch`: the exception comes back
// as an `Err` (then a CacheSerializationError) instead of unwinding through
// the wasm frames, which would skip their epilogues (the shadow stack
// pointer) and escape as the user's own error.
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = Array, js_name = isArray, catch)]
    fn try_is_array(value: &JsValue) -> std::result::Result<bool, JsValue>;
    #[wasm_bindgen(js_namespace = Object, js_name = keys, catch)]
    fn try_keys(value: &JsValue) -> std::result::Result<js_sys::Array, JsValue>;
    #[wasm_bindgen(js_namespace = Object, js_name = getPrototypeOf, catch)]
    fn try_prototype_of(value: &JsValue) -> std::result::Result<JsValue, JsValue>;
    /// `Array.prototype.slice.call(value)`: a plain copy of an array (or of a Proxy of one).
    #[wasm_bindgen(js_namespace = ["Array", "prototype", "slice"], js_name = call, catch)]
    fn try_copy(value: &JsValue) -> std::result::Result<js_sys::Array, JsValue>;
}

/// Metadata from JS: `undefined`/`null` is none; else a plain object, checked.
fn metadata_from_js(value: JsValue) -> Result<Option<Metadata>> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    match from_js(&value, "metadata")? {
        serde_json::Value::Object(map) => {
            check_metadata(&map)?;
            Ok(Some(map))
        }
        _ => Err(CacheError::Serialization("metadata must be a plain object".into())),
    }
}

/// What a JS value that is neither JSON's scalar nor an object is, for the
/// message that refuses it (the two value readers above say it alike).
fn not_json_kind(value: &JsValue) -> &'static str {
    if value.is_bigint() {
        "a bigint"
    } else if value.is_symbol() {
        "a symbol"
    } else if value.is_function() {
        "a function"
    } else {
        "a value of an unknown type"
    }
}
