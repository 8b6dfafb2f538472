//! What the memory tests share: the engine driven by plain `&str` keys, as
//! the model tests and the slot engine's differential test call it, the
//! models' queue helpers, and the comparison of counters.
#![cfg_attr(target_arch = "wasm32", allow(dead_code))] // on wasm32 only the slot engine's test uses it

#[cfg(not(target_arch = "wasm32"))]
use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};

#[cfg(not(target_arch = "wasm32"))]
use proptest::prelude::*;

use super::engine::{Engine, Freshly, KeyHasher, Removals};
use crate::clock::Clock;
use crate::errors::Result;
use crate::key::Key;
#[cfg(not(target_arch = "wasm32"))]
use crate::metrics::CacheStats;
use crate::pattern::Pattern;
use crate::policies::Policy;
use crate::refresh::RefreshOptions;
use crate::store::{Metadata, SetOptions};

/// An [`Engine`] whose calls take `&str` keys and patterns and check them
/// first, as the store does; everything else goes through to the engine.
pub(crate) struct StrEngine<V>(Engine<V>);

impl<V> Deref for StrEngine<V> {
    type Target = Engine<V>;
    fn deref(&self) -> &Engine<V> {
        &self.0
    }
}

impl<V> DerefMut for StrEngine<V> {
    fn deref_mut(&mut self) -> &mut Engine<V> {
        &mut self.0
    }
}

impl<V> StrEngine<V> {
    pub fn new(policy: Policy, clock: Clock) -> Self {
        StrEngine::with_hasher(policy, clock, KeyHasher::default())
    }

    /// An engine hashing as `hasher` does: two engines that must behave
    /// alike step by step need one hasher, since the adaptive policy's shadow
    /// caches sample keys by their hash.
    pub fn with_hasher(policy: Policy, clock: Clock, hasher: KeyHasher) -> Self {
        StrEngine(Engine::with_hasher(policy, clock, hasher, super::engine::LaneColumn::single()))
    }

    fn key<'k>(&self, key: &'k str) -> Result<(Key<'k>, u64)> {
        let key = Key::new(key)?;
        Ok((key, self.0.hash(&key)))
    }

    /// As the store's `set`: a `set` with plain options tries the short
    /// paths first ([`Engine::update_plain`] for a key held,
    /// [`Engine::insert_plain`] for a new one), then the full one.
    pub fn set(&mut self, key: &str, value: V, options: SetOptions) -> Result<()> {
        let (key, hash) = self.key(key)?;
        let plain =
            options.ttl.is_none() && options.idle.is_none() && options.metadata.is_none() && options.tags.is_empty();
        let (value, absent) = if plain {
            match self.0.update_plain(key, hash, value) {
                Ok(replaced) => {
                    drop(replaced);
                    return Ok(());
                }
                Err((value, true)) => match self.0.insert_plain(key, hash, value) {
                    Ok(evicted) => {
                        drop(evicted);
                        return Ok(());
                    }
                    Err(value) => (value, true),
                },
                Err(back) => back,
            }
        } else {
            (value, false)
        };
        let mut removed = Removals::new();
        self.0.set_into_known(key, hash, value, options, &mut removed, absent)
    }

    /// `set` on the full path alone ([`Engine::set`]), whatever the options.
    pub fn set_full(&mut self, key: &str, value: V, options: SetOptions) -> Result<()> {
        let (key, hash) = self.key(key)?;
        self.0.set(key, hash, value, options).map(drop)
    }

    pub fn delete(&mut self, key: &str) -> Result<bool> {
        let (key, hash) = self.key(key)?;
        Ok(self.0.delete(key, hash).is_some())
    }

    pub fn contains(&mut self, key: &str) -> Result<bool> {
        let (key, hash) = self.key(key)?;
        Ok(self.0.contains(key, hash))
    }

    pub fn peek_with<R>(&mut self, key: &str, read: impl FnOnce(&V) -> R) -> Result<Option<R>> {
        let (key, hash) = self.key(key)?;
        Ok(self.0.peek_with(key, hash, read))
    }

    pub fn get_metadata(&mut self, key: &str) -> Result<Option<Metadata>> {
        let (key, hash) = self.key(key)?;
        Ok(self.0.get_metadata(key, hash))
    }

    pub fn update_metadata(&mut self, key: &str, metadata: Metadata) -> Result<bool> {
        let (key, hash) = self.key(key)?;
        self.0.update_metadata(key, hash, metadata)
    }

    pub fn invalidate(&mut self, pattern: &str) -> Result<usize> {
        Ok(self.0.invalidate(&Pattern::new(pattern)?).len())
    }

    pub fn keys(&mut self, pattern: Option<&str>) -> Result<Vec<String>> {
        let pattern = pattern.map(Pattern::new).transpose()?;
        Ok(self.0.keys(pattern.as_ref()))
    }

    pub fn clear(&mut self) {
        drop(self.0.clear());
    }

    pub fn begin_load(&mut self, key: &str) -> u64 {
        let (key, _) = self.key(key).expect("a valid key");
        self.0.begin_load(key)
    }

    pub fn finish_refresh(
        &mut self,
        key: &str,
        token: u64,
        outcome: std::result::Result<V, ()>,
        options: &RefreshOptions,
        background: bool,
    ) -> Result<Removals<V>> {
        let (key, hash) = self.key(key)?;
        self.0.finish_refresh(key, hash, token, outcome, options, background)
    }
}

impl<V: Clone> StrEngine<V> {
    /// A counted `get` under an exclusive borrow, as the store's exact LRU.
    pub fn get(&mut self, key: &str) -> Result<Option<V>> {
        let (key, hash) = self.key(key)?;
        Ok(self.0.get_exclusive(key, hash, None, V::clone))
    }

    /// The live value, counting nothing and changing no order.
    pub fn peek(&mut self, key: &str) -> Option<V> {
        self.peek_with(key, V::clone).ok().flatten()
    }

    pub fn get_fresh(&mut self, key: &str) -> Result<Freshly<V>> {
        let (key, hash) = self.key(key)?;
        Ok(self.0.get_fresh(key, hash))
    }
}

#[cfg(not(target_arch = "wasm32"))] // the models run natively (proptest)
/// An entry of a model's S3-FIFO queues.
pub(crate) trait ModelEntry {
    fn key_and_expiry(&self) -> (&str, Option<u64>);
}

#[cfg(not(target_arch = "wasm32"))] // the models run natively (proptest)
/// Drops the entries of a model's queues that have expired at `now`; how many.
pub(crate) fn purge_queues<E: ModelEntry>(small: &mut VecDeque<E>, main: &mut VecDeque<E>, now: u64) -> u64 {
    let before = small.len() + main.len();
    small.retain(|e| e.key_and_expiry().1.is_none_or(|at| at > now));
    main.retain(|e| e.key_and_expiry().1.is_none_or(|at| at > now));
    (before - small.len() - main.len()) as u64
}

#[cfg(not(target_arch = "wasm32"))] // the models run natively (proptest)
/// The entry under `key` in a model's queues.
pub(crate) fn find_in_queues<'a, E: ModelEntry>(
    small: &'a mut VecDeque<E>,
    main: &'a mut VecDeque<E>,
    key: &str,
) -> Option<&'a mut E> {
    small.iter_mut().chain(main.iter_mut()).find(|e| e.key_and_expiry().0 == key)
}

#[cfg(not(target_arch = "wasm32"))] // the models run natively (proptest)
/// Compares the engine's counters with the model's after `step` (`op`):
/// all equal but expirations, which the engine counts as it reclaims,
/// lazily: it may lag the model, never lead it, and catches up after a full
/// purge (`purged`: the op counted or listed every entry, or cleared them).
pub(crate) fn check_counters(
    engine: &CacheStats,
    model: &CacheStats,
    step: usize,
    op: &dyn std::fmt::Debug,
    purged: bool,
) -> Result<(), TestCaseError> {
    let (s, x) = (engine, model);
    prop_assert_eq!(
        (s.hits, s.misses, s.sets, s.deletes, s.evictions),
        (x.hits, x.misses, x.sets, x.deletes, x.evictions),
        "counters after step {} {:?}",
        step,
        op
    );
    prop_assert!(s.expirations <= x.expirations);
    if purged {
        prop_assert_eq!(s.expirations, x.expirations, "after a full purge, step {}", step);
    }
    Ok(())
}
