//! The core's tables as the JS layer reads them, once, at load: the counters
//! (from the counter table in `metrics.rs`) and the error classes (from
//! [`ErrorKind::js_class`]). The JS layer restates neither: its
//! OpenTelemetry export and `getStats` walk `counterTable()`, and its error
//! classes are made from `errorTable()`.

use wasm_bindgen::prelude::*;

use crate::errors::ErrorKind;
#[cfg(test)]
use crate::metrics::STATS;
use crate::metrics::{JS_COUNTERS, JS_LAYOUT, Unit};
use crate::stores::memory::slots;

/// The counters the slot engine keeps itself, by [`CacheStats`] field, with
/// their index in its counters array (`WasmStore::counters`); the JS store
/// keeps the others.
///
/// [`CacheStats`]: crate::metrics::CacheStats
const ENGINE_COUNTERS: [(&str, usize); slots::COUNTERS] = [
    ("sets", slots::SETS),
    ("deletes", slots::DELETES),
    ("evictions", slots::EVICTIONS),
    ("expirations", slots::EXPIRATIONS),
];

/// One object per figure of `CacheStats`, in its field order (the order of
/// `getStats()`'s keys):
/// - `name`: the JS name (`loadFailures`), the field in camelCase;
/// - `field`: the Rust name (`load_failures`), which OpenTelemetry's metric
///   name uses (`pepperpy_cache.load_failures`);
/// - `kind`: `"sum"` for a whole count, `"gauge"` for a ratio or a time;
/// - `unit`: `"1"`, or `"ms"` for a time (the JS store reports times in
///   milliseconds);
/// - `help`: what it counts, as JS users read it;
/// - `engine`: its index in the engine's counters (`WasmStore::counters`),
///   or -1 when the JS store keeps or computes it itself.
/// The counter table for the JS layer, made at compile time
/// ([`JS_COUNTERS`]: a line per figure of `getStats()` in its order, the
/// field's Rust name and its help text split by a tab).
#[wasm_bindgen(js_name = counterTable)]
pub fn counter_table() -> String {
    JS_COUNTERS.to_string()
}

/// Per figure of [`counter_table`], two numbers: its unit (0 a count, 1 a
/// ratio, 2 a time in milliseconds) and its index in the engine's counters
/// (-1 when the JS store keeps or computes it itself).
#[wasm_bindgen(js_name = counterLayout)]
pub fn counter_layout() -> Vec<f64> {
    let mut out = Vec::with_capacity(2 * JS_LAYOUT.len());
    for &(field, unit) in JS_LAYOUT {
        out.push(match unit {
            Unit::Count => 0.0,
            Unit::Ratio => 1.0,
            Unit::Time => 2.0,
        });
        let engine = ENGINE_COUNTERS.iter().position(|(name, _)| *name == field);
        out.push(engine.map_or(-1.0, |i| ENGINE_COUNTERS[i].1 as f64));
    }
    out
}

/// The JS class of each [`ErrorKind`], a line each in `ErrorKind::ALL`'s order.
#[wasm_bindgen(js_name = errorTable)]
pub fn error_table() -> String {
    let mut out = String::with_capacity(512);
    for kind in ErrorKind::ALL {
        out.push_str(kind.js_class());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;

    #[wasm_bindgen_test]
    fn the_counter_table_has_every_figure_and_the_engines_indexes() {
        let table = counter_table();
        let rows: Vec<Vec<&str>> = table.trim_end().split('\n').map(|line| line.split('\t').collect()).collect();
        let layout = counter_layout();
        assert_eq!((rows.len(), layout.len()), (STATS.len(), 2 * STATS.len()));
        for (i, ((row, stat), &(field, unit))) in rows.iter().zip(STATS).zip(JS_LAYOUT).enumerate() {
            assert_eq!(row.len(), 2, "{row:?}");
            assert_eq!(row[0], field);
            // The Rust help, unless the row gives JS its own (a Rust name, or a unit).
            let own = ["loads", "avg_get_latency", "total_load_time"].contains(&field);
            assert_eq!(row[1] == stat.help, !own, "{row:?}");
            let unit = match unit {
                Unit::Count => 0.0,
                Unit::Ratio => 1.0,
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
        let table = error_table();
        let rows: Vec<&str> = table.trim_end().split('\n').collect();
        assert_eq!(rows.len(), ErrorKind::ALL.len());
        for (row, kind) in rows.iter().zip(ErrorKind::ALL) {
            assert_eq!(*row, kind.js_class());
        }
    }
}
