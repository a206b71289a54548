//! For the type round-trip tests: the table as the independent Python reader sees it
//! (`delta_cells.py`), compared cell by cell with rows written out by hand.
//!
//! Included by those tests with `#[path = "common/cells.rs"] mod cells;` beside `mod common;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use rtsync_core::arrow::array::AsArray;
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};

/// The independent reader: the table's Delta types and its rows as canonical text per cell.
const DELTA_CELLS: &str = include_str!("delta_cells.py");

/// What the reader returns: `schema` (column → Delta type), `arrow` (column → Arrow type the
/// reader produced) and `rows` (key → column → canonical text or null).
pub fn read_delta(table: &LakehouseSinkConfig, key: &str) -> serde_json::Value {
    if table.storage_options.is_empty() {
        crate::common::python_json(DELTA_CELLS, &[&table.table_location(), key])
    } else {
        let options = serde_json::to_string(&table.storage_options).unwrap();
        crate::common::python_json(DELTA_CELLS, &[&table.table_location(), key, &options])
    }
}

/// The Delta column types the reader found, by column.
pub fn delta_types(read: &serde_json::Value) -> BTreeMap<String, String> {
    read["schema"]
        .as_object()
        .map(|o| {
            o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("(not a primitive type)").to_string())).collect()
        })
        .unwrap_or_default()
}

/// One expected row: every column, NULL unless set.
#[derive(Clone, Debug)]
pub struct Expected {
    id: i64,
    cells: BTreeMap<String, Option<String>>,
}

impl Expected {
    /// The row with key column `id` = `id` and every other of `columns` NULL.
    pub fn nulls(columns: &[&str], id: i64) -> Self {
        let mut cells: BTreeMap<String, Option<String>> = columns.iter().map(|c| (c.to_string(), None)).collect();
        cells.insert("id".into(), Some(id.to_string()));
        Expected { id, cells }
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn with(mut self, cells: &[(&str, &str)]) -> Self {
        for (column, value) in cells {
            assert!(self.cells.contains_key(*column), "no column {column}");
            self.cells.insert(column.to_string(), Some(value.to_string()));
        }
        self
    }

    pub fn null(mut self, columns: &[&str]) -> Self {
        for column in columns {
            assert!(self.cells.contains_key(*column), "no column {column}");
            self.cells.insert(column.to_string(), None);
        }
        self
    }
}

/// Every difference between the rows the reader saw (`read["rows"]`) and the expected ones:
/// missing and extra rows and columns, and each cell that differs.
pub fn differences(read: &serde_json::Value, expected: &[Expected]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(rows) = read["rows"].as_object() else {
        return vec![format!("the reader returned no rows: {read}")];
    };
    for id in rows.keys() {
        if !expected.iter().any(|e| e.id.to_string() == *id) {
            out.push(format!("row {id} should not be in the table"));
        }
    }
    for want in expected {
        let id = want.id;
        let Some(row) = rows.get(&id.to_string()).and_then(|r| r.as_object()) else {
            out.push(format!("row {id} is missing"));
            continue;
        };
        for column in row.keys() {
            if !want.cells.contains_key(column) {
                out.push(format!("row {id}: unexpected column {column}"));
            }
        }
        for (column, value) in &want.cells {
            let cell = match row.get(column) {
                Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) => Some(format!("(not text: {other})")),
                None => Some("(no such column)".to_string()),
            };
            if cell != *value {
                out.push(format!("row {id} column {column}: got {}, want {}", shown(&cell), shown(value)));
            }
        }
    }
    out
}

/// A cell for a failure message, long values cut.
fn shown(cell: &Option<String>) -> String {
    match cell {
        Some(s) if s.chars().count() > 80 => {
            format!("{:?}… ({} chars)", s.chars().take(80).collect::<String>(), s.chars().count())
        }
        other => format!("{other:?}"),
    }
}

/// `SELECT count(*) FROM t WHERE {predicate}` on the Delta table; 0 while it does not exist.
pub async fn count_where(table: &LakehouseSinkConfig, predicate: &str) -> i64 {
    match query_table(table, &format!("SELECT count(*) FROM t WHERE {predicate}")).await {
        Ok(batches) => batches.first().map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0)),
        Err(_) => 0,
    }
}

/// Polls until [`count_where`] is `want`; returns the last count.
pub async fn wait_count(table: &LakehouseSinkConfig, predicate: &str, want: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let n = count_where(table, predicate).await;
        if n == want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The `rtsync run` child, killed when the test ends early (a failed assertion) so it does not
/// outlive the test.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The end of a type test: waits for the sentinel row `id = 99` and then for every expected
/// row, stops `rtsync run` with SIGTERM (it must exit cleanly), and checks through the Python
/// reader the Delta types, the Arrow types named in `arrow` (column, type, why) and every cell;
/// then that rtsync's own reader sees the same ids.
pub async fn stop_and_verify(
    target: &LakehouseSinkConfig,
    child: &mut Running,
    log: &std::path::Path,
    expected: &[Expected],
    types: &[(&str, &str)],
    arrow: &[(&str, &str, &str)],
) {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let sentinel = wait_count(target, "id = 99", 1, Duration::from_secs(120)).await;
    let rows = wait_count(target, "true", expected.len() as i64, Duration::from_secs(30)).await;
    crate::common::sigterm(&child.0);
    let status = crate::common::wait_exit(&mut child.0, Duration::from_secs(60));
    assert!(status.success(), "rtsync exited with {status}:\n{}", log_text());
    assert_eq!((sentinel, rows), (1, expected.len() as i64), "the table converged; log:\n{}", log_text());

    let read = read_delta(target, "id");
    let want_types: BTreeMap<String, String> = types.iter().map(|(c, ty)| (c.to_string(), ty.to_string())).collect();
    assert_eq!(delta_types(&read), want_types, "Delta column types");
    for (column, ty, why) in arrow {
        assert_eq!(read["arrow"][column], *ty, "{why}");
    }
    let diffs = differences(&read, expected);
    assert!(diffs.is_empty(), "{} cells differ:\n{}", diffs.len(), diffs.join("\n"));

    let mut ids = Vec::new();
    for b in query_table(target, "SELECT CAST(id AS BIGINT) AS id64 FROM t ORDER BY id64").await.unwrap() {
        ids.extend(b.column(0).as_primitive::<Int64Type>().values().iter().copied());
    }
    let mut want_ids: Vec<i64> = expected.iter().map(Expected::id).collect();
    want_ids.sort_unstable();
    assert_eq!(ids, want_ids, "rtsync's reader sees the same rows");
}
