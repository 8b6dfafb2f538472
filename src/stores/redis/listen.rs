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

/// The `N` integers a listened script's reply starts with (a negative one
/// read as 0), or `None` if it does not start with `N` integers.
fn leading_ints<const N: usize>(reply: &[redis::Value]) -> Option<[u64; N]> {
    let mut ints = [0; N];
    for (i, slot) in ints.iter_mut().enumerate() {
        let redis::Value::Int(n) = reply.get(i)? else { return None };
        *slot = u64::try_from(*n).unwrap_or(0);
    }
    Some(ints)
}

/// The `(key, bytes)` pairs that end a listened script's reply, up to the
/// first item that is not a pair of bulk strings (a script writes only pairs
/// there; anything else ends the list rather than fail the call, whose write
/// has happened).
fn removed_pairs(rest: impl Iterator<Item = redis::Value>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rest = rest.fuse();
    let mut pairs = Vec::new();
    while let (Some(redis::Value::BulkString(key)), Some(redis::Value::BulkString(bytes))) = (rest.next(), rest.next())
    {
        pairs.push((key, bytes));
    }
    pairs
}

/// `SET_BOUNDED_RETURNING_CALL`'s reply `{expired, evicted, lost, old, key,
/// bytes, ...}` (`old` a bulk string, or anything else for none).
fn parse_set_reply(reply: Vec<redis::Value>) -> Result<SetReply, Vec<redis::Value>> {
    let Some([expired, evicted, lost]) = leading_ints(&reply) else { return Err(reply) };
    let mut rest = reply.into_iter().skip(3);
    let old = match rest.next() {
        Some(redis::Value::BulkString(bytes)) => Some(bytes),
        _ => None,
    };
    Ok((super::call::Report::new((expired, evicted, u8::from(lost == 1))), old, removed_pairs(rest)))
}

/// `STORE_LOADED_BOUNDED_CALL`'s reply with a listener `{expired, evicted,
/// lost, written, key, bytes, ...}`.
fn parse_loaded_reply(reply: Vec<redis::Value>) -> Result<LoadedReply, Vec<redis::Value>> {
    let Some([expired, evicted, lost, written]) = leading_ints(&reply) else { return Err(reply) };
    let gone = removed_pairs(reply.into_iter().skip(4));
    Ok(((expired, evicted, u8::from(lost == 1), u8::from(written == 1)), gone))
}

/// What a bounded `set` with a listener reports: the script's report, the
/// replaced entry's stored bytes, and the evicted entries' keys and bytes.
type SetReply = (super::call::Report, Option<Vec<u8>>, Vec<(Vec<u8>, Vec<u8>)>);

/// What a bounded `store_loaded` with a listener reports: `(expired,
/// evicted, lost, written)` and the evicted entries' keys and bytes.
type LoadedReply = ((u64, u64, u8, u8), Vec<(Vec<u8>, Vec<u8>)>);

impl<V: DeserializeOwned> RedisStore<V> {
    /// Reads the listened `DELETE` script's reply (see `scripts.rs`) `{removed, key,
    /// bytes, ...}`, reports the entries and returns how many there were (0
    /// for a reply without the count).
    pub(super) fn removed_reply(&self, what: &str, reply: Vec<redis::Value>) -> usize {
        let removed = leading_ints::<1>(&reply).map_or(0, |[n]| usize::try_from(n).unwrap_or(usize::MAX));
        self.report_removed(reason_of(what), removed_pairs(reply.into_iter().skip(1)));
        removed
    }

    /// Reads `SET_BOUNDED_RETURNING_CALL`'s reply (`parse_set_reply`); a
    /// reply of another shape is a backend error.
    pub(super) fn set_reply(&self, what: &str, reply: Vec<redis::Value>) -> crate::errors::Result<SetReply> {
        parse_set_reply(reply).map_err(|reply| self.unexpected(what, redis::Value::Array(reply)))
    }

    /// Reads `STORE_LOADED_BOUNDED_CALL`'s reply with a listener
    /// (`parse_loaded_reply`); a reply of another shape is a backend error.
    pub(super) fn loaded_reply(&self, what: &str, reply: Vec<redis::Value>) -> crate::errors::Result<LoadedReply> {
        parse_loaded_reply(reply).map_err(|reply| self.unexpected(what, redis::Value::Array(reply)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value::{self, BulkString, Int, Nil};

    fn bulk(s: &str) -> Value {
        BulkString(s.as_bytes().to_vec())
    }

    fn pair(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn leading_integers_or_none() {
        assert_eq!(leading_ints::<3>(&[Int(1), Int(-5), Int(7), bulk("x")]), Some([1, 0, 7]));
        assert_eq!(leading_ints::<3>(&[Int(1), Int(2)]), None, "too short");
        assert_eq!(leading_ints::<2>(&[Int(1), bulk("2")]), None, "not an integer");
        assert_eq!(leading_ints::<1>(&[]), None);
        assert_eq!(leading_ints::<0>(&[]), Some([]));
    }

    #[test]
    fn pairs_end_at_the_first_item_that_is_not_one() {
        let items = vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")];
        assert_eq!(removed_pairs(items.into_iter()), vec![pair("a", "1"), pair("b", "2")]);
        // An odd count: the dangling key is dropped, the pairs before it kept.
        assert_eq!(removed_pairs(vec![bulk("a"), bulk("1"), bulk("b")].into_iter()), vec![pair("a", "1")]);
        // A non-string stops the list, whatever follows.
        let items = vec![bulk("a"), Int(3), bulk("b"), bulk("2")];
        assert_eq!(removed_pairs(items.into_iter()), vec![]);
        assert_eq!(removed_pairs(std::iter::empty()), vec![]);
    }

    #[test]
    fn set_reply_shapes() {
        let (report, old, gone) =
            parse_set_reply(vec![Int(2), Int(1), Int(1), bulk("old"), bulk("k"), bulk("v")]).unwrap();
        assert_eq!(report, super::super::call::Report::new((2, 1, 1)));
        assert_eq!(old, Some(b"old".to_vec()));
        assert_eq!(gone, vec![pair("k", "v")]);
        // No old value (the script sends a non-string there), nothing evicted.
        let (report, old, gone) = parse_set_reply(vec![Int(0), Int(0), Int(0), Int(0)]).unwrap();
        assert_eq!(report, super::super::call::Report::new((0, 0, 0)));
        assert_eq!((old, gone), (None, vec![]));
        assert!(parse_set_reply(vec![Int(0), Int(0), Int(0)]).unwrap().1.is_none(), "the old slot may be absent");
        // A reply that does not start with the three counts is returned whole,
        // for the caller's backend error.
        let bad = vec![Int(0), Nil, Int(0), bulk("old")];
        assert_eq!(parse_set_reply(bad.clone()).err(), Some(bad));
        assert_eq!(parse_set_reply(vec![]).err(), Some(vec![]));
    }

    #[test]
    fn loaded_reply_shapes() {
        let (counts, gone) =
            parse_loaded_reply(vec![Int(1), Int(2), Int(0), Int(1), bulk("k"), bulk("v"), bulk("j"), bulk("w")])
                .unwrap();
        assert_eq!(counts, (1, 2, 0, 1));
        assert_eq!(gone, vec![pair("k", "v"), pair("j", "w")]);
        let bad = vec![Int(1), Int(2), Int(0)];
        assert_eq!(parse_loaded_reply(bad.clone()).err(), Some(bad), "three counts where four are due");
        let bad = vec![Int(1), Int(2), Int(0), bulk("1")];
        assert_eq!(parse_loaded_reply(bad.clone()).err(), Some(bad));
    }
}
