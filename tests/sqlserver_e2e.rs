//! SQL Server through `rtsync run` into Delta, against the TDS simulator (`rtsync-mssql-sim`):
//! the real connector path (tiberius's login over TCP, the connector's SQL and parameters,
//! tiberius's row decoding), the real engine and the Delta sink, read back by the independent
//! Python `deltalake` reader and compared cell by cell with the simulated table.
//!
//! One table with a column of every SQL Server type the connector maps: a snapshot, then
//! random transactions while the task streams (inserts, 3→4 update pairs, updates that leave
//! the `(max)`/text/xml columns alone so they arrive NULL with their update-mask bit clear,
//! several changes of one row in one transaction, key changes, deletes), a lagging capture
//! job, SIGKILLs of `rtsync run` mid-stream with restarts from the committed position, and a
//! schema change: a column added and a second capture instance created for the new shape.
//!
//! No SQL Server runs here: this proves the connector against the simulator's model of CDC
//! and of the wire protocol, not against SQL Server itself (see README "SQL Server").

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/arrow_text.rs"]
mod arrow_text;
#[path = "common/cells.rs"]
mod cells;
mod common;

use std::time::{Duration, Instant};

use cells::{Expected, differences, read_delta};
use common::*;
use rtsync_mssql_sim::workload::{Workload, every_type_table};
use rtsync_mssql_sim::{Credentials, TdsSim};
use rtsync_source_sqlserver::rows::{RowColumn, RowsBuilder};
use rtsync_source_sqlserver::sim::{SimHandle, column};
use tiberius::ColumnData;

/// The simulated table as the rows the target must hold, each cell as canonical text.
fn expected(db: &SimHandle) -> Vec<Expected> {
    let d = db.lock();
    let columns: Vec<RowColumn> =
        d.columns().iter().enumerate().map(|(i, c)| RowColumn { column: c.column.clone(), ordinal: i + 1 }).collect();
    let names: Vec<&str> = columns.iter().map(|c| c.column.name.as_str()).collect();
    let mut b = RowsBuilder::new(columns.clone(), &["id".to_string()]).unwrap();
    for values in d.table().values() {
        let row: Vec<ColumnData<'static>> =
            columns.iter().map(|c| values.get(&c.column.name).cloned().unwrap_or(ColumnData::String(None))).collect();
        b.push_read(&row).unwrap();
    }
    let (batch, _) = b.finish().unwrap();
    let mut out = Vec::new();
    for i in 0..batch.num_rows() {
        let id: i64 = arrow_text::cell(batch.column_by_name("id").unwrap(), i).unwrap().parse().unwrap();
        let mut e = Expected::nulls(&names, id);
        for name in &names {
            if let Some(text) = arrow_text::cell(batch.column_by_name(name).unwrap(), i) {
                e = e.with(&[(name, &text)]);
            }
        }
        out.push(e);
    }
    out
}

/// Random transactions for `for_ms`, the capture job running every few of them.
async fn churn(db: &SimHandle, w: &mut Workload, for_ms: u64) {
    let until = Instant::now() + Duration::from_millis(for_ms);
    while Instant::now() < until {
        for _ in 0..3 {
            w.transaction(db);
        }
        if w.rng.below(3) > 0 {
            db.lock().capture();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_through_snapshot_stream_schema_change_and_sigkills() {
    let table = "mssql_e2e";
    let db = every_type_table("dbo", table);
    let mut w = Workload::new(20_261_202);
    w.seed(&db, 400);
    let sim = TdsSim::start(db.clone(), Credentials::default(), 0).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let name = unique("mssql");
    let source = format!(
        "type = \"sqlserver\"\nurl = \"{}\"\nschema = \"dbo\"\ntable = \"{table}\"\n\
         poll_interval_ms = 50\nsnapshot_chunk_rows = 64\nmax_batch_rows = 40\nidle_advance_secs = 1",
        sim.url()
    );
    let CdcTask { spec, log, target } = cdc_task(dir.path(), &name, r#"commit_interval = "300ms""#, &source, table);

    let mut child = spawn_run(&spec, &log);
    for round in 0..5 {
        churn(&db, &mut w, 1_500).await;
        if round == 2 {
            // The DBA captures a new shape: a column, then a second capture instance.
            let mut d = db.lock();
            d.capture();
            d.add_column(column("c_note", "nvarchar", 160, 0, 0));
            d.enable_capture_instance("dbo_mssql_e2e_v2");
        }
        // SIGKILL mid-stream, restart from the committed position.
        child.kill().unwrap();
        child.wait().unwrap();
        child = spawn_run(&spec, &log);
    }
    churn(&db, &mut w, 1_000).await;
    db.lock().capture();
    let c = w.counts;
    assert!(
        c.updates > 20 && c.lob_unchanged_updates > 5 && c.repeated_updates > 3 && c.key_changes > 3 && c.deletes > 10,
        "the workload covered too little: {c:?}"
    );

    let want = expected(&db);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut diff = vec!["not read yet".to_string()];
    let mut read = serde_json::Value::Null;
    while Instant::now() < deadline {
        if count_rows(&target).await == want.len() as u64 {
            read = read_delta(&target, "id");
            diff = differences(&read, &want);
            if diff.is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "rtsync exited with {status}:\n{text}");
    assert!(
        diff.is_empty(),
        "{} differences between Delta and the simulated table, first: {:#?}\nlog tail:\n{}",
        diff.len(),
        &diff[..diff.len().min(20)],
        &text[text.len().saturating_sub(4000)..]
    );
    assert_eq!(read["schema"]["c_note"], "string", "the added column reached the target");
    assert!(text.contains("switching to the newer capture instance"), "{text}");
}
