//! The JS host's clock and randomness, for the core: `src/clock.rs` declares
//! these two functions (its `Clock::system` and the memory store's hash
//! seeds use them) and the linker joins them to the definitions here, so
//! the core calls no JS itself and imports nothing from this layer.
//!
//! Linked into every wasm32-unknown-unknown build with the `js` feature,
//! also when no binding is called (a Rust program using `MemoryStore` on
//! wasm32 reads this clock).

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen]
extern "C" {
    // Present in Node, Deno, browsers and Cloudflare Workers. In Workers it
    // advances only across I/O, which is the platform's own rule.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// Milliseconds of the host's monotonic clock.
#[unsafe(no_mangle)]
fn pepperpy_caching_host_now_ms() -> f64 {
    performance_now()
}

/// 64 random bits from `Math.random()` (two draws of 32).
#[unsafe(no_mangle)]
fn pepperpy_caching_host_seed() -> u64 {
    let draw = || (js_sys::Math::random() * 4_294_967_296.0) as u64;
    (draw() << 32) ^ draw()
}
