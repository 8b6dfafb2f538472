//! Script calls: the one builder of every `EVALSHA` the store sends (the
//! script, its keys in this store's layout, its arguments), and what a
//! bounded store's scripts report about a bucket's index, read in one place.

use redis::{Cmd, FromRedisValue, RedisResult, RedisWrite, Script, ToRedisArgs};

use super::conn::Conn;
use crate::remote::keyspace::{Bucket, Entry};

/// A Redis key a script declares: an entry (written straight from its
/// parts) or a key the caller holds as bytes (an index, a lock).
#[derive(Clone, Copy)]
pub(super) enum Name<'a> {
    Entry(Entry<'a>),
    Raw(&'a [u8]),
}

impl<'a> From<Entry<'a>> for Name<'a> {
    fn from(entry: Entry<'a>) -> Self {
        Name::Entry(entry)
    }
}

impl<'a> From<&'a [u8]> for Name<'a> {
    fn from(raw: &'a [u8]) -> Self {
        Name::Raw(raw)
    }
}

impl<'a> From<&'a Vec<u8>> for Name<'a> {
    fn from(raw: &'a Vec<u8>) -> Self {
        Name::Raw(raw)
    }
}

impl ToRedisArgs for Name<'_> {
    #[inline]
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        match self {
            Name::Entry(entry) => entry.write_redis_args(out),
            Name::Raw(raw) => raw.write_redis_args(out),
        }
    }
}

impl ToRedisArgs for Entry<'_> {
    /// The key written whole into the command's next argument, from its
    /// parts (no intermediate string).
    #[inline]
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        for part in self.parts() {
            // Writing to a command buffer cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

/// `"1"` or `"0"`, the scripts' flags.
#[inline]
pub(super) fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

/// `EVALSHA <sha> <number of keys> <keys...> <args...>`, written straight
/// into one command (redis-rs's `ScriptInvocation` copies every key and
/// argument into vectors of its own first), and sent by
/// [`invoke`](Self::invoke), which loads the script first if Redis does not
/// know it (after a restart or `SCRIPT FLUSH`).
pub(super) struct ScriptCall<'s> {
    script: &'s Script,
    cmd: Cmd,
}

impl<'s> ScriptCall<'s> {
    /// A call of `script` declaring `keys`, then the entries of `page` (a
    /// walk's page: none for most scripts). Arguments follow with [`arg`](Self::arg).
    #[inline]
    pub fn new(script: &'s Script, keys: &[Name<'_>], page: &[&[u8]]) -> Self {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len() + page.len());
        for key in keys {
            cmd.arg(key);
        }
        for key in page {
            cmd.arg(*key);
        }
        ScriptCall { script, cmd }
    }

    #[inline]
    pub fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    /// The arguments that tell a bounded store's script the capacity of the
    /// call's bucket: its share of `max_size`, and LRU (`"1"`) or TTL (`"0"`).
    #[inline]
    pub fn capacity(&mut self, capacity: &Capacity<'_>) -> &mut Self {
        self.arg(capacity.share).arg(flag(capacity.lru))
    }

    /// The command, for a pipeline of calls of several scripts (whose
    /// sender loads the scripts Redis does not know).
    pub fn into_cmd(self) -> Cmd {
        self.cmd
    }

    /// Sends the call, loading the script first if Redis does not know it.
    pub async fn invoke<T: FromRedisValue>(&self, conn: &mut Conn) -> RedisResult<T> {
        match self.cmd.query_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script.prepare_invoke().load_async(conn).await?;
                self.cmd.query_async(conn).await
            }
            other => other,
        }
    }
}

/// Calls of one script sent together in one pipeline (one round trip;
/// the batch calls), loading the script first if Redis does not know it.
pub(super) struct ScriptPipe<'s> {
    script: &'s Script,
    pipe: redis::Pipeline,
}

impl<'s> ScriptPipe<'s> {
    pub fn new(script: &'s Script) -> Self {
        ScriptPipe { script, pipe: redis::pipe() }
    }

    /// Adds a call (of this pipeline's script).
    pub fn push(&mut self, call: ScriptCall<'_>) {
        debug_assert_eq!(call.script.get_hash(), self.script.get_hash());
        self.pipe.add_command(call.cmd);
    }

    /// Sends the calls, loading the script first if Redis does not know it
    /// (then none of them ran: every call of the pipeline is refused alike).
    pub async fn invoke<T: FromRedisValue>(&self, conn: &mut Conn) -> RedisResult<T> {
        match self.pipe.query_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script.prepare_invoke().load_async(conn).await?;
                self.pipe.query_async(conn).await
            }
            other => other,
        }
    }
}

/// A bounded store's capacity as one call sees it: the bucket the call's
/// key falls in (on a single Redis, the only one) and what it may hold.
pub(super) struct Capacity<'a> {
    pub index: usize,
    pub bucket: &'a Bucket,
    /// The bucket's share of `max_size`.
    pub share: usize,
    /// LRU (the recency index is the members) or TTL (the expiry index is).
    pub lru: bool,
}

impl Capacity<'_> {
    /// The index whose members are the bucket's entries.
    pub fn members(&self) -> &[u8] {
        if self.lru { &self.bucket.recency } else { &self.bucket.expiry }
    }

    /// The bucket's two indexes, as a script declares them.
    pub fn indexes(&self) -> [Name<'_>; 2] {
        [(&self.bucket.recency).into(), (&self.bucket.expiry).into()]
    }
}

/// What a bounded store's scripts report about a bucket's index: the
/// entries they reclaimed (their TTL had passed, or Redis had removed them
/// behind the store's back), the entries they evicted, and whether they
/// found the index lost (its sentinel gone: the index must be rebuilt).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Report {
    pub expired: u64,
    pub evicted: u64,
    pub lost: bool,
}

impl Report {
    /// `{expired, evicted, lost}`, what `set_bounded` returns.
    pub fn new((expired, evicted, lost): (u64, u64, u8)) -> Self {
        Report { expired, evicted, lost: lost == 1 }
    }
}

#[cfg(test)]
mod tests {
    use crate::key::Key;
    use crate::remote::keyspace::{Keyspace, slot};

    #[test]
    fn entries_are_written_whole_into_commands() {
        let space = Keyspace::new("app:");
        let mut cmd = redis::cmd("GET");
        cmd.arg(space.entry(Key::new("k:1").unwrap()));
        assert_eq!(
            cmd.args_iter().nth(1).map(|a| format!("{a:?}")),
            Some(format!("{:?}", redis::Arg::Simple(&b"app:k:1"[..])))
        );
    }

    #[test]
    fn slots_are_redis_cluster_slots() {
        use redis::cluster_routing::Slot;
        for key in ["", "a", "foo", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "{}x", "a{b", "日本{x}"] {
            assert_eq!(Slot::new(slot(key.as_bytes())), Some(Slot::for_key(key)), "{key:?}");
        }
    }
}
