//! The removal listener of a [`RedisStore`]: what this process removed, as
//! the scripts with a listener report it (the Redis keys and stored bytes of
//! what they removed), decoded and handed to the listener after the round
//! trip. See `RedisStoreBuilder::on_remove` for what it cannot see.

use serde::de::DeserializeOwned;

use super::{RedisStore, format};
use crate::removal::{RemovalReason, notify};

impl<V: DeserializeOwned> RedisStore<V> {
    /// Whether the store has a removal listener (its scripts then report
    /// what they remove).
    #[inline]
    pub(super) fn listening(&self) -> bool {
        self.listener.is_some()
    }

    /// Hands the entries a call removed (Redis keys and stored bytes) to the
    /// listener, decoded; those that do not decode are skipped.
    pub(super) fn report_removed(&self, reason: RemovalReason, removed: Vec<(Vec<u8>, Vec<u8>)>) {
        let Some(listener) = &self.listener else { return };
        let notices = removed.into_iter().filter_map(|(raw, bytes)| {
            let key = self.space.user_key(&raw, None)?;
            let value = format::decode_value::<V>(&key, &bytes).ok()?;
            Some((Box::<str>::from(&*key), value, reason))
        });
        notify(listener, notices);
    }

    /// Reports the value a `set` of `key` replaced, if it had one.
    pub(super) fn report_replaced(&self, key: &str, old: Option<Vec<u8>>) {
        let (Some(listener), Some(bytes)) = (&self.listener, old) else { return };
        if let Ok(value) = format::decode_value::<V>(key, &bytes) {
            notify(listener, [(key.into(), value, RemovalReason::Replaced)]);
        }
    }
}

/// The reason of a removal by the call `what` (`unlink`'s callers).
pub(super) fn reason_of(what: &str) -> RemovalReason {
    match what {
        "invalidate" => RemovalReason::Invalidated,
        "clear" => RemovalReason::Cleared,
        _ => RemovalReason::Deleted,
    }
}

impl<V: DeserializeOwned> RedisStore<V> {
    /// Reads [`DELETE_RETURNING`](super::scripts)'s reply `{removed, key,
    /// bytes, ...}`, reports the entries and returns how many there were.
    pub(super) fn removed_reply(&self, what: &str, reply: Vec<redis::Value>) -> usize {
        let mut items = reply.into_iter();
        let removed = match items.next() {
            Some(redis::Value::Int(n)) => usize::try_from(n).unwrap_or(0),
            _ => 0,
        };
        let mut pairs = Vec::with_capacity(removed);
        while let (Some(redis::Value::BulkString(key)), Some(redis::Value::BulkString(bytes))) =
            (items.next(), items.next())
        {
            pairs.push((key, bytes));
        }
        self.report_removed(reason_of(what), pairs);
        removed
    }
}

/// What a bounded `set` with a listener reports: the script's report, the
/// replaced entry's stored bytes, and the evicted entries' keys and bytes.
type SetReply = (super::call::Report, Option<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>);

impl<V: DeserializeOwned> RedisStore<V> {
    /// Reads `SET_BOUNDED_RETURNING_CALL`'s reply `{expired, evicted, lost,
    /// old, key, bytes, ...}`.
    pub(super) fn set_reply(&self, what: &str, reply: Vec<redis::Value>) -> crate::errors::Result<SetReply> {
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(n)) => Some(u64::try_from(*n).unwrap_or(0)),
            _ => None,
        };
        let (Some(expired), Some(evicted), Some(lost)) = (int(reply.first()), int(reply.get(1)), int(reply.get(2)))
        else {
            return Err(self.unexpected(what, redis::Value::Array(reply)));
        };
        let mut rest = reply.into_iter().skip(3);
        let old = match rest.next() {
            Some(redis::Value::BulkString(bytes)) => Some(bytes),
            _ => None,
        };
        let mut gone = Vec::new();
        while let (Some(redis::Value::BulkString(key)), Some(redis::Value::BulkString(bytes))) =
            (rest.next(), rest.next())
        {
            gone.push((key, bytes));
        }
        Ok((super::call::Report::new((expired, evicted, u8::from(lost == 1))), old, gone))
    }
}
