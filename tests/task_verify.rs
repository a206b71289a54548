//! `rtsync task verify` against the real PostgreSQL, MariaDB and Oracle MySQL, through the daemon: a table
//! with a column of every common type is synced; verify reports it equal while the source keeps
//! taking writes (so the first comparison sees lag the re-check must clear); then the Delta
//! table is edited behind rtsync's back by an independent writer (Python `deltalake`): one
//! row updated, one deleted, one added. Verify reports exactly those three keys, each with its
//! kind (and the changed column), and exits non-zero. A Kafka task is refused.
//!
//! The MySQL table has an INVISIBLE column (which `SELECT *` leaves out) and runs on MariaDB and on
//! Oracle MySQL 9.7, which has no `MD5()`: there verify hashes the rows itself.

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use daemon_support::Daemon;
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use tokio_postgres::NoTls;

const WAIT: Duration = Duration::from_secs(120);

/// Runs `task verify NAME --format json`; returns whether it exited 0, and the report.
fn verify(d: &Daemon, task: &str) -> (bool, Value) {
    let r = d.cli(&["task", "verify", task, "--format", "json"]);
    let report: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}\n{}\n{}", r.stdout, r.stderr, d.log_text()));
    (r.ok, report)
}

/// Waits until a verify reports equality (the task has caught up).
fn verify_until_equal(d: &Daemon, task: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (ok, report) = verify(d, task);
        if ok && report["equal"] == true {
            return report;
        }
        assert!(std::time::Instant::now() < deadline, "task {task} never verified equal; last report:\n{report:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn deploy(d: &Daemon, task: &str, ds: &str, schema: &str, table: &str, rows: i64) {
    d.ok(&["task", "create", task, "--type", "REALTIME", "--folder", "default"]);
    d.ok(&["task", "configure", task, "--source", ds, "--source-schema", schema, "--source-table", table]);
    d.ok(&["task", "deploy", task, "-y"]);
    d.wait_task(task, WAIT, "the snapshot", |v| v["status"]["rows_synced"].as_i64().unwrap_or(0) >= rows);
}

/// The three tampered keys, in key order: 42 changed (name), 43 deleted, 999999 added.
fn assert_tampered(d: &Daemon, task: &str, compared: &[&str]) {
    let (ok, report) = verify(d, task);
    assert!(!ok, "verify must exit non-zero when differences persist: {report:#}");
    assert_eq!(report["equal"], false, "{report:#}");
    assert_eq!(report["differences_total"], 3, "{report:#}");
    assert_eq!(
        report["differences"],
        json!([
            {"key": ["42"], "kind": "values_differ", "columns": ["name"]},
            {"key": ["43"], "kind": "missing_in_lake"},
            {"key": ["999999"], "kind": "extra_in_lake"},
        ]),
        "{report:#}"
    );
    assert_eq!(report["target_rows"].as_u64().unwrap(), report["source_rows"].as_u64().unwrap(), "{report:#}");
    assert!(report["ranges_differing"].as_u64().unwrap() >= 1, "{report:#}");
    let cols: Vec<&str> = report["compared_columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(cols, compared, "{report:#}");
    // The table form names the keys and ends with the verdict.
    let text = d.cli(&["task", "verify", task]);
    println!("{}{}", text.stdout, text.stderr);
    assert!(!text.ok, "{}", text.stdout);
    assert!(text.stdout.contains("values_differ") && text.stdout.contains("999999"), "{}", text.stdout);
    assert!(text.stdout.contains("DIFFERENT: 3 difference(s) persist"), "{}", text.stdout);
    assert!(text.stderr.contains("3 difference(s) between the source and the target persist"), "{}", text.stderr);
}

fn tamper(location: &str) {
    tamper_delta(location, "name", [42, 43, 44, 999_999]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_finds_rows_changed_behind_rtsyncs_back() {
    let url = std::env::var("RTSYNC_PG_URL").expect("RTSYNC_PG_URL is not set: run the README's test command");
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let client = Arc::new(client);
    let schema = unique("verify").to_lowercase();
    let table = "items";
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.{table} (
                 id bigint PRIMARY KEY, name text, qty integer, small smallint, price numeric(10,2),
                 at timestamptz, local timestamp, day date, flag boolean, doc jsonb, js json, raw bytea,
                 ratio float8, r4 real, tags text[], nums integer[], code char(4), note varchar(20), u uuid,
                 span interval, big numeric);
             INSERT INTO {schema}.{table}
             SELECT g, CASE WHEN g % 13 = 0 THEN NULL WHEN g % 17 = 0 THEN '' ELSE 'row-' || g || ' é\t\"q\"' END,
                    g % 10, (g % 300)::smallint, (g * 1.25)::numeric(10,2),
                    timestamptz '2024-01-01 00:00:00.123456+02' + g * interval '1 minute',
                    timestamp '1969-12-31 23:59:59.5' + g * interval '1 second',
                    date '2000-02-29' + g,
                    CASE WHEN g % 3 = 0 THEN NULL ELSE g % 2 = 0 END,
                    jsonb_build_object('b', g, 'a', jsonb_build_array(1.5, 'x', NULL)),
                    ('{{\"z\": 1,  \"a\": [' || g || ']}}')::json,
                    CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
                    CASE WHEN g = 7 THEN 'NaN'::float8 WHEN g = 8 THEN '-Infinity' WHEN g = 9 THEN -0.0 ELSE g / 7.0 END,
                    (g / 3.0)::real,
                    ARRAY['a' || g, NULL, 'q\"uote'], ARRAY[g, -g],
                    'ab', 'note ' || g, md5(g::text)::uuid,
                    g * interval '1 hour 1 second', (g::numeric / 3)
             FROM generate_series(1, 3000) g;
             UPDATE {schema}.{table} SET at = 'infinity', local = '-infinity', day = 'infinity' WHERE id = 100;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    d.ok(&["datasource", "create", "pg", "--type", "postgresql", "--set", &format!("url={url}")]);
    let task = unique("pg_verify").to_lowercase();
    deploy(&d, &task, "pg", &schema, table, 3000);

    // Equal while the source keeps changing: inserts, updates and deletes run during verify.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop, schema) = (client.clone(), stop.clone(), schema.clone());
        tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                client
                    .batch_execute(&format!(
                        "INSERT INTO {schema}.{table} (id, name, qty) VALUES ({}, 'live', {n});
                         UPDATE {schema}.{table} SET qty = qty + 1, at = now() WHERE id = {};
                         DELETE FROM {schema}.{table} WHERE id = {};",
                        10_000 + n,
                        1 + n % 2900,
                        10_000 + n - 5
                    ))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let d2 = &d;
    let report = tokio::task::block_in_place(|| verify_until_equal(d2, &task));
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 10, "the source took writes during verify ({writes})");
    assert_eq!(report["differences"], json!([]), "{report:#}");
    assert!(report["source_rows"].as_u64().unwrap() >= 3000, "{report:#}");
    assert_eq!(report["not_compared"], json!([]), "every PostgreSQL type here has a canonical text: {report:#}");
    assert!(!report["ranges"].as_array().unwrap().is_empty(), "{report:#}");

    // Behind rtsync's back, once the task is idle.
    let settled = tokio::task::block_in_place(|| verify_until_equal(d2, &task));
    assert_eq!(settled["equal"], true);
    let location = dir.path().join("data").join("lakehouse").join("public").join(table);
    tamper(location.to_str().unwrap());
    let compared = [
        "id", "name", "qty", "small", "price", "at", "local", "day", "flag", "doc", "js", "raw", "ratio", "r4", "tags",
        "nums", "code", "note", "u", "span", "big",
    ];
    tokio::task::block_in_place(|| assert_tampered(d2, &task, &compared));

    // Kafka tasks have no table to compare with.
    d.ok(&["datasource", "create", "k", "--type", "kafka", "--set", &format!("bootstrap.servers={}", bootstrap())]);
    d.ok(&["task", "create", "topic_task"]);
    d.ok(&["task", "configure", "topic_task", "--source", "k", "--source-table", "some_topic"]);
    let refused = d.fail(&["task", "verify", "topic_task"]);
    assert!(refused.contains("Kafka topic") && refused.contains("append-only"), "{refused}");

    d.ok(&["task", "undeploy", &task, "-y"]);
    client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

per_mysql_server!(async mysql_verify_finds_rows_changed_behind_rtsyncs_back);

async fn mysql_verify_finds_rows_changed_behind_rtsyncs_back(server: MySqlServer) {
    let url = server.url();
    let pool = server.pool();
    let mut conn = pool.get_conn().await.unwrap();
    let db = unique("verify").to_lowercase();
    let table = "items";
    conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {db}.{table} (
             id bigint PRIMARY KEY, name varchar(100), qty int, uns bigint unsigned, price decimal(10,2),
             at datetime(6), ts timestamp(6) NULL, day date, flag bit(1), bits bit(12), doc json, raw varbinary(40),
             t time(3), y year, e enum('a','b'), s set('x','y'), l1 varchar(20) CHARACTER SET latin1, ratio double,
             hid varchar(10) DEFAULT 'hidden' INVISIBLE
         ) CHARACTER SET utf8mb4"
    ))
    .await
    .unwrap();
    let values: Vec<String> = (1..=3000)
        .map(|g| {
            let name = match g % 13 {
                0 => "NULL".to_string(),
                1 => "''".to_string(),
                _ => format!("'row-{g} é\\t\"q\"'"),
            };
            format!(
                "({g}, {name}, {}, {}, {}.25, '2024-01-01 00:00:00.123456' + INTERVAL {g} MINUTE, \
                 FROM_UNIXTIME({}), '2000-02-29' + INTERVAL {g} DAY, {}, {}, '{{\"b\": {g}, \"a\": [1.5, \"x\"]}}', \
                 UNHEX(SHA2('{g}', 256)), '{}:01:02.5', {}, '{}', 'x,y', 'café', {g} / 7)",
                g % 10,
                18_446_744_073_709_551_615u64 - g as u64,
                g * 3,
                1_700_000_000 + g,
                g % 2,
                g % 4096,
                if g % 2 == 0 { format!("-{}", g % 800) } else { (g % 800).to_string() },
                1901 + g % 200,
                if g % 2 == 0 { "a" } else { "b" },
            )
        })
        .collect();
    conn.query_drop(format!("INSERT INTO {db}.{table} VALUES {}", values.join(","))).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    d.ok(&["datasource", "create", "my", "--type", "mysql", "--set", &format!("url={url}")]);
    let task = unique("my_verify").to_lowercase();
    deploy(&d, &task, "my", &db, table, 3000);

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (pool, stop, db) = (pool.clone(), stop.clone(), db.clone());
        tokio::spawn(async move {
            let mut c = pool.get_conn().await.unwrap();
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                c.query_drop(format!("INSERT INTO {db}.{table} (id, name, qty) VALUES ({}, 'live', {n})", 10_000 + n))
                    .await
                    .unwrap();
                c.query_drop(format!("UPDATE {db}.{table} SET qty = qty + 1, at = NOW(6) WHERE id = {}", 1 + n % 2900))
                    .await
                    .unwrap();
                c.query_drop(format!("DELETE FROM {db}.{table} WHERE id = {}", 10_000 + n - 5)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let d2 = &d;
    let report = tokio::task::block_in_place(|| verify_until_equal(d2, &task));
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    assert!(writes > 10, "the source took writes during verify ({writes})");
    assert_eq!(report["differences"], json!([]), "{report:#}");
    assert_eq!(
        report["not_compared"],
        json!([{"column": "ratio", "reason": "float/double: SQL cannot show the exact bits the target holds"}]),
        "{report:#}"
    );

    let settled = tokio::task::block_in_place(|| verify_until_equal(d2, &task));
    assert_eq!(settled["equal"], true);
    let location = dir.path().join("data").join("lakehouse").join("public").join(table);
    tamper(location.to_str().unwrap());
    let compared = [
        "id", "name", "qty", "uns", "price", "at", "ts", "day", "flag", "bits", "doc", "raw", "t", "y", "e", "s", "l1",
        "hid",
    ];
    tokio::task::block_in_place(|| assert_tampered(d2, &task, &compared));

    d.ok(&["task", "undeploy", &task, "-y"]);
    conn.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
    drop(conn);
    let _ = pool.disconnect().await;
}
