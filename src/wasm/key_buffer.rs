//! The buffer the JS layer writes keys into for the hot calls.
//!
//! Passing a `&str` through wasm-bindgen costs an allocation in wasm memory
//! and a free per call, about a third of a `get`. Instead the JS layer encodes
//! the key as UTF-8 straight into this fixed buffer and passes its length. The
//! buffer holds [`MAX_KEY_LEN`] bytes, the longest key the core accepts, so a
//! key that does not fit is too long by definition: the JS layer then hands it
//! whole to [`key_error`] for the core's own message.

use std::cell::{Cell, RefCell};

use wasm_bindgen::prelude::*;

use crate::errors::{CacheError, Result};
use crate::store::{MAX_KEY_LEN, check_key};

use super::errors::ToJs;

/// The most (id, reason) pairs one call reports in the removed buffer. A set
/// removes at most the replaced or evicted entry and the expired ones it
/// reclaims (the engine's `RECLAIM_PER_WRITE`, 8, plus 1 for room).
const MAX_REMOVED: usize = 32;

thread_local! {
    // Boxed once and never reallocated: its address stays what JS was told.
    // Calls borrow it shared only, so a trap inside one leaves at most a
    // shared borrow behind, which later calls can still take.
    static KEY_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; MAX_KEY_LEN].into_boxed_slice());
    // Cells, not a RefCell: no borrow flag a trap could leave set.
    static REMOVED: Box<[Cell<u32>]> = (0..1 + 2 * MAX_REMOVED).map(|_| Cell::new(0)).collect();
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

/// The instance's exports, for the JS layer to find `__stack_pointer` (see build.rs).
#[wasm_bindgen(js_name = wasmExports)]
pub fn wasm_exports() -> JsValue {
    wasm_bindgen::exports()
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

/// The address of the removed buffer in wasm memory: `u32`s, the count of
/// pairs then (slot id, reason) pairs, written by the calls that store.
#[wasm_bindgen(js_name = removedBuffer)]
pub fn removed_buffer() -> *const u32 {
    REMOVED.with(|cells| cells.as_ptr().cast())
}

/// The length of the removed buffer in `u32`s (the JS layer's view of it).
#[wasm_bindgen(js_name = removedBufferLen)]
pub fn removed_buffer_len() -> usize {
    1 + 2 * MAX_REMOVED
}

/// Fills the removed buffer with the pairs `fill` pushes.
pub(super) fn write_removed(fill: impl FnOnce(&mut dyn FnMut(u32, u32))) {
    REMOVED.with(|cells| {
        let mut n = 0;
        fill(&mut |id, reason| {
            // A call removes at most MAX_REMOVED entries; more would be a bug
            // in that bound, and overwriting the last pair keeps memory safe.
            let at = 1 + 2 * n.min(MAX_REMOVED - 1);
            cells[at].set(id);
            cells[at + 1].set(reason);
            n = (n + 1).min(MAX_REMOVED);
        });
        cells[0].set(n as u32);
    });
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
