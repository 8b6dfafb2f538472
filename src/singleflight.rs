//! One load per key at a time, for read-through caching (`get_or_set`).
//!
//! When many callers miss the same key at once, the first becomes the
//! *leader* and runs its loader; the others become *followers* and wait for
//! the leader's result instead of running their own. If the leader goes away
//! without finishing (its future is dropped, its task cancelled, its loader
//! panicked), the load passes to exactly one follower, which runs its own
//! loader; the others keep waiting. A follower that goes away (a timeout
//! dropped its future) takes its registration with it.
//!
//! Costs: joining, registering a waker and leaving are O(1) (waiters sit in a
//! slab); finishing wakes every waiter once, O(n) for n waiters.
//!
//! A loader that asks for its own key (directly, or through the loader of a
//! key it asked for) on the same task would wait on itself for ever: the
//! keys being loaded are recorded for the duration of each poll of a loader,
//! and such a call fails at once with [`CacheError::Reentrant`].
//!
//! Waiting uses plain `Waker`s, so this works under any executor: tokio
//! natively, `wasm-bindgen-futures` in JS. No I/O, no timers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::errors::{CacheError, Result};

/// The loads in progress, by key.
pub(crate) struct SingleFlight<V> {
    flights: Mutex<HashMap<Arc<str>, Arc<Flight<V>>>>,
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        SingleFlight { flights: Mutex::new(HashMap::new()) }
    }
}

struct Flight<V> {
    state: Mutex<FlightState<V>>,
}

struct FlightState<V> {
    outcome: Outcome<V>,
    /// Registered wakers by slot; `free` chains the empty slots.
    waiters: Vec<Option<Waker>>,
    free: Vec<usize>,
    registered: usize,
    /// While `Vacant`: the waiter woken to take the load over.
    taker: Option<usize>,
}

enum Outcome<V> {
    Running,
    Finished(Result<V>),
    /// The leader went away; one waiter is to take over.
    Vacant,
}

impl<V> FlightState<V> {
    fn register(&mut self, waker: &Waker) -> usize {
        self.registered += 1;
        match self.free.pop() {
            Some(slot) => {
                self.waiters[slot] = Some(waker.clone());
                slot
            }
            None => {
                self.waiters.push(Some(waker.clone()));
                self.waiters.len() - 1
            }
        }
    }

    fn unregister(&mut self, slot: usize) {
        if self.waiters[slot].take().is_some() {
            self.registered -= 1;
            self.free.push(slot);
        }
    }

    /// Wakes one registered waiter to take the load over; whether there was one.
    fn hand_over(&mut self) -> bool {
        self.taker = None;
        if self.registered == 0 {
            return false;
        }
        // The scan skips freed slots; it runs once per abandoned load.
        let slot = self.waiters.iter().position(Option::is_some).expect("a registered waiter");
        self.taker = Some(slot);
        if let Some(waker) = &self.waiters[slot] {
            waker.wake_by_ref();
        }
        true
    }
}

/// What a caller that missed is to do.
enum Role<'a, V> {
    /// Run the loader, then call [`Leader::finish`].
    Leader(Leader<'a, V>),
    /// Await this: the leader's result, or the load to take over.
    Follower(Follow<'a, V>),
}

/// What a follower's wait ends with.
enum Followed<V> {
    Done(Result<V>),
    TakeOver,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; a poisoned lock is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The loads whose loader is being polled on this thread right now:
    /// (the `SingleFlight`'s address, key).
    static LOADING: RefCell<Vec<(usize, Arc<str>)>> = const { RefCell::new(Vec::new()) };
}

impl<V: Clone> SingleFlight<V> {
    /// The read-through loop every store runs for `get_or_set`.
    ///
    /// `get` is the store's counted read, made once: a hit ends here. On a
    /// miss the caller joins the key's flight. A follower waits and turns the
    /// leader's shared outcome into its answer with `follow`. The leader (or
    /// a follower the load passed to) runs `lead`, which loads and stores the
    /// value and returns it with the outcome to share; `lead` must itself
    /// check, uncounted, whether a value arrived meanwhile.
    pub async fn read_through<T, GF, L, LF>(
        &self,
        key: &str,
        get: impl FnOnce() -> GF,
        follow: impl Fn(V) -> Result<T>,
        lead: L,
    ) -> Result<T>
    where
        GF: Future<Output = Result<Option<T>>>,
        L: FnOnce() -> LF,
        LF: Future<Output = Result<(T, V)>>,
    {
        self.check_not_loading(key)?;
        if let Some(value) = get().await? {
            return Ok(value);
        }
        let leader = match self.join(key) {
            Role::Leader(leader) => leader,
            Role::Follower(mut wait) => match (&mut wait).await {
                Followed::Done(shared) => return shared.and_then(&follow),
                Followed::TakeOver => Leader::take_over(self, key, Arc::clone(&wait.flight)),
            },
        };
        let result = InLoad { flights: self.addr(), key: &leader.key, inner: Box::pin(lead()) }.await;
        leader.finish(&result.as_ref().map(|(_, shared)| shared.clone()).map_err(Clone::clone));
        result.map(|(value, _)| value)
    }

    fn addr(&self) -> usize {
        self as *const Self as usize
    }

    /// Fails if a loader of `key` on this store is being polled on this
    /// thread: this call comes from inside it and would wait on itself.
    fn check_not_loading(&self, key: &str) -> Result<()> {
        let me = self.addr();
        let reentrant = LOADING.with(|l| l.borrow().iter().any(|(f, k)| *f == me && **k == *key));
        if reentrant { Err(CacheError::Reentrant { key: crate::errors::shown(key) }) } else { Ok(()) }
    }

    /// Joins the flight for `key`, or starts one.
    fn join<'a>(&'a self, key: &'a str) -> Role<'a, V> {
        let mut flights = lock(&self.flights);
        if let Some(flight) = flights.get(key) {
            let mut state = lock(&flight.state);
            // A vacant flight nobody has been asked to take over: take it now.
            if matches!(state.outcome, Outcome::Vacant) && state.taker.is_none() {
                state.outcome = Outcome::Running;
                drop(state);
                let flight = Arc::clone(flight);
                return Role::Leader(Leader { flights: self, key: Arc::from(key), flight, finished: false });
            }
            drop(state);
            return Role::Follower(Follow { flights: self, key, flight: Arc::clone(flight), slot: None });
        }
        let flight = Arc::new(Flight {
            state: Mutex::new(FlightState {
                outcome: Outcome::Running,
                waiters: Vec::new(),
                free: Vec::new(),
                registered: 0,
                taker: None,
            }),
        });
        let key: Arc<str> = Arc::from(key);
        flights.insert(Arc::clone(&key), Arc::clone(&flight));
        Role::Leader(Leader { flights: self, key, flight, finished: false })
    }
}

/// Polls a loader with its load recorded in [`LOADING`], so a call from
/// inside it for the same key fails instead of waiting on itself.
struct InLoad<'k, F> {
    flights: usize,
    key: &'k Arc<str>,
    // Boxed, so this wrapper is Unpin without unsafe code (one allocation
    // per load, next to a loader that does I/O).
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for InLoad<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                LOADING.with(|l| l.borrow_mut().pop());
            }
        }
        let this = self.get_mut();
        LOADING.with(|l| l.borrow_mut().push((this.flights, Arc::clone(this.key))));
        let _pop = Pop; // pops even if the loader panics
        this.inner.as_mut().poll(cx)
    }
}

/// The caller running the load for a key. Dropping it unfinished passes the
/// load to one waiting follower.
struct Leader<'a, V> {
    flights: &'a SingleFlight<V>,
    key: Arc<str>,
    flight: Arc<Flight<V>>,
    finished: bool,
}

impl<'a, V> Leader<'a, V> {
    /// A follower the load passed to (its flight is `Running` again).
    fn take_over(flights: &'a SingleFlight<V>, key: &str, flight: Arc<Flight<V>>) -> Self {
        Leader { flights, key: Arc::from(key), flight, finished: false }
    }

    /// Hands `result` to every follower and ends the flight. Call it after
    /// the value is in the store, so a caller arriving later finds it there.
    fn finish(mut self, result: &Result<V>)
    where
        V: Clone,
    {
        self.finished = true;
        self.remove_from_map();
        let wakers: Vec<Waker> = {
            let mut state = lock(&self.flight.state);
            state.outcome = Outcome::Finished(result.clone());
            state.taker = None;
            state.waiters.iter_mut().filter_map(Option::take).collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn remove_from_map(&self) {
        let mut flights = lock(&self.flights.flights);
        if flights.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            flights.remove(&self.key);
        }
    }
}

impl<V> Drop for Leader<'_, V> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Hold the map lock while deciding, so no one joins a flight that is
        // about to leave the map.
        let mut flights = lock(&self.flights.flights);
        let mut state = lock(&self.flight.state);
        state.outcome = Outcome::Vacant;
        // Out of the map only if no follower holds the flight (the map and
        // this leader are its only owners): one that joined but has not been
        // polled yet would otherwise take over a flight no longer in the map
        // while a newcomer starts a second load. Left vacant in the map, the
        // flight goes to whoever comes first.
        let in_map = flights.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight));
        if !state.hand_over() && in_map && Arc::strong_count(&self.flight) == 2 {
            flights.remove(&self.key);
        }
    }
}

/// A follower's wait for the leader's result.
struct Follow<'a, V> {
    flights: &'a SingleFlight<V>,
    key: &'a str,
    flight: Arc<Flight<V>>,
    slot: Option<usize>,
}

impl<V: Clone> Future for Follow<'_, V> {
    type Output = Followed<V>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Followed<V>> {
        let this = &mut *self;
        let mut state = lock(&this.flight.state);
        let outcome = match &state.outcome {
            Outcome::Finished(result) => Some(Followed::Done(result.clone())),
            Outcome::Vacant if state.taker.is_none() || state.taker == this.slot => {
                state.outcome = Outcome::Running;
                state.taker = None;
                Some(Followed::TakeOver)
            }
            Outcome::Running | Outcome::Vacant => None,
        };
        if let Some(outcome) = outcome {
            if let Some(slot) = this.slot.take() {
                state.unregister(slot);
            }
            return Poll::Ready(outcome);
        }
        match this.slot {
            Some(slot) => match &mut state.waiters[slot] {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            },
            None => this.slot = Some(state.register(cx.waker())),
        }
        Poll::Pending
    }
}

impl<V> Drop for Follow<'_, V> {
    fn drop(&mut self) {
        let unowned = |state: &FlightState<V>| {
            matches!(state.outcome, Outcome::Vacant) && state.taker.is_none() && state.registered == 0
        };
        {
            let mut state = lock(&self.flight.state);
            if let Some(slot) = self.slot.take() {
                state.unregister(slot);
                // Asked to take the load over, and leaving instead: ask another.
                if matches!(state.outcome, Outcome::Vacant) && state.taker == Some(slot) {
                    state.hand_over();
                }
            }
            if !unowned(&state) {
                return;
            }
        }
        // A vacant flight its leader left in the map for this follower (see
        // `Leader`'s drop), and nobody else will take over: out of the map,
        // or unique keys with cancelled callers would fill it. The map's lock
        // first, as everywhere; then check again.
        let mut flights = lock(&self.flights.flights);
        let state = lock(&self.flight.state);
        let in_map = flights.get(self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight));
        if unowned(&state) && in_map && Arc::strong_count(&self.flight) == 2 {
            flights.remove(self.key);
        }
    }
}

/// Wraps a loader's error so every waiter can get a copy.
pub(crate) fn loader_error<E>(error: E) -> CacheError
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    CacheError::Loader(Arc::from(error.into()))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use std::time::Duration;

    impl<V> SingleFlight<V> {
        fn registered(&self, key: &str) -> usize {
            lock(&self.flights).get(key).map_or(0, |f| lock(&f.state).registered)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_dropped_by_a_timeout_leave_nothing_behind() {
        let flights = Arc::new(SingleFlight::<u32>::default());
        let release = Arc::new(tokio::sync::Notify::new());
        let (in_tx, in_rx) = tokio::sync::oneshot::channel();
        let leader = {
            let (flights, release) = (Arc::clone(&flights), Arc::clone(&release));
            tokio::spawn(async move {
                flights
                    .read_through(
                        "k",
                        || async { Ok(None) },
                        Ok,
                        || async move {
                            in_tx.send(()).unwrap();
                            release.notified().await;
                            Ok((7, 7))
                        },
                    )
                    .await
            })
        };
        in_rx.await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..10_000 {
            let flights = Arc::clone(&flights);
            waiters.push(tokio::spawn(async move {
                let wait = flights.read_through("k", || async { Ok(None) }, Ok, || async { unreachable!() });
                tokio::time::timeout(Duration::from_millis(100), wait).await.is_err()
            }));
        }
        for w in waiters {
            assert!(w.await.unwrap(), "every waiter timed out");
        }
        assert_eq!(flights.registered("k"), 0, "10,000 timed-out waiters left nothing registered");
        release.notify_one();
        assert_eq!(leader.await.unwrap().unwrap(), 7);
        assert_eq!(lock(&flights.flights).len(), 0, "the finished flight left the map");
    }

    #[test]
    fn a_follower_not_yet_polled_when_the_leader_leaves_does_not_make_two_loads() {
        use std::future::Future;
        use std::task::Context;
        let flights = SingleFlight::<u32>::default();
        let Role::Leader(leader) = flights.join("k") else { panic!("first caller leads") };
        let Role::Follower(mut early) = flights.join("k") else { panic!("second caller follows") };
        drop(leader); // before `early` was ever polled, so nobody is registered
        // A newcomer takes the vacant flight over...
        let Role::Leader(newcomer) = flights.join("k") else { panic!("the vacant flight is taken over") };
        // ...and the early follower waits for it instead of loading too.
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut early).poll(&mut cx).is_pending(), "one load at a time");
        newcomer.finish(&Ok(5));
        assert!(matches!(Pin::new(&mut early).poll(&mut cx), Poll::Ready(Followed::Done(Ok(5)))));
    }

    #[test]
    fn a_follower_dropped_unpolled_after_its_leader_left_takes_the_flight_out_of_the_map() {
        let flights = SingleFlight::<u32>::default();
        let Role::Leader(leader) = flights.join("k") else { panic!("first caller leads") };
        let Role::Follower(early) = flights.join("k") else { panic!("second caller follows") };
        drop(leader); // the flight stays, vacant, for `early`
        assert_eq!(lock(&flights.flights).len(), 1);
        drop(early); // cancelled before it was ever polled
        assert_eq!(lock(&flights.flights).len(), 0, "no vacant flight is left behind");
        // And a taker that leaves with nobody to pass the load to.
        let Role::Leader(leader) = flights.join("k") else { panic!("leads") };
        let Role::Follower(mut taker) = flights.join("k") else { panic!("follows") };
        let mut cx = std::task::Context::from_waker(Waker::noop());
        assert!(std::future::Future::poll(Pin::new(&mut taker), &mut cx).is_pending());
        drop(leader); // `taker` is asked to take over
        drop(taker); // and leaves instead
        assert_eq!(lock(&flights.flights).len(), 0, "no vacant flight is left behind");
    }

    #[tokio::test]
    async fn a_taker_that_leaves_passes_the_load_on() {
        use std::future::Future;
        use std::task::Context;
        let flights = SingleFlight::<u32>::default();
        let Role::Leader(leader) = flights.join("k") else { panic!("first caller leads") };
        let (Role::Follower(mut a), Role::Follower(mut b)) = (flights.join("k"), flights.join("k")) else {
            panic!("later callers follow")
        };
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(Pin::new(&mut a).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut b).poll(&mut cx).is_pending());
        drop(leader); // abandoned: one of the two is asked to take over
        let taker_is_a = lock(&a.flight.state).taker == a.slot;
        let (taker, other) = if taker_is_a { (a, &mut b) } else { (b, &mut a) };
        assert!(Pin::new(&mut *other).poll(&mut cx).is_pending(), "only the taker may lead");
        drop(taker); // leaves without taking over: the other is asked
        assert!(matches!(Pin::new(&mut *other).poll(&mut cx), Poll::Ready(Followed::TakeOver)));
    }
}
