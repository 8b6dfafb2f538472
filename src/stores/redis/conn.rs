//! The connection a [`RedisStore`](super::RedisStore) talks through: one
//! multiplexed connection to a single Redis, or redis-rs's cluster client,
//! which routes each command by its first key's slot and follows `MOVED` and
//! `ASK` redirections, slot moves and failovers by itself.
//!
//! Single node or cluster is decided here, once: the rest of the store asks
//! this type what a topology allows ([`Conn::may_be_migrating`],
//! [`Conn::declares_absent_keys`], [`Conn::count_keys_in_slot`], ...) and
//! never branches on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::failure::{Cause, Failure, backend};
use crate::errors::Result;

/// The least time between two [`nudge`]s of a cluster store.
const NUDGE_EVERY: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A master of a cluster, as `CLUSTER SLOTS` names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Node {
    pub host: String,
    pub port: u16,
}

/// Who serves which slots: `(first slot, last slot, master)`, sorted (empty
/// for a single Redis), and whether a master reports a slot migrating or
/// importing (a slot whose keys are on two masters for now).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Topology {
    pub ranges: Vec<(u16, u16, Node)>,
    /// Every node `CLUSTER SLOTS` lists, masters and replicas, sorted.
    pub nodes: Vec<Node>,
    pub moving: bool,
}

impl Conn {
    fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    /// Whether a script that failed with `failure` may have failed because
    /// its slot is migrating (a cluster only): Redis refused it (`TRYAGAIN`,
    /// `ASK`), or the round trip timed out, which is what redis-rs's retries
    /// of `TRYAGAIN` end in. The caller then falls back to plain commands,
    /// which follow a migration; after a timeout on a hung master the
    /// fallback times out too, so such a call can take two timeouts.
    pub fn may_be_migrating(&self, failure: &Failure) -> bool {
        self.is_cluster() && matches!(failure.cause, Cause::Redirect | Cause::Elapsed)
    }

    /// Whether a pipeline failed because a key of it was redirected (a
    /// cluster only): redis-rs follows `ASK` for a command, not inside a
    /// pipeline, so the caller sends the commands apart.
    pub fn redirected(&self, failure: &Failure) -> bool {
        self.is_cluster() && failure.cause == Cause::Redirect
    }

    /// Whether a script may declare a key that may not exist (an optional
    /// lock): not on a cluster, where Redis refuses (`TRYAGAIN`) a script
    /// whose declared keys are not all on one master while the slot
    /// migrates, and an absent key is on neither.
    pub fn declares_absent_keys(&self) -> bool {
        !self.is_cluster()
    }

    /// How many keys `slot` holds (`CLUSTER COUNTKEYSINSLOT`), on a cluster,
    /// where a slot's keys can be listed straight from it; `None` on a single
    /// Redis, without a round trip.
    pub async fn count_keys_in_slot(&mut self, slot: u16) -> RedisResult<Option<u64>> {
        if !self.is_cluster() {
            return Ok(None);
        }
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("COUNTKEYSINSLOT").arg(slot);
        self.on_slot(slot, &cmd).await.map(Some)
    }

    /// After a call timed out, on a cluster: starts a [`nudge`] about `key`
    /// (at most one per [`NUDGE_EVERY`]; `last` holds when the last one
    /// started, `now` the time, both in ms since the store was built, 0 for
    /// never), so that the client learns if the master that did not answer
    /// has been replaced. Any key will do: one `MOVED` makes the client
    /// refresh its whole slot map.
    pub fn after_timeout(&self, last: &AtomicU64, now: u64, key: &[u8], timeout: Duration) {
        if !self.is_cluster() {
            return;
        }
        // A time is stored as at least 1: 0 means never.
        let now = now.max(1);
        let seen = last.load(Ordering::Relaxed);
        let every = u64::try_from(NUDGE_EVERY.as_millis()).unwrap_or(u64::MAX);
        if (seen != 0 && now.saturating_sub(seen) < every)
            || last.compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        tokio::spawn(nudge(self.clone(), key.to_vec(), timeout));
    }

    /// Runs `cmd` on `node` (a cluster's master), or, with no node, where
    /// the command routes itself (the only node of a single Redis).
    pub async fn on_node<T: redis::FromRedisValue>(&mut self, node: Option<&Node>, cmd: &Cmd) -> RedisResult<T> {
        match (self, node) {
            (Conn::Cluster(conn), Some(node)) => {
                let routing = SingleNodeRoutingInfo::ByAddress { host: node.host.clone(), port: node.port };
                let reply = conn.route_command(cmd.clone(), RoutingInfo::SingleNode(routing)).await?;
                redis::from_redis_value(reply).map_err(Into::into)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }

    /// Runs `cmd` on the master serving `slot` (on a single Redis, on it).
    pub async fn on_slot<T: redis::FromRedisValue>(&mut self, slot: u16, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Conn::Cluster(conn) => {
                let routing = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                let reply = conn.route_command(cmd.clone(), RoutingInfo::SingleNode(routing)).await?;
                redis::from_redis_value(reply).map_err(Into::into)
            }
            conn => cmd.query_async(conn).await,
        }
    }

    /// The cluster's slot ranges, their masters and every node (`CLUSTER
    /// SLOTS`, asked of any node); empty on a single Redis.
    pub async fn slots(&mut self) -> RedisResult<Topology> {
        if let Conn::Single(_) = self {
            return Ok(Topology::default());
        }
        let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(self).await?;
        let mut ranges = Vec::new();
        let mut nodes = Vec::new();
        let Value::Array(items) = reply else { return Err(unexpected("CLUSTER SLOTS", &reply)) };
        let text = |value: &Value| match value {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        let node = |value: &Value| {
            let Value::Array(fields) = value else { return None };
            let host = match fields.first()? {
                // `cluster-preferred-endpoint-type unknown-endpoint`: no
                // endpoint, the address is in the node's metadata.
                Value::Nil => {
                    let pairs: Vec<(&Value, &Value)> = match fields.get(3)? {
                        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
                        Value::Array(flat) => flat.chunks_exact(2).map(|kv| (&kv[0], &kv[1])).collect(),
                        _ => return None,
                    };
                    pairs.into_iter().find(|(k, _)| text(k).as_deref() == Some("ip")).and_then(|(_, v)| text(v))?
                }
                other => text(other)?,
            };
            let Value::Int(port) = fields.get(1)? else { return None };
            Some(Node { host, port: u16::try_from(*port).ok()? })
        };
        for item in &items {
            let parsed = (|| {
                let Value::Array(fields) = item else { return None };
                let (Value::Int(lo), Value::Int(hi)) = (fields.first()?, fields.get(1)?) else { return None };
                let served = fields.get(2..)?.iter().map(node).collect::<Option<Vec<Node>>>()?;
                let master = served.first()?.clone();
                nodes.extend(served);
                Some((u16::try_from(*lo).ok()?, u16::try_from(*hi).ok()?, master))
            })();
            ranges.push(parsed.ok_or_else(|| unexpected("CLUSTER SLOTS", &Value::Array(items.clone())))?);
        }
        ranges.sort();
        nodes.sort();
        nodes.dedup();
        Ok(Topology { ranges, nodes, moving: false })
    }

    /// [`slots`](Self::slots), and whether any master has a slot migrating
    /// or importing (`CLUSTER NODES` of each master: only a node itself
    /// shows its migrations).
    pub async fn topology(&mut self) -> RedisResult<Topology> {
        if let Conn::Single(_) = self {
            return Ok(Topology::default());
        }
        let mut topology = self.slots().await?;
        for node in masters(&topology) {
            let nodes: String = self.on_node(node.as_ref(), &redis::cmd("CLUSTER").arg("NODES").clone()).await?;
            // `[slot->-id]` (migrating) or `[slot-<-id]` (importing) on its own line.
            let own = nodes.lines().find(|line| line.split(' ').nth(2).is_some_and(|flags| flags.contains("myself")));
            if own.is_some_and(|line| line.contains("->-") || line.contains("-<-")) {
                topology.moving = true;
            }
        }
        Ok(topology)
    }
}

impl Topology {
    /// The master serving `slot`, if any.
    pub fn owner(&self, slot: u16) -> Option<&Node> {
        self.ranges.iter().find(|(lo, hi, _)| (*lo..=*hi).contains(&slot)).map(|(_, _, node)| node)
    }
}

/// Makes a cluster client that may be routing to a master which no longer
/// serves its slots catch up, after a call timed out: redis-rs's cluster
/// client refreshes its slot map on a `MOVED` reply or a dropped
/// connection, but a master that hangs (a stopped process, a frozen host)
/// gives neither, even after its replica took over. So ask a node that
/// answers where `key`'s slot is now, and send `EXISTS key` to a node that
/// does not serve it: its `MOVED` reply makes the client refresh. Best
/// effort, each step bounded by `timeout`.
async fn nudge(mut conn: Conn, key: Vec<u8>, timeout: Duration) {
    let slot = crate::remote::keyspace::slot(&key);
    // `CLUSTER SLOTS` goes to a random node: a few tries find one that answers.
    for _ in 0..4 {
        let Ok(Ok(topology)) = tokio::time::timeout(timeout, conn.slots()).await else { continue };
        let Some(owner) = topology.owner(slot) else { return };
        let Some(other) = topology.nodes.iter().find(|n| *n != owner) else { return };
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&key);
        let _ = tokio::time::timeout(timeout, conn.on_node::<Value>(Some(other), &cmd)).await;
        return;
    }
}

/// The distinct masters of a topology, or `[None]` (the one node) for a
/// single Redis.
pub(super) fn masters(topology: &Topology) -> Vec<Option<Node>> {
    if topology.ranges.is_empty() {
        return vec![None];
    }
    let mut nodes: Vec<Node> = topology.ranges.iter().map(|(_, _, node)| node.clone()).collect();
    nodes.sort();
    nodes.dedup();
    nodes.into_iter().map(Some).collect()
}

/// A client for the single Redis at `info`: over TLS for `rediss://`, trusting
/// `root_certificates` (PEM) instead of the webpki roots when given.
pub(super) fn single_client(
    info: redis::ConnectionInfo,
    root_certificates: Option<Vec<u8>>,
) -> RedisResult<redis::Client> {
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: root_certificates })
    } else {
        redis::Client::open(info)
    }
}

/// The client of a [`NearCache`](crate::stores::NearCache)'s invalidation
/// connection to the Redis at `url`, and that Redis's `host:port` (for
/// messages): RESP3, the protocol Redis pushes invalidations on, and TLS as
/// for the store ([`single_client`]).
pub(crate) fn tracking_client(url: &str, root_certificates: Option<Vec<u8>>) -> Result<(redis::Client, String)> {
    let info = redis::IntoConnectionInfo::into_connection_info(url)
        .map_err(|e| backend("the Redis URL is invalid".into(), e))?;
    let addr = info.addr().to_string();
    let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
    let info = info.set_redis_settings(settings);
    let client = single_client(info, root_certificates)
        .map_err(|e| backend(format!("cannot set up the invalidation client for Redis at {addr}"), e))?;
    Ok((client, addr))
}

fn unexpected(what: &str, reply: &Value) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Parse, "unexpected reply", format!("{what}: {reply:?}")))
}

impl ConnectionLike for Conn {
    #[inline]
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}
