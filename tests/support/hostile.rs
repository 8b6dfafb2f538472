//! Attackers for the hostile `MemoryStore` tests (tests/memory_hostile*.rs):
//! a value whose `Clone` or `Drop` panics, the store configurations every
//! attack runs against, a model of what was written, and the consistency
//! check the store must pass after each attack.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pepperpy_caching::{CacheStore, LruPolicy, ManualClock, MemoryStore, S3FifoPolicy, SetOptions, TtlPolicy};

/// A value that runs hostile code: its `Clone` and/or its `Drop` may panic.
/// A clone is always tame, so that the caller can drop what `get` returns.
#[derive(Debug)]
pub struct Hostile {
    pub val: u64,
    clone_panics: bool,
    drop_panics: bool,
}

impl Hostile {
    pub fn tame(val: u64) -> Self {
        Hostile { val, clone_panics: false, drop_panics: false }
    }
    pub fn drop_bomb(val: u64) -> Self {
        Hostile { val, clone_panics: false, drop_panics: true }
    }
    pub fn clone_bomb(val: u64) -> Self {
        Hostile { val, clone_panics: true, drop_panics: false }
    }
}

impl Clone for Hostile {
    fn clone(&self) -> Self {
        if self.clone_panics {
            panic!("hostile Clone of {}", self.val);
        }
        Hostile::tame(self.val)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        // Never a second panic while unwinding: that would abort the test binary.
        if self.drop_panics && !std::thread::panicking() {
            panic!("hostile Drop of {}", self.val);
        }
    }
}

/// The result of a `MemoryStore` call (its futures are ready at once).
pub fn r<T>(f: std::future::Ready<T>) -> T {
    f.into_inner()
}

/// Whether `f` panicked in a hostile value's `Clone` or `Drop`; any other
/// panic (a failed check inside `f`, a bug in the store) goes on up.
pub fn panics<T>(f: impl FnOnce() -> T) -> bool {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => false,
        Err(payload) => {
            if !is_hostile(&*payload, "hostile ") {
                std::panic::resume_unwind(payload);
            }
            true
        }
    }
}

/// Whether a panic payload is a message starting with `prefix`.
pub fn is_hostile(payload: &(dyn std::any::Any + Send), prefix: &str) -> bool {
    let message =
        payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
    message.is_some_and(|m| m.starts_with(prefix))
}

/// Runs `f` to completion on this thread, parking while it waits.
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Polls `f` once with a waker that does nothing: `None` if it is not ready.
/// A `get_or_set` on a `MemoryStore` whose loader is ready at once must be
/// ready on its first poll unless it waits on someone else's load.
pub fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The store configurations every attack runs against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// S3-FIFO with the default sharding (one shard at these sizes).
    S3Fifo,
    /// S3-FIFO split into 4 shards.
    S3FifoSharded,
    /// Exact LRU: reads take the lock exclusively.
    Lru,
    /// LRU without refresh on get: shared reads.
    LruNoRefresh,
    /// TTL (1 hour) with a capacity: evicts the entry closest to expiry.
    Ttl,
}

/// A capacity no test that uses it reaches, even if all its keys land in one of 4 shards.
pub const ROOM: usize = 64;

pub const KINDS: [Kind; 5] = [Kind::S3Fifo, Kind::S3FifoSharded, Kind::Lru, Kind::LruNoRefresh, Kind::Ttl];

pub fn build<V: Clone + Send + Sync + 'static>(kind: Kind, cap: usize, clock: &ManualClock) -> MemoryStore<V> {
    match kind {
        Kind::S3Fifo => MemoryStore::builder(S3FifoPolicy::new(cap).unwrap()).clock(clock.clone()).build(),
        Kind::S3FifoSharded => {
            MemoryStore::builder(S3FifoPolicy::new(cap).unwrap()).shards(4).clock(clock.clone()).build()
        }
        Kind::Lru => MemoryStore::builder(LruPolicy::new(cap).unwrap()).clock(clock.clone()).build(),
        Kind::LruNoRefresh => {
            MemoryStore::builder(LruPolicy::new(cap).unwrap().refresh_on_get(false)).clock(clock.clone()).build()
        }
        Kind::Ttl => {
            let policy = TtlPolicy::new(Duration::from_secs(3600)).unwrap().with_max_size(cap).unwrap();
            MemoryStore::builder(policy).clock(clock.clone()).build()
        }
    }
}

/// What was last written under each key (a key absent here must not be in the store).
pub type Model = HashMap<String, u64>;

pub fn set_tame(store: &MemoryStore<Hostile>, model: &mut Model, key: &str, val: u64) {
    r(store.set(key, Hostile::tame(val), SetOptions::new())).unwrap();
    model.insert(key.to_string(), val);
}

/// The store agrees with itself and with `model`: every listed key reads back
/// with the value last written for it, keys() and len() agree, no duplicates,
/// the capacity holds, and every key of `must_have` is there.
/// (It reads with `get`, so take the stats first.)
pub fn assert_consistent(store: &MemoryStore<Hostile>, model: &Model, cap: usize, must_have: &[&str], ctx: &str) {
    let len = store.len();
    let mut keys = r(store.keys(None)).unwrap();
    assert_eq!(keys.len(), len, "{ctx}: keys() and len() disagree: {keys:?}");
    assert!(len <= cap, "{ctx}: {len} entries > capacity {cap}");
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "{ctx}: a key is listed twice");
    for key in &keys {
        let Some(&want) = model.get(key) else { panic!("{ctx}: {key:?} is in the store but was never written") };
        assert!(r(store.contains(key)).unwrap(), "{ctx}: {key} listed but not contained");
        let got = r(store.get(key)).unwrap().map(|h| h.val);
        assert_eq!(got, Some(want), "{ctx}: {key} reads back wrong");
    }
    for key in must_have {
        assert!(keys.iter().any(|k| k == key), "{ctx}: {key} is lost; the store has {keys:?}");
    }
}

// ---------------------------------------------------------------------------
// Foreign code: a panicking Drop
// ---------------------------------------------------------------------------

/// A future that is pending until `open` is set (the test polls by hand).
pub struct Gate<'a>(pub &'a std::sync::atomic::AtomicBool);
impl Future for Gate<'_> {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) { Poll::Ready(()) } else { Poll::Pending }
    }
}
