//! The bindings on their own, under `wasm-pack test --node`.

use wasm_bindgen_test::wasm_bindgen_test;

use super::*;

#[wasm_bindgen_test]
fn a_pattern_says_when_a_literal_prefix_or_equality_suffices() {
    let kind = |p: &str| WasmPattern::new(p).unwrap().kind();
    assert_eq!(kind("user:*"), 1);
    assert_eq!(kind("user:**"), 1);
    assert_eq!(kind("user:1"), 2);
    assert_eq!(kind("*"), 3);
    assert_eq!(kind("u?er:*"), 0);
    assert_eq!(kind("user\\*"), 0, "an escaped star is a literal, not a prefix");
    assert_eq!(kind("[ab]*"), 0);
    assert!(WasmPattern::new("").is_err());
}

#[wasm_bindgen_test]
fn limits_are_the_cores() {
    let limits = limits();
    assert_eq!(limits[0], MAX_KEY_LEN as f64);
    assert_eq!(limits[1], MAX_NESTING as f64);
    // The slot engine's layout, the tag and idle limits, then two numbers
    // per counter (tables.rs), which end the vector.
    let n = limits.len() - 2 * crate::metrics::JS_LAYOUT.len();
    let tail = &limits[n - 10..n];
    let expected = [
        f64::from(slots::COUNT),
        f64::from(slots::MAX_FREQ),
        f64::from(slots::EVICTED),
        f64::from(slots::EXPIRED),
        f64::from(slots::REPLACED),
        crate::tags::MAX_TAGS as f64,
        crate::tags::MAX_TAG_LEN as f64,
        crate::tags::MAX_INVALIDATE_TAGS as f64,
        crate::policies::MAX_IDLE.as_secs_f64(),
        f64::from(u32::from(crate::key::RESERVED_KEY_CHAR)),
    ];
    assert_eq!(tail, expected);
}

#[wasm_bindgen_test]
fn the_refresh_rules_are_the_cores() {
    assert!(refresh_error(true, true, true).is_undefined());
    assert!(refresh_error(true, false, false).is_undefined());
    assert!(!refresh_error(false, true, false).is_undefined(), "grace needs a ttl");
    assert!(!refresh_error(true, false, true).is_undefined(), "retryAfter needs grace");
    let options = |retry: u64| {
        crate::refresh::RefreshOptions::new(NoRuntime, Duration::from_secs(1), Duration::from_secs(1))
            .retry_after(Duration::from_secs(retry))
    };
    for failures in [1, 2, 5, 20, 40] {
        for retry in [1, 3, 90] {
            let ms = options(retry).backoff(failures).as_secs_f64() * 1000.0;
            assert_eq!(refresh_backoff(retry as f64, failures), ms, "{retry} s, {failures} failures");
        }
        let default = crate::refresh::RefreshOptions::new(NoRuntime, Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(refresh_backoff(f64::NAN, failures), default.backoff(failures).as_secs_f64() * 1000.0);
    }
}

/// Nothing runs: the test takes the rules of `RefreshOptions` only.
struct NoRuntime;

impl crate::refresh::Runtime for NoRuntime {
    fn spawn(&self, _task: crate::refresh::BoxFuture<()>) {}

    fn sleep(&self, _duration: Duration) -> crate::refresh::BoxFuture<()> {
        Box::pin(std::future::pending())
    }
}

#[wasm_bindgen_test]
fn an_engine_is_a_number_released_whatever_a_call_left_and_its_number_given_again() {
    let policy = WasmPolicy::lru(8.0, None, Some(true)).unwrap();
    let a = WasmEngines::create(&policy, 8);
    let b = WasmEngines::create(&policy, 8);
    assert_ne!(a, b);
    assert!(WasmEngines::intact(a) && WasmEngines::intact(b));
    assert_eq!(WasmEngines::set(a, 0, -1, 1, f64::NAN, 0.0, 0.0, 0.0), 0);
    assert_eq!(WasmEngines::live(a), 1);
    // A call cut short while it changed the engine leaves it busy: not
    // intact, and still released (no borrow is left taken anywhere).
    engine(a).busy.set(true);
    assert!(!WasmEngines::intact(a));
    WasmEngines::release(a);
    assert!(!WasmEngines::intact(a), "a released number is no engine");
    // Released again, or never made: nothing.
    WasmEngines::release(a);
    WasmEngines::release(u32::MAX);
    assert!(!WasmEngines::intact(u32::MAX));
    // The number is given to the next engine, which starts empty and intact.
    let c = WasmEngines::create(&policy, 0);
    assert_eq!(c, a);
    assert!(WasmEngines::intact(c));
    assert_eq!(WasmEngines::live(c), 0);
    assert_eq!(WasmEngines::live(b), 0, "the other engine is untouched");
    WasmEngines::release(b);
    WasmEngines::release(c);
}
