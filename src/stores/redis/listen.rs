//! The removal listener of a [`RedisStore`]: what this process removed, as
//! the scripts with a listener report it (the Redis keys and stored bytes of
//! what they removed), decoded and handed to the listener after the round
//! trip. See `RedisStoreBuilder::on_remove` for what it cannot see.

use serde::de::DeserializeOwned;

use super::RedisStore;
use crate::remote::format;
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
    /// Reads the listened `DELETE` script's reply (see `scripts.rs`) `{removed, key,
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

/// What a bounded `store_loaded` with a listener reports: `(expired,
/// evicted, lost, written)` and the evicted entries' keys and bytes.
type LoadedReply = ((u64, u64, u8, u8), Vec<(Vec<u8>, Vec<u8>)>);

impl<V: DeserializeOwned> RedisStore<V> {
    /// Reads `STORE_LOADED_BOUNDED_CALL`'s reply with a listener
    /// `{expired, evicted, lost, written, key, bytes, ...}`.
    pub(super) fn loaded_reply(&self, what: &str, reply: Vec<redis::Value>) -> crate::errors::Result<LoadedReply> {
        let int = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(n)) => Some(u64::try_from(*n).unwrap_or(0)),
            _ => None,
        };
        let (Some(expired), Some(evicted), Some(lost), Some(written)) =
            (int(reply.first()), int(reply.get(1)), int(reply.get(2)), int(reply.get(3)))
        else {
            return Err(self.unexpected(what, redis::Value::Array(reply)));
        };
        let mut rest = reply.into_iter().skip(4);
        let mut gone = Vec::new();
        while let (Some(redis::Value::BulkString(key)), Some(redis::Value::BulkString(bytes))) =
            (rest.next(), rest.next())
        {
            gone.push((key, bytes));
        }
        Ok(((expired, evicted, u8::from(lost == 1), u8::from(written == 1)), gone))
    }
}

impl<V: serde::Serialize + DeserializeOwned + Send + Sync + 'static> RedisStore<V> {
    /// `set_many`'s write of one bucket for a store with a listener: the
    /// same pipeline, of the scripts that also return what they replaced and
    /// evicted, reported once the pipeline succeeded. (A slot migrating: the
    /// single-key writes, which report too.)
    pub(super) async fn write_bucket_reporting(
        &self,
        index: usize,
        entries: &[(crate::key::Key<'_>, super::entries::EncodedSet)],
        positions: &[usize],
    ) -> crate::errors::Result<()> {
        use super::call::{ScriptCall, ScriptPipe, flag};
        use crate::metrics::SharedCounters;
        let what = "set_many";
        let mut conn = self.conn.clone();
        let capacity = self.capacity(index);
        let script = if capacity.is_some() { &self.scripts.set_bounded_returning } else { &self.scripts.set_returning };
        let mut pipe = ScriptPipe::new(script);
        for &pos in positions {
            let (key, encoded) = &entries[pos];
            let call = match &capacity {
                Some(capacity) => {
                    let [recency, expiry] = capacity.indexes();
                    let mut call = ScriptCall::new(script, &[self.space.entry(*key).into(), recency, expiry], &[]);
                    call.arg(&encoded.stored)
                        .arg(encoded.ttl.unwrap_or(0))
                        .capacity(capacity)
                        .arg(flag(self.sample()))
                        .arg(encoded.idle.unwrap_or(0));
                    call
                }
                None => {
                    let mut call = ScriptCall::new(script, &[self.space.entry(*key).into()], &[]);
                    call.arg(&encoded.stored).arg(encoded.ttl.unwrap_or(0)).arg(encoded.idle.unwrap_or(0));
                    call
                }
            };
            pipe.push(call);
        }
        let replies = match self.try_round_trip(what, pipe.invoke::<Vec<redis::Value>>(&mut conn)).await {
            Err(failure) if self.conn.may_be_migrating(&failure) => {
                for &pos in positions {
                    let (key, encoded) = &entries[pos];
                    self.write(what, *key, &encoded.stored, encoded.ttl, encoded.idle).await?;
                }
                return Ok(());
            }
            other => other?,
        };
        SharedCounters::add(&self.counters.sets, positions.len() as u64);
        let mut lost = false;
        for (&pos, reply) in positions.iter().zip(replies) {
            let key = &entries[pos].0;
            match (&capacity, reply) {
                (Some(_), redis::Value::Array(reply)) => {
                    let (report, old, evicted) = self.set_reply(what, reply)?;
                    self.count(report);
                    lost |= report.lost;
                    self.report_replaced(key, old);
                    self.report_removed(RemovalReason::Evicted, evicted);
                }
                (None, redis::Value::BulkString(old)) => self.report_replaced(key, Some(old)),
                (None, redis::Value::Nil) => {}
                (_, other) => return Err(self.unexpected(what, other)),
            }
        }
        if let Some(capacity) = &capacity
            && lost
        {
            self.settle(capacity, super::call::Report { lost, ..Default::default() }).await;
        }
        Ok(())
    }
}
