//! `CacheError` as a JS error.
//!
//! Each variant becomes a `js_sys::Error` whose `name` is the JS class it
//! stands for (`CacheKeyError`, ...); the JS layer rethrows it as an instance
//! of that class. The mapping lives here, not in the core, which knows
//! nothing of JS.

use wasm_bindgen::JsValue;

use crate::errors::CacheError;

/// The JS class name of `err`: its kind's ([`crate::ErrorKind::js_class`]).
pub(super) fn class_name(err: &CacheError) -> &'static str {
    err.kind().js_class()
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
