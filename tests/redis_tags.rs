//! Tags on Redis, what the store suite cannot show: two stores on one prefix
//! (two processes) where one invalidates and the other must not see the
//! entry; a load of another process in flight; the stored form and the
//! tag sets' memory (TTL, stale members cleaned); a cluster whose tagged
//! entries span slots and masters; hostile documents under the prefix.
#![cfg(all(feature = "redis", feature = "tokio", not(target_arch = "wasm32")))]

mod support;

use std::sync::Arc;
use std::time::Duration;

use pepperpy_caching::{CacheStore, LruPolicy, RefreshOptions, SetOptions, TokioRuntime, stores::RedisStore};
use support::{RedisCluster, RedisServer, leased_store, redis_store as store, sorted, within};

fn tagged(tags: &[&str]) -> SetOptions {
    SetOptions::new().tags(tags.iter().copied())
}

async fn scard(conn: &mut redis::aio::MultiplexedConnection, key: &[u8]) -> u64 {
    redis::cmd("SCARD").arg(key).query_async(conn).await.unwrap()
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &[u8]) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn an_invalidation_by_one_process_hides_the_entries_from_every_other() {
    let server = RedisServer::start();
    for policy in [None, Some(LruPolicy::new(100).unwrap().into())] {
        let prefix = if policy.is_some() { "two-lru:" } else { "two:" };
        let a: RedisStore<String> = store(&server, prefix, policy.clone()).await;
        let b: RedisStore<String> = store(&server, prefix, policy).await;
        a.set("page:1", "p1".into(), tagged(&["user:42", "team:7"])).await.unwrap();
        a.set("page:2", "p2".into(), tagged(&["team:7"])).await.unwrap();
        b.set("page:3", "p3".into(), tagged(&["user:42"])).await.unwrap();
        a.set("page:4", "p4".into(), SetOptions::new()).await.unwrap();
        assert_eq!(b.get("page:1").await.unwrap().as_deref(), Some("p1"), "b sees a's entry");
        assert_eq!(b.get_tags("page:1").await.unwrap(), Some(vec!["user:42".into(), "team:7".into()]));
        assert_eq!(b.invalidate_tags(&["user:42"]).await.unwrap(), 2, "page:1 (a's) and page:3 (b's)");
        for store in [&a, &b] {
            assert_eq!(store.get("page:1").await.unwrap(), None);
            assert_eq!(store.get("page:3").await.unwrap(), None);
            assert_eq!(store.get("page:2").await.unwrap().as_deref(), Some("p2"));
        }
        assert_eq!(a.invalidate_tags(&["team:7", "user:42"]).await.unwrap(), 1);
        assert_eq!(sorted(b.keys(None).await.unwrap()), ["page:4"]);
        assert_eq!(b.size().await.unwrap(), 1);
    }
}

#[tokio::test]
async fn a_load_of_another_process_in_flight_stores_nothing() {
    let server = RedisServer::start();
    let a = leased_store(&server, "flight:", None, Duration::from_secs(10)).await;
    let b = leased_store(&server, "flight:", None, Duration::from_secs(10)).await;
    let (started, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let load = {
        let (a, started, release) = (Arc::clone(&a), Arc::clone(&started), Arc::clone(&release));
        tokio::spawn(async move {
            let loader = || async move {
                started.notify_one();
                release.notified().await;
                "loaded before".to_string()
            };
            a.get_or_set("user:1", loader, tagged(&["user:1"])).await
        })
    };
    within("the loader to start", started.notified()).await;
    assert_eq!(b.invalidate_tags(&["user:1"]).await.unwrap(), 0, "a placeholder is no entry");
    release.notify_one();
    assert_eq!(within("the load", load).await.unwrap().unwrap(), "loaded before");
    assert_eq!(a.get("user:1").await.unwrap(), None, "the load that began before stored nothing");
    assert_eq!(b.get("user:1").await.unwrap(), None);
    // A refresh in flight in one process, an invalidation in another.
    let options = RefreshOptions::new(TokioRuntime, Duration::from_millis(100), Duration::from_secs(60))
        .retry_after(Duration::from_secs(60))
        .tags(["product:1"]);
    let v = a.get_or_refresh("p", || async { Ok::<_, std::io::Error>("v1".to_string()) }, &options).await;
    assert_eq!(v.unwrap(), "v1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (started, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let loader = {
        let (started, release) = (Arc::clone(&started), Arc::clone(&release));
        move || async move {
            started.notify_one();
            release.notified().await;
            Ok::<_, std::io::Error>("v2".to_string())
        }
    };
    assert_eq!(a.get_or_refresh("p", loader, &options).await.unwrap(), "v1", "stale while it refreshes");
    within("the refresh to start", started.notified()).await;
    assert_eq!(b.invalidate_tags(&["product:1"]).await.unwrap(), 1);
    release.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.get("p").await.unwrap(), None, "the refresh stored nothing");
}

#[tokio::test]
async fn the_stored_form_and_the_tag_sets_memory() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let store: RedisStore<u32> = store(&server, "mem:", None).await;
    store.set("k", 1, tagged(&["a\"b", "c"]).ttl(Duration::from_secs(100))).await.unwrap();
    let doc: String = redis::cmd("GET").arg("mem:k").query_async(&mut conn).await.unwrap();
    assert_eq!(doc, r#"{"t":["a\"b","c"],"v":1}"#);
    // The tag set lives at least as long as its entry, not for ever.
    let ttl = pttl(&mut conn, "mem:\u{FFFF}tag:c".as_bytes()).await;
    assert!((100_000..=100_000 + 60_000 + 10_000).contains(&ttl), "{ttl}");
    store.set("forever", 2, tagged(&["c"])).await.unwrap();
    assert_eq!(pttl(&mut conn, "mem:\u{FFFF}tag:c".as_bytes()).await, -1, "an entry without a TTL keeps its tag set");
    // update_metadata keeps the tags.
    assert!(store.update_metadata("k", support::meta(serde_json::json!({"m": 1}))).await.unwrap());
    assert_eq!(store.get_tags("k").await.unwrap(), Some(vec!["a\"b".into(), "c".into()]));

    // Entries that leave (deleted, re-set without the tag, expired) are cleaned from the set
    // by the registrations that follow: it does not grow with the keys ever tagged.
    for i in 0..100 {
        store.set(&format!("re-set:{i}"), i, tagged(&["busy"])).await.unwrap();
        store.set(&format!("re-set:{i}"), i, SetOptions::new()).await.unwrap();
    }
    // The expiring ones last, with a TTL longer than their loop on a loaded machine: while
    // they are registered they are live (each registration samples the set and drops what
    // has left), and no registration runs between their expiry and `before`.
    for i in 0..200 {
        store.set(&format!("gone:{i}"), i, tagged(&["busy"]).ttl(Duration::from_secs(2))).await.unwrap();
    }
    // Past the last one's expiry: all 200 are stale before the rounds below sample the set.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    // (The registrations so far have sampled some re-set ones away already.)
    let before = scard(&mut conn, "mem:\u{FFFF}tag:busy".as_bytes()).await;
    assert!(before >= 60, "the stale members are there until cleaned: {before}");
    for round in 0..400 {
        store.set("live", round, tagged(&["busy"])).await.unwrap();
    }
    let left = scard(&mut conn, "mem:\u{FFFF}tag:busy".as_bytes()).await;
    assert!(left < 40 && left < before / 3, "stale members are dropped by sampling: {left} left of {before}");
    assert_eq!(store.invalidate_tags(&["busy"]).await.unwrap(), 1, "only the live one counts");
    assert_eq!(scard(&mut conn, "mem:\u{FFFF}tag:busy".as_bytes()).await, 0, "the set is gone with the invalidation");
}

#[tokio::test]
async fn hostile_documents_under_the_prefix_are_not_miscounted() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    let store: RedisStore<String> = store(&server, "hostile:", None).await;
    store.set("real", "r".into(), tagged(&["t"])).await.unwrap();
    // Listed in the tag set, but written by someone else: not our tags, a broken
    // array, another type. None is counted or deleted, none breaks the call.
    for (key, doc) in [
        ("foreign", r#"{"v":"x","t":["t"]}"#),
        ("broken", r#"{"t":["t",],"v":1}"#),
        ("text", "not json"),
        ("quoted", r#"{"t":["x\"],\"v\":"],"v":1}"#),
    ] {
        let raw = format!("hostile:{key}");
        redis::cmd("SET").arg(&raw).arg(doc).exec_async(&mut conn).await.unwrap();
        redis::cmd("SADD").arg("hostile:\u{FFFF}tag:t".as_bytes()).arg(&raw).exec_async(&mut conn).await.unwrap();
    }
    redis::cmd("SADD").arg("hostile:\u{FFFF}tag:t".as_bytes()).arg("hostile:list").exec_async(&mut conn).await.unwrap();
    redis::cmd("RPUSH").arg("hostile:list").arg("x").exec_async(&mut conn).await.unwrap();
    assert_eq!(store.invalidate_tags(&["t"]).await.unwrap(), 1, "only the real one");
    for key in ["hostile:foreign", "hostile:broken", "hostile:text", "hostile:quoted", "hostile:list"] {
        let exists: u8 = redis::cmd("EXISTS").arg(key).query_async(&mut conn).await.unwrap();
        assert_eq!(exists, 1, "{key} left alone");
    }
    // "quoted" carries one tag whose text holds `],"v":`: read as the tag it is.
    let odd = "x\"],\"v\":";
    redis::cmd("SADD")
        .arg("hostile:\u{FFFF}tag:x\"],\"v\":".as_bytes())
        .arg("hostile:quoted")
        .exec_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.get_tags("quoted").await.unwrap(), Some(vec![odd.to_string()]));
    assert_eq!(store.invalidate_tags(&["x\""]).await.unwrap(), 0, "no prefix of it");
    assert_eq!(store.invalidate_tags(&[odd]).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_tagged_entries_span_slots_and_one_invalidation_takes_them_all() {
    let cluster = RedisCluster::shared();
    let build = || RedisStore::<String>::cluster_builder(cluster.urls()).prefix("tagged:").build();
    let (a, b) = (build().await.unwrap(), build().await.unwrap());
    let keys: Vec<String> = (0..60).map(|i| format!("page:{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let tags: &[&str] = if i % 2 == 0 { &["even", "all"] } else { &["all"] };
        a.set(key, key.clone(), tagged(tags)).await.unwrap();
    }
    let mut slots = std::collections::BTreeSet::new();
    for raw in cluster.all_raw_keys(b"tagged:").await {
        slots.insert(cluster.keyslot(&raw).await);
    }
    assert!(slots.len() > 3, "the entries and their tag sets span slots: {slots:?}");
    let masters = cluster.raw_keys(b"tagged:").await.into_iter().filter(|(_, keys)| !keys.is_empty()).count();
    assert!(masters > 1, "and masters");
    assert_eq!(b.invalidate_tags(&["even"]).await.unwrap(), 30);
    for (i, key) in keys.iter().enumerate() {
        let want = (i % 2 == 1).then(|| key.clone());
        assert_eq!(a.get(key).await.unwrap(), want, "{key}");
    }
    assert_eq!(b.invalidate_tags(&["all", "even"]).await.unwrap(), 30);
    assert_eq!(a.size().await.unwrap(), 0);
    // A bounded store on the cluster keeps its capacity's indexes in step.
    let bounded = cluster.lru_store("tagged-lru:").await;
    for i in 0..20 {
        bounded.set(&format!("k{i}"), "v".into(), tagged(&["t"])).await.unwrap();
    }
    assert_eq!(bounded.invalidate_tags(&["t"]).await.unwrap(), 20);
    assert_eq!(bounded.size().await.unwrap(), 0, "the indexes forgot the removed entries");
}

#[tokio::test]
async fn near_caches_drop_their_copies_when_any_process_invalidates_a_tag() {
    use pepperpy_caching::stores::NearCache;
    let server = RedisServer::start();
    let near = || NearCache::<String>::builder(server.url()).prefix("near:").build();
    let (a, b) = (near().await.unwrap(), near().await.unwrap());
    let plain: RedisStore<String> = store(&server, "near:", None).await;
    a.set("page:1", "p1".into(), tagged(&["user:42"])).await.unwrap();
    a.set("page:2", "p2".into(), tagged(&["team:7"])).await.unwrap();
    for cache in [&a, &b] {
        for key in ["page:1", "page:2"] {
            assert!(cache.get(key).await.unwrap().is_some());
            assert!(cache.get(key).await.unwrap().is_some());
            assert!(cache.in_memory(key), "{key} is held in memory");
        }
    }
    // This process: gone from its memory when the call returns.
    assert_eq!(a.invalidate_tags(&["user:42"]).await.unwrap(), 1);
    assert!(!a.in_memory("page:1"));
    assert_eq!(a.get("page:1").await.unwrap(), None);
    // Another near cache: gone once it has caught up with Redis's messages.
    b.sync().await.unwrap();
    assert!(!b.in_memory("page:1"));
    assert_eq!(b.get("page:1").await.unwrap(), None);
    // An invalidation by a plain RedisStore (another process) reaches both.
    assert_eq!(plain.invalidate_tags(&["team:7"]).await.unwrap(), 1);
    for cache in [&a, &b] {
        cache.sync().await.unwrap();
        assert!(!cache.in_memory("page:2"));
        assert_eq!(cache.get("page:2").await.unwrap(), None);
    }
    assert_eq!(a.get_tags("page:2").await.unwrap(), None);
}

/// Tagged sets and loads racing invalidations from another process: once
/// every call has returned, one more `invalidate_tags` leaves no entry
/// carrying the tag (a set or load that lost its listing to a racing
/// invalidation would survive it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_and_loads_racing_invalidations_stay_reachable() {
    let server = RedisServer::start();
    let writer = leased_store(&server, "race:", None, Duration::from_secs(10)).await;
    let other = leased_store(&server, "race:", None, Duration::from_secs(10)).await;
    race(writer, other).await;
}

/// The same on a cluster, over its buckets (tag sets and entries in many slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_sets_and_loads_racing_invalidations_stay_reachable() {
    let cluster = RedisCluster::shared();
    let build = || RedisStore::<String>::cluster_builder(cluster.urls()).prefix("race-c:").build();
    race(Arc::new(build().await.unwrap()), Arc::new(build().await.unwrap())).await;
}

async fn race(writer: Arc<RedisStore<String>>, other: Arc<RedisStore<String>>) {
    for round in 0..3 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let invalidations = {
            let (other, stop) = (Arc::clone(&other), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    other.invalidate_tags(&["hot"]).await.unwrap();
                }
            })
        };
        let writes = (0..4).map(|task| {
            let writer = Arc::clone(&writer);
            tokio::spawn(async move {
                for i in 0..150 {
                    let key = format!("k{round}:{task}:{}", i % 40);
                    if i % 3 == 0 {
                        writer.get_or_set(&key, || async { "loaded".to_string() }, tagged(&["hot"])).await.unwrap();
                    } else {
                        writer.set(&key, "set".into(), tagged(&["hot", "other"])).await.unwrap();
                    }
                }
            })
        });
        for write in futures_util::future::join_all(writes).await {
            write.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        invalidations.await.unwrap();
        other.invalidate_tags(&["hot"]).await.unwrap();
        let mut left = Vec::new();
        for key in writer.keys(None).await.unwrap() {
            if writer.get_tags(&key).await.unwrap().is_some_and(|tags| tags.iter().any(|t| t == "hot")) {
                left.push(key);
            }
        }
        assert!(left.is_empty(), "round {round}: entries carrying the tag survived: {left:?}");
    }
}

/// A tagged set is its write and its listing in one pipeline: after Redis
/// forgot its scripts (a restart, SCRIPT FLUSH) it is still written, listed
/// once, and counted once.
#[tokio::test]
async fn a_tagged_set_after_a_script_flush_is_written_and_listed() {
    let server = RedisServer::start();
    let mut conn = server.admin().await;
    for (prefix, policy) in [("flush:", None), ("flush-lru:", Some(LruPolicy::new(100).unwrap().into()))] {
        let store: RedisStore<String> = store(&server, prefix, policy).await;
        store.set("warm", "w".into(), tagged(&["t"])).await.unwrap();
        redis::cmd("SCRIPT").arg("FLUSH").exec_async(&mut conn).await.unwrap();
        store.reset_stats();
        store.set("k", "v".into(), tagged(&["t", "u"])).await.unwrap();
        assert_eq!(store.stats().sets, 1, "{prefix}: counted once");
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some("v"));
        assert_eq!(store.invalidate_tags(&["u"]).await.unwrap(), 1, "{prefix}: listed");
        assert_eq!(store.invalidate_tags(&["t"]).await.unwrap(), 1, "{prefix}: warm");
        assert_eq!(store.size().await.unwrap(), 0, "{prefix}");
    }
}

/// A `set_many` whose entries another process already reads: an
/// `invalidate_tags` that begins after a reader saw a tagged entry removes
/// it, even while the batch is still listing its keys in the tag sets (the
/// entries are written first, listed after: an invalidation in between
/// found the sets without them, and they survived it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_of_a_set_many_seen_before_an_invalidation_does_not_survive_it() {
    let server = RedisServer::start();
    let writer = leased_store(&server, "many:", None, Duration::from_secs(10)).await;
    let reader = leased_store(&server, "many:", None, Duration::from_secs(10)).await;
    let mut survived = Vec::new();
    for round in 0..20 {
        let keys: Vec<String> = (0..500).map(|i| format!("r{round}:{i}")).collect();
        let last = keys[keys.len() - 1].clone();
        let batch = {
            let (writer, keys) = (Arc::clone(&writer), keys.clone());
            tokio::spawn(async move {
                let entries = keys.iter().map(|k| (k.as_str(), "v".to_string())).collect();
                writer.set_many(entries, tagged(&["hot"])).await.unwrap();
            })
        };
        // As soon as the last entry is seen, invalidate its tag.
        while reader.get(&last).await.unwrap().is_none() {}
        reader.invalidate_tags(&["hot"]).await.unwrap();
        if reader.get(&last).await.unwrap().is_some() {
            survived.push(round);
        }
        batch.await.unwrap();
        writer.clear().await.unwrap();
    }
    assert!(survived.is_empty(), "seen before invalidate_tags, there after it, in rounds {survived:?}");
}
