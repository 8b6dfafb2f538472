//! Expiry: the index of the entries that have a TTL, soonest first, and the
//! one way an expired entry leaves ([`Engine::expire`]: removed, counted as
//! an expiration, handed back to be dropped last).

use super::slab::{NEVER, Removed};
use super::{Engine, Removals};
use crate::clock::{END_OF_TIME, Nanos, duration_nanos};
use crate::key::Key;
use crate::removal::RemovalReason;

/// How many expired entries each `set` reclaims beyond the one it touches.
pub(crate) const RECLAIM_PER_WRITE: usize = 8;

/// When an entry set at `now` with `ttl` expires: saturating at the end of
/// time, which every TTL set before it reaches; an entry set at the end of
/// time itself (the clock cannot move any more) lives on.
pub(super) fn expiry(now: Nanos, ttl: std::time::Duration) -> Nanos {
    if now >= END_OF_TIME { NEVER - 1 } else { now.saturating_add(duration_nanos(ttl)).min(END_OF_TIME) }
}

impl<V> Engine<V> {
    /// The time, when some entry has a TTL (else 0: nothing can expire).
    #[inline]
    pub(super) fn now_if_expiring(&self) -> Nanos {
        if self.expiries.is_empty() { 0 } else { self.clock.now() }
    }

    /// Whether live slot `id` has expired at `now` (the clock's time if the
    /// caller has not read it: read only for an entry with a TTL).
    #[inline(always)]
    pub(super) fn has_expired(&self, id: u32, now: Option<Nanos>) -> bool {
        let slot = &self.slab[id];
        let at = slot.expires_at;
        at != NEVER && {
            let now = now.unwrap_or_else(|| self.clock.now());
            // An idle entry's filed deadline may have been pushed by a read.
            at <= now && (!slot.idle || self.idle_expired(id, now))
        }
    }

    /// Removes slot `id` (filed under `hash`), which has expired, and counts
    /// an expiration; the entry, for the caller to drop once it has finished
    /// its own bookkeeping (a value's `Drop` may panic).
    pub(super) fn expire(&mut self, id: u32, hash: u64) -> Removed<V> {
        self.counters.expirations += 1;
        self.remove_slot(id, hash, RemovalReason::Expired)
    }

    /// Files slot `id` under its new expiry instead of its old one (each an
    /// `(expires_at, seq)`; `NEVER` is not filed).
    #[inline(always)]
    pub(super) fn reindex_expiry(&mut self, id: u32, old: (Nanos, u32), new: (Nanos, u32)) {
        if old.0 != NEVER {
            self.expiries.remove(&(old.0, old.1, id));
        }
        if new.0 != NEVER {
            self.expiries.insert((new.0, new.1, id));
        }
    }

    /// Removes the entry under `key` if it has expired (after a shared read found it so).
    pub fn reclaim_if_expired(&mut self, key: Key<'_>, hash: u64) {
        if let Some(id) = self.find(hash, &key)
            && self.has_expired(id, None)
        {
            let removed = self.expire(id, hash);
            self.discard(removed);
        }
    }

    /// Removes up to `limit` expired entries, soonest-expired first, into
    /// `out`; whether it removed any. Without entries that expire (the
    /// usual store), one test inline: every write that evicts asks.
    #[inline(always)]
    pub(super) fn reclaim_expired(&mut self, now: Nanos, limit: usize, out: &mut Removals<V>) -> bool {
        !self.expiries.is_empty() && self.reclaim_filed(now, limit, out)
    }

    /// [`reclaim_expired`](Self::reclaim_expired) with entries filed by expiry.
    #[inline(never)]
    fn reclaim_filed(&mut self, now: Nanos, limit: usize, out: &mut Removals<V>) -> bool {
        let mut reclaimed = 0;
        while reclaimed < limit {
            match self.expiries.first() {
                Some(&(at, seq, id)) if at <= now => {
                    // An idle entry a read kept alive (or whose deadline moved)
                    // is filed again under its real deadline: it leaves in turn.
                    if let Some(real) = self.moved_deadline(id) {
                        self.slab[id].expires_at = real;
                        self.reindex_expiry(id, (at, seq), (real, seq));
                        continue;
                    }
                    let hash = self.hash(&self.slab[id].key);
                    out.push(self.expire(id, hash));
                    reclaimed += 1;
                }
                _ => break,
            }
        }
        reclaimed > 0
    }

    pub(super) fn reclaim_all_expired(&mut self) {
        let now = self.now_if_expiring();
        let mut out = Removals::new();
        self.reclaim_expired(now, usize::MAX, &mut out);
        for removed in out.into_entries() {
            self.discard(removed);
        }
    }
}
