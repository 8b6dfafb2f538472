//! The rustls crypto provider for `rediss://` connections, chosen by cargo
//! features (see "TLS" on [`RedisStore`](super::RedisStore)).
//!
//! redis-rs builds its TLS config from rustls's process-wide default
//! provider, and rustls panics when there is none and it cannot pick one by
//! itself (none compiled in, or both ring and aws-lc-rs). This module makes
//! sure there is one before the first connection, or says why not, and never
//! replaces one the application installed.

use rustls::crypto::CryptoProvider;

use crate::errors::{CacheError, ErrorKind, Result};

/// Makes sure the process has a default rustls provider: the application's
/// if it installed one, else the one the features chose (aws-lc-rs over
/// ring), else an error.
pub(super) fn ensure_provider() -> Result<()> {
    if CryptoProvider::get_default().is_some() {
        return Ok(());
    }
    match feature_provider() {
        Some(provider) => {
            // Losing a race to another installer is fine: there is one now.
            let _ = provider.install_default();
            Ok(())
        }
        None => Err(CacheError::backend(
            ErrorKind::Command,
            "a rediss:// URL needs a rustls crypto provider: enable the feature tls-ring or tls-aws-lc of \
             pepperpy-caching, or install one with rustls::crypto::CryptoProvider::install_default before building \
             the store",
            None,
        )),
    }
}

#[cfg(feature = "tls-aws-lc")]
fn feature_provider() -> Option<CryptoProvider> {
    Some(rustls::crypto::aws_lc_rs::default_provider())
}

#[cfg(all(feature = "tls-ring", not(feature = "tls-aws-lc")))]
fn feature_provider() -> Option<CryptoProvider> {
    Some(rustls::crypto::ring::default_provider())
}

#[cfg(not(any(feature = "tls-ring", feature = "tls-aws-lc")))]
fn feature_provider() -> Option<CryptoProvider> {
    None
}
