//! The counters every store keeps and the [`CacheStats`] they report.
//!
//! One shape for all stores, so a dashboard does not care which backend is
//! behind it. `Counters` is the plain version for a store that already holds
//! a lock (or lives on one thread, as in wasm); `SharedCounters` is the
//! lock-free version for stores used from many tasks at once.
//!
//! Latency is sampled: one `get` in [`LATENCY_SAMPLE_EVERY`] is timed. Reading
//! a clock costs about as much as a whole in-memory `get`, so timing every call
//! would halve throughput to feed one average.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Nanos;

/// One `get` in this many is timed for [`CacheStats::avg_get_latency`]: the
/// first, then every 32nd.
pub const LATENCY_SAMPLE_EVERY: u64 = 32;

/// A snapshot of a store's counters since it was made or since `reset_stats`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct CacheStats {
    /// `get` calls that found a live entry.
    pub hits: u64,
    /// `get` calls that found nothing, or only an expired entry.
    pub misses: u64,
    /// Successful `set` calls.
    pub sets: u64,
    /// Live entries removed on request: by `delete`, `invalidate` or `clear`.
    pub deletes: u64,
    /// Live entries removed to make room under the policy's `max_size`.
    pub evictions: u64,
    /// Entries removed because their TTL had passed.
    pub expirations: u64,
    /// `hits / (hits + misses)`, or 0 before the first `get`.
    pub hit_ratio: f64,
    /// Mean time of the sampled `get` calls (see [`LATENCY_SAMPLE_EVERY`]).
    pub avg_get_latency: Duration,
    /// Loader runs started by `get_or_set` / `try_get_or_set` (one per load,
    /// however many callers waited on it).
    pub loads: u64,
    /// Loader runs that failed (returned an error, panicked, or ran past a hard timeout)
    /// and cached nothing. A run dropped unfinished (its caller cancelled)
    /// counts in `loads` only.
    pub load_failures: u64,
    /// Time spent in loaders, in total.
    pub total_load_time: Duration,
    /// `get_or_refresh` calls answered with a stale value (within the grace
    /// period after the TTL; each is also a hit).
    pub stale_hits: u64,
    /// Background refreshes started by stale hits.
    pub refreshes: u64,
    /// Background refreshes that failed or timed out (the stale value stayed).
    pub refresh_failures: u64,
}

impl CacheStats {
    fn from_raw(raw: [u64; 14]) -> Self {
        let [
            hits,
            misses,
            sets,
            deletes,
            evictions,
            expirations,
            latency_ns,
            samples,
            loads,
            load_failures,
            load_ns,
            stale_hits,
            refreshes,
            refresh_failures,
        ] = raw;
        let gets = hits + misses;
        CacheStats {
            hits,
            misses,
            sets,
            deletes,
            evictions,
            expirations,
            hit_ratio: if gets == 0 { 0.0 } else { hits as f64 / gets as f64 },
            avg_get_latency: Duration::from_nanos(latency_ns.checked_div(samples).unwrap_or(0)),
            loads,
            load_failures,
            total_load_time: Duration::from_nanos(load_ns),
            stale_hits,
            refreshes,
            refresh_failures,
        }
    }
}

/// Counters for a store that is already behind a lock or on one thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub sets: u64,
    pub deletes: u64,
    pub evictions: u64,
    pub expirations: u64,
    latency_ns: u64,
    samples: u64,
    loads: u64,
    load_failures: u64,
    load_ns: u64,
    pub stale_hits: u64,
    pub refreshes: u64,
    pub refresh_failures: u64,
}

impl Counters {
    /// Adds `other`'s counts to these, to total the shards of a store.
    pub fn add(&mut self, other: &Counters) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.sets += other.sets;
        self.deletes += other.deletes;
        self.evictions += other.evictions;
        self.expirations += other.expirations;
        self.latency_ns = self.latency_ns.saturating_add(other.latency_ns);
        self.samples += other.samples;
        self.loads += other.loads;
        self.load_failures += other.load_failures;
        self.load_ns = self.load_ns.saturating_add(other.load_ns);
        self.stale_hits += other.stale_hits;
        self.refreshes += other.refreshes;
        self.refresh_failures += other.refresh_failures;
    }

    /// A loader run that started and never finished (its future dropped).
    pub fn count_unfinished_load(&mut self) {
        self.loads += 1;
    }

    /// A loader run finished, successfully or not, after `elapsed`.
    pub fn record_load(&mut self, ok: bool, elapsed: Nanos) {
        self.loads += 1;
        self.load_failures += u64::from(!ok);
        self.load_ns = self.load_ns.saturating_add(elapsed);
    }

    pub fn snapshot(&self) -> CacheStats {
        CacheStats::from_raw([
            self.hits,
            self.misses,
            self.sets,
            self.deletes,
            self.evictions,
            self.expirations,
            self.latency_ns,
            self.samples,
            self.loads,
            self.load_failures,
            self.load_ns,
            self.stale_hits,
            self.refreshes,
            self.refresh_failures,
        ])
    }
}

/// The counters a read touches, as atomics so that many threads can read one
/// engine at once (under a read lock). `hits` is `gets - misses`: a hit costs
/// one increment.
// On a cache line of their own: every read adds to them, and the engine's
// other fields, which every read only loads, stay shared between cores.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct ReadCounters {
    gets: AtomicU64,
    misses: AtomicU64,
    latency_ns: AtomicU64,
    samples: AtomicU64,
    /// Stale hits of `get_or_refresh` answered under a shared borrow.
    stale_hits: AtomicU64,
}

impl ReadCounters {
    /// Whether the next `get` should be timed.
    #[inline]
    pub fn sample_next_get(&self) -> bool {
        self.gets.load(Ordering::Relaxed).is_multiple_of(LATENCY_SAMPLE_EVERY)
    }

    /// Counts one `get` (from a thread holding a shared borrow); whether to time it.
    #[inline]
    pub fn count_get(&self) -> bool {
        self.gets.fetch_add(1, Ordering::Relaxed).is_multiple_of(LATENCY_SAMPLE_EVERY)
    }

    /// That `get` missed.
    #[inline]
    pub fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// That `get` was a stale hit of `get_or_refresh`.
    #[inline]
    pub fn count_stale_hit(&self) {
        self.stale_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// One `get`, under an exclusive borrow: plain increments.
    #[inline]
    pub fn count_exclusive(&mut self, hit: bool) {
        *self.gets.get_mut() += 1;
        if !hit {
            *self.misses.get_mut() += 1;
        }
    }

    pub fn record_latency(&self, elapsed: Nanos) {
        self.latency_ns.fetch_add(elapsed, Ordering::Relaxed);
        self.samples.fetch_add(1, Ordering::Relaxed);
    }

    /// The gets and misses so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.gets.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Adds these counts to `total`.
    pub fn add_to(&self, total: &mut Counters) {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (gets, misses) = (read(&self.gets), read(&self.misses));
        total.hits += gets.saturating_sub(misses);
        total.misses += misses;
        total.latency_ns = total.latency_ns.saturating_add(read(&self.latency_ns));
        total.samples += read(&self.samples);
        total.stale_hits += read(&self.stale_hits);
    }
}

/// Lock-free counters for a store shared between tasks.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct SharedCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub sets: AtomicU64,
    pub deletes: AtomicU64,
    pub evictions: AtomicU64,
    pub expirations: AtomicU64,
    latency_ns: AtomicU64,
    samples: AtomicU64,
    loads: AtomicU64,
    load_failures: AtomicU64,
    load_ns: AtomicU64,
    pub stale_hits: AtomicU64,
    pub refreshes: AtomicU64,
    pub refresh_failures: AtomicU64,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl SharedCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether the next `get` should be timed.
    pub fn sample_next_get(&self) -> bool {
        (self.hits.load(Ordering::Relaxed) + self.misses.load(Ordering::Relaxed)).is_multiple_of(LATENCY_SAMPLE_EVERY)
    }

    pub fn record_latency(&self, elapsed: Nanos) {
        self.latency_ns.fetch_add(elapsed, Ordering::Relaxed);
        self.samples.fetch_add(1, Ordering::Relaxed);
    }

    /// A loader run finished, successfully or not, after `elapsed`.
    pub fn record_load(&self, ok: bool, elapsed: Nanos) {
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.load_failures.fetch_add(u64::from(!ok), Ordering::Relaxed);
        self.load_ns.fetch_add(elapsed, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CacheStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats::from_raw([
            read(&self.hits),
            read(&self.misses),
            read(&self.sets),
            read(&self.deletes),
            read(&self.evictions),
            read(&self.expirations),
            read(&self.latency_ns),
            read(&self.samples),
            read(&self.loads),
            read(&self.load_failures),
            read(&self.load_ns),
            read(&self.stale_hits),
            read(&self.refreshes),
            read(&self.refresh_failures),
        ])
    }

    pub fn reset(&self) {
        for c in [
            &self.hits,
            &self.misses,
            &self.sets,
            &self.deletes,
            &self.evictions,
            &self.expirations,
            &self.latency_ns,
            &self.samples,
            &self.loads,
            &self.load_failures,
            &self.load_ns,
            &self.stale_hits,
            &self.refreshes,
            &self.refresh_failures,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Renders the counters of one or more stores in the Prometheus text
/// exposition format (version 0.0.4), each series labelled `store="NAME"`:
/// serve it on your `/metrics` endpoint.
///
/// ```
/// use pepperpy_caching::{CacheStore, LruPolicy, MemoryStore, SetOptions, metrics::render_prometheus};
/// let sessions = MemoryStore::<u32>::new(LruPolicy::new(100)?);
/// sessions.set("a", 1, SetOptions::new()).into_inner()?;
/// sessions.get("a").into_inner()?;
/// let text = render_prometheus([("sessions", &sessions.stats())]);
/// assert!(text.contains("pepperpy_cache_hits_total{store=\"sessions\"} 1\n"));
/// assert!(text.contains("# TYPE pepperpy_cache_hit_ratio gauge\n"));
/// # Ok::<(), pepperpy_caching::CacheError>(())
/// ```
pub fn render_prometheus<'a>(stores: impl IntoIterator<Item = (&'a str, &'a CacheStats)>) -> String {
    use std::fmt::Write;
    let stores: Vec<(&str, &CacheStats)> = stores.into_iter().collect();
    type Read = fn(&CacheStats) -> f64;
    let families: [(&str, &str, &str, Read); 15] = [
        ("hits_total", "counter", "Gets that found a live entry.", |s| s.hits as f64),
        ("misses_total", "counter", "Gets that found nothing, or only an expired entry.", |s| s.misses as f64),
        ("sets_total", "counter", "Successful sets.", |s| s.sets as f64),
        ("deletes_total", "counter", "Live entries removed by delete, invalidate or clear.", |s| s.deletes as f64),
        ("evictions_total", "counter", "Live entries removed to make room.", |s| s.evictions as f64),
        ("expirations_total", "counter", "Entries removed because their TTL had passed.", |s| s.expirations as f64),
        ("loads_total", "counter", "Loader runs started by get_or_set.", |s| s.loads as f64),
        ("load_failures_total", "counter", "Loader runs that failed.", |s| s.load_failures as f64),
        ("load_seconds_total", "counter", "Time spent in loaders.", |s| s.total_load_time.as_secs_f64()),
        ("stale_hits_total", "counter", "Reads answered with a stale value within the grace period.", |s| {
            s.stale_hits as f64
        }),
        ("refreshes_total", "counter", "Background refreshes started.", |s| s.refreshes as f64),
        ("refresh_failures_total", "counter", "Background refreshes that failed or timed out.", |s| {
            s.refresh_failures as f64
        }),
        ("gets_total", "counter", "Gets (hits and misses).", |s| (s.hits + s.misses) as f64),
        ("hit_ratio", "gauge", "Hits divided by gets since the counters were reset.", |s| s.hit_ratio),
        ("get_latency_seconds", "gauge", "Mean time of the sampled gets.", |s| s.avg_get_latency.as_secs_f64()),
    ];
    let mut out = String::new();
    for (name, kind, help, read) in families {
        let _ = writeln!(out, "# HELP pepperpy_cache_{name} {help}");
        let _ = writeln!(out, "# TYPE pepperpy_cache_{name} {kind}");
        for (store, stats) in &stores {
            let _ = writeln!(out, "pepperpy_cache_{name}{{store=\"{}\"}} {}", escape_label(store), read(stats));
        }
    }
    out
}

/// A label value as the text format wants it: backslash, double quote and
/// line feed escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_and_average() {
        let c = Counters { hits: 3, misses: 1, latency_ns: 400, samples: 2, ..Counters::default() };
        let s = c.snapshot();
        assert_eq!(s.hit_ratio, 0.75);
        assert_eq!(s.avg_get_latency, Duration::from_nanos(200));
    }

    #[test]
    fn empty_counters_report_zero_not_nan() {
        let s = Counters::default().snapshot();
        assert_eq!(s.hit_ratio, 0.0);
        assert_eq!(s.avg_get_latency, Duration::ZERO);
        assert_eq!(SharedCounters::default().snapshot(), s);
    }

    #[test]
    fn shared_counters_match_plain_ones() {
        let shared = SharedCounters::default();
        SharedCounters::add(&shared.hits, 2);
        SharedCounters::add(&shared.misses, 2);
        shared.record_latency(50);
        let s = shared.snapshot();
        assert_eq!((s.hits, s.misses, s.hit_ratio), (2, 2, 0.5));
        assert_eq!(s.avg_get_latency, Duration::from_nanos(50));
        shared.record_load(true, 10);
        shared.record_load(false, 30);
        let s = shared.snapshot();
        assert_eq!((s.loads, s.load_failures, s.total_load_time), (2, 1, Duration::from_nanos(40)));
        shared.reset();
        assert_eq!(shared.snapshot(), CacheStats::default());
    }

    #[test]
    fn prometheus_text_is_well_formed_and_escapes_labels() {
        let a = CacheStats { hits: 3, misses: 1, hit_ratio: 0.75, stale_hits: 2, ..CacheStats::default() };
        let b = CacheStats { sets: 7, total_load_time: Duration::from_millis(1500), ..CacheStats::default() };
        let text = render_prometheus([("a", &a), ("we\"ird\\name\nx", &b)]);
        assert!(text.contains("pepperpy_cache_hits_total{store=\"a\"} 3\n"));
        assert!(text.contains("pepperpy_cache_stale_hits_total{store=\"a\"} 2\n"));
        assert!(text.contains("pepperpy_cache_hit_ratio{store=\"a\"} 0.75\n"));
        assert!(text.contains("pepperpy_cache_load_seconds_total{store=\"we\\\"ird\\\\name\\nx\"} 1.5\n"), "{text}");
        // Every line is a comment or `name{store="..."} number`, each family's
        // HELP and TYPE come once, before its samples.
        let mut seen = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(seen.insert(rest.split(' ').next().unwrap().to_string()), "TYPE once: {line}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(seen.contains(name), "sample after its TYPE: {line}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
            assert!(series.ends_with("\"}") && !series[..series.len() - 2].ends_with('\\'), "{line}");
        }
        assert_eq!(seen.len(), 15);
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 30);
    }
}
