//! Time-to-idle: entries that leave after a period without a read, or at
//! their TTL, whichever comes first.
//!
//! An entry with an idle time is marked in its slot (`Slot::idle`, a byte in
//! the slot's padding) and has an [`IdleClock`] in a side table, by slot id:
//! its idle time, its TTL deadline, and when it was last read (an atomic, so
//! that a shared read under a read lock records it). Its real deadline is
//! `min(ttl deadline, last read + idle)`.
//!
//! The expiry index files the entry under the deadline it had when it was
//! last filed, which is never later than the real one (reads only push it
//! later). So the index stays a correct lower bound without a write on the
//! read path: where the index says an idle entry is due, it is looked at
//! again ([`Engine::settle`]) and, if a read has moved its deadline, filed
//! again under the real one; only an entry whose filed deadline is its real
//! one leaves. Reclaim and the TTL policy's eviction therefore take entries
//! in the order of their real deadlines.
//!
//! A hit on an entry without a deadline costs what it did before (one
//! compare); one with a TTL pays one byte test more, in a cache line the hit
//! reads anyway; an engine without idle entries never touches the side table.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Engine;
use super::expiry::expiry;
use super::slab::{NEVER, Slot};
use crate::clock::Nanos;

/// The idle bookkeeping of one entry.
pub(super) struct IdleClock {
    /// How long it may go without a read, in ns.
    idle: std::time::Duration,
    /// Its TTL deadline ([`NEVER`] without a TTL).
    ttl_at: Nanos,
    /// When it was set or last read.
    read_at: AtomicU64,
}

impl IdleClock {
    pub(super) fn new(idle: std::time::Duration, ttl_at: Nanos, now: Nanos) -> Self {
        IdleClock { idle, ttl_at, read_at: AtomicU64::new(now) }
    }

    /// The real deadline: the TTL's, or `idle` after the last read if sooner.
    pub(super) fn deadline(&self) -> Nanos {
        self.ttl_at.min(expiry(self.read_at.load(Relaxed), self.idle))
    }
}

impl<V> Engine<V> {
    /// Whether live slot `id` is live at `now` (the clock's time if `None`),
    /// recording a read if it carries an idle time: the check of every
    /// counted read (`get`, `get_or_set` and `get_or_refresh` hits).
    #[inline(always)]
    pub(super) fn live_read(&self, id: u32, now: Option<Nanos>) -> bool {
        self.live_read_slot(id, &self.slab[id], now)
    }

    /// [`live_read`](Self::live_read) of slot `id` (`slot`), which the caller has found.
    #[inline(always)]
    pub(super) fn live_read_slot(&self, id: u32, slot: &Slot<V>, now: Option<Nanos>) -> bool {
        let at = slot.expires_at;
        // An entry without a deadline has no idle time either: one compare,
        // as before there were idle times.
        if at == NEVER {
            return true;
        }
        if slot.idle {
            return self.idle_read(id, now);
        }
        at > now.unwrap_or_else(|| self.clock.now())
    }

    /// [`live_read`](Self::live_read) of an entry with an idle time: one
    /// reading of the clock decides and, if it is live, is recorded as its
    /// last read (the latest of concurrent readers wins).
    #[cold]
    #[inline(never)]
    fn idle_read(&self, id: u32, now: Option<Nanos>) -> bool {
        let now = now.unwrap_or_else(|| self.clock.now());
        let Some(clock) = self.idles.get(&id) else { return !self.has_expired(id, Some(now)) };
        if clock.deadline() <= now {
            return false;
        }
        clock.read_at.fetch_max(now, Relaxed);
        true
    }

    /// Whether idle slot `id`, filed under a deadline that has passed at
    /// `now`, has really expired (a read may have pushed its deadline).
    /// Off the hit path: only reached when the filed deadline has passed.
    #[cold]
    #[inline(never)]
    pub(super) fn idle_expired(&self, id: u32, now: Nanos) -> bool {
        self.idles.get(&id).is_none_or(|clock| clock.deadline() <= now)
    }

    /// The real deadline of slot `id` if it differs from the one it is
    /// filed under (a read pushed it later), else `None`.
    #[inline]
    pub(super) fn moved_deadline(&self, id: u32) -> Option<Nanos> {
        let slot = &self.slab[id];
        if !slot.idle {
            return None;
        }
        let real = self.idles.get(&id)?.deadline();
        (real != slot.expires_at).then_some(real)
    }

    /// Files the soonest entry of the expiry index under its real deadline
    /// until the soonest is filed under its own: then the first of the index
    /// is the entry that really expires first. Each entry is filed again at
    /// most once (its deadline does not move while the engine is borrowed
    /// exclusively).
    pub(super) fn settle(&mut self) {
        if self.idles.is_empty() {
            return;
        }
        while let Some(&(at, seq, id)) = self.expiries.first() {
            let Some(real) = self.moved_deadline(id) else { return };
            self.slab[id].expires_at = real;
            self.reindex_expiry(id, (at, seq), (real, seq));
        }
    }

    /// What a `set` with an idle time (its own, `own`, or the policy's)
    /// needs: the time, the TTL deadline (the TTL: `ttl`), the deadline to
    /// file the entry under, and the idle time. Out of the plain `set`'s way.
    #[inline(never)]
    pub(super) fn idle_deadlines(
        &self,
        ttl: Option<std::time::Duration>,
        own: Option<std::time::Duration>,
    ) -> (Nanos, Nanos, Nanos, Option<std::time::Duration>) {
        let idle = own.or(self.default_idle);
        let now = self.clock.now();
        let ttl_at = ttl.map_or(NEVER, |ttl| expiry(now, ttl));
        let at = idle.map_or(ttl_at, |idle| ttl_at.min(expiry(now, idle)));
        (now, ttl_at, at, idle)
    }

    /// The idle clock of a new or replaced entry in slot `id`: `idle` (if
    /// any) counted from `now`, with TTL deadline `ttl_at`; the deadline the
    /// slot is filed under.
    #[inline(never)]
    pub(super) fn start_idle(
        &mut self,
        id: u32,
        idle: Option<std::time::Duration>,
        ttl_at: Nanos,
        now: Nanos,
    ) -> Nanos {
        match idle {
            Some(idle) => {
                let clock = IdleClock::new(idle, ttl_at, now);
                let at = clock.deadline();
                self.idles.insert(id, clock);
                self.slab[id].idle = true;
                at
            }
            None => {
                if std::mem::replace(&mut self.slab[id].idle, false) {
                    self.idles.remove(&id);
                }
                ttl_at
            }
        }
    }

    /// The idle time and TTL deadline of live slot `id`, if it has an idle
    /// time (for a dump: `dump.rs`).
    pub(super) fn idle_of(&self, id: u32) -> Option<(std::time::Duration, Nanos)> {
        if !self.slab[id].idle {
            return None;
        }
        self.idles.get(&id).map(|clock| (clock.idle, clock.ttl_at))
    }

    /// Forgets the idle clock of slot `id`, being removed.
    #[inline]
    pub(super) fn stop_idle(&mut self, id: u32) {
        if std::mem::replace(&mut self.slab[id].idle, false) {
            self.idles.remove(&id);
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
impl<V> Engine<V> {
    /// Panics unless the idle table describes exactly the idle slots, each
    /// filed no later than its real deadline.
    pub(super) fn validate_idle(&self) {
        let idle: Vec<u32> = self.slab.ids().filter(|&id| self.slab[id].idle).collect();
        assert_eq!(idle.len(), self.idles.len(), "idle table out of step with the slots");
        for id in idle {
            let clock = self.idles.get(&id).expect("an idle slot has a clock");
            assert!(self.slab[id].expires_at <= clock.deadline(), "slot {id} filed after its deadline");
            assert!(self.slab[id].expires_at != NEVER);
        }
    }
}
