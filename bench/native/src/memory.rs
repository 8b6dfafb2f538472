//! `memory`: heap bytes per entry for N entries `"key:i" -> u64`, counted by
//! a global allocator wrapper (exact and noise-free, unlike RSS).

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicIsize, Ordering};

use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, S3FifoPolicy, SetOptions, TtlPolicy};

pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Requested bytes, as the allocator was asked for them (malloc's own
/// rounding and headers come on top for every cache alike).
fn measure(n: usize, fill: impl FnOnce(&[String]) -> Box<dyn std::any::Any>) -> f64 {
    let keys: Vec<String> = (0..n).map(|i| format!("key:{i}")).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let cache = fill(&keys);
    let after = LIVE.load(Ordering::Relaxed);
    drop(cache);
    // The keys each cache copied are counted; the source keys are not.
    (after - before) as f64 / n as f64
}

pub fn main(args: &[String]) {
    let n: usize = args
        .iter()
        .position(|a| a == "--entries")
        .and_then(|i| args.get(i + 1))
        .map_or(1_000_000, |s| s.parse().unwrap());
    let ours = |policy: pepperpy_caching::Policy| {
        move |keys: &[String]| {
            let store = MemoryStore::<u64>::builder(policy).shards(1).build();
            for (i, k) in keys.iter().enumerate() {
                store.set(k, i as u64, SetOptions::new()).into_inner().unwrap();
            }
            Box::new(store) as Box<dyn std::any::Any>
        }
    };
    // Full and evicting: the ghost is allocated (at the first eviction) and the
    // sketch has grown to the capacity, both counted.
    let churned = |policy: pepperpy_caching::Policy| {
        move |keys: &[String]| {
            let store = MemoryStore::<u64>::builder(policy).shards(1).build();
            for (i, k) in keys.iter().enumerate() {
                store.set(k, i as u64, SetOptions::new()).into_inner().unwrap();
            }
            for i in 0..keys.len() {
                store.set(&format!("key:{}", keys.len() + i), i as u64, SetOptions::new()).into_inner().unwrap();
            }
            Box::new(store) as Box<dyn std::any::Any>
        }
    };
    let rows: Vec<(&str, f64)> = vec![
        ("pepperpy MemoryStore (S3-FIFO)", measure(n, ours(S3FifoPolicy::new(n).unwrap().into()))),
        ("pepperpy MemoryStore (S3-FIFO, evicting)", measure(n, churned(S3FifoPolicy::new(n).unwrap().into()))),
        (
            "pepperpy MemoryStore (S3-FIFO classic, evicting)",
            measure(n, churned(S3FifoPolicy::new(n).unwrap().adaptive(false).into())),
        ),
        ("pepperpy MemoryStore (LRU)", measure(n, ours(LruPolicy::new(n).unwrap().into()))),
        (
            "pepperpy MemoryStore (TTL)",
            measure(n, ours(TtlPolicy::new(std::time::Duration::from_secs(3600)).unwrap().into())),
        ),
        (
            "lru::LruCache (unbounded)",
            measure(n, |keys| {
                let mut c = lru::LruCache::unbounded();
                for (i, k) in keys.iter().enumerate() {
                    c.put(k.clone(), i as u64);
                }
                Box::new(c)
            }),
        ),
        (
            "lru::LruCache (bounded)",
            measure(n, |keys| {
                let mut c = lru::LruCache::new(NonZeroUsize::new(keys.len()).unwrap());
                for (i, k) in keys.iter().enumerate() {
                    c.put(k.clone(), i as u64);
                }
                Box::new(c)
            }),
        ),
    ];
    let lru = rows[5].1.min(rows[6].1);
    for (name, bytes) in &rows {
        println!("  {name:34} {bytes:>7.1} B/entry  ours/lru {:.2}x", bytes / lru);
    }
    println!(
        "{}",
        serde_json::json!({ "entries": n, "bytes_per_entry": rows.iter().map(|(k, v)| (k.to_string(), serde_json::json!(*v))).collect::<serde_json::Map<_, _>>() })
    );
}
