//! The core's tables as the JS layer reads them, once, at load: the counters
//! (from the counter table in `metrics.rs`) and the error classes (from
//! [`ErrorKind::js_class`]). The JS layer restates neither: its
//! OpenTelemetry export and `getStats` walk `counterTable()`, and its error
//! classes are made from `errorTable()`.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::errors::ErrorKind;
use crate::metrics::{STATS, Stat, Unit};
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
#[wasm_bindgen(js_name = counterTable)]
pub fn counter_table() -> Array {
    STATS.iter().map(|stat| JsValue::from(counter_row(stat))).collect()
}

fn counter_row(stat: &Stat) -> Object {
    let (kind, unit) = match stat.unit {
        Unit::Count => ("sum", "1"),
        Unit::Ratio => ("gauge", "1"),
        Unit::Time => ("gauge", "ms"),
    };
    let help = match (stat.js_help, stat.unit) {
        (Some(help), _) => help.to_string(),
        (None, Unit::Time) => format!("{}, in milliseconds.", stat.help.trim_end_matches('.')),
        (None, _) => stat.help.to_string(),
    };
    let engine = ENGINE_COUNTERS.iter().find(|(field, _)| *field == stat.field).map_or(-1.0, |&(_, i)| i as f64);
    let row = Object::new();
    set(&row, "name", &camel_case(stat.field).into());
    set(&row, "field", &stat.field.into());
    set(&row, "kind", &kind.into());
    set(&row, "unit", &unit.into());
    set(&row, "help", &help.into());
    set(&row, "engine", &engine.into());
    row
}

/// One object per [`ErrorKind`], in [`ErrorKind::ALL`]'s order: `kind`
/// (`"BackendTimeout"`) and `name`, the JS class its errors are thrown as
/// (`"CacheBackendError"`; every class extends `CacheError`). The wasm
/// exports throw an `Error` whose `name` is that class (see `errors.rs`).
#[wasm_bindgen(js_name = errorTable)]
pub fn error_table() -> Array {
    ErrorKind::ALL
        .iter()
        .map(|kind| {
            let row = Object::new();
            set(&row, "kind", &format!("{kind:?}").into());
            set(&row, "name", &kind.js_class().into());
            JsValue::from(row)
        })
        .collect()
}

fn set(row: &Object, key: &str, value: &JsValue) {
    // Setting a property of a fresh plain object cannot throw.
    let _ = Reflect::set(row, &key.into(), value);
}

/// `load_failures` -> `loadFailures`.
fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;

    fn get(row: &JsValue, key: &str) -> JsValue {
        Reflect::get(row, &key.into()).unwrap()
    }

    #[wasm_bindgen_test]
    fn the_counter_table_has_every_figure_and_the_engines_indexes() {
        let table = counter_table();
        assert_eq!(table.length() as usize, STATS.len());
        let names: Vec<String> = table.iter().map(|row| get(&row, "name").as_string().unwrap()).collect();
        assert_eq!(names[..3], ["hits", "misses", "sets"]);
        assert!(names.contains(&"loadFailures".to_string()) && names.contains(&"avgGetLatency".to_string()));
        for (row, stat) in table.iter().zip(STATS) {
            assert_eq!(get(&row, "field").as_string().unwrap(), stat.field);
            let help = stat.js_help.unwrap_or(stat.help);
            assert!(get(&row, "help").as_string().unwrap().starts_with(help.trim_end_matches('.')), "{help}");
            let engine = get(&row, "engine").as_f64().unwrap();
            match ENGINE_COUNTERS.iter().find(|(f, _)| *f == stat.field) {
                Some(&(_, i)) => assert_eq!(engine, i as f64),
                None => assert_eq!(engine, -1.0),
            }
        }
        // Every engine counter is a figure of the table.
        for (field, _) in ENGINE_COUNTERS {
            assert!(STATS.iter().any(|s| s.field == field), "{field}");
        }
    }

    #[wasm_bindgen_test]
    fn the_error_table_names_each_kinds_class() {
        let table = error_table();
        assert_eq!(table.length() as usize, ErrorKind::ALL.len());
        for (row, kind) in table.iter().zip(ErrorKind::ALL) {
            assert_eq!(get(&row, "kind").as_string().unwrap(), format!("{kind:?}"));
            assert_eq!(get(&row, "name").as_string().unwrap(), kind.js_class());
        }
    }

    #[wasm_bindgen_test]
    fn camel_case_joins_words() {
        assert_eq!(camel_case("load_failures"), "loadFailures");
        assert_eq!(camel_case("avg_get_latency"), "avgGetLatency");
        assert_eq!(camel_case("hits"), "hits");
    }
}
