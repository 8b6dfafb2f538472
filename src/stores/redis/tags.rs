//! Tags on Redis: a tag set per tag and bucket, listing the entries that
//! were tagged with it; the tags themselves live in the entry's document
//! (`{"t":[...],"v":...}`, see `format`), which is the truth.
//!
//! - **Layout.** The tag set of `tag` in a bucket is the Redis set
//!   `prefix + bucket tag + "\u{FFFF}" + "tag:" + tag` (a name no entry can
//!   have), whose members are the full Redis keys of the bucket's entries
//!   tagged with it. On a cluster it shares the bucket's slot with the
//!   entries, so one script reaches both: no command is ever cross-slot.
//! - **Set.** A tagged `set` writes the entry as an untagged one is written,
//!   then adds its key to its tag sets (one script, `REGISTER` in `remote/scripts.rs`), the two
//!   pipelined in that order: one round trip. An untagged `set` is still one `SET`: it leaves the key in the
//!   tag sets of its old tags, where nothing trusts it (below). Listed after
//!   the write, a key in a tag set is always one that was written (or a
//!   load's placeholder, below), so a member whose key is gone is gone for
//!   good and may be dropped; an `invalidate_tags` that runs between the
//!   write and the listing runs while the `set` is under way, and the `set`
//!   takes effect after it. If the listing fails, the entry is unlinked
//!   again (best effort) and the `set` fails.
//! - **Invalidate.** `invalidate_tags` runs one script per bucket
//!   (`INVALIDATE` in `remote/scripts.rs`; a cluster's buckets in parallel) that goes through the
//!   tag sets of the tags, unlinks each member whose document carries one of
//!   the tags (read from the document, so a key re-set without the tag, or
//!   with other tags, is left alone) and each load placeholder it finds
//!   (cancelling that load: its value is stored only while its placeholder
//!   stands), and deletes the sets. The count is of the live entries it
//!   unlinked, exact, and costs no walk of the keyspace: the work is the
//!   size of the tag sets.
//! - **Loads.** A tagged `get_or_set` (or `get_or_refresh` miss) lists its
//!   key in the tag sets in the same script that takes the key's placeholder
//!   (`GET_OR_LOCK`), so an `invalidate_tags` that comes after the load
//!   began finds the placeholder and deletes it, and the load stores nothing
//!   (the same mechanism as `invalidate(pattern)`). A load of a key that was
//!   tagged before may be cancelled so too. A refresh stores only if the
//!   entry still has the bytes it read, which an invalidation removed; what
//!   a load or refresh stored is then listed as a `set` is.
//! - **Memory.** A tag set's TTL is kept at least the longest TTL of the
//!   entries registered in it (plus [`SLACK_MS`], and the load lease), none
//!   if one of them has none; and each registration checks two random
//!   members of each of its sets and removes those whose entry is gone or no
//!   longer carries the tag (expired, evicted, deleted, re-set), so a set
//!   holds about its live members, at most about twice that. `clear` and
//!   `invalidate(pattern)` leave the tag sets (a walk of them would cost a
//!   second SCAN): their members are then stale, dropped by the TTL, by the
//!   sampling of the tag's next registrations, or by `invalidate_tags`.

use std::sync::LazyLock;

use redis::Script;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::RedisStore;
use super::call::{Name, Report, ScriptCall, flag};
use crate::errors::Result;
use crate::key::Key;
use crate::metrics::SharedCounters;
use crate::remote::{format, scripts};

/// How much longer than its entries a tag set lives (the core's, shared with JS).
pub(super) use crate::remote::SLACK_MS;

struct TagScripts {
    register: Script,
    invalidate: Script,
}

static SCRIPTS: LazyLock<TagScripts> = LazyLock::new(|| TagScripts {
    register: Script::new(&scripts::source("register_tags")),
    invalidate: Script::new(&scripts::source("invalidate_tags")),
});

impl<V> RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Lists `key`'s entry in the tag sets of `tags` (checked, not empty) for
    /// an entry living `ttl_ms` (`None`: for ever), before it is written.
    pub(super) async fn register_tags(
        &self,
        what: &str,
        key: Key<'_>,
        tags: &[String],
        ttl_ms: Option<u64>,
    ) -> Result<()> {
        let index = self.space.bucket_index(key);
        let sets: Vec<Vec<u8>> = tags.iter().map(|tag| self.space.tag_set(index, tag)).collect();
        let call = self.register_call(key, &sets, tags, ttl_ms);
        let mut conn = self.conn.clone();
        let _: u64 = self.round_trip(what, call.invoke(&mut conn)).await?;
        Ok(())
    }

    /// A tagged `set`: the write and the listing of its key in one pipeline
    /// (one round trip), in that order on the one connection. Counts a set.
    /// If Redis does not know a script: unbounded, the `SET` ran and only the
    /// listing is sent again, after loading it; bounded, either may have
    /// been refused, so both are sent again, in the same order. If the
    /// pipeline fails otherwise, the entry is unlinked (best effort): an
    /// entry carrying a tag that no set lists must not stay.
    pub(super) async fn write_tagged(
        &self,
        what: &str,
        key: Key<'_>,
        stored: &[u8],
        ttl: Option<u64>,
        idle: Option<u64>,
        tags: &[String],
    ) -> Result<()> {
        self.check_record(false);
        let index = self.space.bucket_index(key);
        let full = self.space.entry(key);
        let capacity = self.capacity(index);
        let sets: Vec<Vec<u8>> = tags.iter().map(|tag| self.space.tag_set(index, tag)).collect();
        let register = self.register_call(key, &sets, tags, ttl);
        // With a removal listener, the write is the reporting form of the
        // same script (what it replaced, and evicted), as an untagged `set`.
        let listening = self.listening();
        // The write: a script (bounded, listened, or with an idle time), or a SET.
        let (write, script) = if let Some(capacity) = &capacity {
            let [recency, expiry] = capacity.indexes();
            let script = if listening { &self.scripts.set_bounded_returning } else { &self.scripts.set_bounded };
            let mut call = ScriptCall::new(script, &[full.into(), recency, expiry], &[]);
            call.arg(stored).arg(ttl.unwrap_or(0)).capacity(capacity).arg(flag(self.sample())).arg(idle.unwrap_or(0));
            (call.into_cmd(), Some(script))
        } else if listening {
            // The idle header too, if any (see `WRITE_ENTRY`).
            let mut call = ScriptCall::new(&self.scripts.set_returning, &[full.into()], &[]);
            call.arg(stored).arg(ttl.unwrap_or(0)).arg(idle.unwrap_or(0));
            (call.into_cmd(), Some(&self.scripts.set_returning))
        } else if let Some(idle) = idle {
            // The idle header is written where Redis's clock is (`WRITE_ENTRY`).
            let mut call = ScriptCall::new(&self.scripts.set_idle, &[full.into()], &[]);
            call.arg(stored).arg(ttl.unwrap_or(0)).arg(idle);
            (call.into_cmd(), Some(&self.scripts.set_idle))
        } else {
            let mut cmd = redis::cmd("SET");
            cmd.arg(full).arg(stored);
            if let Some(ms) = ttl {
                cmd.arg("PX").arg(ms);
            }
            (cmd, None)
        };
        let register = register.into_cmd();
        let mut pipe = redis::pipe();
        pipe.ignore_errors().add_command(write.clone()).add_command(register.clone());
        let mut conn = self.conn.clone();
        let send = async {
            let mut replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
            let [written, listed] = &mut replies[..] else {
                return Err(redis::RedisError::from((redis::ErrorKind::Parse, "unexpected reply to a tagged write")));
            };
            // A part refused for a script Redis did not know (a flushed or
            // restarted server) is sent again alone once the script is
            // loaded; the other part ran, and is not sent twice (a write run
            // twice would report its own value as replaced).
            let refused = |v: &redis::Value| matches!(v, redis::Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript));
            if let (true, Some(script)) = (refused(written), script) {
                script.prepare_invoke().load_async(&mut conn).await?;
                *written = write.query_async(&mut conn).await?;
            }
            if refused(listed) {
                SCRIPTS.register.prepare_invoke().load_async(&mut conn).await?;
                *listed = register.query_async(&mut conn).await?;
            }
            for reply in [&*written, &*listed] {
                if let redis::Value::ServerError(e) = reply {
                    return Err(redis::RedisError::from(e.clone()));
                }
            }
            Ok((written.clone(), ()))
        };
        let (written, _) = match self.round_trip(what, send).await {
            Ok(reply) => reply,
            Err(error) => {
                let _ = self.unlink(what, index, &[&full.to_vec()]).await;
                return Err(error);
            }
        };
        SharedCounters::add(&self.counters.sets, 1);
        match (&capacity, listening) {
            (Some(capacity), true) => {
                let reply: Vec<redis::Value> =
                    redis::from_redis_value(written.clone()).map_err(|_| self.unexpected(what, &written))?;
                let (report, old, evicted) = self.set_reply(what, reply)?;
                self.settle(capacity, report).await;
                self.report_replaced(&key, old);
                self.report_removed(crate::removal::RemovalReason::Evicted, evicted);
            }
            (Some(capacity), false) => {
                let report = redis::from_redis_value::<(u64, u64, u8)>(written.clone())
                    .map_err(|_| self.unexpected(what, &written))?;
                self.settle(capacity, Report::new(report)).await;
            }
            (None, true) => {
                let old: Option<Vec<u8>> =
                    redis::from_redis_value(written.clone()).map_err(|_| self.unexpected(what, &written))?;
                self.report_replaced(&key, old);
            }
            (None, false) => {}
        }
        Ok(())
    }

    /// The listing script's call for `key` in the tag sets `sets` (of `tags`).
    fn register_call<'a>(
        &self,
        key: Key<'a>,
        sets: &'a [Vec<u8>],
        tags: &[String],
        ttl_ms: Option<u64>,
    ) -> ScriptCall<'static> {
        let names: Vec<Name<'_>> = sets.iter().map(Name::from).collect();
        let mut call = ScriptCall::new(&SCRIPTS.register, &names, &[]);
        // The set outlives the entry: its TTL starts after the registration,
        // and a load's entry after its lease at most.
        let ttl = ttl_ms.map_or(0, |ms| ms.saturating_add(SLACK_MS).saturating_add(super::ttl_millis(self.lock_lease)));
        call.arg(self.space.entry(key)).arg(ttl);
        for tag in tags {
            call.arg(tag.as_str());
        }
        call
    }

    /// Lists `key`'s entry, just written, in the tag
    /// sets of `tags`. If that fails the entry is unlinked again (best
    /// effort: a miss is harmless, an entry carrying a tag no set lists is
    /// not), and the error returned.
    pub(super) async fn register_written(
        &self,
        what: &str,
        key: Key<'_>,
        tags: &[String],
        ttl_ms: Option<u64>,
    ) -> Result<()> {
        let Err(error) = self.register_tags(what, key, tags, ttl_ms).await else { return Ok(()) };
        let full = self.space.entry(key).to_vec();
        let _ = self.unlink(what, self.space.bucket_index(key), &[&full]).await;
        Err(error)
    }

    /// [`CacheStore::invalidate_tags`](crate::store::CacheStore::invalidate_tags)
    /// on checked tags: one script per bucket, the buckets in parallel. A
    /// failure part-way may have removed the entries of some buckets: run it again.
    pub(crate) async fn invalidate_tags_checked(&self, tags: &[&str]) -> Result<usize> {
        self.check_record(false);
        let mut unique: Vec<&str> = tags.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.is_empty() {
            return Ok(0);
        }
        // The buckets `SIZE_CONCURRENCY` at a time (as `size` counts them):
        // each call's timer starts when it is sent.
        let buckets: Vec<usize> = (0..self.space.buckets().len()).collect();
        let mut removed = 0;
        for chunk in buckets.chunks(crate::remote::SIZE_CONCURRENCY) {
            let calls = chunk.iter().map(|&index| self.invalidate_tags_in(index, &unique));
            removed += futures_util::future::try_join_all(calls).await?.into_iter().sum::<usize>();
        }
        SharedCounters::add(&self.counters.deletes, removed as u64);
        Ok(removed)
    }

    /// The part of `invalidate_tags` in bucket `index`: how many entries it removed.
    async fn invalidate_tags_in(&self, index: usize, tags: &[&str]) -> Result<usize> {
        let sets: Vec<Vec<u8>> = tags.iter().map(|tag| self.space.tag_set(index, tag)).collect();
        let capacity = self.capacity(index);
        let mut names: Vec<Name<'_>> = capacity.as_ref().map_or_else(Vec::new, |c| c.indexes().to_vec());
        names.extend(sets.iter().map(Name::from));
        let mut call = ScriptCall::new(&SCRIPTS.invalidate, &names, &[]);
        // With a removal listener, the script also returns what it removed.
        let listening = self.listening();
        call.arg(flag(capacity.is_some())).arg(flag(listening));
        for tag in tags {
            call.arg(*tag);
        }
        let mut conn = self.conn.clone();
        if !listening {
            return self.round_trip("invalidate_tags", call.invoke(&mut conn)).await;
        }
        let reply: Vec<redis::Value> = self.round_trip("invalidate_tags", call.invoke(&mut conn)).await?;
        let mut items = reply.into_iter();
        let Some(redis::Value::Int(removed)) = items.next() else {
            return Err(self.unexpected("invalidate_tags", "no count"));
        };
        let mut gone = Vec::new();
        while let (Some(redis::Value::BulkString(key)), Some(redis::Value::BulkString(doc))) =
            (items.next(), items.next())
        {
            gone.push((key, doc));
        }
        self.report_removed(crate::removal::RemovalReason::Invalidated, gone);
        Ok(usize::try_from(removed).unwrap_or(0))
    }

    /// [`CacheStore::get_tags`](crate::store::CacheStore::get_tags) on a checked key.
    pub(crate) async fn get_tags_checked(&self, key: Key<'_>) -> Result<Option<Vec<String>>> {
        let stored = self.read("get_tags", self.space.entry(key)).await?;
        stored.map(|bytes| format::decode_tags(&key, &bytes)).transpose()
    }
}
