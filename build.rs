//! Build script: only the wasm32 JS bindings (feature `js`) need anything.
//!
//! Their `.wasm` exports the shadow stack pointer (`__stack_pointer`, the
//! global that Rust code in wasm moves on entry to and exit from functions
//! whose locals live in linear memory). A trap (a stack overflow in the JS
//! engine, memory exhausted) skips the exits, so the pointer would stay lower
//! by those frames after every trap, until the shadow stack runs into the
//! data below it. The JS layer reads it once when it loads (no wasm frame is
//! active then, nor ever between its calls) and puts it back after a trap.
fn main() {
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    if wasm && std::env::var_os("CARGO_FEATURE_JS").is_some() {
        println!("cargo:rustc-link-arg-cdylib=--export=__stack_pointer");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
