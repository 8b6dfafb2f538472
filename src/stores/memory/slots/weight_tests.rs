//! `SlotEngine::evict`, which the JS store calls until its entries' sizes
//! fit its `maxSize`: expired entries first, then the policy's victims, never
//! the entry just set, until no other is left.

use super::*;
use crate::policies::{LruPolicy, S3FifoPolicy, TtlPolicy};

fn policies() -> Vec<Policy> {
    let ttl = std::time::Duration::from_secs(100);
    vec![
        LruPolicy::new(50).unwrap().into(),
        LruPolicy::new(50).unwrap().refresh_on_get(false).into(),
        TtlPolicy::new(ttl).unwrap().with_max_size(50).unwrap().into(),
        S3FifoPolicy::new(50).unwrap().into(),
        S3FifoPolicy::new(3).unwrap().into(),
    ]
}

#[test]
fn evict_frees_every_other_entry_and_never_the_protected_one() {
    for policy in policies() {
        for protect_at in [0usize, 1, 4, 9] {
            let mut engine = SlotEngine::new(&policy);
            let mut ids = Vec::new();
            for i in 0..10u32 {
                // Entry 2 expires at 5 ms, the others later (TTL: their order).
                let ttl = if i == 2 { 5.0 } else { 1000.0 + f64::from(i) };
                let id = engine.set(-1, i.wrapping_mul(0x9E37_79B9), ttl, 0.0, 0.0, 0.0);
                assert!(id >= 0);
                ids.push(id as u32);
            }
            let counted_before = engine.counters[EVICTIONS] + engine.counters[EXPIRATIONS];
            let protect = ids[protect_at.min(ids.len() - 1)];
            if !engine.is_live(protect) {
                continue; // a capacity of 3 evicted it already
            }
            let mut freed = Vec::new();
            loop {
                let got = engine.evict(10.0, protect);
                engine.validate();
                if got < 0.0 {
                    break;
                }
                let (id, reason) = ((got / 4.0) as u32, (got % 4.0) as u32);
                assert_ne!(id, protect, "{policy:?}");
                assert!(!freed.contains(&id), "{policy:?}: {id} twice");
                assert!(!engine.is_live(id));
                if id == ids[2] {
                    assert_eq!((freed.len(), reason), (0, EXPIRED), "{policy:?}: the expired entry goes first");
                } else {
                    assert_eq!(reason, EVICTED, "{policy:?}");
                }
                freed.push(id);
            }
            assert_eq!(engine.live, 1, "{policy:?}: all but the protected entry went");
            assert!(engine.is_live(protect));
            let counted = engine.counters[EVICTIONS] + engine.counters[EXPIRATIONS] - counted_before;
            assert_eq!(counted, freed.len() as f64, "{policy:?}: each counted once");
            // Nothing protected: the last one goes too.
            let last = engine.evict(10.0, u32::MAX);
            assert_eq!(last, f64::from(protect) * 4.0 + f64::from(EVICTED), "{policy:?}");
            assert_eq!(engine.evict(10.0, u32::MAX), -1.0);
            engine.validate();
        }
    }
}
