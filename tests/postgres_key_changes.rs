//! PostgreSQL primary-key changes of rows whose TOASTed values are stored out of line, through
//! `rtsync run` into Delta. pgoutput sends such a value of a key-changing UPDATE only as
//! "unchanged" under the OLD key; the sink must carry it from wherever the old row is: the
//! table, an earlier change of the same commit, or an earlier key change (the change-row
//! contract of `rtsync_core::batch`). Every shape the fidelity issue lists, with the runner
//! SIGKILLed between two commits of a chain, for REPLICA IDENTITY DEFAULT and FULL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::datatypes::{Int32Type, Int64Type};
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use tokio_postgres::Client;

/// `n, big, blob as hex` by id.
type Row = (Option<i32>, Option<String>, Option<String>);

/// 12,000 random hex characters and 6,000 random bytes: too big to stay inline, too random
/// to compress below the TOAST threshold, so PostgreSQL stores them out of line.
const BIG: &str = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 375))";
const BLOB: &str = "(SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, 375))";

async fn source_rows(client: &Client, table: &str) -> BTreeMap<i64, Row> {
    let rows = client.query(&format!("SELECT id, n, big, encode(blob, 'hex') FROM {table}"), &[]).await.unwrap();
    rows.iter().map(|r| (r.get::<_, i64>(0), (r.get(1), r.get(2), r.get(3)))).collect()
}

async fn target_rows(target: &LakehouseSinkConfig) -> BTreeMap<i64, Row> {
    let mut out = BTreeMap::new();
    let Ok(batches) = query_table(target, "SELECT id, n, big, blob FROM t").await else {
        return out;
    };
    for b in batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let n = b.column(1).as_primitive::<Int32Type>();
        let big = b.column(2).as_string::<i32>();
        let blob = b.column(3).as_binary::<i32>();
        for i in 0..b.num_rows() {
            let hex = blob.is_valid(i).then(|| blob.value(i).iter().map(|x| format!("{x:02x}")).collect::<String>());
            let row = (n.is_valid(i).then(|| n.value(i)), big.is_valid(i).then(|| big.value(i).to_string()), hex);
            assert!(out.insert(ids.value(i), row).is_none(), "id {} twice in the target", ids.value(i));
        }
    }
    out
}

/// Waits until the target holds exactly the source's rows; panics with the difference.
async fn converged(client: &Client, table: &str, target: &LakehouseSinkConfig, what: &str) {
    let expected = source_rows(client, table).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut got = BTreeMap::new();
    while Instant::now() < deadline {
        got = target_rows(target).await;
        if got == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut diff = Vec::new();
    for (id, want) in &expected {
        match got.get(id) {
            Some(have) if have == want => {}
            Some(have) => diff.push(format!(
                "id {id}: n {:?} vs {:?}, big {} vs {}, blob {} vs {}",
                want.0,
                have.0,
                want.1.as_ref().map_or("NULL".into(), |v| format!("{} chars", v.len())),
                have.1.as_ref().map_or("NULL".into(), |v| format!("{} chars", v.len())),
                want.2.as_ref().map_or("NULL".into(), |v| format!("{} hex", v.len())),
                have.2.as_ref().map_or("NULL".into(), |v| format!("{} hex", v.len())),
            )),
            None => diff.push(format!("id {id}: missing in the target")),
        }
    }
    diff.extend(got.keys().filter(|id| !expected.contains_key(id)).map(|id| format!("id {id}: not in the source")));
    panic!("after {what}, the target differs from the source:\n{}", diff.join("\n"));
}

async fn key_changes_keep_out_of_line_values(replica_identity_full: bool) {
    let client = pg_connect().await;
    let table = unique(if replica_identity_full { "moves_full" } else { "moves" }).to_lowercase();
    let identity =
        if replica_identity_full { format!("ALTER TABLE {table} REPLICA IDENTITY FULL;") } else { String::new() };
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, n int, big text, blob bytea); {identity}
             INSERT INTO {table} SELECT g, g, {BIG}, {BLOB} FROM generate_series(1, 12) g;
             UPDATE {table} SET big = NULL, blob = NULL WHERE id = 9;"
        ))
        .await
        .unwrap();
    let stored: String = client
        .query_one(&format!("SELECT pg_column_size(big)::text FROM {table} WHERE id = 3"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(stored.parse::<i64>().unwrap() > 2000, "the value is stored out of line ({stored} bytes)");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("pgmoves");
    let source = format!("type = \"postgresql\"\nurl = \"{}\"\nschema = \"public\"\ntable = \"{table}\"", pg_url());
    let CdcTask { spec, log, target } = cdc_task(dir.path(), &name, r#"commit_interval = "300ms""#, &source, &table);
    let mut child = spawn_run(&spec, &log);
    converged(&client, &table, &target, "the snapshot").await;

    let t = &table;
    for (what, sql) in [
        // the reproduction: a key change, the out-of-line values unchanged
        ("a key change", format!("UPDATE {t} SET id = 200 WHERE id = 3")),
        // two key changes of one row in one transaction
        (
            "a chain in one transaction",
            format!("BEGIN; UPDATE {t} SET id = 40 WHERE id = 4; UPDATE {t} SET id = 41 WHERE id = 40; COMMIT"),
        ),
        // two key changes of one row in two transactions of (most likely) one commit
        ("a chain in one commit", format!("UPDATE {t} SET id = 50 WHERE id = 5; UPDATE {t} SET id = 51 WHERE id = 50")),
        // a key change of a row inserted in the same transaction
        (
            "a key change after an insert",
            format!(
                "BEGIN; INSERT INTO {t} SELECT 60, 60, {BIG}, {BLOB}; UPDATE {t} SET id = 61, n = 61 WHERE id = 60; COMMIT"
            ),
        ),
        // a key change, then an update under the new key that leaves the values unchanged
        (
            "an unchanged update under the new key",
            format!("BEGIN; UPDATE {t} SET id = 600 WHERE id = 6; UPDATE {t} SET n = n + 1 WHERE id = 600; COMMIT"),
        ),
        // a swap of two keys through a third
        (
            "a swap",
            format!(
                "BEGIN; UPDATE {t} SET id = -7 WHERE id = 7; UPDATE {t} SET id = 7 WHERE id = 8; UPDATE {t} SET id = 8 WHERE id = -7; COMMIT"
            ),
        ),
        // a row whose TOASTable columns are NULL
        ("a key change of NULL values", format!("UPDATE {t} SET id = 90 WHERE id = 9")),
        // a key change together with new values for the big columns
        (
            "a key change that sends the values",
            format!("UPDATE {t} SET id = 100, big = 'small', blob = '\\x00' WHERE id = 10"),
        ),
        // a key change, a delete and a re-insert of the old key in one transaction
        (
            "a re-insert of a moved-away key",
            format!(
                "BEGIN; UPDATE {t} SET id = 110 WHERE id = 11; INSERT INTO {t} SELECT 11, -11, {BIG}, NULL; COMMIT"
            ),
        ),
    ] {
        client.batch_execute(&sql).await.unwrap();
        converged(&client, t, &target, what).await;
    }

    // across a restart: the first key change is committed, the runner dies, the second one
    // arrives while it is down
    client.batch_execute(&format!("UPDATE {t} SET id = 1000 WHERE id = 1")).await.unwrap();
    converged(&client, t, &target, "a key change before the kill").await;
    child.kill().unwrap();
    child.wait().unwrap();
    client
        .batch_execute(&format!(
            "UPDATE {t} SET id = 1001, n = -1 WHERE id = 1000; UPDATE {t} SET id = 2000 WHERE id = 2"
        ))
        .await
        .unwrap();
    child = spawn_run(&spec, &log);
    converged(&client, t, &target, "key changes across a SIGKILL").await;

    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert!(status.success(), "rtsync exited with {status}:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    let rows = target_rows(&target).await;
    assert!(rows.get(&200).and_then(|r| r.1.as_ref()).is_some_and(|v| v.len() == 12_000), "the reproduction's value");
    let rtsync::SourceSpec::Postgresql(config) = rtsync::TaskSpec::load(&spec).unwrap().source else { unreachable!() };
    rtsync_source_postgres::drop_replication_objects(&config, &name).await.unwrap();
    client.batch_execute(&format!("DROP TABLE {t}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_keep_out_of_line_values_replica_identity_default() {
    key_changes_keep_out_of_line_values(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_keep_out_of_line_values_replica_identity_full() {
    key_changes_keep_out_of_line_values(true).await;
}
