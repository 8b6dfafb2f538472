//! The near cache's invalidation connection: a RESP3 connection with
//! `CLIENT TRACKING ... BCAST PREFIX` on, whose push messages go to the local
//! layer; the heartbeat that checks it (and the database markers that reveal
//! a `SWAPDB`), and the reconnection after it is lost.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo};

use super::local::{Scope, Shared};

/// The first wait between reconnection attempts; it doubles up to [`MAX_BACKOFF`].
pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How to open the invalidation connection.
pub(super) struct Link {
    pub(super) client: redis::Client,
    pub(super) prefix: Vec<u8>,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Duration,
    /// This instance's marker keys in the database: see [`Link::check_database`].
    pub(super) sentinels: Vec<Vec<u8>>,
}

/// How long the marker keys live; they are written again after half of it.
const SENTINEL_TTL: Duration = Duration::from_secs(3600);

/// How many marker keys an instance keeps. Under `maxmemory` with an
/// eviction policy Redis evicts a marker as readily as any entry (its LRU
/// clock ticks once a second, so the heartbeat's reads barely protect it):
/// with one marker, a probe (3 MB, `allkeys-lru`, ~6,000 writes/s, 100 ms
/// heartbeat) found it evicted, and emptied memory for nothing, at 5 of 30
/// heartbeats. Memory is emptied only when every
/// marker is gone (what `SWAPDB` and `FLUSHDB` do); a heartbeat that finds
/// some restores the others in the same script.
const SENTINELS: usize = 3;

/// Counts the markers present (`KEYS`); if any is, this is still the
/// database they were written in, and the missing ones are written again
/// (all of them when `ARGV[2]` is `1`: the renewal), with the TTL `ARGV[1]`.
/// A script, so that no `SWAPDB` can come between the count and the writes.
const CHECK_SENTINELS: &str = r"
local present = {}
local n = 0
for i, key in ipairs(KEYS) do
  present[i] = redis.call('EXISTS', key) == 1
  if present[i] then n = n + 1 end
end
if n > 0 then
  for i, key in ipairs(KEYS) do
    if ARGV[2] == '1' or not present[i] then redis.call('SET', key, 1, 'PX', ARGV[1]) end
  end
end
return n
";

/// This instance's marker key names: `prefix + MARKER + "near:" + token + ":" + i`
/// (MARKER: U+FFFF, see `remote::keyspace`).
pub(super) fn sentinel_names(prefix: &[u8], token: u64) -> Vec<Vec<u8>> {
    (0..SENTINELS)
        .map(|i| [prefix, crate::remote::keyspace::MARKER, b"near:", format!("{token:016x}:{i}").as_bytes()].concat())
        .collect()
}

impl Link {
    /// A RESP3 connection with broadcast tracking on the prefix, whose
    /// messages go to `shared` tagged with `session`.
    pub(super) async fn connect<V: Clone + Send + Sync + 'static>(
        &self,
        shared: Weak<Shared<V>>,
        session: u64,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let sender = move |info: PushInfo| {
            if let Some(shared) = shared.upgrade() {
                shared.on_push(session, info);
            }
            Ok::<(), std::convert::Infallible>(())
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // Our own timers bound every round trip.
            .set_response_timeout(None)
            .set_push_sender(sender);
        let within = self.connect_timeout.saturating_add(self.response_timeout);
        let connect = async {
            let mut conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
            let mut tracking = redis::cmd("CLIENT");
            tracking.arg("TRACKING").arg("ON").arg("BCAST");
            if !self.prefix.is_empty() {
                tracking.arg("PREFIX").arg(&self.prefix);
            }
            tracking.query_async::<()>(&mut conn).await?;
            self.mark_database(&mut conn).await?;
            Ok(conn)
        };
        tokio::time::timeout(within, connect).await.unwrap_or_else(|_| {
            Err(redis::RedisError::from((redis::ErrorKind::Io, "no answer within the connect and response timeouts")))
        })
    }
}

impl Link {
    /// Writes this instance's marker keys (`prefix + MARKER + "near:" + a random
    /// token + ":" + i`, names no entry can have and no walk of the prefix
    /// lists), in one transaction.
    async fn mark_database(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let ttl = u64::try_from(SENTINEL_TTL.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for name in &self.sentinels {
            pipe.cmd("SET").arg(name).arg(1).arg("PX").arg(ttl).ignore();
        }
        pipe.query_async::<()>(conn).await
    }

    /// Whether the database this instance caches is still the one it marked.
    /// Redis reports `FLUSHDB` and `FLUSHALL` to tracking clients, but not
    /// `SWAPDB` (nor a database loaded on a replica without a flush): the
    /// keys then change with no message at all. The markers go with their
    /// database, so their absence is noticed at the next heartbeat; one
    /// still there proves the database is the same (they are written only
    /// in it), and the others, evicted, are written again. With `renew`,
    /// all get their full TTL again.
    async fn check_database(&self, conn: &mut MultiplexedConnection, renew: bool) -> redis::RedisResult<bool> {
        let ttl = u64::try_from(SENTINEL_TTL.as_millis()).unwrap_or(u64::MAX);
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(CHECK_SENTINELS));
        let mut script = SCRIPT.prepare_invoke();
        for name in &self.sentinels {
            script.key(name);
        }
        script.arg(ttl).arg(if renew { "1" } else { "0" });
        script.invoke_async::<i64>(conn).await.map(|n| n > 0)
    }
}

/// Keeps the invalidation connection up: watches it (loss reported by the
/// push handler, or a heartbeat check unanswered) and reconnects. The
/// heartbeat also checks the database markers: if all are gone (`SWAPDB`,
/// `FLUSHDB`), memory is emptied and the markers written again.
pub(super) async fn keep_tracking<V: Clone + Send + Sync + 'static>(
    shared: Arc<Shared<V>>,
    link: Link,
    mut conn: MultiplexedConnection,
    mut session: u64,
    heartbeat: Duration,
) {
    // When the markers were last written (by `connect`, just before).
    let mut marked = Instant::now();
    loop {
        loop {
            tokio::select! {
                () = shared.lost.notified() => {
                    // A wake-up left by an older connection changes nothing.
                    if !shared.is_up(session) {
                        break;
                    }
                }
                () = tokio::time::sleep(heartbeat) => {
                    let renew = marked.elapsed() >= SENTINEL_TTL / 2;
                    let checked = tokio::time::timeout(heartbeat, link.check_database(&mut conn, renew)).await;
                    let same = match checked {
                        Ok(Ok(same)) => same,
                        _ => {
                            shared.down(session);
                            break;
                        }
                    };
                    if same && renew {
                        marked = Instant::now();
                    }
                    if !same {
                        // Everything in memory may belong to another database now.
                        shared.forget(&Scope::All);
                        let marking = tokio::time::timeout(heartbeat, link.mark_database(&mut conn)).await;
                        if !matches!(marking, Ok(Ok(()))) {
                            shared.down(session);
                            break;
                        }
                        marked = Instant::now();
                    }
                }
            }
        }
        drop(conn);
        let mut backoff = MIN_BACKOFF;
        conn = loop {
            session += 1;
            match link.connect(Arc::downgrade(&shared), session).await {
                Ok(conn) if shared.go_up(session, conn.clone()) => {
                    marked = Instant::now();
                    break conn;
                }
                _ => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_database_marker_is_written_checked_and_renewed_only_if_present() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("pepperpy-near-marker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/setup.sh installs it)");
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = loop {
            match client.get_multiplexed_async_connection().await {
                Ok(conn) => break conn,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let link = Link {
            client: client.clone(),
            prefix: b"p:".to_vec(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            sentinels: sentinel_names(b"p:", 7),
        };
        let count = |mut conn: MultiplexedConnection| {
            let names = link.sentinels.clone();
            async move { redis::cmd("EXISTS").arg(names).query_async::<usize>(&mut conn).await.unwrap() }
        };
        assert!(!link.check_database(&mut conn, false).await.unwrap());
        assert!(!link.check_database(&mut conn, true).await.unwrap(), "not written back when gone");
        assert_eq!(count(conn.clone()).await, 0);
        link.mark_database(&mut conn).await.unwrap();
        assert_eq!(count(conn.clone()).await, SENTINELS);
        assert!(link.check_database(&mut conn, false).await.unwrap());
        // Evicted markers but one: the same database, and the others are back.
        let _: () = redis::cmd("DEL").arg(&link.sentinels[1..]).query_async(&mut conn).await.unwrap();
        assert!(link.check_database(&mut conn, false).await.unwrap());
        assert_eq!(count(conn.clone()).await, SENTINELS);
        let _: () = redis::cmd("PEXPIRE").arg(&link.sentinels[0]).arg(60_000).query_async(&mut conn).await.unwrap();
        assert!(link.check_database(&mut conn, true).await.unwrap());
        let ttl: i64 = redis::cmd("PTTL").arg(&link.sentinels[0]).query_async(&mut conn).await.unwrap();
        assert!(ttl > 3_000_000, "a full hour again: {ttl} ms");
        let _: () = redis::cmd("SWAPDB").arg(0).arg(1).query_async(&mut conn).await.unwrap();
        assert!(!link.check_database(&mut conn, false).await.unwrap(), "gone with its database");
        assert_eq!(count(conn.clone()).await, 0, "nothing written into the database swapped in");
        let _ = server.kill();
        let _ = server.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
