//! The core's tables as the JS layer reads them, once, at load: the counters
//! (from the counter table in `metrics.rs`) and the error classes (from
//! [`ErrorKind::js_class`]). The JS layer restates neither: its
//! OpenTelemetry export and `getStats` walk the counter table, and its error
//! classes are made from the error table. Text and numbers rather than JS
//! objects: building objects here cost 3 KB of wasm, and each export its glue.

use wasm_bindgen::prelude::*;

use crate::errors::ErrorKind;
#[cfg(test)]
use crate::metrics::STATS;
use crate::metrics::{JS_COUNTERS, JS_LAYOUT, Unit};
use crate::stores::memory::slots;

/// The counters the slot engine keeps itself, by [`CacheStats`] field, with
/// their index in its counters array (`WasmEngines::counters`); the JS store
/// keeps the others.
///
/// [`CacheStats`]: crate::metrics::CacheStats
const ENGINE_COUNTERS: [(&str, usize); slots::COUNTERS] = [
    ("sets", slots::SETS),
    ("deletes", slots::DELETES),
    ("evictions", slots::EVICTIONS),
    ("expirations", slots::EXPIRATIONS),
];

/// The counter table, a NUL, then the error table, as text made at compile
/// time where it can be:
/// - the counters ([`JS_COUNTERS`]): a line per figure of `getStats()` in
///   its order, the field's Rust name and its help text split by a tab (the
///   JS name is the field in camelCase); their units and engine indexes are
///   numbers at the end of `limits()` ([`counter_layout`]);
/// - the errors: the JS class of each [`ErrorKind`], a line each, in
///   `ErrorKind::ALL`'s order.
#[wasm_bindgen]
pub fn tables() -> String {
    let mut out = String::with_capacity(JS_COUNTERS.len() + 256);
    out.push_str(JS_COUNTERS);
    out.push('\0');
    for kind in ErrorKind::ALL {
        out.push_str(kind.js_class());
        out.push('\n');
    }
    out
}

/// Per figure of the counter table, two numbers, appended to `limits()`:
/// its unit (0 a count, 1 a ratio or a level (gauges), 2 a time in milliseconds) and its index
/// in the engine's counters (-1 when the JS store keeps or computes it).
pub(super) fn counter_layout(out: &mut Vec<f64>) {
    for &(field, unit) in JS_LAYOUT {
        out.push(match unit {
            Unit::Count => 0.0,
            Unit::Ratio | Unit::Level => 1.0,
            Unit::Time => 2.0,
        });
        let engine = ENGINE_COUNTERS.iter().position(|(name, _)| *name == field);
        out.push(engine.map_or(-1.0, |i| ENGINE_COUNTERS[i].1 as f64));
    }
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;

    #[wasm_bindgen_test]
    fn the_counter_table_has_every_figure_and_the_engines_indexes() {
        let all = tables();
        let (counters, _) = all.split_once('\0').unwrap();
        let rows: Vec<Vec<&str>> = counters.trim_end().split('\n').map(|line| line.split('\t').collect()).collect();
        let mut layout = Vec::new();
        counter_layout(&mut layout);
        assert_eq!((rows.len(), layout.len()), (STATS.len(), 2 * STATS.len()));
        for (i, ((row, stat), &(field, unit))) in rows.iter().zip(STATS).zip(JS_LAYOUT).enumerate() {
            assert_eq!(row.len(), 2, "{row:?}");
            assert_eq!(row[0], field);
            // The Rust help, unless the row gives JS its own (a Rust name, or a unit).
            let own = ["loads", "avg_get_latency", "total_load_time", "total_weight"].contains(&field);
            assert_eq!(row[1] == stat.help, !own, "{row:?}");
            let unit = match unit {
                Unit::Count => 0.0,
                Unit::Ratio | Unit::Level => 1.0,
                Unit::Time => 2.0,
            };
            assert_eq!(layout[2 * i], unit);
            match ENGINE_COUNTERS.iter().find(|(f, _)| *f == field) {
                Some(&(_, index)) => assert_eq!(layout[2 * i + 1], index as f64),
                None => assert_eq!(layout[2 * i + 1], -1.0),
            }
        }
        assert_eq!(rows[..3].iter().map(|r| r[0]).collect::<Vec<_>>(), ["hits", "misses", "sets"]);
        for (field, _) in ENGINE_COUNTERS {
            assert!(JS_LAYOUT.iter().any(|&(f, _)| f == field), "{field}");
        }
    }

    #[wasm_bindgen_test]
    fn the_error_table_names_each_kinds_class() {
        let all = tables();
        let (_, errors) = all.split_once('\0').unwrap();
        let rows: Vec<&str> = errors.trim_end().split('\n').collect();
        assert_eq!(rows.len(), ErrorKind::ALL.len());
        for (row, kind) in rows.iter().zip(ErrorKind::ALL) {
            assert_eq!(*row, kind.js_class());
        }
    }
}
