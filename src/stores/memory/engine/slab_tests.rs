//! The slab and its lists alone, against a plain reference: a `VecDeque` of
//! ids per list (head at the front) and the value each live id holds.
//! Random operation sequences; [`Slab::validate`] and the comparison with
//! the reference after every step.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;

use super::slab::{MAIN, NEVER, SMALL, Slab, Slot};

#[derive(Clone, Debug)]
enum Op {
    /// A new entry at the head of list `0` (small) or `1` (main).
    Insert(u8),
    /// Removes the `n`th live entry (modulo the count).
    Remove(usize),
    /// A new entry at the head of list `1` in place of the `n`th live entry
    /// (an eviction for a new key).
    Replace(usize, u8),
    /// Moves the `n`th live entry to the head of its own list.
    MoveToHead(usize),
    /// Moves the `n`th live entry to the head of list `1`.
    MoveTo(usize, u8),
    /// Moves a list's tail to its head (a CLOCK turn).
    Rotate(u8),
    /// Gives the `n`th live entry a new weight (a weighted slab only).
    Reweigh(usize, u64),
    TakeAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..2).prop_map(Op::Insert),
        3 => any::<usize>().prop_map(Op::Remove),
        3 => (any::<usize>(), 0u8..2).prop_map(|(n, l)| Op::Replace(n, l)),
        2 => any::<usize>().prop_map(Op::MoveToHead),
        2 => (any::<usize>(), 0u8..2).prop_map(|(n, l)| Op::MoveTo(n, l)),
        2 => (0u8..2).prop_map(Op::Rotate),
        2 => (any::<usize>(), 0u64..20).prop_map(|(n, w)| Op::Reweigh(n, w)),
        1 => Just(Op::TakeAll),
    ]
}

struct Reference {
    lists: [VecDeque<u32>; 2],
    values: HashMap<u32, u64>,
    weights: HashMap<u32, u64>,
}

impl Reference {
    fn nth(&self, n: usize) -> Option<u32> {
        let all: Vec<u32> = self.lists.iter().flatten().copied().collect();
        (!all.is_empty()).then(|| all[n % all.len()])
    }

    fn unlink(&mut self, id: u32) -> u8 {
        for (l, list) in self.lists.iter_mut().enumerate() {
            if let Some(at) = list.iter().position(|&x| x == id) {
                list.remove(at);
                return l as u8;
            }
        }
        unreachable!("{id} is on no list")
    }
}

fn check(slab: &Slab<u64>, reference: &Reference, step: usize) -> Result<(), TestCaseError> {
    slab.validate();
    for list in [SMALL, MAIN] {
        let ids: Vec<u32> = slab.iter(list).collect();
        let expected: Vec<u32> = reference.lists[list as usize].iter().copied().collect();
        prop_assert_eq!(&ids, &expected, "step {}: list {}", step, list);
        prop_assert_eq!(slab.list(list).len, expected.len());
        let weight: u64 = expected.iter().map(|id| reference.weights[id]).sum();
        prop_assert_eq!(slab.list(list).weight, weight, "step {}: the weight of list {}", step, list);
        for id in ids {
            prop_assert_eq!(*slab[id].value(), reference.values[&id], "step {}: the value of {}", step, id);
            prop_assert_eq!(slab[id].list(), list);
        }
    }
    prop_assert_eq!(slab.len(), reference.values.len());
    let mut live: Vec<u32> = slab.ids().collect();
    live.sort_unstable();
    let mut expected: Vec<u32> = reference.values.keys().copied().collect();
    expected.sort_unstable();
    prop_assert_eq!(live, expected, "step {}: the live ids", step);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::stores::memory::model_tests::fuzz_cases(256)))]

    #[test]
    fn the_slab_matches_a_list_of_deques(weighted in any::<bool>(), ops in proptest::collection::vec(op(), 1..200)) {
        let mut slab = Slab::<u64>::new();
        if weighted {
            slab.weigh();
        }
        let empty = || Reference { lists: [VecDeque::new(), VecDeque::new()], values: HashMap::new(), weights: HashMap::new() };
        let mut reference = empty();
        for (step, op) in ops.iter().enumerate() {
            let value = step as u64;
            match *op {
                Op::Insert(list) => {
                    let weight = if weighted { value * 37 % 11 } else { 1 };
                    let id = slab.insert(Slot::new(format!("i{value}").into(), value, None, NEVER, 0), list, weight);
                    slab[id].freq.store(3, std::sync::atomic::Ordering::Relaxed);
                    prop_assert!(!reference.values.contains_key(&id), "step {}: {} reused while live", step, id);
                    reference.lists[list as usize].push_front(id);
                    reference.values.insert(id, value);
                    reference.weights.insert(id, weight);
                }
                Op::Remove(n) => {
                    if let Some(id) = reference.nth(n) {
                        drop(slab.remove(id, crate::removal::RemovalReason::Deleted));
                        reference.unlink(id);
                        reference.values.remove(&id);
                        reference.weights.remove(&id);
                    }
                }
                Op::Replace(n, list) => {
                    if let Some(id) = reference.nth(n) {
                        let weight = if weighted { value * 37 % 11 } else { 1 };
                        // A new key's buffer every other time, else the slot's own.
                        let key = value.is_multiple_of(2).then(|| format!("k{value}").into_boxed_str());
                        let old_key = slab[id].key.clone();
                        let old = slab.replace(id, key.clone(), value, 7, list, weight, crate::removal::RemovalReason::Evicted);
                        let (removed_key, old_value, reason) = old.into_notice("");
                        let expected_key = if key.is_some() { old_key.clone() } else { Box::default() };
                        prop_assert_eq!((removed_key, old_value, reason), (expected_key, reference.values[&id], crate::removal::RemovalReason::Evicted));
                        prop_assert_eq!(&slab[id].key, &key.unwrap_or(old_key));
                        prop_assert_eq!((slab[id].seq, slab[id].expires_at, slab[id].idle), (7, NEVER, false));
                        prop_assert_eq!(slab[id].freq.load(std::sync::atomic::Ordering::Relaxed), 0);
                        reference.unlink(id);
                        reference.lists[list as usize].push_front(id);
                        reference.values.insert(id, value);
                        reference.weights.insert(id, weight);
                    }
                }
                Op::Reweigh(n, weight) => {
                    if weighted && let Some(id) = reference.nth(n) {
                        slab.set_weight(id, weight);
                        reference.weights.insert(id, weight);
                    }
                }
                Op::MoveToHead(n) => {
                    if let Some(id) = reference.nth(n) {
                        slab.move_to_head(id);
                        let list = reference.unlink(id);
                        reference.lists[list as usize].push_front(id);
                    }
                }
                Op::MoveTo(n, list) => {
                    if let Some(id) = reference.nth(n) {
                        slab.move_to(id, list);
                        reference.unlink(id);
                        reference.lists[list as usize].push_front(id);
                    }
                }
                Op::Rotate(list) => {
                    let tail = slab.list(list).tail;
                    if let Some(&id) = reference.lists[list as usize].back() {
                        prop_assert_eq!(tail, id, "step {}: the tail", step);
                        slab.move_to_head(id);
                        reference.lists[list as usize].pop_back();
                        reference.lists[list as usize].push_front(id);
                    }
                }
                Op::TakeAll => {
                    prop_assert_eq!(slab.take_all(crate::removal::RemovalReason::Cleared).len(), reference.values.len());
                    reference = empty();
                }
            }
            check(&slab, &reference, step)?;
        }
    }
}
