//! The near cache's local layer: the memory tier and the state that keeps it
//! coherent (an epoch, per-stripe invalidation counters, the current
//! invalidation connection), under one lock that every fill and every
//! invalidation takes. What may enter memory, and everything that takes it
//! out again, is decided here.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};

use crate::errors::{CacheError, Result};
use crate::key::Key;
use crate::store::{CacheStore, SetOptions};
use crate::stores::MemoryStore;

/// Per-key invalidation counters: a fill is refused when the counter of its
/// key's stripe moved while it read Redis. More stripes, fewer fills refused
/// because of another key's write.
const STRIPES: usize = 4096;

/// What the connection task and the push handler share with the cache.
pub(super) struct Shared<V> {
    pub(super) memory: MemoryStore<V>,
    pub(super) prefix: Box<[u8]>,
    hasher: RandomState,
    /// Whether memory may serve: `state.epoch` is even. Read without the lock
    /// on every `get`.
    pub(super) up: AtomicBool,
    state: Mutex<State>,
    /// Wakes the connection task when a connection is lost.
    pub(super) lost: tokio::sync::Notify,
}

struct State {
    /// Moves on every global invalidation (by 2) and connection change (by 1):
    /// odd while the invalidation connection is down.
    epoch: u64,
    /// Moves when a key of the stripe is invalidated.
    stripes: Box<[u64]>,
    /// The connection whose messages keep memory coherent, while up.
    session: u64,
    /// The newest connection that reported its own loss (it may do so before
    /// it is made the current one).
    lost_session: u64,
    conn: Option<MultiplexedConnection>,
}

thread_local! {
    /// The `Shared` (its address) whose state lock this thread holds, 0 if
    /// none: the memory tier drops values under it.
    static HOLDING_STATE: Cell<usize> = const { Cell::new(0) };
    /// The `Shared`s further up this thread's stack, when a value dropped
    /// under one cache's lock called another cache (which is allowed) that
    /// took its own: a value of that one calling back into the first must be
    /// refused too (A drops a value that calls B, B drops one that calls A).
    /// Empty, and never touched, unless caches are nested that way.
    static OUTER_STATES: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread holds the state lock of the `Shared` at `me`.
#[inline]
fn holding(me: usize) -> bool {
    let innermost = HOLDING_STATE.get();
    innermost != 0 && (innermost == me || OUTER_STATES.with_borrow(|outer| outer.contains(&me)))
}

/// The state lock's guard, marking the lock as held by this thread.
struct Locked<'a> {
    guard: MutexGuard<'a, State>,
    outer: usize,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.outer != 0 {
            OUTER_STATES.with_borrow_mut(|outer| outer.pop());
        }
        HOLDING_STATE.set(self.outer);
    }
}

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

/// What a fill noted before reading Redis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Ticket {
    epoch: u64,
    stripe: usize,
    seen: u64,
}

/// What to take out of memory.
pub(super) enum Scope<'a> {
    Key(&'a str),
    /// The keys of a batch (checked keys).
    Keys(&'a [&'a str]),
    Pattern(&'a str),
    All,
    /// Entries this instance cannot name (an `invalidate_tags`): nothing is
    /// taken out here (Redis's invalidations of the removed keys do that),
    /// but every fill that read Redis before is refused.
    Unnamed,
}

impl<V: Clone + Send + Sync + 'static> Shared<V> {
    pub(super) fn new(memory: MemoryStore<V>, prefix: &str) -> Self {
        Shared {
            memory,
            prefix: prefix.as_bytes().into(),
            hasher: RandomState::new(),
            up: AtomicBool::new(false),
            // Odd: down until the first connection is tracking.
            state: Mutex::new(State {
                epoch: 1,
                stripes: vec![0; STRIPES].into_boxed_slice(),
                session: 0,
                lost_session: 0,
                conn: None,
            }),
            lost: tokio::sync::Notify::new(),
        }
    }

    // Every section under this lock leaves the state consistent before it
    // calls into the memory store, so a poisoned lock is still usable.
    fn lock(&self) -> Locked<'_> {
        let me = self as *const Self as usize;
        let outer = HOLDING_STATE.get();
        // The public calls check `reentered` first; this is the last defence.
        assert!(
            !holding(me),
            "a value's Drop called the NearCache that was dropping it under its lock: this would deadlock"
        );
        let guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if outer != 0 {
            OUTER_STATES.with_borrow_mut(|stack| stack.push(outer));
        }
        HOLDING_STATE.set(me);
        Locked { guard, outer }
    }

    /// Fails if this thread holds this cache's state lock: a value dropped
    /// under it (memory replaced or removed it) called the cache, directly
    /// or through another cache, and would wait on the lock for ever.
    pub(super) fn reentered(&self, call: &'static str) -> Result<()> {
        if holding(self as *const Self as usize) {
            return Err(CacheError::ReentrantValue { call });
        }
        Ok(())
    }

    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) % STRIPES as u64) as usize
    }

    /// What a read of Redis for `key` notes first, with the connection to ask
    /// the TTL on; `None` while down (the read then fills nothing).
    pub(super) fn ticket(&self, key: &str) -> Option<(Ticket, MultiplexedConnection)> {
        let stripe = self.stripe(key);
        let state = self.lock();
        let conn = state.conn.clone().filter(|_| state.epoch.is_multiple_of(2))?;
        Some((Ticket { epoch: state.epoch, stripe, seen: state.stripes[stripe] }, conn))
    }

    /// Stores a value read from Redis, unless something invalidated it since
    /// `ticket` was taken. Checked and stored under the lock every
    /// invalidation takes, so an invalidation is handled either before (the
    /// fill is refused) or after (it removes the fill).
    pub(super) fn fill(&self, key: &str, ticket: Ticket, value: V, ttl: Option<Duration>) -> bool {
        let state = self.lock();
        if state.epoch != ticket.epoch || state.stripes[ticket.stripe] != ticket.seen {
            return false;
        }
        let options = match ttl {
            Some(ttl) => SetOptions::new().ttl(ttl),
            None => SetOptions::new(),
        };
        let stored = self.memory.set(key, value, options).into_inner().is_ok();
        drop(state);
        stored
    }

    pub(super) fn forget(&self, scope: &Scope<'_>) {
        let mut state = self.lock();
        match scope {
            Scope::Key(key) => {
                let stripe = self.stripe(key);
                state.stripes[stripe] += 1;
                let _ = self.memory.delete(key).into_inner();
            }
            Scope::Keys(keys) => {
                for key in keys.iter() {
                    let stripe = self.stripe(key);
                    state.stripes[stripe] += 1;
                }
                let _ = self.memory.delete_many(keys).into_inner();
            }
            Scope::Pattern(pattern) => {
                state.epoch += 2;
                let _ = self.memory.invalidate(pattern).into_inner();
            }
            Scope::All => {
                state.epoch += 2;
                let _ = self.memory.clear().into_inner();
            }
            Scope::Unnamed => state.epoch += 2,
        }
    }

    /// Handles the Redis keys of an `invalidate` message, under one lock.
    fn forget_redis_keys(&self, keys: &[Value]) {
        let mut state = self.lock();
        for key in keys {
            let Value::BulkString(full) = key else { continue };
            // Index and lock keys (with U+FFFF, which no key holds) and other prefixes are
            // never in memory.
            let Some(key) = full.strip_prefix(&*self.prefix).and_then(|k| std::str::from_utf8(k).ok()) else {
                continue;
            };
            if Key::new(key).is_err() {
                continue;
            }
            let stripe = self.stripe(key);
            state.stripes[stripe] += 1;
            let _ = self.memory.delete(key).into_inner();
        }
    }

    /// A message from Redis on the connection of `session`.
    pub(super) fn on_push(&self, session: u64, info: PushInfo) {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => self.forget_redis_keys(keys),
                // Nil: the database was flushed. Anything else is a message
                // we do not understand: forgetting everything is always safe.
                _ => self.forget(&Scope::All),
            },
            PushKind::Disconnection => self.down(session),
            _ => {}
        }
    }

    /// The connection of `session` is gone: stop serving from memory and
    /// empty it, then wake the connection task.
    pub(super) fn down(&self, session: u64) {
        let mut state = self.lock();
        state.lost_session = state.lost_session.max(session);
        if state.session != session || !state.epoch.is_multiple_of(2) {
            return;
        }
        self.up.store(false, Ordering::Release);
        state.epoch += 1;
        state.conn = None;
        let _ = self.memory.clear().into_inner();
        drop(state);
        self.lost.notify_one();
    }

    /// The connection of `session` is tracking: empty memory (it may hold
    /// what a lost message should have removed) and serve from it again.
    /// False if that connection has already reported its loss.
    pub(super) fn go_up(&self, session: u64, conn: MultiplexedConnection) -> bool {
        let mut state = self.lock();
        if state.lost_session >= session || state.epoch.is_multiple_of(2) {
            return false;
        }
        let _ = self.memory.clear().into_inner();
        state.epoch += 1;
        state.session = session;
        state.conn = Some(conn);
        self.up.store(true, Ordering::Release);
        true
    }

    /// The invalidation connection, while it is up.
    pub(super) fn current_conn(&self) -> Option<MultiplexedConnection> {
        let state = self.lock();
        state.conn.clone().filter(|_| state.epoch.is_multiple_of(2))
    }

    pub(super) fn is_up(&self, session: u64) -> bool {
        let state = self.lock();
        state.session == session && state.epoch.is_multiple_of(2)
    }
}

/// Takes a scope out of memory now and again when dropped: after the write
/// returned, failed, or was cancelled.
pub(super) struct Forget<'a, V: Clone + Send + Sync + 'static> {
    shared: &'a Shared<V>,
    scope: Scope<'a>,
}

impl<'a, V: Clone + Send + Sync + 'static> Forget<'a, V> {
    pub(super) fn new(shared: &'a Shared<V>, scope: Scope<'a>) -> Self {
        shared.forget(&scope);
        Forget { shared, scope }
    }
}

impl<V: Clone + Send + Sync + 'static> Drop for Forget<'_, V> {
    fn drop(&mut self) {
        self.shared.forget(&self.scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::LruPolicy;

    fn shared() -> Shared<u32> {
        let shared = Shared::new(MemoryStore::new(LruPolicy::new(100).unwrap()), "p:");
        // Up without a connection: tickets need one, so note them by hand.
        let mut state = shared.lock();
        state.epoch = 2;
        drop(state);
        shared.up.store(true, Ordering::Release);
        shared
    }

    fn ticket(shared: &Shared<u32>, key: &str) -> Ticket {
        let stripe = shared.stripe(key);
        let state = shared.lock();
        Ticket { epoch: state.epoch, stripe, seen: state.stripes[stripe] }
    }

    #[test]
    fn a_fill_after_an_invalidation_of_its_key_is_refused() {
        let shared = shared();
        let t = ticket(&shared, "k");
        shared.forget_redis_keys(&[Value::BulkString(b"p:k".to_vec())]);
        assert!(!shared.fill("k", t, 1, None));
        assert!(!shared.memory.contains("k").into_inner().unwrap());
        // A fresh ticket fills.
        let t = ticket(&shared, "k");
        assert!(shared.fill("k", t, 2, None));
        assert_eq!(shared.memory.get("k").into_inner().unwrap(), Some(2));
        // And a later invalidation removes it.
        shared.forget_redis_keys(&[Value::BulkString(b"p:k".to_vec())]);
        assert!(!shared.memory.contains("k").into_inner().unwrap());
    }

    #[test]
    fn other_keys_other_prefixes_and_index_keys_do_not_refuse_a_fill() {
        let shared = shared();
        let t = ticket(&shared, "k");
        let other = (0..).map(|i| format!("o{i}")).find(|o| shared.stripe(o) != t.stripe).unwrap();
        shared.forget_redis_keys(&[
            Value::BulkString(format!("p:{other}").into_bytes()),
            Value::BulkString(b"q:k".to_vec()),
            Value::BulkString("p:\u{FFFF}lru".as_bytes().to_vec()),
            Value::BulkString(b"p:\xfflru".to_vec()),
            Value::BulkString(b"p:".to_vec()),
        ]);
        assert!(shared.fill("k", t, 1, None));
    }

    #[test]
    fn local_writes_patterns_flushes_and_a_lost_connection_refuse_fills() {
        let shared = shared();
        for scope in [Scope::Key("k"), Scope::Pattern("k*"), Scope::All, Scope::Unnamed] {
            let t = ticket(&shared, "k");
            shared.forget(&scope);
            assert!(!shared.fill("k", t, 1, None));
        }
        let t = ticket(&shared, "k");
        shared.on_push(0, PushInfo { kind: PushKind::Invalidate, data: vec![Value::Nil] });
        assert!(!shared.fill("k", t, 1, None), "a flush");
        // A lost connection (session 0 is current here) empties memory and stops serving.
        let t = ticket(&shared, "k");
        assert!(shared.fill("k", t, 1, None));
        let t = ticket(&shared, "k");
        shared.on_push(0, PushInfo { kind: PushKind::Disconnection, data: vec![] });
        assert!(!shared.up.load(Ordering::Acquire));
        assert_eq!(shared.memory.len(), 0);
        assert!(!shared.fill("k", t, 1, None));
    }

    #[test]
    fn a_fill_that_read_redis_during_a_local_write_is_refused_after_it() {
        // A read whose ticket was taken after the write began (so after its
        // first forget) may have read the old value: the forget when the
        // write ends must refuse it, before the write returns.
        let shared = shared();
        for scope in [Scope::Key("k"), Scope::Pattern("*"), Scope::All] {
            let write = Forget::new(&shared, scope);
            let t = ticket(&shared, "k");
            drop(write);
            assert!(!shared.fill("k", t, 1, None));
            // Filled between the forgets: taken out by the second.
            let write = Forget::new(&shared, Scope::Key("k"));
            let t = ticket(&shared, "k");
            assert!(shared.fill("k", t, 1, None));
            drop(write);
            assert!(!shared.memory.contains("k").into_inner().unwrap());
        }
    }

    /// Push messages come from another process: any shape must leave memory
    /// consistent, never panic. An `invalidate` naming keys removes exactly
    /// those of this prefix; anything not understood empties memory.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                "[a-c]{0,2}".prop_map(|k| format!("p:{k}").into_bytes()),
                proptest::collection::vec(any::<u8>(), 0..8),
                Just(b"p:\xff".to_vec()),
                Just("p:\u{FFFF}lock:a".as_bytes().to_vec()),
                Just(b"p:".to_vec()),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Nil),
                any::<i64>().prop_map(Value::Int),
                bytes().prop_map(Value::BulkString),
                "[a-z:]{0,4}".prop_map(Value::SimpleString),
                Just(Value::Okay),
                any::<bool>().prop_map(Value::Boolean),
            ];
            leaf.prop_recursive(3, 24, 5, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Set),
                    proptest::collection::vec((inner.clone(), inner), 0..3).prop_map(Value::Map),
                ]
            })
        }

        fn kind() -> impl Strategy<Value = PushKind> {
            prop_oneof![
                4 => Just(PushKind::Invalidate),
                1 => Just(PushKind::Message),
                1 => Just(PushKind::Subscribe),
                1 => "[a-z]{0,6}".prop_map(PushKind::Other),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: crate::stores::memory::fuzz_cases(2_000),
                ..ProptestConfig::default()
            })]

            #[test]
            fn fuzz_push_messages(kind in kind(), data in proptest::collection::vec(value(), 0..3)) {
                let shared = shared();
                for k in ["a", "b", "c", "ab"] {
                    let t = ticket(&shared, k);
                    prop_assert!(shared.fill(k, t, 1, None));
                }
                let named: Vec<String> = match data.first() {
                    Some(Value::Array(keys)) => keys
                        .iter()
                        .filter_map(|v| match v {
                            Value::BulkString(b) => b.strip_prefix(b"p:").and_then(|k| std::str::from_utf8(k).ok()),
                            _ => None,
                        })
                        .map(str::to_string)
                        .collect(),
                    _ => Vec::new(),
                };
                let flush = kind == PushKind::Invalidate && !matches!(data.first(), Some(Value::Array(_)));
                shared.on_push(0, PushInfo { kind: kind.clone(), data });
                for k in ["a", "b", "c", "ab"] {
                    let gone = flush || (kind == PushKind::Invalidate && named.iter().any(|n| n == k));
                    prop_assert_eq!(shared.memory.contains(k).into_inner().unwrap(), !gone, "{}", k);
                }
                prop_assert!(shared.up.load(Ordering::Acquire), "a message is no disconnection");
            }
        }
    }

    /// The marker's three commands against a real redis-server (started
    /// here): written, seen, renewed only while it exists.
    /// A chain across two caches back into the first (A's memory drops a
    /// value whose `Drop` calls B; B's drops one that calls A) is refused
    /// as a call back into one cache is, not a deadlock on A's lock. Run on
    /// a thread of its own, so that a deadlock fails the test.
    #[test]
    fn a_chain_through_another_cache_back_into_the_first_is_refused() {
        use std::sync::{Arc, Mutex as StdMutex, Weak};

        /// A value that, when dropped, calls the cache it points to as a
        /// `NearCache` call would: `reentered` first, then a write's forget.
        #[derive(Clone)]
        struct Hop {
            next: Weak<Shared<Hop>>,
            seen: Arc<StdMutex<Vec<String>>>,
        }
        impl Drop for Hop {
            fn drop(&mut self) {
                let Some(next) = self.next.upgrade() else { return };
                match next.reentered("delete") {
                    Ok(()) => {
                        self.seen.lock().unwrap().push("called".into());
                        next.forget(&Scope::Key("k"));
                    }
                    Err(e) => self.seen.lock().unwrap().push(format!("{e:?}")),
                }
            }
        }

        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let cache = || {
                let shared = Arc::new(Shared::new(MemoryStore::new(LruPolicy::new(10).unwrap()), "p:"));
                shared.lock().epoch = 2;
                shared
            };
            let (a, b) = (cache(), cache());
            let seen = Arc::new(StdMutex::new(Vec::new()));
            for (from, to) in [(&a, &b), (&b, &a)] {
                let stripe = from.stripe("k");
                let t = {
                    let state = from.lock();
                    Ticket { epoch: state.epoch, stripe, seen: state.stripes[stripe] }
                };
                assert!(from.fill("k", t, Hop { next: Arc::downgrade(to), seen: Arc::clone(&seen) }, None));
            }
            // A's write drops A's value (calls B), whose write drops B's (calls A).
            a.forget(&Scope::Key("k"));
            let _ = tx.send(seen.lock().unwrap().clone());
        });
        let seen = rx.recv_timeout(Duration::from_secs(10)).expect("A -> B -> A deadlocked on A's lock");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], "called", "A -> B is allowed");
        assert!(seen[1].contains("ReentrantValue"), "B -> A is refused: {seen:?}");
    }

    #[test]
    fn a_connection_that_reported_its_loss_is_never_made_current() {
        let shared = Shared::new(MemoryStore::<u32>::new(LruPolicy::new(10).unwrap()), "p:");
        // Session 3 closes before the task makes it current.
        shared.down(3);
        assert_eq!(shared.lock().lost_session, 3);
        assert!(!shared.up.load(Ordering::Acquire));
    }
}
