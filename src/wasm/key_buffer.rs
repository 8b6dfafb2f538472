//! The buffer the JS layer writes keys into for the hot calls.
//!
//! Passing a `&str` through wasm-bindgen costs an allocation in wasm memory
//! and a free per call, about a third of a `get`. Instead the JS layer encodes
//! the key as UTF-8 straight into this fixed buffer and passes its length. The
//! buffer holds [`MAX_KEY_LEN`] bytes, the longest key the core accepts, so a
//! key that does not fit is too long by definition: the JS layer then hands it
//! whole to [`key_error`] for the core's own message.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

use crate::errors::{CacheError, Result};
use crate::store::{MAX_KEY_LEN, check_key};

use super::errors::ToJs;

thread_local! {
    // Boxed once and never reallocated: its address stays what JS was told.
    static KEY_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_KEY_LEN].into_boxed_slice());
    static FAILED_MARKER: JsValue = js_sys::Object::new().into();
}

/// The address of the key buffer in wasm memory.
#[wasm_bindgen(js_name = keyBuffer)]
pub fn key_buffer() -> *mut u8 {
    KEY_BUFFER.with_borrow_mut(|buffer| buffer.as_mut_ptr())
}

/// The wasm memory, for the JS layer's view of the key buffer.
#[wasm_bindgen(js_name = wasmMemory)]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// The size of the key buffer in bytes.
#[wasm_bindgen(js_name = keyBufferLen)]
pub fn key_buffer_len() -> usize {
    MAX_KEY_LEN
}

/// The core's error for a key too long for the buffer (`undefined` if the key
/// is valid after all).
#[wasm_bindgen(js_name = keyError)]
pub fn key_error(key: &str) -> JsValue {
    check_key(key).err().map_or(JsValue::UNDEFINED, |err| err.to_js())
}

/// The value `get` returns when it failed: an object of its own, so no stored
/// value can be mistaken for it.
#[wasm_bindgen(js_name = failedMarker)]
pub fn failed_marker() -> JsValue {
    FAILED_MARKER.with(JsValue::clone)
}

/// Runs `f` on the first `len` bytes of the key buffer as a `&str`.
pub(super) fn with_key<T>(len: usize, f: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    KEY_BUFFER.with_borrow(|buffer| {
        // The JS layer writes only what fits, with TextEncoder: both checks
        // guard against a caller that did not.
        let bytes = buffer.get(..len).ok_or_else(|| CacheError::key("", "longer than the key buffer"))?;
        let key = std::str::from_utf8(bytes).map_err(|_| CacheError::key("", "not valid UTF-8"))?;
        f(key)
    })
}

/// Puts `key` in the key buffer as the JS layer does; its length.
#[cfg(test)]
pub(super) fn write(key: &str) -> usize {
    KEY_BUFFER.with_borrow_mut(|buffer| buffer[..key.len()].copy_from_slice(key.as_bytes()));
    key.len()
}
