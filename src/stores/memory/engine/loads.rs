//! Loads and freshness: the placeholders of loads in flight (`get_or_set`,
//! `get_or_refresh`), which any write of their key removes so a load that
//! began before it stores nothing, and the freshness of the entries
//! `get_or_refresh` stored, with the reads that consult it.

use super::lanes::Tally;
use super::slab::Slot;
use super::{Engine, Removals};
use crate::clock::{Nanos, duration_nanos};
use crate::errors::Result;
use crate::key::Key;
use crate::pattern::Pattern;
use crate::refresh::RefreshOptions;

/// How fresh an entry read by `get_or_refresh` is.
pub(crate) enum Freshly<V> {
    Fresh(V),
    Stale { value: V, refresh: bool },
    Miss,
}

/// An entry stored by `get_or_refresh`: fresh until `fresh_until`, then stale
/// until it expires; whether a refresh is running, and when the next may start.
pub(super) struct Freshness {
    fresh_until: Nanos,
    refreshing: bool,
    retry_at: Nanos,
    failures: u32,
}

impl<V> Engine<V> {
    /// Marks a load of `key` as begun: the token its value must still hold
    /// when it arrives. A newer load of the same key replaces it.
    pub fn begin_load(&mut self, key: Key<'_>) -> u64 {
        self.next_token += 1;
        self.loads.insert((*key).into(), self.next_token);
        self.next_token
    }

    /// Ends the load `token` of `key`; whether nothing wrote, deleted,
    /// invalidated or cleared the key since it began (whether its value may
    /// be stored).
    pub fn end_load(&mut self, key: Key<'_>, token: u64) -> bool {
        if self.loads.get(&*key) == Some(&token) {
            self.loads.remove(&*key);
            true
        } else {
            false
        }
    }

    /// Cancels a load of `key` (a write moved the key on), and forgets the
    /// freshness of its entry `existing` (a written entry is no longer one
    /// `get_or_refresh` stored).
    #[inline]
    pub(super) fn cancel_load(&mut self, key: &str, existing: Option<u32>) {
        if !self.loads.is_empty() {
            self.loads.remove(key);
        }
        if let Some(id) = existing
            && !self.fresh.is_empty()
        {
            self.fresh.remove(&id);
        }
    }

    /// Cancels a load or refresh of `key`, live in slot `id`, whose value
    /// would erase a change just made (a metadata update). A refresh it
    /// cancels is no longer running: the next stale read starts another.
    pub(super) fn cancel_refresh(&mut self, key: &str, id: u32) {
        if self.loads.remove(key).is_some()
            && let Some(state) = self.fresh.get_mut(&id)
        {
            state.refreshing = false;
        }
    }

    /// Forgets the loads and freshness of the keys matching `pattern` (they
    /// are being invalidated).
    pub(super) fn forget_loads_matching(&mut self, pattern: &Pattern) {
        if !self.loads.is_empty() {
            self.loads.retain(|key, _| !pattern.matches(key));
        }
        if !self.fresh.is_empty() {
            let slab = &self.slab;
            self.fresh.retain(|&id, _| !pattern.matches(&slab[id].key));
        }
    }

    /// The counted read of `get_or_refresh`, under an exclusive borrow:
    /// whether the value is fresh, or stale (past its fresh period, within
    /// its grace) and whether this call is to start the refresh (one at a
    /// time, not before a failed one's backoff has passed).
    pub fn get_fresh(&mut self, key: Key<'_>, hash: u64) -> Freshly<V>
    where
        V: Clone,
    {
        // One reading of the clock serves both the expiry and the freshness check.
        let now = self.clock.now();
        let Some(value) = self.get_exclusive(key, hash, Some(now), V::clone) else { return Freshly::Miss };
        if self.fresh.is_empty() {
            return Freshly::Fresh(value);
        }
        let Some(state) = self.find(hash, &key).and_then(|id| self.fresh.get_mut(&id)) else {
            return Freshly::Fresh(value);
        };
        if now < state.fresh_until {
            return Freshly::Fresh(value);
        }
        self.counters.stale_hits += 1;
        let refresh = !state.refreshing && now >= state.retry_at;
        if refresh {
            state.refreshing = true;
            self.counters.refreshes += 1;
        }
        Freshly::Stale { value, refresh }
    }

    /// [`get_fresh`](Self::get_fresh) under a shared borrow, for the
    /// policies whose reads are shared: the answer, counted, when no
    /// exclusive work is needed; `None` (nothing counted) for a miss, an
    /// expired entry, or a stale one whose refresh this call is to start.
    #[inline]
    pub fn get_fresh_shared(&self, key: Key<'_>, hash: u64) -> Option<Freshly<V>>
    where
        V: Clone,
    {
        debug_assert!(self.reads_are_shared());
        let now = self.clock.now();
        let id = self.find(hash, &key)?;
        let slot = &self.slab[id];
        if !self.live_read(id, Some(now)) {
            return None;
        }
        let stale = match self.fresh.get(&id) {
            None => false,
            Some(state) if now < state.fresh_until => false,
            // A refresh is running, or backing off after a failure.
            Some(state) if state.refreshing || now < state.retry_at => true,
            Some(_) => return None,
        };
        // Counted as `get_shared` counts a hit: on this thread's lane (the
        // shard's shared counters for a thread without one).
        let value = match self.lanes.open() {
            Some(lane) => self.fresh_hit(lane, slot, hash, now),
            None => self.fresh_hit(&self.reads, slot, hash, now),
        };
        Some(if stale {
            self.reads.count_stale_hit();
            Freshly::Stale { value, refresh: false }
        } else {
            Freshly::Fresh(value)
        })
    }

    /// The value of a hit of [`get_fresh_shared`](Self::get_fresh_shared)
    /// at `now`, counted on `tally` once it is read (as `get_shared` counts).
    #[inline(always)]
    fn fresh_hit(&self, tally: impl Tally, slot: &Slot<V>, hash: u64, now: Nanos) -> V
    where
        V: Clone,
    {
        let sampled = tally.sampled();
        self.touch(&slot.freq, hash);
        let value = slot.value().clone();
        tally.close(true);
        if sampled {
            self.reads.record_latency(self.clock.now().saturating_sub(now));
        }
        value
    }

    /// Stores what a load for `get_or_refresh` produced (if its placeholder
    /// `token` is still there), fresh for the options' fresh period, handing
    /// back what the store removed; or, on failure, keeps the stale value and
    /// schedules the next refresh after the options' backoff (if the load is
    /// still the key's own).
    pub fn finish_refresh(
        &mut self,
        key: Key<'_>,
        hash: u64,
        token: u64,
        outcome: std::result::Result<V, ()>,
        options: &RefreshOptions,
        background: bool,
    ) -> Result<Removals<V>> {
        let still_ours = self.end_load(key, token) && self.tagged_load_may_store(token, &options.set.tags);
        if outcome.is_err() && background {
            self.counters.refresh_failures += 1;
        }
        match outcome {
            Ok(value) if still_ours => {
                let removed = self.set(key, hash, value, options.entry_options())?;
                // Fresh for the options' fresh period, with no refresh running and no backoff.
                let fresh_until = self.clock.now().saturating_add(duration_nanos(options.fresh_for));
                if let Some(id) = self.find(hash, &key) {
                    self.fresh.insert(id, Freshness { fresh_until, refreshing: false, retry_at: 0, failures: 0 });
                }
                return Ok(removed);
            }
            Err(()) if still_ours => {
                let now = self.clock.now();
                if let Some(state) = self.find(hash, &key).and_then(|id| self.fresh.get_mut(&id)) {
                    state.refreshing = false;
                    state.failures = state.failures.saturating_add(1);
                    state.retry_at = now.saturating_add(duration_nanos(options.backoff(state.failures)));
                }
            }
            // A load the key has moved on from (written, cleared, loaded
            // again since) touches nothing: not even a newer refresh's state.
            _ => {}
        }
        Ok(Removals::new())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::{Engine, KeyHasher, LaneColumn};
    use super::Freshly;
    use crate::clock::Clock;
    use crate::key::Key;
    use crate::store::SetOptions;

    /// `get_or_refresh`'s shared read counts its hit on the reading thread's
    /// lane, as `get` does, not with an atomic add on the shard's shared
    /// counter (whose cache line every reading thread writes).
    #[test]
    fn a_shared_fresh_hit_counts_on_the_threads_lane() {
        let policy = crate::policies::S3FifoPolicy::new(10).unwrap().into();
        let mut engine =
            Engine::<u32>::with_hasher(policy, Clock::system(), KeyHasher::default(), LaneColumn::single());
        let key = Key::new("k").unwrap();
        let hash = engine.hash(&key);
        engine.set(key, hash, 7, SetOptions::new()).unwrap();
        // A thread has a lane unless 16 others hold one at once (other tests'
        // threads may): then the shared counter is right, and only the total is checked.
        let has_lane = engine.lanes.open().is_some();
        for n in 1..=40 {
            assert!(matches!(engine.get_fresh_shared(key, hash), Some(Freshly::Fresh(7))));
            if has_lane {
                assert_eq!(engine.reads.totals(), (0, 0), "the shared counters stay untouched");
                assert_eq!(engine.lanes.totals(), (n, 0));
            }
            assert_eq!(engine.stats().hits, n);
        }
    }
}
