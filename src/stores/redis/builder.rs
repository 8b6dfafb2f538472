//! Connecting a [`RedisStore`]: the builder's options, and the checks `build`
//! runs before the store serves (timeouts, prefix, policy, the layout of a
//! cluster store and its recorded bucket count, Redis's eviction policy).

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conn::{self, Conn, Node, single_client};
use super::failure::{backend, timed};
use super::scripts::Scripts;
use super::{Record, RedisStore, load, tls};
use crate::errors::{CacheError, ErrorKind, Result};
use crate::metrics::SharedCounters;
use crate::policies::Policy;
use crate::remote::keyspace::{self, Keyspace, check_cluster_layout};
use crate::singleflight::SingleFlight;

/// The `maxmemory-policy` settings a bounded store knows how to live with
/// (see "Redis eviction" on [`RedisStore`]).
const KNOWN_EVICTION_POLICIES: [&str; 8] = [
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The buckets of a cluster store unless [`RedisStoreBuilder::buckets`] says
/// otherwise.
pub const DEFAULT_CLUSTER_BUCKETS: usize = keyspace::DEFAULT_BUCKETS;
/// How often redis-rs's cluster client retries a command (after `MOVED`,
/// `TRYAGAIN`, a lost node) within one round trip's timeout.
const CLUSTER_RETRIES: u32 = 16;

/// A builder's setters, written once: each `name(arg: Type) => field =
/// value;` (after its doc comment) becomes `pub fn name(mut self, arg: Type)
/// -> Self` storing `value` in `self.field`. Used by [`RedisStoreBuilder`]
/// and the near cache's builder.
macro_rules! setters {
    ($($(#[$attr:meta])* $name:ident($arg:ident: $ty:ty) => $field:ident = $value:expr;)*) => {
        $(
            $(#[$attr])*
            pub fn $name(mut self, $arg: $ty) -> Self {
                self.$field = $value;
                self
            }
        )*
    };
}
pub(crate) use setters;

/// Refuses a zero timeout (or lease, or period) among a builder's
/// `durations`, named as the builder's options are.
pub(crate) fn check_durations<const N: usize>(durations: [(&str, Duration); N]) -> Result<()> {
    match durations.iter().find(|(_, value)| value.is_zero()) {
        Some((name, value)) => Err(CacheError::Policy(format!("{name} must be greater than zero, got {value:?}"))),
        None => Ok(()),
    }
}

/// How to connect a [`RedisStore`]: made by [`RedisStore::builder`].
#[must_use]
pub struct RedisStoreBuilder<V> {
    /// One URL for a single Redis; a cluster's seed nodes otherwise.
    urls: Vec<String>,
    cluster: bool,
    /// Buckets of a cluster store (see [`RedisStoreBuilder::buckets`]).
    buckets: Option<usize>,
    prefix: String,
    policy: Option<Policy>,
    connect_timeout: Duration,
    response_timeout: Duration,
    lock_lease: Duration,
    whole_database: bool,
    root_certificates: Option<Vec<u8>>,
    listener: Option<crate::removal::RemovalListener<V>>,
    _value: PhantomData<fn() -> V>,
}

impl<V> RedisStoreBuilder<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Calls `listener` with the key, the old value and the
    /// [`RemovalReason`](crate::removal::RemovalReason) of what this process removes:
    /// its `delete` (`Deleted`), `invalidate` and `invalidate_tags`
    /// (`Invalidated`), `clear` (`Cleared`), the entry its `set` (tagged or
    /// not) replaced (`Replaced`), the stale value a `get_or_refresh`
    /// refresh replaced (`Replaced`, from the refresh's task), and the
    /// entries a bounded store's capacity script evicted to make room for
    /// that `set` or for the value a load or refresh stored (`Evicted`). Each
    /// removal is reported by the process that made it, once, after its
    /// round trip.
    ///
    /// It cannot see what it did not do: Redis's own expiry of a TTL (no
    /// `Expired`: an expired entry is gone before any script meets it; the
    /// members the capacity scripts reclaim for them are counted in
    /// `stats`, not reported), other processes' calls, Redis's `maxmemory`
    /// evictions, and what the rebuild of a lost capacity index evicts.
    /// Values that do not decode (written by something else) are not
    /// reported.
    ///
    /// With a listener, `delete`, `invalidate`, `invalidate_tags`, `clear`,
    /// `set` and a bounded store's loads read the values they remove in the
    /// same script (one round trip still); without one nothing changes. The listener runs on the calling task,
    /// with no lock held; a panic in it is caught.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> pepperpy_caching::Result<()> {
    /// use pepperpy_caching::{CacheStore, RemovalReason, SetOptions, stores::RedisStore};
    ///
    /// let store = RedisStore::<String>::builder("redis://127.0.0.1:6379")
    ///     .prefix("app:")
    ///     .on_remove(|key, value, reason| {
    ///         if reason == RemovalReason::Deleted {
    ///             println!("{key} ({value}) deleted by this process");
    ///         }
    ///     })
    ///     .build()
    ///     .await?;
    /// store.set("k", "v".to_string(), SetOptions::new()).await?;
    /// store.delete("k").await?;
    /// # Ok(()) }
    /// ```
    pub fn on_remove(
        mut self,
        listener: impl Fn(&str, V, crate::removal::RemovalReason) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    setters! {
        /// Every Redis key this store touches starts with `prefix` (default:
        /// none): a name without `:` followed by one `:`, such as `"myapp:"`
        /// (checked by [`build`](Self::build)). Stores with different prefixes
        /// never see each other's entries. See "Prefixes" on [`RedisStore`].
        prefix(prefix: impl Into<String>) => prefix = prefix.into();

        /// With an empty prefix, allow `invalidate` and `clear` to delete any key
        /// of the database, this store's or not (default: refused). Say so only
        /// when the database belongs to this store alone.
        whole_database(allowed: bool) => whole_database = allowed;

        /// The policy: [`LruPolicy`](crate::LruPolicy) or
        /// [`TtlPolicy`](crate::TtlPolicy) (default: none, no capacity and no
        /// default TTL).
        policy(policy: impl Into<Policy>) => policy = Some(policy.into());

        /// For `rediss://`: trust the CA certificates in `pem` (PEM text, one or
        /// more) instead of the webpki roots, for a Redis whose certificate comes
        /// from a private CA. Ignored for `redis://`.
        tls_root_certificates(pem: impl Into<Vec<u8>>) => root_certificates = Some(pem.into());

        /// How long connecting may take, TLS and authentication included
        /// (default 2 s).
        connect_timeout(timeout: Duration) => connect_timeout = timeout;

        /// How long one round trip may take, waiting for a reconnection included
        /// (default 1 s). A write that times out may still be applied later: see
        /// "Connection" on [`RedisStore`].
        response_timeout(timeout: Duration) => response_timeout = timeout;

        /// How long the placeholder of a `get_or_set` load (and the lock of a
        /// `get_or_refresh` refresh) lives unless its owner removes it first
        /// (default 10 s): the longest other callers wait for a loader that hangs
        /// or a process that died holding it. Make it longer than your slowest
        /// loader: a load that outlives its lease lets others load the key too,
        /// and its own value is not stored. See "Read-through loading" on
        /// [`RedisStore`].
        lock_lease(lease: Duration) => lock_lease = lease;

        /// For a store made by [`RedisStore::cluster_builder`]: how many buckets
        /// its entries are spread over (default [`DEFAULT_CLUSTER_BUCKETS`], at most
        /// 16,384). Every process sharing the prefix must use the same number:
        /// it decides where each key lives. See "Redis Cluster" on [`RedisStore`].
        buckets(buckets: usize) => buckets = Some(buckets);
    }

    /// Connects and checks that Redis answers (`PING`); for a store with a
    /// capacity, also checks Redis's `maxmemory-policy` (every master's, on
    /// a cluster). A cluster store also records its bucket count under the
    /// prefix, or checks it against the one recorded.
    ///
    /// # Errors
    /// [`CacheError::Policy`] for a zero timeout or lock lease, a prefix that
    /// breaks the prefix rule, an [`S3FifoPolicy`](crate::S3FifoPolicy), or
    /// (with a capacity) a `maxmemory-policy` the store does not know; for a
    /// single-node store, a node of a Redis Cluster; for a
    /// cluster store, also a prefix with `{` or `}`, a bucket count out of
    /// `1..=16384` or other than the one recorded for the prefix, or a
    /// capacity below the bucket count; `buckets` on a single-node builder;
    /// [`CacheError::Backend`] for a malformed URL, no tokio runtime, a
    /// `rediss://` URL without a TLS crypto provider, or a server that cannot
    /// be reached, refuses the credentials or does not answer within the
    /// connect timeout plus the response timeout.
    pub async fn build(self) -> Result<RedisStore<V>> {
        check_durations([
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
            ("lock_lease", self.lock_lease),
        ])?;
        keyspace::check_prefix(&self.prefix)?;
        if matches!(self.policy, Some(Policy::S3Fifo(_))) {
            return Err(CacheError::Policy(
                "RedisStore does not implement S3FifoPolicy (its queues would need a script per read); use LruPolicy"
                    .into(),
            ));
        }
        let policy = self.policy;
        let bound = policy.as_ref().and_then(|p| p.max_size().map(|max| (max, matches!(p, Policy::Lru(_)))));
        let space = if self.cluster {
            let buckets = self.buckets.unwrap_or(DEFAULT_CLUSTER_BUCKETS);
            check_cluster_layout(&self.prefix, buckets, bound.map(|(max, _)| max))?;
            Keyspace::clustered(&self.prefix, buckets)
        } else {
            if let Some(buckets) = self.buckets {
                return Err(CacheError::Policy(format!(
                    "buckets({buckets}) is for stores on Redis Cluster (RedisStore::cluster_builder); a store on one \
                     Redis keeps its entries in one keyspace"
                )));
            }
            Keyspace::new(&self.prefix)
        };
        let mut infos = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            infos.push(
                redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(|e| backend("the Redis URL is invalid".into(), e))?,
            );
        }
        let Some(first) = infos.first() else {
            return Err(CacheError::backend(ErrorKind::Command, "a cluster store needs at least one node URL", None));
        };
        let tls = matches!(first.addr(), redis::ConnectionAddr::TcpTls { .. });
        if infos.iter().any(|i| matches!(i.addr(), redis::ConnectionAddr::TcpTls { .. }) != tls) {
            return Err(CacheError::backend(
                ErrorKind::Command,
                "a cluster store's node URLs must all be redis:// or all rediss://",
                None,
            ));
        }
        let addr = if self.cluster {
            let nodes: Vec<String> = infos.iter().map(|i| i.addr().to_string()).collect();
            format!("cluster at {}", nodes.join(","))
        } else {
            first.addr().to_string()
        };
        if tls {
            // Before the client: redis-rs builds its rustls config right away.
            tls::ensure_provider()?;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CacheError::backend(
                ErrorKind::Command,
                "RedisStore must be built inside a tokio runtime",
                None,
            ));
        }
        let round_trip_timeout = self.response_timeout;
        let connect_and_ping = self.connect_timeout.saturating_add(self.response_timeout);
        // A cluster client that cannot connect reports every cause as I/O
        // (a refused password included, flattened into text): one plain
        // handshake with the first seed, on failure, tells which it was.
        let seed = self.cluster.then(|| infos[0].clone());
        let certificates = || redis::TlsCertificates { client_tls: None, root_cert: self.root_certificates.clone() };
        let connect = async {
            let mut conn = if self.cluster {
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(self.connect_timeout)
                    // Our own timer bounds every round trip (`round_trip`), so
                    // the client's overall timer (by default the response
                    // timeout again) would be a second timer per command for
                    // nothing. Its per-node timeout stays: without it, a
                    // refresh of the slot map that asked a hung node first
                    // would hang, and every command with it.
                    .response_timeout(self.response_timeout)
                    .overall_response_timeout(None)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(10)
                    .max_retry_wait(200);
                if tls {
                    builder = builder.tls(redis::cluster::TlsMode::Secure).certs(certificates());
                }
                let client = builder.build()?;
                Conn::Cluster(client.get_async_connection().await?)
            } else {
                let info = infos.into_iter().next().expect("one URL");
                let client = single_client(info, self.root_certificates.clone())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    // Our own timer bounds every round trip (`round_trip`).
                    .set_response_timeout(None)
                    // Few, short retries: a call waits for a reconnection at most its
                    // own timeout, and the next call starts a new one anyway.
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                Conn::Single(ConnectionManager::new_with_config(client, config).await?)
            };
            redis::cmd("PING").query_async::<redis::Value>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        let mut conn = match tokio::time::timeout(connect_and_ping, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                let e = match seed {
                    Some(seed) if e.is_io_error() => {
                        seed_cause(seed, self.root_certificates.clone(), self.connect_timeout, e).await
                    }
                    _ => e,
                };
                return Err(backend(format!("cannot connect to Redis at {addr}"), e));
            }
            Err(elapsed) => {
                return Err(CacheError::backend(
                    ErrorKind::BackendTimeout,
                    format!("Redis at {addr} did not answer within {connect_and_ping:?}"),
                    Some(Arc::new(elapsed)),
                ));
            }
        };
        if !self.cluster {
            check_not_a_cluster(&mut conn, &addr, round_trip_timeout).await?;
        }
        if bound.is_some() {
            check_eviction_policy(&mut conn, &addr, round_trip_timeout).await?;
        }
        if self.cluster {
            check_recorded_buckets(&mut conn, space.prefix(), space.buckets().len(), &addr, round_trip_timeout).await?;
        }
        let record = self.cluster.then(|| Arc::new(Record::default()));
        let refresh_on_get = matches!(&policy, Some(Policy::Lru(p)) if p.refreshes_on_get());
        Ok(RedisStore {
            conn,
            addr,
            space,
            scripts: Scripts::new(),
            default_ttl: policy.as_ref().and_then(Policy::default_ttl),
            default_idle: policy.as_ref().and_then(Policy::default_idle),
            policy,
            bound,
            whole_database: self.whole_database,
            sets_seen: AtomicU64::new(0),
            refresh_on_get,
            round_trip_timeout,
            lock_lease: self.lock_lease,
            flights: SingleFlight::default(),
            refreshing: Default::default(),
            counters: SharedCounters::default(),
            created: Instant::now(),
            last_nudge: AtomicU64::new(0),
            record,
            listener: self.listener,
            _value: PhantomData,
        })
    }
}

/// The cause of a cluster client's failed connection, if a plain handshake
/// with `seed` (same credentials) shows one that is not I/O, such as a
/// refused password; otherwise the client's own error.
async fn seed_cause(
    seed: redis::ConnectionInfo,
    root_certificates: Option<Vec<u8>>,
    timeout: Duration,
    cluster_error: redis::RedisError,
) -> redis::RedisError {
    let Ok(client) = single_client(seed, root_certificates) else { return cluster_error };
    match tokio::time::timeout(timeout, client.get_multiplexed_async_connection()).await {
        Ok(Err(e)) if !e.is_io_error() => e,
        _ => cluster_error,
    }
}

/// Records a cluster store's bucket count under its prefix if none is, and
/// refuses one that differs from the recorded count: two processes that
/// disagree on it would look for the same key in different places, and one
/// could serve a value the other has replaced.
pub(super) async fn check_recorded_buckets(
    conn: &mut Conn,
    prefix: &str,
    count: usize,
    addr: &str,
    timeout: Duration,
) -> Result<()> {
    let key = keyspace::record_key(prefix);
    let exchange = async {
        let _: redis::Value = redis::cmd("SET").arg(&key).arg(count).arg("NX").query_async(conn).await?;
        redis::cmd("GET").arg(&key).query_async::<Option<String>>(conn).await
    };
    let recorded = timed("recording the bucket count", addr, timeout.saturating_mul(2), exchange).await?;
    match recorded {
        Some(recorded) if recorded != count.to_string() => Err(CacheError::Policy(format!(
            "the prefix {:?} is used on this cluster with buckets({recorded}), not {count}: every process sharing \
             a prefix must use the same count (or use a new prefix)",
            prefix
        ))),
        _ => Ok(()),
    }
}

/// Refuses a node of a Redis Cluster for a single-node store: it would hold
/// only some slots and answer `MOVED` for the rest. A server that forbids
/// `INFO` is taken as it is.
async fn check_not_a_cluster(conn: &mut Conn, addr: &str, timeout: Duration) -> Result<()> {
    let mut cmd = redis::cmd("INFO");
    let asked = cmd.arg("cluster").query_async::<String>(conn);
    if let Ok(Ok(info)) = tokio::time::timeout(timeout, asked).await
        && info.lines().any(|line| line.trim() == "cluster_enabled:1")
    {
        return Err(CacheError::Policy(format!(
            "Redis at {addr} is a node of a Redis Cluster: build the store with RedisStore::cluster_builder"
        )));
    }
    Ok(())
}

/// Refuses a `maxmemory-policy` a bounded store does not know. A server that
/// forbids `CONFIG` (managed services rename it, ACLs may deny it) is taken
/// as it is.
async fn check_eviction_policy(conn: &mut Conn, addr: &str, timeout: Duration) -> Result<()> {
    let topology = timed("CLUSTER SLOTS", addr, timeout, conn.topology()).await?;
    for node in conn::masters(&topology) {
        let addr = node.as_ref().map_or_else(|| addr.to_string(), |n| format!("{}:{}", n.host, n.port));
        check_node_eviction_policy(conn, node.as_ref(), &addr, timeout).await?;
    }
    Ok(())
}

/// [`check_eviction_policy`] of one node.
async fn check_node_eviction_policy(conn: &mut Conn, node: Option<&Node>, addr: &str, timeout: Duration) -> Result<()> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    let asked = async {
        match conn.on_node::<std::collections::HashMap<String, String>>(node, &cmd).await {
            // CONFIG renamed or disabled (managed services), or not granted by ACL.
            Err(e)
                if matches!(
                    e.kind(),
                    redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError | redis::ServerErrorKind::NoPerm)
                ) =>
            {
                Ok(None)
            }
            other => other.map(Some),
        }
    };
    let Some(reply) = timed("CONFIG GET maxmemory-policy", addr, timeout, asked).await? else { return Ok(()) };
    match reply.get("maxmemory-policy") {
        Some(setting) if !KNOWN_EVICTION_POLICIES.contains(&setting.as_str()) => Err(CacheError::Policy(format!(
            "Redis at {addr} has maxmemory-policy {setting:?}, which a RedisStore with a capacity does not \
             support; supported: {}",
            KNOWN_EVICTION_POLICIES.join(", ")
        ))),
        _ => Ok(()),
    }
}

impl<V> RedisStore<V>
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A builder for a store on the Redis at `url` (`redis://` or `rediss://`,
    /// with an optional `:password@` or `user:password@` and `/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder<V> {
        Self::new_builder(vec![url.into()], false)
    }

    /// A builder for a store on Redis Cluster, reached through any of
    /// `urls` (`redis://` or `rediss://` URLs of some of its nodes: the
    /// client learns the rest). Same options as [`builder`](Self::builder),
    /// and [`buckets`](RedisStoreBuilder::buckets); see "Redis Cluster" on
    /// [`RedisStore`].
    pub fn cluster_builder<I, S>(urls: I) -> RedisStoreBuilder<V>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::new_builder(urls.into_iter().map(Into::into).collect(), true)
    }

    fn new_builder(urls: Vec<String>, cluster: bool) -> RedisStoreBuilder<V> {
        RedisStoreBuilder {
            urls,
            cluster,
            buckets: None,
            prefix: String::new(),
            policy: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            lock_lease: load::DEFAULT_LOCK_LEASE,
            whole_database: false,
            root_certificates: None,
            listener: None,
            _value: PhantomData,
        }
    }
}
