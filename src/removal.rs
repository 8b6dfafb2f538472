//! Removal listeners: why an entry left a store ([`RemovalReason`]), the
//! listener a store is built with ([`RemovalListener`]), and the one way a
//! store calls it ([`notify`]): outside every lock, each call's panic caught.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// Why an entry left a store, as a removal listener is told: the same
/// reasons, with the same meaning, as the JS store's `onRemove`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RemovalReason {
    /// The policy evicted it to make room for another entry.
    Evicted,
    /// Its TTL ran out (found by a read, a write's sweep, or a walk).
    Expired,
    /// A `set` (or a load storing its value) replaced it; the listener gets
    /// the old value under the key that now holds the new one.
    Replaced,
    /// `delete` removed it.
    Deleted,
    /// `invalidate` removed it (its key matched the pattern).
    Invalidated,
    /// `clear` removed it.
    Cleared,
}

impl RemovalReason {
    /// The reason as the JS store names it: `"evicted"`, `"expired"`,
    /// `"replaced"`, `"deleted"`, `"invalidated"` or `"cleared"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RemovalReason::Evicted => "evicted",
            RemovalReason::Expired => "expired",
            RemovalReason::Replaced => "replaced",
            RemovalReason::Deleted => "deleted",
            RemovalReason::Invalidated => "invalidated",
            RemovalReason::Cleared => "cleared",
        }
    }
}

impl std::fmt::Display for RemovalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A removal listener: called with the key, the value that left and why.
/// Shared (`Arc`) so that one listener can serve several stores (a
/// [`NearCache`](crate::stores::NearCache) hands its own to its tiers).
pub type RemovalListener<V> = Arc<dyn Fn(&str, V, RemovalReason) + Send + Sync + 'static>;

/// Calls `listener` with each removal, in order. A listener that panics does
/// not stop the others: each call's panic is caught (the panic hook has
/// already reported it) and the next removal is delivered. The caller holds
/// no lock.
pub(crate) fn notify<V>(
    listener: &RemovalListener<V>,
    removals: impl IntoIterator<Item = (Box<str>, V, RemovalReason)>,
) {
    for (key, value, reason) in removals {
        let _ = catch_unwind(AssertUnwindSafe(|| listener(&key, value, reason)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_panicking_call_does_not_stop_the_others() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let listener: RemovalListener<u32> = Arc::new(move |key: &str, value, reason| {
            log.lock().unwrap().push((key.to_string(), value, reason));
            assert_ne!(value, 1, "the listener panics on 1");
        });
        let removals = [("a".into(), 1, RemovalReason::Evicted), ("b".into(), 2, RemovalReason::Deleted)].into_iter();
        notify(&listener, removals);
        let seen = seen.lock().unwrap();
        assert_eq!(*seen, [("a".into(), 1, RemovalReason::Evicted), ("b".into(), 2, RemovalReason::Deleted)]);
    }

    #[test]
    fn the_names_are_the_js_stores() {
        let all = [
            RemovalReason::Evicted,
            RemovalReason::Expired,
            RemovalReason::Replaced,
            RemovalReason::Deleted,
            RemovalReason::Invalidated,
            RemovalReason::Cleared,
        ];
        let names: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["evicted", "expired", "replaced", "deleted", "invalidated", "cleared"]);
    }
}
