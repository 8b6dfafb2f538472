//! One load per key at a time, for read-through caching (`get_or_set`).
//!
//! When many callers miss the same key at once, the first becomes the
//! *leader* and runs its loader; the others become *followers* and wait for
//! the leader's result instead of running their own. If the leader goes away
//! without finishing (its future is dropped, its task cancelled), the flight
//! is *abandoned*: followers wake and one of them leads a new flight with its
//! own loader, so no one waits forever.
//!
//! Waiting uses plain `Waker`s, so this works under any executor: tokio
//! natively, `wasm-bindgen-futures` in JS. No I/O, no timers.

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
    state: Mutex<State<V>>,
}

enum State<V> {
    Running(Vec<Waker>),
    Finished(Result<V>),
    Abandoned,
}

/// What a caller that missed is to do.
enum Role<'a, V> {
    /// Run the loader, then call [`Leader::finish`].
    Leader(Leader<'a, V>),
    /// Await this: `Some(result)` from the leader, or `None` if it gave up
    /// (try again).
    Follower(Follow<V>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; a poisoned lock is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<V: Clone> SingleFlight<V> {
    /// The read-through loop every store runs for `get_or_set`.
    ///
    /// `get` is the store's counted read; a hit ends here. On a miss the
    /// caller joins the key's flight. A follower waits and turns the leader's
    /// shared outcome into its answer with `follow` (or starts over if the
    /// leader went away). The leader runs `lead`, which loads and stores the
    /// value and returns it with the outcome to share.
    pub async fn read_through<T, G, GF, L, LF>(
        &self,
        key: &str,
        mut get: G,
        follow: impl Fn(V) -> Result<T>,
        lead: L,
    ) -> Result<T>
    where
        G: FnMut() -> GF,
        GF: Future<Output = Result<Option<T>>>,
        L: FnOnce() -> LF,
        LF: Future<Output = Result<(T, V)>>,
    {
        let mut lead = Some(lead);
        loop {
            if let Some(value) = get().await? {
                return Ok(value);
            }
            let leader = match self.join(key) {
                Role::Leader(leader) => leader,
                Role::Follower(wait) => match wait.await {
                    Some(shared) => return shared.and_then(&follow),
                    // The leader went away without a value: try again, maybe as leader.
                    None => continue,
                },
            };
            // A caller leads at most once: leading always returns.
            let Some(lead) = lead.take() else { unreachable!("a caller leads at most one load") };
            let result = lead().await;
            leader.finish(&result.as_ref().map(|(_, shared)| shared.clone()).map_err(Clone::clone));
            return result.map(|(value, _)| value);
        }
    }

    /// Joins the flight for `key`, or starts one.
    fn join(&self, key: &str) -> Role<'_, V> {
        let mut flights = lock(&self.flights);
        if let Some(flight) = flights.get(key) {
            return Role::Follower(Follow { flight: Arc::clone(flight) });
        }
        let flight = Arc::new(Flight { state: Mutex::new(State::Running(Vec::new())) });
        let key: Arc<str> = Arc::from(key);
        flights.insert(Arc::clone(&key), Arc::clone(&flight));
        Role::Leader(Leader { flights: self, key, flight, finished: false })
    }
}

/// The caller running the load for a key. Dropping it unfinished abandons the
/// flight and wakes the followers.
struct Leader<'a, V> {
    flights: &'a SingleFlight<V>,
    key: Arc<str>,
    flight: Arc<Flight<V>>,
    finished: bool,
}

impl<V: Clone> Leader<'_, V> {
    /// Hands `result` to every follower and ends the flight. Call it after
    /// the value is in the store, so a caller arriving later finds it there.
    fn finish(mut self, result: &Result<V>) {
        self.end(State::Finished(result.clone()));
    }
}

impl<V> Leader<'_, V> {
    fn end(&mut self, outcome: State<V>) {
        self.finished = true;
        {
            let mut flights = lock(&self.flights.flights);
            if flights.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
                flights.remove(&self.key);
            }
        }
        let previous = std::mem::replace(&mut *lock(&self.flight.state), outcome);
        if let State::Running(wakers) = previous {
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}

impl<V> Drop for Leader<'_, V> {
    fn drop(&mut self) {
        if !self.finished {
            self.end(State::Abandoned);
        }
    }
}

/// A follower's wait for the leader's result.
struct Follow<V> {
    flight: Arc<Flight<V>>,
}

impl<V: Clone> Future for Follow<V> {
    type Output = Option<Result<V>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.flight.state);
        match &mut *state {
            State::Running(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
            State::Finished(result) => Poll::Ready(Some(result.clone())),
            State::Abandoned => Poll::Ready(None),
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
