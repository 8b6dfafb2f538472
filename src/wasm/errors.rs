//! `CacheError` as a JS error.
//!
//! Each variant becomes a `js_sys::Error` whose `name` is the JS class it
//! stands for (`CacheKeyError`, ...); the JS layer rethrows it as an instance
//! of that class. The mapping lives here, not in the core, which knows
//! nothing of JS.

use wasm_bindgen::JsValue;

use crate::errors::CacheError;

/// The JS class name for each kind of error.
pub(super) fn class_name(err: &CacheError) -> &'static str {
    match err {
        CacheError::Key { .. } => "CacheKeyError",
        CacheError::Pattern { .. } => "CachePatternError",
        CacheError::Policy(_) => "CachePolicyError",
        CacheError::Serialization(_) => "CacheSerializationError",
        CacheError::Backend { .. } => "CacheBackendError",
        // JS loaders run in JS and reject with their own errors; this is only a fallback.
        CacheError::Loader(_) => "CacheError",
        CacheError::Reentrant { .. } => "CacheReentrantLoadError",
        // JS values are not Rust values: the JS store never clones or drops one under a lock.
        CacheError::ReentrantValue { .. } => "CacheError",
        CacheError::Timeout { .. } => "CacheTimeoutError",
    }
}

pub(super) trait ToJs {
    fn to_js(&self) -> JsValue;
}

impl ToJs for CacheError {
    fn to_js(&self) -> JsValue {
        let error = js_sys::Error::new(&message(self));
        error.set_name(class_name(self));
        error.into()
    }
}

/// The message of `err` as JS users read it.
fn message(err: &CacheError) -> String {
    // The core names options the Rust way; JS users wrote `maxSize`.
    err.to_string().replace("max_size", "maxSize")
}

/// `Result<T, CacheError>` to what a wasm-bindgen export returns.
pub(super) trait IntoJs<T> {
    fn into_js(self) -> Result<T, JsValue>;
}

impl<T> IntoJs<T> for crate::Result<T> {
    #[inline]
    fn into_js(self) -> Result<T, JsValue> {
        self.map_err(|err| err.to_js())
    }
}
