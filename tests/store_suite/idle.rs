//! Time-to-idle: an entry leaves after a period without a read, or at its
//! TTL, whichever comes first; per entry (`SetOptions::idle`) and per policy
//! (`with_default_idle`). Reads are `get`, `get_or_set` and `get_or_refresh`
//! hits; `contains` and `get_metadata` are not.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pepperpy_caching::{CacheError, CacheStore, LruPolicy, MAX_IDLE, RefreshOptions, SetOptions};

use super::refresh::Tasks;
use super::support::load::counting;
use super::support::meta;
use super::{Backend, LONG, PASS, SHORT, s, sorted_keys, strings};

/// The idle time of the entries under test. On Redis the clock is real and
/// the machine shared: a step that must land BEFORE a deadline keeps at least
/// 300 ms of margin (a late call there is a false failure); a step that must
/// land after one may be as late as the machine likes.
const IDLE: Duration = Duration::from_millis(600);
/// Time between reads that keep an idle entry alive (well under `IDLE`; four
/// of them well over it).
const STEP: Duration = Duration::from_millis(200);
/// Enough time without a read for an `IDLE` entry to leave.
const GONE: Duration = Duration::from_millis(900);
/// When a call that is not a read runs: early, well inside the idle time.
const EARLY: Duration = Duration::from_millis(150);
/// The wait after an `EARLY` call that is not a read: past the idle time
/// counted from the set, inside it counted from the call (had it been a read).
const PAST: Duration = Duration::from_millis(525);

pub async fn an_idle_entry_lives_while_read_and_leaves_when_not<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("idle", s("i"), SetOptions::new().idle(IDLE).ttl(LONG)).await.unwrap();
    store.set("plain", s("p"), SetOptions::new()).await.unwrap();
    // Read every STEP for longer than IDLE in all: each read pushes the deadline.
    for _ in 0..5 {
        b.pass(STEP).await;
        assert_eq!(store.get("idle").await.unwrap(), Some(s("i")));
    }
    b.pass(GONE).await;
    assert_eq!(store.get("idle").await.unwrap(), None, "IDLE without a read: gone");
    assert!(!store.contains("idle").await.unwrap());
    assert_eq!(store.get_metadata("idle").await.unwrap(), None);
    assert_eq!(sorted_keys(&store, None).await, strings(&["plain"]));
    assert_eq!(store.size().await.unwrap(), 1);
    assert_eq!(store.get("plain").await.unwrap(), Some(s("p")));
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses), (6, 1), "{stats:?}");
}

pub async fn the_ttl_or_the_idle_time_whichever_comes_first<B: Backend>(b: &B) {
    let store = b.store(None).await;
    // The TTL first: reads do not extend past it.
    store.set("ttl-first", s("t"), SetOptions::new().ttl(SHORT).idle(LONG)).await.unwrap();
    // The idle time first, without a TTL at all.
    store.set("idle-first", s("i"), SetOptions::new().idle(IDLE)).await.unwrap();
    assert_eq!(store.get("ttl-first").await.unwrap(), Some(s("t")));
    b.pass(PASS).await;
    assert_eq!(store.get("ttl-first").await.unwrap(), None, "the TTL came first");
    b.pass(GONE).await;
    assert_eq!(store.get("idle-first").await.unwrap(), None, "the idle time came first");
    assert_eq!(store.size().await.unwrap(), 0);
}

pub async fn contains_and_get_metadata_are_not_reads<B: Backend>(b: &B) {
    let store = b.store(None).await;
    let options = SetOptions::new().idle(IDLE).metadata(meta(serde_json::json!({ "a": 1 })));
    store.set("k", s("v"), options).await.unwrap();
    b.pass(EARLY).await;
    assert!(store.contains("k").await.unwrap());
    assert_eq!(store.get_metadata("k").await.unwrap().unwrap()["a"], 1);
    b.pass(PAST).await;
    assert!(!store.contains("k").await.unwrap(), "neither call counted as a read");
    assert_eq!(store.get("k").await.unwrap(), None);
}

pub async fn the_policy_gives_a_default_idle_time<B: Backend>(b: &B) {
    let policy = LruPolicy::new(100).unwrap().with_default_idle(IDLE).unwrap();
    let store = b.store(Some(policy.into())).await;
    store.set("default", s("d"), SetOptions::new()).await.unwrap();
    store.set("own", s("o"), SetOptions::new().idle(LONG)).await.unwrap();
    b.pass(STEP).await;
    assert_eq!(store.get("default").await.unwrap(), Some(s("d")));
    b.pass(GONE).await;
    assert_eq!(store.get("default").await.unwrap(), None, "the policy's idle time");
    assert_eq!(store.get("own").await.unwrap(), Some(s("o")), "an entry's own idle time beats the default");
}

pub async fn a_set_starts_the_idle_clock_again_and_may_drop_it<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("k", s("1"), SetOptions::new().idle(IDLE)).await.unwrap();
    b.pass(EARLY).await;
    // Set again without an idle time: a plain entry from now on.
    store.set("k", s("2"), SetOptions::new()).await.unwrap();
    b.pass(GONE).await;
    assert_eq!(store.get("k").await.unwrap(), Some(s("2")));
    store.set("k", s("3"), SetOptions::new().idle(IDLE)).await.unwrap();
    b.pass(GONE).await;
    assert_eq!(store.get("k").await.unwrap(), None);
}

pub async fn get_or_set_hits_are_reads<B: Backend>(b: &B) {
    let store = b.store(None).await;
    let options = SetOptions::new().idle(IDLE);
    let v = store.get_or_set("k", || async { s("loaded") }, options.clone()).await.unwrap();
    assert_eq!(v, "loaded");
    for _ in 0..4 {
        b.pass(STEP).await;
        let v = store.get_or_set("k", || async { s("again") }, options.clone()).await.unwrap();
        assert_eq!(v, "loaded", "a hit, which keeps the entry");
    }
    b.pass(GONE).await;
    let v = store.get_or_set("k", || async { s("reloaded") }, options.clone()).await.unwrap();
    assert_eq!(v, "reloaded", "idle: loaded again");
}

pub async fn a_zero_or_absurd_idle_time_changes_nothing<B: Backend>(b: &B) {
    let store = b.store(None).await;
    store.set("k", s("old"), SetOptions::new()).await.unwrap();
    store.reset_stats();
    for bad in [Duration::ZERO, MAX_IDLE + Duration::from_millis(1), Duration::MAX] {
        for key in ["k", "new"] {
            let r = store.set(key, s("bad"), SetOptions::new().idle(bad)).await;
            assert!(matches!(r, Err(CacheError::Policy(_))), "{bad:?}: {r:?}");
            let r = store.get_or_set(key, || async { unreachable!() }, SetOptions::new().idle(bad)).await;
            assert!(matches!(r, Err(CacheError::Policy(_))), "{bad:?}: {r:?}");
        }
        assert!(LruPolicy::new(1).unwrap().with_default_idle(bad).is_err());
    }
    assert_eq!(store.get("k").await.unwrap(), Some(s("old")));
    assert_eq!(store.get("new").await.unwrap(), None);
    let stats = store.stats();
    assert_eq!((stats.sets, stats.hits, stats.misses), (0, 1, 1), "{stats:?}");
    // The longest accepted idle time works.
    store.set("k", s("max"), SetOptions::new().idle(MAX_IDLE)).await.unwrap();
    assert_eq!(store.get("k").await.unwrap(), Some(s("max")));
}

pub async fn get_or_refresh_hits_are_reads<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let options = RefreshOptions::new(Tasks, LONG, LONG).idle(IDLE);
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v1"), &options).await.unwrap(), "v1");
    for _ in 0..4 {
        b.pass(STEP).await;
        assert_eq!(store.get_or_refresh("k", counting(&runs, "v2"), &options).await.unwrap(), "v1", "a fresh hit");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    b.pass(GONE).await;
    assert_eq!(store.get_or_refresh("k", counting(&runs, "v3"), &options).await.unwrap(), "v3", "idle: loaded again");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // A zero idle time is refused before any loader runs.
    let bad = RefreshOptions::new(Tasks, LONG, LONG).idle(Duration::ZERO);
    let r = store.get_or_refresh("other", counting(&runs, "x"), &bad).await;
    assert!(matches!(r, Err(CacheError::Policy(_))), "{r:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(!store.contains("other").await.unwrap());
}

pub async fn idle_entries_with_tags_metadata_and_stamps<B: Backend>(b: &B) {
    let store = Arc::new(b.store(None).await);
    let tagged = |tags: &[&str]| SetOptions::new().idle(IDLE).tags(tags.iter().copied());
    // A metadata update and get_tags are not reads; the tags survive the update.
    store.set("m", s("m"), tagged(&["t"]).metadata(meta(serde_json::json!({ "a": 1 })))).await.unwrap();
    b.pass(EARLY).await;
    assert!(store.update_metadata("m", meta(serde_json::json!({ "b": 2 }))).await.unwrap());
    assert_eq!(store.get_tags("m").await.unwrap(), Some(vec!["t".to_string()]));
    b.pass(PAST).await;
    assert_eq!(store.get_tags("m").await.unwrap(), None, "neither call counted as a read");
    assert_eq!(store.get("m").await.unwrap(), None);
    // A tagged idle entry read past its idle time is still reached by its tag,
    // and its metadata update keeps its idle clock.
    store.set("r", s("r"), tagged(&["t", "u"])).await.unwrap();
    for _ in 0..4 {
        b.pass(STEP).await;
        assert_eq!(store.get("r").await.unwrap(), Some(s("r")));
    }
    assert!(store.update_metadata("r", meta(serde_json::json!({ "c": 3 }))).await.unwrap());
    assert_eq!(store.get("r").await.unwrap(), Some(s("r")));
    assert_eq!(store.get_metadata("r").await.unwrap().unwrap()["c"], 3);
    b.pass(GONE).await;
    assert_eq!(store.get("r").await.unwrap(), None, "the update did not stop the idle clock");
    store.set("r", s("r2"), tagged(&["t", "u"])).await.unwrap();
    b.pass(STEP).await;
    assert_eq!(store.get("r").await.unwrap(), Some(s("r2")));
    assert_eq!(store.invalidate_tags(&["u"]).await.unwrap(), 1);
    assert_eq!(store.get("r").await.unwrap(), None);
    // get_or_set and get_or_refresh with both: the stored entry carries the
    // tags (behind a freshness stamp and an idle header), idles and is reached by a tag.
    let v = store.get_or_set("g", || async { s("g") }, tagged(&["t"])).await.unwrap();
    assert_eq!(v, "g");
    assert_eq!(store.get_tags("g").await.unwrap(), Some(vec!["t".to_string()]));
    let options = RefreshOptions::new(Tasks, LONG, LONG).idle(IDLE).tags(["t", "v"]);
    let runs = Arc::new(AtomicUsize::new(0));
    assert_eq!(store.get_or_refresh("f", counting(&runs, "f1"), &options).await.unwrap(), "f1");
    assert_eq!(store.get_tags("f").await.unwrap(), Some(vec!["t".to_string(), "v".to_string()]));
    assert!(store.update_metadata("f", meta(serde_json::json!({ "d": 4 }))).await.unwrap());
    b.pass(STEP).await;
    assert_eq!(store.get_or_refresh("f", counting(&runs, "f2"), &options).await.unwrap(), "f1", "fresh");
    assert_eq!(store.invalidate_tags(&["v"]).await.unwrap(), 1, "the stamped idle entry carries its tags");
    assert_eq!(store.get("f").await.unwrap(), None);
    assert_eq!(store.get("g").await.unwrap(), Some(s("g")));
    b.pass(GONE).await;
    assert_eq!(store.invalidate_tags(&["t"]).await.unwrap(), 0, "g idled out: not counted");
    assert_eq!(store.size().await.unwrap(), 0);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

pub async fn get_many_hits_are_reads_and_set_many_gives_idle_times<B: Backend>(b: &B) {
    // Unbounded, and bounded (on Redis: the index-keeping scripts).
    for policy in [None, Some(LruPolicy::new(100).unwrap().into())] {
        get_many_and_set_many_with_idle_times(b, b.store(policy).await).await;
    }
}

async fn get_many_and_set_many_with_idle_times<B: Backend>(b: &B, store: B::Store) {
    store.set_many(vec![("a", s("a")), ("b", s("b"))], SetOptions::new().idle(IDLE).tags(["batch"])).await.unwrap();
    store.set("c", s("c"), SetOptions::new().idle(IDLE)).await.unwrap();
    // a and c read by get_many (c twice in one call), b only by contains.
    for _ in 0..4 {
        b.pass(STEP).await;
        let got = store.get_many(&["a", "c", "missing", "c"]).await.unwrap();
        assert_eq!(got, [Some(s("a")), Some(s("c")), None, Some(s("c"))]);
    }
    assert!(!store.contains("b").await.unwrap(), "b was never read: idled out");
    assert_eq!(store.get_tags("a").await.unwrap(), Some(vec!["batch".to_string()]));
    b.pass(GONE).await;
    assert_eq!(store.get_many(&["a", "b", "c"]).await.unwrap(), [None, None, None]);
    assert_eq!(store.invalidate_tags(&["batch"]).await.unwrap(), 0);
    assert_eq!(store.size().await.unwrap(), 0);
}
