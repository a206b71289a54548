//! Canonical cell text, so the source (read with its SQL client) and the Delta table (read with
//! the Python reader, `tests/common/delta_cells.py`) compare exactly: JSON as its parsed value,
//! floats by their exact bits, timestamps to the microsecond in UTC, decimals as their exact
//! text, bytes as lowercase hex.

use std::collections::BTreeMap;

use crate::sources::Rows;
use crate::workload::{Column, Kind};

/// A double's exact text: the shortest that round-trips (`-0.0`, `NaN`, `inf` spelled out).
pub fn float_text(f: f64) -> String {
    if f.is_nan() { "NaN".into() } else { format!("{f:?}") }
}

/// The canonical text of a cell of `kind` as either side spells it.
pub fn canonical(kind: Kind, text: &str) -> String {
    match kind {
        Kind::Json => match serde_json::from_str::<serde_json::Value>(text) {
            // serde_json's maps are ordered by key: the same document prints the same
            Ok(v) => v.to_string(),
            Err(_) => format!("(not JSON) {text}"),
        },
        Kind::Float64 { .. } | Kind::Float32 { .. } => match text.parse::<f64>() {
            Ok(f) => float_text(f),
            Err(_) => format!("(not a float) {text}"),
        },
        // Python's isoformat leaves out a zero fraction; the sources always print six digits
        Kind::Instant { .. } | Kind::Local { .. } => {
            let (time, zone) = match text.strip_suffix("+00:00") {
                Some(t) => (t, "+00:00"),
                None => (text, ""),
            };
            if time.contains('.') { format!("{time}{zone}") } else { format!("{time}.000000{zone}") }
        }
        _ => text.to_string(),
    }
}

/// The Delta table as the Python reader printed it, in canonical text; a column the target does
/// not have is left out of its rows.
pub fn delta_rows(read: &serde_json::Value, columns: &[Column]) -> Result<Rows, String> {
    let rows = read["rows"].as_object().ok_or_else(|| format!("the reader returned no rows: {read}"))?;
    let mut out = Rows::new();
    for (key, row) in rows {
        let row = row.as_object().ok_or("a row is not an object")?;
        let mut cells = BTreeMap::new();
        for (name, cell) in row {
            let kind = columns.iter().find(|c| c.name == name).map_or(Kind::Text, |c| c.kind);
            let text = match cell {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(canonical(kind, s)),
                other => Some(format!("(not text) {other}")),
            };
            cells.insert(name.clone(), text);
        }
        out.insert(key.clone(), cells);
    }
    Ok(out)
}

/// One key whose row differs: the key and what differs about it.
pub struct Difference {
    pub key: String,
    pub what: Vec<String>,
}

/// Every key whose row is missing, extra or different (a column the target lacks counts as a
/// difference in every row).
pub fn differences(source: &Rows, target: &Rows) -> Vec<Difference> {
    let mut out = Vec::new();
    for (key, want) in source {
        let Some(got) = target.get(key) else {
            out.push(Difference { key: key.clone(), what: vec!["in the source, missing from the Delta table".into()] });
            continue;
        };
        let mut what = Vec::new();
        for (column, w) in want {
            match got.get(column) {
                None => what.push(format!("column {column}: not in the Delta table (source {})", shown(w))),
                Some(g) if g != w => what.push(format!("column {column}: Delta {}, source {}", shown(g), shown(w))),
                Some(_) => {}
            }
        }
        for column in got.keys().filter(|c| !want.contains_key(*c)) {
            what.push(format!("column {column}: in the Delta table, not in the source"));
        }
        if !what.is_empty() {
            out.push(Difference { key: key.clone(), what });
        }
    }
    for key in target.keys().filter(|k| !source.contains_key(*k)) {
        out.push(Difference { key: key.clone(), what: vec!["in the Delta table, not in the source".into()] });
    }
    out
}

fn shown(cell: &Option<String>) -> String {
    match cell {
        None => "NULL".into(),
        Some(s) if s.chars().count() > 60 => {
            format!("{:?}… ({} chars)", s.chars().take(40).collect::<String>(), s.chars().count())
        }
        Some(s) => format!("{s:?}"),
    }
}

#[test]
fn canonical_text_matches_across_readers() {
    let json = Kind::Json;
    assert_eq!(canonical(json, r#"{"b": 1,  "a": [1, 2.50]}"#), canonical(json, r#"{"a":[1,2.5],"b":1}"#));
    let f = Kind::Float64 { special: true };
    assert_eq!(canonical(f, "1e+308"), canonical(f, "1e308"));
    assert_eq!(canonical(f, "nan"), canonical(f, "NaN"));
    assert_ne!(canonical(f, "-0.0"), canonical(f, "0"));
    let ts = Kind::Instant { min: 0, max: 0 };
    assert_eq!(canonical(ts, "2024-01-01T00:00:00+00:00"), "2024-01-01T00:00:00.000000+00:00");
    assert_eq!(canonical(ts, "2024-01-01T00:00:00.000001+00:00"), "2024-01-01T00:00:00.000001+00:00");
    let local = Kind::Local { min: 0, max: 0 };
    assert_eq!(canonical(local, "0002-01-01T00:00:00"), "0002-01-01T00:00:00.000000");
}
