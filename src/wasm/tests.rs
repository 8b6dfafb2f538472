//! The bindings on their own, under `wasm-pack test --node`.

use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use super::key_buffer::{key_error, removed_buffer};
use super::*;

fn lru(max_size: f64) -> WasmStore {
    WasmStore::new(&WasmPolicy::lru(max_size, None, None).unwrap())
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

/// The slot ids in `store`'s report, `n` of them.
fn report(store: &WasmStore, n: i32) -> Vec<u32> {
    assert!(n >= 0);
    // SAFETY (test only): the report holds n ids until the store's next listing call.
    (0..n as usize).map(|i| unsafe { *store.report().add(i) }).collect()
}

/// The (id, reason) pairs the last storing call reported.
fn removed() -> Vec<(u32, u32)> {
    let words = removed_buffer();
    // SAFETY (test only): the buffer lives as long as the instance and holds removed_buffer_len() words.
    let count = unsafe { *words } as usize;
    (0..count).map(|i| unsafe { (*words.add(1 + 2 * i), *words.add(2 + 2 * i)) }).collect()
}

#[wasm_bindgen_test]
fn entries_are_addressed_by_slot_and_removals_handed_back() {
    let store = lru(2.0);
    let a = store.set(key("a"), None, 0.0);
    let b = store.set(key("b"), None, 0.0);
    assert!(a >= 0 && b >= 0 && a != b);
    assert!(removed().is_empty());
    assert!(store.touch(a as u32, 0.0), "a hit on a's slot: b is now least recently used");
    let c = store.set(key("c"), None, 0.0);
    assert_eq!(removed(), [(b as u32, 0)], "b evicted, by id");
    assert_eq!(store.set(key("c"), None, 0.0), c, "a replaced entry keeps its slot");
    assert_eq!(removed(), [(c as u32, 3)]);
    assert_eq!(store.delete(key("c"), 0.0), 1);
    assert!(!store.touch(c as u32, 0.0), "a freed slot is a miss");
    let stats = store.stats();
    assert_eq!((stats[0], stats[1], stats[4]), (1.0, 1.0, 1.0), "hits, misses, evictions");
}

#[wasm_bindgen_test]
fn refusals_come_back_as_text() {
    let store = lru(10.0);
    assert_eq!(store.set(key(""), None, 0.0), REFUSED);
    let text = store.take_error().unwrap();
    assert!(text.starts_with("CacheKeyError:") && text.contains("must not be empty"), "{text}");
    assert!(store.take_error().is_none(), "taken once");
    assert_eq!(store.set(key("k"), Some(-5.0), 0.0), REFUSED);
    assert!(store.take_error().unwrap().starts_with("CachePolicyError:"));
    assert_eq!(store.set_with_metadata(key("k"), None, 0.0, "[1]"), REFUSED);
    assert!(store.take_error().unwrap().starts_with("CacheSerializationError:"));
    assert_eq!(store.invalidate(&"*".repeat(1 << 20), 0.0), NONE);
    assert!(store.take_error().unwrap().starts_with("CachePatternError:"));
    assert_eq!(store.stats()[2], 0.0, "a refused set counts nothing");
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
fn time_is_what_the_caller_passes_in() {
    let store = WasmStore::new(&WasmPolicy::ttl(1.0, None).unwrap());
    let k = store.set(key("k"), None, 5_000.0) as u32;
    assert!(store.touch(k, 5_999.0));
    assert!(!store.touch(k, 1_000.0) || store.touch(k, 5_999.0), "time never goes back");
    assert!(!store.touch(k, 6_000.0), "expired one second after it was set");
    assert_eq!(store.stats()[5], 1.0, "one expiration");
    let j = store.set(key("j"), Some(10.0), 6_000.0) as u32;
    assert_eq!(store.remaining_ttl(key("j"), 7_000.0), 9_000.0);
    assert!(store.alive(j, 15_999.0));
    let n = store.reclaim(16_000.0) as i32;
    assert_eq!(report(&store, n), [j], "reclaimed and reported");
}

#[wasm_bindgen_test]
fn metadata_round_trips_as_text() {
    let store = lru(10.0);
    let text = "o3;s7;versionn3ff0000000000000s4;tagsa5;s1;azts3;\u{e9}\u{1f600}n3ff8000000000000s9;__proto__o1;s1;xf";
    assert!(store.set_with_metadata(key("k"), None, 0.0, text) >= 0);
    assert_eq!(store.update_metadata(key("k"), 0.0, "o1;s7;versionn4000000000000000"), 1);
    let got = store.get_metadata(key("k"), 0.0).unwrap();
    // The core's map keeps keys sorted.
    assert_eq!(
        got,
        "o3;s9;__proto__o1;s1;xfs4;tagsa5;s1;azts3;\u{e9}\u{1f600}n3ff8000000000000s7;versionn4000000000000000"
    );
    assert!(store.get_metadata(key("nope"), 0.0).is_none());
    assert!(store.take_error().is_none(), "no entry is not an error");
    for bad in ["", "o1;", "o1;n", "s3;ab", "o1;s1;xq", "o0;z", "a1;z"] {
        assert_eq!(store.set_with_metadata(key("k"), None, 0.0, bad), REFUSED, "{bad:?}");
        assert!(store.take_error().unwrap().starts_with("CacheSerializationError:"));
    }
}

#[wasm_bindgen_test]
fn a_load_stores_only_while_its_placeholder_stands() {
    let store = lru(10.0);
    let token = store.begin_load(key("k"));
    assert!(store.end_load(key("k"), token), "nothing happened meanwhile");
    let token = store.begin_load(key("k"));
    assert!(store.set(key("k"), None, 0.0) >= 0);
    assert!(!store.end_load(key("k"), token), "a set removed the placeholder");
    let token = store.begin_load(key("k"));
    assert_eq!(store.delete(key("k"), 0.0), 1);
    assert!(!store.end_load(key("k"), token), "a delete removed it");
    let token = store.begin_load(key("k"));
    assert_eq!(store.invalidate("k*", 0.0), 0);
    assert!(!store.end_load(key("k"), token), "an invalidate removed it");
    let token = store.begin_load(key("k"));
    store.clear(0.0);
    assert!(!store.end_load(key("k"), token), "a clear removed it");
}

#[wasm_bindgen_test]
fn stale_reads_start_one_refresh() {
    let store = lru(10.0);
    let token = store.begin_load(key("k"));
    let id = store.finish_refresh(key("k"), token, true, 0.0, 1.0, 10.0, 1.0, None, false);
    assert!(id >= 0);
    let id = f64::from(id) * 4.0;
    assert_eq!(store.get_fresh(key("k"), 0.0), id, "fresh");
    assert_eq!(store.get_fresh(key("k"), 1_000.0), id + 2.0, "the first stale read refreshes");
    assert_eq!(store.get_fresh(key("k"), 1_000.0), id + 1.0, "one refresh at a time");
    assert_eq!(store.get_fresh(key("absent"), 1_000.0), -1.0, "a miss");
    let stats = store.stats();
    assert_eq!(stats[11..], [2.0, 1.0, 0.0], "staleHits, refreshes, refreshFailures");
}

#[wasm_bindgen_test]
fn loads_and_latency_are_recorded_as_measured_in_js() {
    let store = lru(10.0);
    store.record_load(true, 250.0);
    store.record_load(false, 50.0);
    store.latency(0.5);
    let stats = store.stats();
    assert_eq!(stats[8..11], [2.0, 1.0, 300.0], "loads, loadFailures, totalLoadTime in ms");
    assert_eq!(stats[7], 0.5, "avgGetLatency in ms");
    store.reset_stats();
    assert_eq!(store.stats()[8..11], [0.0, 0.0, 0.0]);
}

#[wasm_bindgen_test]
fn slots_follow_the_documented_order() {
    let store = lru(10.0);
    let ids: Vec<u32> = ["a", "b", "c"].iter().map(|k| store.set(key(k), None, 0.0) as u32).collect();
    assert!(store.touch(ids[0], 0.0));
    let n = store.slots(None, 0.0);
    assert_eq!(report(&store, n), [ids[0], ids[2], ids[1]], "most recently used first");
    let n = store.slots(Some("[bc]".into()), 0.0);
    assert_eq!(report(&store, n), [ids[2], ids[1]]);
}
