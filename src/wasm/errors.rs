//! `CacheError` as a JS error.
//!
//! Each error becomes a `js_sys::Error` whose `name` is the JS class it
//! stands for (`CacheKeyError`, ...); the JS layer rethrows it as an instance
//! of that class. The class is its kind's, [`ErrorKind::js_class`]: the one
//! mapping, which `tables()` (tables.rs) also hands to the JS layer.
//!
//! [`ErrorKind::js_class`]: crate::errors::ErrorKind::js_class

use wasm_bindgen::JsValue;

use crate::errors::CacheError;

/// The JS class name of `err`: its kind's.
pub(super) fn class_name(err: &CacheError) -> &'static str {
    err.kind().js_class()
}

pub(super) trait ToJs {
    fn to_js(&self) -> JsValue;
}

impl ToJs for CacheError {
    /// An `Error` named after the class it stands for (see `tables` in
    /// tables.rs). Its message is the core's: the JS layer checks the
    /// numbers it passes and words those messages itself, so no Rust-only
    /// name (an option's, `max_size`) reaches JS users.
    fn to_js(&self) -> JsValue {
        let error = js_sys::Error::new(&self.to_string());
        error.set_name(class_name(self));
        error.into()
    }
}

/// `Result<T, CacheError>` to what a wasm-bindgen export returns.
pub(super) trait IntoJs<T> {
    fn into_js(self) -> Result<T, JsValue>;
}

impl<T> IntoJs<T> for crate::errors::Result<T> {
    #[inline]
    fn into_js(self) -> Result<T, JsValue> {
        self.map_err(|err| err.to_js())
    }
}
