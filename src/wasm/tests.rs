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
}
