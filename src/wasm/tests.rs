//! The bindings on their own, under `wasm-pack test --node`.

use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use super::key_buffer::key_error;
use super::*;

fn lru(max_size: f64) -> WasmStore {
    let policy = WasmPolicy::lru(max_size, None, None).unwrap();
    WasmStore::new(&policy)
}

fn key(key: &str) -> usize {
    key_buffer::write(key)
}

fn error_name(err: JsValue) -> String {
    js_sys::Error::from(err).name().into()
}

fn error_message(err: JsValue) -> String {
    js_sys::Error::from(err).message().into()
}

#[wasm_bindgen_test]
fn get_returns_the_very_object_that_was_set() {
    let mut store = lru(10.0);
    let object: JsValue = js_sys::Object::new().into();
    assert!(store.set(key("k"), object.clone(), None));
    let got = store.get(key("k"));
    assert!(js_sys::Object::is(&got, &object));
    assert!(store.get(key("missing")).is_undefined());
    assert_eq!((store.has(key("k")), store.delete(key("k")), store.delete(key("k"))), (1, 1, 0));
}

#[wasm_bindgen_test]
fn a_failed_call_reports_through_take_error() {
    let mut store = lru(10.0);
    assert!(js_sys::Object::is(&store.get(key("")), &failed_marker()));
    let err = store.take_error();
    assert_eq!(error_name(err.clone()), "CacheKeyError");
    assert!(error_message(err).contains("must not be empty"));
    assert!(store.take_error().is_undefined(), "taken once");
    assert_eq!((store.has(key("")), store.delete(key(""))), (FAILED, FAILED));
    assert!(!store.set(key("k"), JsValue::NULL, Some(-5.0)));
    assert_eq!(error_name(store.take_error()), "CachePolicyError");
    let not_an_object: JsValue = js_sys::Array::of1(&1.into()).into();
    assert!(!store.set_with_metadata(key("k"), JsValue::NULL, None, not_an_object));
    assert_eq!(error_name(store.take_error()), "CacheSerializationError");
    assert_eq!(error_name(store.invalidate(&"*".repeat(1 << 20)).unwrap_err()), "CachePatternError");
    assert_eq!(store.size(), 0);
    assert_eq!(store.stats()[2], 0.0, "a rejected set counts nothing");
}

#[wasm_bindgen_test]
fn keys_too_long_for_the_buffer_get_the_core_message() {
    let long = "k".repeat(crate::MAX_KEY_LEN + 1);
    let message = error_message(key_error(&long));
    assert!(message.contains(&format!("{} bytes", crate::MAX_KEY_LEN + 1)), "{message}");
    assert!(key_error("fine").is_undefined());
}

#[wasm_bindgen_test]
fn policy_options_are_checked_by_the_core_rules() {
    // Types and ranges are the JS layer's (it words those messages); what
    // reaches here is a number, and the core still refuses what is wrong.
    let message = error_message(WasmPolicy::lru(0.0, None, None).err().unwrap());
    assert!(message.contains("maxSize must be at least 1"), "JS spelling of the option: {message}");
    for bad in [0.0, -5.0, f64::NAN, f64::INFINITY, 1e300] {
        let err = WasmPolicy::ttl(bad, None).err().unwrap();
        assert_eq!(error_name(err), "CachePolicyError", "ttl {bad}");
    }
    assert!(WasmPolicy::ttl(30.0, Some(500.0)).is_ok());
}

#[wasm_bindgen_test]
fn a_load_stores_only_while_its_placeholder_stands() {
    let mut store = lru(10.0);
    let token = store.begin_load(key("k"));
    assert_eq!(store.end_load(key("k"), token), 1, "nothing happened meanwhile");
    let token = store.begin_load(key("k"));
    assert!(store.set(key("k"), JsValue::TRUE, None));
    assert_eq!(store.end_load(key("k"), token), 0, "a set removed the placeholder");
    let token = store.begin_load(key("k"));
    assert_eq!(store.delete(key("k")), 1);
    assert_eq!(store.end_load(key("k"), token), 0, "a delete removed it");
    let token = store.begin_load(key("k"));
    assert_eq!(store.invalidate("k*").unwrap(), 0);
    assert_eq!(store.end_load(key("k"), token), 0, "an invalidate removed it");
    let token = store.begin_load(key("k"));
    store.clear();
    assert_eq!(store.end_load(key("k"), token), 0, "a clear removed it");
}

#[wasm_bindgen_test]
fn stale_reads_start_one_refresh() {
    let clock = WasmClock::new();
    let policy = WasmPolicy::lru(10.0, None, None).unwrap();
    let mut store = WasmStore::with_clock(&policy, &clock);
    let token = store.begin_load(key("k"));
    assert!(store.finish_refresh(key("k"), token, true, JsValue::TRUE, 1.0, 10.0, 1.0, JsValue::UNDEFINED, false));
    assert_eq!((store.get_fresh(key("k")), store.freshness()), (JsValue::TRUE, 0));
    clock.advance(1000.0);
    assert_eq!((store.get_fresh(key("k")), store.freshness()), (JsValue::TRUE, 2), "the first stale read refreshes");
    assert_eq!((store.get_fresh(key("k")), store.freshness()), (JsValue::TRUE, 1), "one refresh at a time");
    let stats = store.stats();
    assert_eq!(stats[11..], [2.0, 1.0, 0.0], "staleHits, refreshes, refreshFailures");
}

#[wasm_bindgen_test]
fn manual_clock_drives_expiry() {
    let clock = WasmClock::new();
    let policy = WasmPolicy::ttl(1.0, None).unwrap();
    let mut store = WasmStore::with_clock(&policy, &clock);
    assert!(store.set(key("k"), JsValue::TRUE, None));
    clock.advance(999.0);
    assert_eq!(store.get(key("k")), JsValue::TRUE);
    clock.advance(1.0);
    assert!(store.get(key("k")).is_undefined());
    assert_eq!(store.stats()[5], 1.0, "one expiration");
}

#[wasm_bindgen_test]
fn metadata_round_trips_through_js_objects() {
    let mut store = lru(10.0);
    let json = r#"{"version":1,"author":"user","tags":["a",null,true,1.5],"__proto__":{"x":1}}"#;
    let meta = js_sys::JSON::parse(json).unwrap();
    assert!(store.set_with_metadata(key("k"), JsValue::NULL, None, meta.clone()));
    assert!(store.update_metadata("k", &js_sys::JSON::parse(r#"{"version":2}"#).unwrap()).unwrap());
    let got = store.get_metadata("k").unwrap();
    assert!(!js_sys::Object::is(&got, &meta), "a fresh object");
    let text: String = js_sys::JSON::stringify(&got).unwrap().into();
    // The core's map keeps keys sorted.
    assert_eq!(text, r#"{"__proto__":{"x":1},"author":"user","tags":["a",null,true,1.5],"version":2}"#);
    assert!(store.get_metadata("nope").unwrap().is_undefined());
}

#[wasm_bindgen_test]
fn checked_get_rejects_what_set_would_before_reading() {
    let mut store = lru(10.0);
    assert!(store.set(key("k"), JsValue::TRUE, None));
    assert_eq!(store.checked_get(key("k"), Some(5.0)), JsValue::TRUE);
    assert!(store.checked_get(key("missing"), None).is_undefined());
    for (len, ttl, name) in [(key("k"), Some(-5.0), "CachePolicyError"), (key(""), None, "CacheKeyError")] {
        assert!(js_sys::Object::is(&store.checked_get(len, ttl), &failed_marker()));
        assert_eq!(error_name(store.take_error()), name);
    }
    let stats = store.stats();
    assert_eq!((stats[0], stats[1]), (1.0, 1.0), "a rejected check counts no hit or miss");
}

#[wasm_bindgen_test]
fn loads_are_timed_on_the_store_clock() {
    let clock = WasmClock::new();
    let policy = WasmPolicy::lru(10.0, None, None).unwrap();
    let mut store = WasmStore::with_clock(&policy, &clock);
    let started = store.load_started();
    clock.advance(250.0);
    store.record_load(true, started);
    let started = store.load_started();
    clock.advance(50.0);
    store.record_load(false, started);
    let stats = store.stats();
    assert_eq!(stats[8..11], [2.0, 1.0, 300.0], "loads, loadFailures, totalLoadTime in ms");
    store.reset_stats();
    assert_eq!(store.stats()[8..11], [0.0, 0.0, 0.0]);
}
