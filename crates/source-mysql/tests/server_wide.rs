//! Tests that change a whole server (MariaDB's global binlog compression; purging binlogs and a
//! restart, on MariaDB and on Oracle MySQL). Cargo runs test binaries one after another, and a
//! lock serializes these, so they never disturb other tests.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rtsync_core::Source;
use rtsync_source_mysql::{MySqlPosition, OnPurgedBinlog};
use tokio::sync::Mutex;

const WAIT: Duration = Duration::from_secs(90);
static SERVER: Mutex<()> = Mutex::const_new(());

fn snapshot_done(batches: &[rtsync_core::ChangeBatch<MySqlPosition>]) -> bool {
    batches.last().is_some_and(|b| !b.end.is_snapshot())
}

/// `SET GLOBAL log_bin_compress=ON`: rows and long statements arrive as MariaDB's compressed
/// events and must be decoded, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_compressed_events_are_decoded() {
    let _server = SERVER.lock().await;
    let mut db = TestDb::new(MySqlServer::MariaDb, "compressed").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)").await;
    let mut src = open("compressed", db.config("t"), None).await;
    read_until(&mut src, WAIT, snapshot_done).await;
    db.exec("SET GLOBAL log_bin_compress = ON, GLOBAL log_bin_compress_min_len = 10").await;
    // New sessions see the new setting.
    let mut w = TestDb { name: db.name.clone(), server: MySqlServer::MariaDb, conn: conn(MySqlServer::MariaDb).await };
    w.exec(&format!("USE `{}`", db.name)).await;
    let long = "x".repeat(500);
    w.exec(&format!("INSERT INTO t VALUES (1, '{long}'), (2, 'short')")).await;
    w.exec("UPDATE t SET v = 'updated value, long enough to be compressed' WHERE id = 2").await;
    w.exec("DELETE FROM t WHERE id = 1").await;
    w.exec(
        "ALTER TABLE t ADD COLUMN note VARCHAR(100) DEFAULT 'a default long enough to make the statement compressed'",
    )
    .await;
    w.exec("INSERT INTO t VALUES (3, 'three', 'noted')").await;
    db.exec("SET GLOBAL log_bin_compress = OFF").await;
    // The server really wrote compressed events.
    let file = w.query_strings("SHOW MASTER STATUS").await[0][0].clone().unwrap();
    let types: Vec<String> = w
        .query_strings(&format!("SHOW BINLOG EVENTS IN '{file}'"))
        .await
        .into_iter()
        .filter_map(|r| r[2].clone())
        .collect();
    assert!(types.iter().any(|t| t.contains("compressed")), "no compressed rows events in {types:?}");
    assert!(types.iter().any(|t| t == "Query_compressed"), "no compressed query event in {types:?}");

    let batches = read_until(&mut src, WAIT, |b| count_rows(b) >= 5).await;
    let got: Vec<(String, String, String)> =
        flatten(&batches).into_iter().map(|(o, r)| (o, r["id"].clone(), r["v"].clone())).collect();
    assert_eq!(
        got,
        vec![
            ("c".to_string(), "1".to_string(), long.clone()),
            ("c".into(), "2".into(), "short".into()),
            ("u".into(), "2".into(), "updated value, long enough to be compressed".into()),
            ("d".into(), "1".into(), long),
            ("c".into(), "3".into(), "three".into()),
        ]
    );
    assert_eq!(flatten(&batches)[4].1["note"], "noted", "the compressed ALTER was seen");
    src.close().await.unwrap();
    w.drop_db().await;
}

per_mysql_server!(async server_restart_mid_stream_is_survived);

/// The server restarts under a running stream: the source reconnects by itself and misses
/// nothing.
async fn server_restart_mid_stream_is_survived(server: MySqlServer) {
    let _server = SERVER.lock().await;
    let mut db = TestDb::new(server, "restart").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    let mut cfg = db.config("t");
    cfg.reconnect_timeout_secs = 120;
    let mut src = open("restart", cfg, None).await;
    read_until(&mut src, WAIT, snapshot_done).await;
    db.exec("INSERT INTO t VALUES (1, 1)").await;
    read_until(&mut src, WAIT, |b| count_rows(b) >= 1).await;
    let name = db.name.clone();
    drop(db);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/services.sh");
    let service = if server.is_mariadb() { "mariadb" } else { "mysql" };
    let status = tokio::process::Command::new("bash").arg(script).args(["restart", service]).status().await.unwrap();
    assert!(status.success(), "scripts/services.sh restart {service} failed");

    let mut db = TestDb { name: name.clone(), server, conn: conn(server).await };
    db.exec(&format!("USE `{name}`")).await;
    db.exec("INSERT INTO t VALUES (2, 2)").await;
    db.exec("UPDATE t SET v = 10 WHERE id = 1").await;
    let batches = read_until(&mut src, WAIT, |b| count_rows(b) >= 2).await;
    let extra = drain(&mut src, Duration::from_secs(2)).await;
    let got: Vec<(String, String, String)> = flatten(&batches)
        .into_iter()
        .chain(flatten(&extra))
        .map(|(o, r)| (o, r["id"].clone(), r["v"].clone()))
        .collect();
    assert_eq!(got, vec![("c".to_string(), "2".to_string(), "2".to_string()), ("u".into(), "1".into(), "10".into())]);
    src.close().await.unwrap();
    db.drop_db().await;
}

per_mysql_server!(async purged_binlog_is_reported_or_resnapshotted);

/// Resuming from a binlog the server purged is a definite error naming the option; with the
/// option the table is copied again.
async fn purged_binlog_is_reported_or_resnapshotted(server: MySqlServer) {
    let _server = SERVER.lock().await;
    let mut db = TestDb::new(server, "purged").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v INT)").await;
    db.exec("INSERT INTO t VALUES (1, 1)").await;
    let mut cfg = db.config("t");
    cfg.resume_by = rtsync_source_mysql::ResumeBy::FilePosition;
    let mut src = open("purged", cfg.clone(), None).await;
    let snap = read_until(&mut src, WAIT, snapshot_done).await;
    let old = snap.last().unwrap().end.clone();
    src.close().await.unwrap();
    drop(src);
    db.exec("INSERT INTO t VALUES (2, 2)").await;
    db.exec("FLUSH BINARY LOGS").await;
    let status = if server.is_mariadb() { "SHOW MASTER STATUS" } else { "SHOW BINARY LOG STATUS" };
    let current: Vec<Vec<Option<String>>> = db.query_strings(status).await;
    let current_file = current[0][0].clone().unwrap();
    // A closed replica's dump thread lingers until its next heartbeat finds the socket gone,
    // and the server does not purge a file a dump thread reads: retry for a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        db.exec(&format!("PURGE BINARY LOGS TO '{current_file}'")).await;
        let logs: Vec<String> =
            db.query_strings("SHOW BINARY LOGS").await.into_iter().filter_map(|r| r[0].clone()).collect();
        if !logs.contains(&old.file) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} was never purged: {logs:?}", old.file);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut src = open("purged", cfg.clone(), Some(old.clone())).await;
    let deadline = std::time::Instant::now() + WAIT;
    let err = loop {
        assert!(std::time::Instant::now() < deadline, "resuming from a purged binlog did not fail");
        match src.next_batch(Duration::from_secs(1)).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("on_purged_binlog"), "{}", err.report());
    src.close().await.unwrap();

    cfg.on_purged_binlog = OnPurgedBinlog::Resnapshot;
    let mut src = open("purged", cfg, Some(old.clone())).await;
    let again = read_until(&mut src, WAIT, snapshot_done).await;
    let ids: Vec<(String, String)> = flatten(&again).into_iter().map(|(o, r)| (o, r["id"].clone())).collect();
    // A truncate marker first (rows deleted meanwhile must not survive), then the copy.
    assert_eq!(ids, vec![("t".to_string(), "NULL".to_string()), ("r".into(), "1".into()), ("r".into(), "2".into())]);
    assert_eq!(again.last().unwrap().end.generation, 1);
    src.close().await.unwrap();
    db.drop_db().await;
}
