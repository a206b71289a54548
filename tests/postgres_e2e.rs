//! PostgreSQL → Delta through `rtsync run`, against the real PostgreSQL started by
//! `scripts/services.sh` (wal_level=logical): snapshot while writes continue, then every insert,
//! update, delete and primary-key change, with the runner SIGKILLed mid-snapshot and
//! mid-stream; at the end the Delta table equals the source table, row by row.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rtsync_core::arrow::array::AsArray;
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use tokio_postgres::Client;

async fn source_rows(client: &Client, table: &str) -> BTreeMap<i64, OrderRow> {
    let rows = client.query(&format!("SELECT id, name, qty, price::text FROM {table}"), &[]).await.unwrap();
    rows.iter()
        .map(|r| {
            (r.get::<_, i64>(0), (r.get::<_, String>(1), r.get::<_, Option<i64>>(2), r.get::<_, Option<String>>(3)))
        })
        .collect()
}

/// A batch of changes: inserts, updates, deletes and primary-key changes.
async fn churn(client: &Client, table: &str, round: i64) {
    let base = 1_000_000 + round * 1000;
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO {table} (id, name, qty, price) SELECT g, 'new-' || g, g % 7, (g % 1000) / 4.0 FROM generate_series({base}, {base} + 49) g;
             UPDATE {table} SET qty = qty + 1, name = name || '+' WHERE id % 97 = {m};
             DELETE FROM {table} WHERE id % 89 = {m};
             UPDATE {table} SET id = id + 5000000 WHERE id = {base} + 7;
             COMMIT;",
            m = round % 89
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_mirrors_through_sigkills_exactly() {
    let client = pg_connect().await;
    let table = unique("orders").to_lowercase();
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, qty bigint, price numeric(12,2));
             INSERT INTO {table} SELECT g, 'row-' || g || ' ü', g % 10, (g % 5000) / 8.0 FROM generate_series(1, 60000) g;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("pgsync");
    let source = format!(
        "type = \"postgresql\"\nurl = \"{}\"\nschema = \"public\"\ntable = \"{table}\"\nsnapshot_chunk_rows = 5000",
        pg_url()
    );
    let CdcTask { spec, log, target } = cdc_task(dir.path(), &name, r#"commit_interval = "500ms""#, &source, &table);

    // Kill during the snapshot, then keep writing and killing while it streams.
    let mut child = spawn_run(&spec, &log);
    let mut round = 0;
    for wait_ms in [1500u64, 2500, 2000, 3000] {
        let until = Instant::now() + Duration::from_millis(wait_ms);
        while Instant::now() < until {
            churn(&client, &table, round).await;
            round += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        child = spawn_run(&spec, &log);
    }
    for _ in 0..5 {
        churn(&client, &table, round).await;
        round += 1;
    }
    let expected = source_rows(&client, &table).await;
    converge_then_stop(&target, &expected, || order_rows(&target), &mut child, &log).await;
    assert!(round > 10, "changes were made while syncing");
    // What undeploy does: the slot and the publication go.
    let rtsync::SourceSpec::Postgresql(config) = rtsync::TaskSpec::load(&spec).unwrap().source else { unreachable!() };
    let slot = rtsync_source_postgres::PostgresSource::new(&name, config.clone()).unwrap().slot_name().to_string();
    let dropped = rtsync_source_postgres::drop_replication_objects(&config, &name).await.unwrap();
    assert_eq!(dropped.slot.as_deref(), Some(slot.as_str()));
    let slots: i64 = client
        .query_one("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "the slot was dropped");
    client.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}

/// `(op, rows)` of the change-log table, by operation.
async fn ops(table: &LakehouseSinkConfig) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let Ok(batches) = query_table(table, "SELECT _rtsync_op, count(*) FROM t GROUP BY _rtsync_op").await else {
        return out;
    };
    for b in batches {
        let op = b.column(0).as_string::<i32>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.insert(op.value(i).to_string(), n.value(i));
        }
    }
    out
}

async fn wait_ops(table: &LakehouseSinkConfig, want: &BTreeMap<String, i64>, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = ops(table).await;
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the change log never became {want:?}; it is {got:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A table without a primary key (REPLICA IDENTITY FULL) is mirrored as its change log, with the
/// operation of each row in `_rtsync_op`. Killed mid-snapshot, the task copies the table again
/// and the commit replaces the partial copy, so no row is there twice; a TRUNCATE at the source
/// empties the target in the same commit as the rows after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_table_is_its_change_log_through_a_kill_mid_snapshot() {
    let client = pg_connect().await;
    let table = unique("keyless").to_lowercase();
    const ROWS: i64 = 150_000;
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint NOT NULL, note text);
             ALTER TABLE {table} REPLICA IDENTITY FULL;
             INSERT INTO {table} SELECT g, 'n' || g FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("pgkeyless");
    let source = format!(
        "type = \"postgresql\"\nurl = \"{}\"\nschema = \"public\"\ntable = \"{table}\"\nmax_batch_rows = 2000\nsnapshot_chunk_rows = 2000",
        pg_url()
    );
    // A commit at least every 5,000 rows: the snapshot takes many commits, so the kill lands in it.
    let options = "commit_interval = \"100ms\"\nmax_buffered_rows = 5000";
    let CdcTask { spec, log, target } = cdc_task(dir.path(), &name, options, &source, &table);

    let mut child = spawn_run(&spec, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Killed as soon as the Delta log holds two commits (watched on disk: a query would take
    // longer than an idle machine takes to copy the whole table).
    let delta_log = std::path::Path::new(&target.table_location()).join("_delta_log");
    let commits = || {
        std::fs::read_dir(&delta_log)
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count())
            .unwrap_or(0)
    };
    while commits() < 2 {
        assert!(Instant::now() < deadline, "no snapshot commit; log:\n{}", std::fs::read_to_string(&log).unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let after_kill = count_rows(&target).await;
    assert!(
        after_kill > 0 && after_kill < ROWS as u64,
        "killed mid-snapshot ({after_kill} of {ROWS} rows, {} commits); log:\n{}",
        commits(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let mut child = spawn_run(&spec, &log);
    let snapshot: BTreeMap<String, i64> = [("r".to_string(), ROWS)].into();
    wait_ops(&target, &snapshot, &log).await;
    let distinct = query_table(&target, "SELECT count(DISTINCT id) FROM t").await.unwrap();
    assert_eq!(distinct[0].column(0).as_primitive::<Int64Type>().value(0), ROWS, "every source row once");

    client
        .batch_execute(&format!(
            "INSERT INTO {table} VALUES (-1, 'a'), (-2, 'b'), (-3, 'c');
             UPDATE {table} SET note = 'changed' WHERE id = 7;
             DELETE FROM {table} WHERE id = 8;"
        ))
        .await
        .unwrap();
    let changes: BTreeMap<String, i64> =
        [("r".to_string(), ROWS), ("c".into(), 3), ("u".into(), 1), ("d".into(), 1)].into();
    wait_ops(&target, &changes, &log).await;
    let rows = query_table(
        &target,
        "SELECT _rtsync_op, note FROM t WHERE id IN (7, 8) AND _rtsync_op IN ('u', 'd') ORDER BY id",
    )
    .await
    .unwrap();
    let got: Vec<(String, String)> = rows
        .iter()
        .flat_map(|b| {
            let (op, note) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
            (0..b.num_rows()).map(|i| (op.value(i).to_string(), note.value(i).to_string())).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(got, vec![("u".to_string(), "changed".to_string()), ("d".to_string(), "n8".to_string())]);

    client.batch_execute(&format!("TRUNCATE {table}; INSERT INTO {table} VALUES (1, 'after')")).await.unwrap();
    let truncated: BTreeMap<String, i64> = [("c".to_string(), 1)].into();
    wait_ops(&target, &truncated, &log).await;

    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(60)).success());
    let rtsync::SourceSpec::Postgresql(config) = rtsync::TaskSpec::load(&spec).unwrap().source else { unreachable!() };
    rtsync_source_postgres::drop_replication_objects(&config, &name).await.unwrap();
    client.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}

/// The independent readers of the merge-on-read tests (Python `deltalake` QueryBuilder, polars,
/// DuckDB's delta extension), which apply deletion vectors.
const READER: &str = include_str!("common/delta_rows.py");

/// The table, read by each independent reader, holds `expected`'s ids, names and quantities.
fn independent_readers_agree(target: &LakehouseSinkConfig, expected: &BTreeMap<i64, OrderRow>) {
    let read = python_json(READER, &[&target.table_location()]);
    let columns: Vec<&str> = read["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let at = |name: &str| columns.iter().position(|c| *c == name).unwrap();
    let (id, name, qty) = (at("id"), at("name"), at("qty"));
    let want: Vec<serde_json::Value> = expected.iter().map(|(k, (n, q, _))| serde_json::json!([k, n, q])).collect();
    for reader in ["querybuilder", "polars", "duckdb"] {
        let got: Vec<serde_json::Value> =
            read[reader].as_array().unwrap().iter().map(|r| serde_json::json!([r[id], r[name], r[qty]])).collect();
        if got != want {
            let first = got.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
            panic!(
                "{reader}: {} rows, expected {}; first difference at row {first}: {:?} vs {:?}",
                got.len(),
                want.len(),
                got.get(first),
                want.get(first)
            );
        }
    }
}

fn occurrences(log: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().matches(needle).count()
}

/// Waits until `needle` has been logged more than `seen` times; false if not within `within`.
async fn logged_again(log: &std::path::Path, needle: &str, seen: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if occurrences(log, needle) > seen {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// A PostgreSQL table of `rows` orders and an `rtsync run` task mirroring it, in `dir`: the
/// source snapshots in chunks of `chunk_rows`, the task commits every `commit_interval`, and
/// `sink` adds lines to the spec's `[sink]` section. Returns the table's name, the task's name
/// and the task.
async fn mor_task(
    client: &Client,
    dir: &std::path::Path,
    prefix: &str,
    rows: u64,
    chunk_rows: u64,
    commit_interval: &str,
    sink: &str,
) -> (String, String, CdcTask) {
    let table = unique(&format!("mor_{prefix}")).to_lowercase();
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, qty bigint, price numeric(12,2));
             INSERT INTO {table} SELECT g, 'row-' || g, g % 10, (g % 5000) / 8.0 FROM generate_series(1, {rows}) g;"
        ))
        .await
        .unwrap();
    let name = unique(&format!("mor{prefix}"));
    let source = format!(
        "type = \"postgresql\"\nurl = \"{}\"\nschema = \"public\"\ntable = \"{table}\"\nsnapshot_chunk_rows = {chunk_rows}",
        pg_url()
    );
    let task = cdc_task(dir, &name, &format!("commit_interval = \"{commit_interval}\""), &source, &table);
    let mut body = std::fs::read_to_string(&task.spec).unwrap();
    body.push_str(sink);
    std::fs::write(&task.spec, body).unwrap();
    (table, name, task)
}

/// Drops what [`mor_task`] made at the source: the slot, the publication and the table.
async fn drop_mor_task(client: &Client, spec: &std::path::Path, name: &str, table: &str) {
    let rtsync::SourceSpec::Postgresql(config) = rtsync::TaskSpec::load(spec).unwrap().source else { unreachable!() };
    let _ = rtsync_source_postgres::drop_replication_objects(&config, name).await;
    client.batch_execute(&format!("DROP TABLE {table}")).await.unwrap();
}

/// A merge-on-read task whose key index is lost (a task moved to another machine) and rebuilt
/// from the table's files on restart, SIGKILLed in the middle of that rebuild: the partly built
/// index is caught up by the next start and the table ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_on_read_survives_kills_during_the_key_index_rebuild() {
    const BUILDING: &str = "building the key index";
    const BUILT: &str = "key index built";
    let client = pg_connect().await;
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    // Many small files (32 KiB, no compaction), so that a rebuild reads enough of them to be
    // caught in the middle.
    let sink = format!("index_dir = \"{}\"\nmaintenance = false\ntarget_file_size = 32768\n", index_dir.display());
    let (table, name, CdcTask { spec, log, target }) =
        mor_task(&client, dir.path(), "rebuild", 60_000, 1000, "100ms", &sink).await;

    let mut child = spawn_run(&spec, &log);
    assert!(wait_rows(&target, 60_000, Duration::from_secs(180)).await >= 60_000, "snapshot");
    for round in 0..20 {
        churn(&client, &table, round).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut round = 20;
    let mut mid_rebuild = 0;
    for _ in 0..5 {
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&index_dir).unwrap();
        churn(&client, &table, round).await;
        round += 1;
        let (building, built) = (occurrences(&log, BUILDING), occurrences(&log, BUILT));
        child = spawn_run(&spec, &log);
        assert!(
            logged_again(&log, BUILDING, building, Duration::from_secs(60)).await,
            "the lost index is rebuilt from the table:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        child.kill().unwrap();
        child.wait().unwrap();
        if occurrences(&log, BUILT) == built {
            mid_rebuild += 1;
            // The next start finds the partly built index and goes on from where it stopped.
            child = spawn_run(&spec, &log);
            churn(&client, &table, round).await;
            round += 1;
            if mid_rebuild == 2 {
                break;
            }
        } else {
            child = spawn_run(&spec, &log);
        }
    }
    assert!(mid_rebuild > 0, "no SIGKILL landed inside a key index rebuild in 5 tries");
    println!("SIGKILLs inside a key index rebuild: {mid_rebuild}");
    for _ in 0..5 {
        churn(&client, &table, round).await;
        round += 1;
    }
    let expected = source_rows(&client, &table).await;
    converge_then_stop(&target, &expected, || order_rows(&target), &mut child, &log).await;
    independent_readers_agree(&target, &expected);
    drop_mor_task(&client, &spec, &name, &table).await;
}

/// A merge-on-read task whose maintenance purges rows hidden by deletion vectors (files more
/// than 5% deleted are rewritten), SIGKILLed while a purge runs, under a steady stream of
/// changes: the table ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_on_read_survives_kills_during_purges() {
    const PURGING: &str = "purging rows hidden by deletion vectors";
    const PURGED: &str = "purged rows hidden by deletion vectors";
    let client = pg_connect().await;
    let dir = tempfile::tempdir().unwrap();
    let sink = "purge_threshold = 0.05\ncompact_interval = \"1s\"\n";
    let (table, name, CdcTask { spec, log, target }) =
        mor_task(&client, dir.path(), "purge", 40_000, 10_000, "300ms", sink).await;

    let mut child = spawn_run(&spec, &log);
    assert!(wait_rows(&target, 40_000, Duration::from_secs(180)).await >= 40_000, "snapshot");
    // Changes run beside the kills: each round updates ~1% and deletes ~1% of the rows.
    let writer = {
        let table = table.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let client = pg_connect().await;
            let mut round = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                churn(&client, &table, round).await;
                round += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (stop, handle)
    };
    let mut mid_purge = 0;
    let mut kills = 0;
    while kills < 12 && mid_purge < 2 {
        let (purging, purged) = (occurrences(&log, PURGING), occurrences(&log, PURGED));
        if !logged_again(&log, PURGING, purging, Duration::from_secs(60)).await {
            panic!("no purge within 60 s:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        if occurrences(&log, PURGED) == purged {
            mid_purge += 1;
        }
        child = spawn_run(&spec, &log);
    }
    writer.0.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.1.await.unwrap();
    println!(
        "{kills} SIGKILLs after a purge started, {mid_purge} of them inside it; purges done: {}",
        occurrences(&log, PURGED)
    );
    assert!(mid_purge > 0, "no SIGKILL landed inside a purge in {kills} tries");
    let expected = source_rows(&client, &table).await;
    converge_then_stop(&target, &expected, || order_rows(&target), &mut child, &log).await;
    independent_readers_agree(&target, &expected);
    drop_mor_task(&client, &spec, &name, &table).await;
}
