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

/// Whether the `get` that comes after `gets` others is timed: the rule of
/// [`LATENCY_SAMPLE_EVERY`], for every counter type.
#[inline]
pub(crate) fn sampled(gets: u64) -> bool {
    gets.is_multiple_of(LATENCY_SAMPLE_EVERY)
}

/// The counter table: each row is one figure of [`CacheStats`], written once.
/// A row gives the field (its doc, its type), the raw counters it is made of
/// (fields of [`Counters`] and, as atomics, of [`SharedCounters`]), how the
/// figure is read from them, and its Prometheus family (name, type, help;
/// JS help where the wording differs). It generates the struct, both counter
/// types (their sum, snapshot and reset) and [`STATS`], from which the
/// Prometheus text and the wasm layer's `tables()` for the JS store and
/// its OpenTelemetry export are made.
macro_rules! counter_table {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = [$($vis:vis $raw:ident),*] |$c:ident| $read:expr,
            $prometheus:literal $kind:ident $help:literal $(js $js_help:literal)?;
    )*) => {
        /// A snapshot of a store's counters since it was made or since `reset_stats`.
        #[derive(Clone, Debug, Default, PartialEq)]
        #[non_exhaustive]
        pub struct CacheStats {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        /// Counters for a store that is already behind a lock or on one thread.
        #[derive(Clone, Debug, Default)]
        pub(crate) struct Counters {
            $($($vis $raw: u64,)*)*
        }

        /// Lock-free counters for a store shared between tasks.
        #[derive(Debug, Default)]
        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        pub(crate) struct SharedCounters {
            $($($vis $raw: AtomicU64,)*)*
        }

        impl Counters {
            /// Adds `other`'s counts to these, to total the shards of a store.
            pub fn add(&mut self, other: &Counters) {
                $($(self.$raw = self.$raw.saturating_add(other.$raw);)*)*
            }

            pub fn snapshot(&self) -> CacheStats {
                CacheStats { $($field: { let $c = self; $read },)* }
            }
        }

        #[cfg_attr(not(feature = "redis"), allow(dead_code))]
        impl SharedCounters {
            /// The counts so far.
            fn load(&self) -> Counters {
                Counters { $($($raw: self.$raw.load(Ordering::Relaxed),)*)* }
            }

            pub fn reset(&self) {
                $($(self.$raw.store(0, Ordering::Relaxed);)*)*
            }
        }

        /// The counter table as text for the JS layer (src/wasm/tables.rs), made
        /// at compile time so the wasm carries no code for it: a line per
        /// figure in [`STATS`]'s order, `field`, a tab, and the help JS shows.
        #[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown", feature = "js")), allow(dead_code))]
        pub(crate) const JS_COUNTERS: &str = concat!($(stringify!($field), "\t", counter_table!(@js $help $($js_help)?), "\n",)*);

        /// Each figure's field and unit, in [`STATS`]'s order, for the JS
        /// layer's table: consts, so using them keeps [`STATS`] (and its
        /// Prometheus names and help) out of the wasm.
        #[cfg_attr(not(all(target_arch = "wasm32", target_os = "unknown", feature = "js")), allow(dead_code))]
        pub(crate) const JS_LAYOUT: &[(&str, Unit)] = &[$((stringify!($field), counter_table!(@unit $kind <$ty as Figure>::UNIT)),)*];

        /// Every figure of [`CacheStats`], in its field order.
        pub(crate) const STATS: &[Stat] = &[$(
            Stat {
                prometheus: $prometheus,
                kind: Kind::$kind,
                help: $help,
                read: |stats| stats.$field.value(),
            },
        )*];
    };
    (@unit Counter $unit:expr) => { $unit };
    (@unit Gauge $unit:expr) => { $unit.of_gauge() };
    (@js $help:literal) => { $help };
    (@js $help:literal $js_help:literal) => { $js_help };
}

// One row a line (a table): `field: type = [raw counters] |c| figure, Prometheus family, help`.
counter_table! {
    /// `get` calls that found a live entry.
    hits: u64 = [pub hits] |c| c.hits, "hits_total" Counter "Gets that found a live entry.";
    /// `get` calls that found nothing, or only an expired entry.
    misses: u64 = [pub misses] |c| c.misses, "misses_total" Counter "Gets that found nothing, or only an expired entry.";
    /// Successful `set` calls.
    sets: u64 = [pub sets] |c| c.sets, "sets_total" Counter "Successful sets.";
    /// Live entries removed on request: by `delete`, `invalidate` or `clear`.
    deletes: u64 = [pub deletes] |c| c.deletes, "deletes_total" Counter "Live entries removed by delete, invalidate or clear.";
    /// Live entries removed to make room under the policy's `max_size`.
    evictions: u64 = [pub evictions] |c| c.evictions, "evictions_total" Counter "Live entries removed to make room.";
    /// Entries removed because their TTL had passed.
    expirations: u64 = [pub expirations] |c| c.expirations, "expirations_total" Counter "Entries removed because their TTL had passed.";
    /// `hits / (hits + misses)`, or 0 before the first `get`.
    hit_ratio: f64 = [] |c| ratio(c.hits, c.hits + c.misses), "hit_ratio" Gauge "Hits divided by gets since the counters were reset.";
    /// Mean time of the sampled `get` calls (see [`LATENCY_SAMPLE_EVERY`]).
    avg_get_latency: Duration = [latency_ns, samples] |c| mean_nanos(c.latency_ns, c.samples), "get_latency_seconds" Gauge "Mean time of the sampled gets." js "Mean time of the sampled gets, in milliseconds.";
    /// Loader runs started by `get_or_set` / `try_get_or_set` (one per load,
    /// however many callers waited on it).
    loads: u64 = [loads] |c| c.loads, "loads_total" Counter "Loader runs started by get_or_set." js "Loader runs started by getOrSet.";
    /// Loader runs that failed (returned an error, panicked, or ran past a hard timeout)
    /// and cached nothing. A run dropped unfinished (its caller cancelled)
    /// counts in `loads` only.
    load_failures: u64 = [load_failures] |c| c.load_failures, "load_failures_total" Counter "Loader runs that failed.";
    /// Time spent in loaders, in total.
    total_load_time: Duration = [load_ns] |c| Duration::from_nanos(c.load_ns), "load_seconds_total" Counter "Time spent in loaders." js "Time spent in loaders, in milliseconds.";
    /// `get_or_refresh` calls answered with a stale value (within the grace
    /// period after the TTL; each is also a hit).
    stale_hits: u64 = [pub stale_hits] |c| c.stale_hits, "stale_hits_total" Counter "Reads answered with a stale value within the grace period.";
    /// Background refreshes started by stale hits.
    refreshes: u64 = [pub refreshes] |c| c.refreshes, "refreshes_total" Counter "Background refreshes started.";
    /// Background refreshes that failed or timed out (the stale value stayed).
    refresh_failures: u64 = [pub refresh_failures] |c| c.refresh_failures, "refresh_failures_total" Counter "Background refreshes that failed or timed out.";
    /// The total weight of the entries held by a memory store built with a
    /// weigher (expired entries not yet reclaimed included); 0 for every
    /// other store. Not a count since a reset: `reset_stats` leaves it alone.
    total_weight: u64 = [pub total_weight] |c| c.total_weight, "weight" Gauge "Total weight of the entries held, by the store's weigher (0 without one)." js "Total size of the entries held, by size or sizeCalculation (0 without maxSize).";
}

/// The Prometheus family that is no field of [`CacheStats`]: all gets.
const GETS: Stat = Stat {
    prometheus: "gets_total",
    kind: Kind::Counter,
    help: "Gets (hits and misses).",
    read: |stats| (stats.hits + stats.misses) as f64,
};

/// One row of the counter table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stat {
    /// The Prometheus family, after `pepperpy_cache_`.
    pub prometheus: &'static str,
    pub kind: Kind,
    /// What it counts, for Prometheus's HELP (and JS, unless its row gives `js` help).
    pub help: &'static str,
    /// The figure of a snapshot, in Prometheus's unit (seconds for a time).
    pub read: fn(&CacheStats) -> f64,
}

/// What a figure measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A whole number of events.
    Count,
    /// A fraction.
    Ratio,
    /// A time.
    Time,
    /// A whole number of the moment (a gauge, not a count of events).
    Level,
}

impl Unit {
    /// The unit of a gauge figure: a whole number there is a level.
    const fn of_gauge(self) -> Unit {
        match self {
            Unit::Count => Unit::Level,
            unit => unit,
        }
    }
}

/// The Prometheus metric type of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only grows, until the counters are reset.
    Counter,
    /// A value of the moment.
    Gauge,
}

impl Kind {
    fn prometheus(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The types a figure of [`CacheStats`] has.
trait Figure {
    const UNIT: Unit;
    /// The figure as a Prometheus sample (seconds for a time).
    fn value(&self) -> f64;
}

impl Figure for u64 {
    const UNIT: Unit = Unit::Count;
    fn value(&self) -> f64 {
        *self as f64
    }
}

impl Figure for f64 {
    const UNIT: Unit = Unit::Ratio;
    fn value(&self) -> f64 {
        *self
    }
}

impl Figure for Duration {
    const UNIT: Unit = Unit::Time;
    fn value(&self) -> f64 {
        self.as_secs_f64()
    }
}

/// `total / n` nanoseconds, or zero when `n` is.
fn mean_nanos(total: u64, n: u64) -> Duration {
    Duration::from_nanos(total.checked_div(n).unwrap_or(0))
}

/// `part / whole`, or 0 when `whole` is.
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

impl Counters {
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
}

/// The counters a read touches, as atomics so that many threads can read one
/// engine at once (under a read lock). A `get` is counted once its lookup has
/// ended, as a hit or as a miss, never before it: each figure read from them
/// only grows while gets run (a `hits` of `gets - misses` would count a miss
/// in flight as a hit, then take it back).
// Every read adds to them, so they are kept off the lines of the engine's
// other fields, which every read only loads: the memory engine puts them
// first, on the line of its shard's lock word, which every read writes anyway
// (on a line of their own they cost a second contended line per read).
#[derive(Debug, Default)]
pub(crate) struct ReadCounters {
    hits: AtomicU64,
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
        sampled(self.hits.load(Ordering::Relaxed).wrapping_add(self.misses.load(Ordering::Relaxed)))
    }

    /// That `get` hit (from a thread holding a shared borrow).
    #[inline]
    pub fn count_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
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
        if hit {
            *self.hits.get_mut() += 1;
        } else {
            *self.misses.get_mut() += 1;
        }
    }

    pub fn record_latency(&self, elapsed: Nanos) {
        self.latency_ns.fetch_add(elapsed, Ordering::Relaxed);
        self.samples.fetch_add(1, Ordering::Relaxed);
    }

    /// The hits and misses so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Adds these counts, and the hits and misses counted elsewhere (the
    /// memory engine's per-thread lanes), to `total`.
    pub fn add_to(&self, total: &mut Counters, (more_hits, more_misses): (u64, u64)) {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        total.hits += read(&self.hits).wrapping_add(more_hits);
        total.misses += read(&self.misses).wrapping_add(more_misses);
        total.latency_ns = total.latency_ns.saturating_add(read(&self.latency_ns));
        total.samples += read(&self.samples);
        total.stale_hits += read(&self.stale_hits);
    }
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl SharedCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether the next `get` should be timed.
    pub fn sample_next_get(&self) -> bool {
        sampled(self.hits.load(Ordering::Relaxed) + self.misses.load(Ordering::Relaxed))
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
        self.load().snapshot()
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
    // Counters first, then gauges, each in table order.
    let counters = STATS.iter().filter(|s| s.kind == Kind::Counter).chain([&GETS]);
    let families = counters.chain(STATS.iter().filter(|s| s.kind == Kind::Gauge));
    let mut out = String::new();
    for family in families {
        let (name, help, kind) = (family.prometheus, family.help, family.kind.prometheus());
        let _ = writeln!(out, "# HELP pepperpy_cache_{name} {help}");
        let _ = writeln!(out, "# TYPE pepperpy_cache_{name} {kind}");
        for (store, stats) in &stores {
            let _ =
                writeln!(out, "pepperpy_cache_{name}{{store=\"{}\"}} {}", escape_label(store), (family.read)(stats));
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
        assert_eq!(seen.len(), 16);
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 32);
    }

    /// The exact text, so that a change to the table shows as a change of output.
    #[test]
    fn prometheus_text_is_unchanged() {
        let a = CacheStats {
            hits: 3,
            misses: 1,
            sets: 7,
            deletes: 2,
            evictions: 5,
            expirations: 4,
            hit_ratio: 0.75,
            avg_get_latency: Duration::from_micros(1500),
            loads: 6,
            load_failures: 1,
            total_load_time: Duration::from_millis(2250),
            stale_hits: 8,
            refreshes: 9,
            refresh_failures: 10,
            total_weight: 11,
        };
        let text = render_prometheus([("a", &a), ("b", &CacheStats::default())]);
        assert_eq!(text, include_str!("metrics/prometheus.txt"));
    }

    #[test]
    fn shard_totals_add_every_counter() {
        let shared = SharedCounters::default();
        for (i, c) in [&shared.hits, &shared.misses, &shared.sets, &shared.deletes].into_iter().enumerate() {
            SharedCounters::add(c, i as u64 + 1);
        }
        shared.record_latency(7);
        shared.record_load(false, 5);
        let mut total = shared.load();
        total.add(&shared.load());
        let twice = total.snapshot();
        let once = shared.snapshot();
        assert_eq!((twice.hits, twice.misses, twice.sets, twice.deletes), (2, 4, 6, 8));
        assert_eq!((twice.loads, twice.load_failures), (2, 2));
        assert_eq!(twice.total_load_time, once.total_load_time * 2);
        assert_eq!(twice.avg_get_latency, once.avg_get_latency);
    }
}
