//! Tags: which tags each entry carries and which entries carry each tag,
//! kept beside the slab and changed under the same borrow as the entries.
//!
//! An engine that never stored a tagged entry has no index at all (`None`):
//! a plain `set` or removal pays one test of that `Option`, a `get` nothing.
//! Once built, the index follows every way a slot is freed
//! ([`Engine::remove_slot`](super::Engine) for deletes, expiry, eviction and
//! invalidation, a `set` that replaces, `clear`), so it always describes
//! exactly the live tagged slots (checked by `validate` in the model tests).
//!
//! A load that began before an `invalidate_tags` of this engine stores
//! nothing if its options carry tags: the call records the newest load token
//! handed out so far ([`TagIndex::cut`]), and a tagged load whose token is
//! not above it is one that began before.

use hashbrown::{HashMap, HashSet};

use super::slab::Removed;
use super::{Engine, KeyHasher};
use crate::key::Key;

pub(super) struct TagIndex {
    /// Slot -> its tags, in the order they were set.
    of_slot: HashMap<u32, Box<[Box<str>]>, KeyHasher>,
    /// Tag -> the slots that carry it (never an empty set).
    by_tag: HashMap<Box<str>, HashSet<u32, KeyHasher>, KeyHasher>,
}

impl TagIndex {
    fn new() -> Self {
        TagIndex {
            of_slot: HashMap::with_hasher(KeyHasher::default()),
            by_tag: HashMap::with_hasher(KeyHasher::default()),
        }
    }

    /// Files slot `id` under `tags` (it carries none yet).
    fn tag(&mut self, id: u32, tags: Vec<String>) {
        let tags: Box<[Box<str>]> = tags.into_iter().map(String::into_boxed_str).collect();
        for tag in &tags {
            match self.by_tag.get_mut(tag) {
                Some(slots) => {
                    slots.insert(id);
                }
                None => {
                    let mut slots = HashSet::with_hasher(KeyHasher::default());
                    slots.insert(id);
                    self.by_tag.insert(tag.clone(), slots);
                }
            }
        }
        self.of_slot.insert(id, tags);
    }

    /// Forgets the tags of slot `id` (freed, or set again).
    pub(super) fn untag(&mut self, id: u32) {
        let Some(tags) = self.of_slot.remove(&id) else { return };
        for tag in tags.iter() {
            if let Some(slots) = self.by_tag.get_mut(tag) {
                slots.remove(&id);
                if slots.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
    }
}

impl<V> Engine<V> {
    /// Gives slot `id`, just set, the tags of its `set` (none: forgets any it had).
    #[inline]
    pub(super) fn retag(&mut self, id: u32, tags: Vec<String>) {
        if let Some(index) = self.tags.as_deref_mut() {
            index.untag(id);
        }
        if !tags.is_empty() {
            self.tags.get_or_insert_with(|| Box::new(TagIndex::new())).tag(id, tags);
        }
    }

    /// Whether a load whose token is `token` may store an entry with `tags`:
    /// not if they are some and an `invalidate_tags` came after it began.
    #[inline]
    pub(crate) fn tagged_load_may_store(&self, token: u64, tags: &[String]) -> bool {
        tags.is_empty() || token > self.tags_cut
    }

    /// Removes the live entries that carry one of `tags` (checked by the
    /// caller), handing them back; cancels the loads of their keys and every
    /// tagged load in flight.
    pub fn invalidate_tags(&mut self, tags: &[&str]) -> Vec<Removed<V>> {
        self.tags_cut = self.next_token;
        let Some(index) = self.tags.as_deref() else { return Vec::new() };
        let mut doomed: Vec<u32> =
            tags.iter().filter_map(|&tag| index.by_tag.get(tag)).flat_map(|slots| slots.iter().copied()).collect();
        doomed.sort_unstable();
        doomed.dedup();
        let now = self.now_if_expiring();
        self.invalidate_slots(doomed, now, true)
    }

    /// The tags of slot `id`, in the order set (empty: none).
    pub(super) fn tags_of(&self, id: u32) -> Vec<String> {
        let tags = self.tags.as_deref().and_then(|index| index.of_slot.get(&id));
        tags.map(|tags| tags.iter().map(|t| t.to_string()).collect()).unwrap_or_default()
    }

    /// The tags of the live entry under `key`, in the order set (`None`: no entry).
    pub fn get_tags(&mut self, key: Key<'_>, hash: u64) -> Option<Vec<String>> {
        let id = self.live_slot(key, hash)?;
        Some(self.tags_of(id))
    }

    /// Panics unless the index describes exactly the live tagged slots.
    #[cfg(all(test, not(target_arch = "wasm32")))]
    pub(super) fn validate_tags(&self) {
        let Some(index) = self.tags.as_deref() else { return };
        let live: std::collections::BTreeSet<u32> = self.slab.ids().collect();
        for (id, tags) in &index.of_slot {
            assert!(live.contains(id), "the tags of freed slot {id} are kept");
            assert!(!tags.is_empty(), "slot {id} is filed with no tags");
            for tag in tags.iter() {
                assert!(index.by_tag.get(tag).is_some_and(|s| s.contains(id)), "{tag} does not list slot {id}");
            }
        }
        for (tag, slots) in &index.by_tag {
            assert!(!slots.is_empty(), "{tag} has an empty set");
            for id in slots {
                assert!(index.of_slot.get(id).is_some_and(|t| t.contains(tag)), "{tag} lists slot {id} without it");
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use crate::clock::ManualClock;
    use crate::policies::{LruPolicy, Policy, S3FifoPolicy, TtlPolicy};
    use crate::store::SetOptions;
    use crate::stores::memory::test_support::StrEngine;

    const TAGS: [&str; 4] = ["a", "b", "c", "d"];

    #[derive(Clone, Debug)]
    enum Op {
        Set { key: u8, tags: u8, ttl: bool },
        Delete(u8),
        Invalidate(u8),
        InvalidateTags(u8),
        Pass,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..12, 0u8..16, any::<bool>()).prop_map(|(key, tags, ttl)| Op::Set { key, tags, ttl }),
            1 => (0u8..12).prop_map(Op::Delete),
            1 => (0u8..3).prop_map(Op::Invalidate),
            2 => (0u8..16).prop_map(Op::InvalidateTags),
            1 => Just(Op::Pass),
            1 => Just(Op::Clear),
        ]
    }

    fn pick(mask: u8) -> Vec<&'static str> {
        TAGS.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, t)| *t).collect()
    }

    fn policy(kind: u8) -> Policy {
        match kind {
            0 => LruPolicy::new(6).unwrap().into(),
            1 => S3FifoPolicy::new(6).unwrap().into(),
            _ => TtlPolicy::new(Duration::from_secs(5)).unwrap().with_max_size(6).unwrap().into(),
        }
    }

    proptest! {
        /// After every step the index describes exactly the live tagged
        /// entries (`validate`), every live entry reads back the tags of its
        /// last set, and `invalidate_tags` removes exactly the live entries
        /// carrying one of its tags.
        #[test]
        fn the_tag_index_follows_every_removal(kind in 0u8..3, ops in proptest::collection::vec(op(), 1..120)) {
            let clock = ManualClock::new();
            let mut e = StrEngine::<u32>::new(policy(kind), clock.clone().into());
            // key -> tags of its last set (entries may leave behind the model's back: evicted, expired).
            let mut last: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Set { key, tags, ttl } => {
                        let mut options = SetOptions::new().tags(pick(tags));
                        if ttl {
                            options = options.ttl(Duration::from_secs(1));
                        }
                        e.set(&format!("k{key}"), 0, options).unwrap();
                        last.insert(format!("k{key}"), pick(tags));
                    }
                    Op::Delete(key) => { e.delete(&format!("k{key}")).unwrap(); }
                    Op::Invalidate(digit) => { e.invalidate(&format!("k{digit}*")).unwrap(); }
                    Op::InvalidateTags(mask) => {
                        let tags = pick(mask);
                        let live = e.keys(None).unwrap();
                        let expected = live.iter().filter(|k| last[*k].iter().any(|t| tags.contains(t))).count();
                        let removed = e.invalidate_tags(&tags).len();
                        prop_assert_eq!(removed, expected);
                        for key in e.keys(None).unwrap() {
                            prop_assert!(!last[&key].iter().any(|t| tags.contains(t)), "{} survived", key);
                        }
                    }
                    Op::Pass => clock.advance(Duration::from_millis(700)),
                    Op::Clear => e.clear(),
                }
                e.validate();
                for key in e.keys(None).unwrap() {
                    let (k, hash) = (crate::key::Key::new(&key).unwrap(), e.hash(&key));
                    let tags = e.get_tags(k, hash).unwrap();
                    prop_assert_eq!(tags, last[&key].iter().map(|t| t.to_string()).collect::<Vec<_>>());
                }
            }
        }
    }
}
