//! The hot path's way into the wasm (issue 24 item 4): one buffer in the
//! wasm memory that the JS layer writes bytes into itself, then one call
//! that reads them there.
//!
//! A `&[u8]` or `&str` argument costs a `malloc`, a copy and a `free` per
//! call, and the glue's `TextEncoder.encode` (which the set path used to
//! turn its text into bytes) allocates a fresh buffer each time, about a
//! microsecond in Node 20: more than the Redis round trip's share of a
//! pipelined `SET`. Here the JS layer keeps a `Uint8Array` over this
//! buffer, fills it (`TextEncoder.encodeInto` for a text, `set` for a
//! reply's bytes) and passes only the length. The buffer never moves once
//! made (a grown memory keeps its addresses; the JS view is remade when
//! the memory's `ArrayBuffer` changes), and holds at most [`SCRATCH_LEN`]
//! bytes, unless made longer for one document ([`scratch_fit`]: a stored
//! document goes into the wasm once, whatever its length); a longer text
//! takes the allocating call (`plainText`), whose copy is then the smaller
//! cost.

use std::cell::RefCell;

use wasm_bindgen::prelude::*;

/// The scratch buffer's size: the documents and texts of the usual entries
/// fit; a longer one goes through the allocating calls.
pub const SCRATCH_LEN: usize = 64 * 1024;

thread_local! {
    // The wasm is single-threaded: one buffer, made on first use.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// Makes the scratch buffer `len` bytes long, or [`SCRATCH_LEN`] if `len`
/// is less: a document longer than [`SCRATCH_LEN`] is read there too (one
/// copy into the wasm instead of one per call), and the JS layer gives the
/// longer buffer back ([`SCRATCH_LEN`] again) once it is read. Its address,
/// which changes when its length does (the JS layer makes its view again).
#[wasm_bindgen(js_name = scratchFit)]
pub fn scratch_fit(len: u32) -> u32 {
    let len = (len as usize).max(SCRATCH_LEN);
    if SCRATCH.with(|s| s.borrow().len()) != len {
        // A fresh buffer (not a resize, which would copy the old bytes), made
        // before the old one is let go: if the allocation fails (a trap), the
        // old buffer is still there, where the JS layer's view points.
        let fresh = vec![0; len];
        SCRATCH.with(|s| *s.borrow_mut() = fresh);
    }
    SCRATCH.with(|s| s.borrow().as_ptr() as u32)
}

/// The address of the scratch buffer in the wasm memory (`wasmMemory()`),
/// [`SCRATCH_LEN`] bytes long; the same address for the instance's life.
#[wasm_bindgen(js_name = scratchAddress)]
pub fn scratch_address() -> u32 {
    SCRATCH.with(|s| s.borrow().as_ptr() as u32)
}

/// The wasm memory (a `WebAssembly.Memory`), for the JS layer's view of the
/// scratch buffer.
#[wasm_bindgen(js_name = wasmMemory)]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// The first `len` bytes of the scratch buffer, if it holds that many.
fn with_scratch<T>(len: u32, fallback: T, f: impl FnOnce(&[u8]) -> T) -> T {
    SCRATCH.with(|s| match s.borrow().get(..len as usize) {
        Some(bytes) => f(bytes),
        None => fallback,
    })
}

/// [`super::plain_start`] of the document the JS layer wrote into the
/// first `len` bytes of the scratch buffer; -1 also if `len` is past it.
#[wasm_bindgen(js_name = plainStartIn)]
pub fn plain_start_in(len: u32) -> i32 {
    with_scratch(len, -1, super::plain_start)
}

/// [`super::value_start`] of the document in the first `len` bytes of the
/// scratch buffer; -1 also if `len` is past it.
#[wasm_bindgen(js_name = valueStartIn)]
pub fn value_start_in(len: u32) -> i32 {
    with_scratch(len, -1, super::value_start)
}

/// [`super::idle_header`] of the document in the first `len` bytes of the
/// scratch buffer (a get's document that [`plain_start_in`] declined, still
/// there: read without a second copy); none also if `len` is past it.
#[wasm_bindgen(js_name = idleHeaderIn)]
pub fn idle_header_in(len: u32) -> Option<Vec<u8>> {
    with_scratch(len, None, super::idle_header)
}

/// [`super::decode_value`] of the document in the first `len` bytes of the
/// scratch buffer (the entry under `key`); if `len` is past it, the error
/// of an empty document (the JS layer never passes one: it copies only
/// what fits).
#[wasm_bindgen(js_name = decodeValueIn)]
pub fn decode_value_in(key: &str, len: u32) -> super::JsResult<String> {
    SCRATCH.with(|s| super::decode_value(key, s.borrow().get(..len as usize).unwrap_or_default()))
}

/// [`super::plain_text`] of the UTF-8 text the JS layer wrote into the first
/// `len` bytes of the scratch buffer; false also if `len` is past it.
#[wasm_bindgen(js_name = plainTextIn)]
pub fn plain_text_in(len: u32, nulls: u32) -> bool {
    with_scratch(len, false, |bytes| super::plain_text(bytes, nulls))
}

/// [`SCRATCH_LEN`], for the JS layer (read once at load): the scratch
/// buffer's length but while [`scratch_fit`] made it longer.
#[wasm_bindgen(js_name = scratchLength)]
pub fn scratch_length() -> u32 {
    // 64 KiB: fits.
    SCRATCH_LEN as u32
}
