//! Oracle MySQL can log a JSON update as a diff (`binlog_row_value_options=PARTIAL_JSON`, a
//! PARTIAL_UPDATE_ROWS event): the target cannot be kept exact from a diff, so rtsync refuses it,
//! with the fix in the message, both where it can see it coming (the pre-flight check reads the
//! global setting) and where it cannot (one session turns it on while the task streams).
//! MariaDB has no such setting.
//!
//! The pre-flight half turns the setting on for the whole server for the moment one check takes;
//! it lives in its own test binary so that no other test of this process runs meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;

/// Waits up to `within` for `rtsync run` to end on its own; kills it otherwise. Never panics, so
/// that a global setting changed around it is always put back.
fn exit_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_json_updates_are_refused_oracle_mysql() {
    let server = MySqlServer::OracleMySql;
    let mut conn = server.connect().await;
    let db = unique("partialjson").to_lowercase();
    let table = "docs";
    let t = format!("{db}.{table}");
    conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    conn.query_drop(format!("CREATE TABLE {t} (id INT PRIMARY KEY, doc JSON)")).await.unwrap();
    conn.query_drop(format!(r#"INSERT INTO {t} VALUES (1, '{{"n": 1, "pad": "{}"}}')"#, "x".repeat(200)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = format!("type = \"mysql\"\nurl = \"{}\"\nschema = \"{db}\"\ntable = \"{table}\"", server.url());

    // While streaming: one session logs a partial JSON update of the table.
    std::fs::create_dir_all(dir.path().join("stream")).unwrap();
    std::fs::create_dir_all(dir.path().join("check")).unwrap();
    let CdcTask { spec, log, target } =
        cdc_task(&dir.path().join("stream"), "partial_stream", r#"commit_interval = "300ms""#, &source, table);
    let mut child = spawn_run(&spec, &log);
    assert_eq!(wait_rows(&target, 1, Duration::from_secs(60)).await, 1, "the snapshot arrived");
    conn.query_drop("SET SESSION binlog_row_value_options = 'PARTIAL_JSON'").await.unwrap();
    conn.query_drop(format!("UPDATE {t} SET doc = JSON_SET(doc, '$.n', 2) WHERE id = 1")).await.unwrap();
    conn.query_drop("SET SESSION binlog_row_value_options = ''").await.unwrap();
    let status = exit_within(&mut child, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.is_some_and(|s| !s.success()), "the task stopped with an error ({status:?}):\n{text}");
    assert!(
        text.contains("binlog_row_value_options=PARTIAL_JSON")
            && text.contains("SET GLOBAL binlog_row_value_options = ''"),
        "the error names the setting and the fix:\n{text}"
    );

    // Before streaming: the server logs partial JSON for every session.
    let CdcTask { spec, log, .. } =
        cdc_task(&dir.path().join("check"), "partial_check", r#"commit_interval = "300ms""#, &source, table);
    let before: String = conn.query_first("SELECT @@GLOBAL.binlog_row_value_options").await.unwrap().unwrap();
    conn.query_drop("SET GLOBAL binlog_row_value_options = 'PARTIAL_JSON'").await.unwrap();
    let mut child = spawn_run(&spec, &log);
    let status = exit_within(&mut child, Duration::from_secs(60));
    conn.exec_drop("SET GLOBAL binlog_row_value_options = ?", (before,)).await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.is_some_and(|s| !s.success()), "the pre-flight check refused to start ({status:?}):\n{text}");
    assert!(
        text.contains("binlog_row_value_options=PARTIAL_JSON logs JSON updates as diffs")
            && text.contains("SET GLOBAL binlog_row_value_options = ''"),
        "the error names the setting and the fix:\n{text}"
    );
    conn.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
