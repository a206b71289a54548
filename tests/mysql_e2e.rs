//! MySQL → Delta through `rtsync run`, against each MySQL-family server started by
//! `scripts/services.sh` (MariaDB 10.11 and Oracle MySQL 9.7; log_bin, ROW, FULL metadata, GTIDs):
//! snapshot while writes continue, then every insert, update, delete and primary-key change from
//! the binlog, with the runner SIGKILLed mid-snapshot and mid-stream and a binlog rotation; at the
//! end the Delta table equals the source table, row by row. On Oracle MySQL the writer also
//! compresses some transactions (`binlog_transaction_compression`), so the stream carries
//! TRANSACTION_PAYLOAD events between plain ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

async fn source_rows(conn: &mut Conn, table: &str) -> BTreeMap<i64, OrderRow> {
    let rows: Vec<(i64, String, Option<i64>, Option<String>)> =
        conn.query(format!("SELECT id, name, qty, CAST(price AS CHAR) FROM {table}")).await.unwrap();
    rows.into_iter().map(|(id, n, q, p)| (id, (n, q, p))).collect()
}

async fn churn(conn: &mut Conn, server: MySqlServer, table: &str, round: i64) {
    let base = 1_000_000 + round * 1000;
    let m = round % 89;
    if !server.is_mariadb() {
        // Every other transaction goes into the binlog zstd-compressed, as one TRANSACTION_PAYLOAD.
        let compress = if round % 2 == 0 { "ON" } else { "OFF" };
        conn.query_drop(format!("SET SESSION binlog_transaction_compression = {compress}")).await.unwrap();
    }
    let mut tx = conn.start_transaction(Default::default()).await.unwrap();
    let values: Vec<String> =
        (base..base + 50).map(|g| format!("({g}, 'new-{g}', {}, {}.{:02})", g % 7, (g % 1000) / 4, g % 100)).collect();
    tx.query_drop(format!("INSERT INTO {table} (id, name, qty, price) VALUES {}", values.join(","))).await.unwrap();
    tx.query_drop(format!("UPDATE {table} SET qty = qty + 1, name = CONCAT(name, '+') WHERE id % 97 = {m}"))
        .await
        .unwrap();
    tx.query_drop(format!("DELETE FROM {table} WHERE id % 89 = {m}")).await.unwrap();
    tx.query_drop(format!("UPDATE {table} SET id = id + 5000000 WHERE id = {}", base + 7)).await.unwrap();
    tx.commit().await.unwrap();
}

per_mysql_server!(async a_table_mirrors_from_the_binlog_through_sigkills);

async fn a_table_mirrors_from_the_binlog_through_sigkills(server: MySqlServer) {
    let mut conn = server.connect().await;
    let db = unique("shop").to_lowercase();
    let table = "orders";
    conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    let qualified = format!("{db}.{table}");
    conn.query_drop(format!(
        "CREATE TABLE {qualified} (id bigint PRIMARY KEY, name varchar(200) NOT NULL, qty bigint, price decimal(12,2)) CHARACTER SET utf8mb4"
    ))
    .await
    .unwrap();
    for chunk in 0..6 {
        let values: Vec<String> = (chunk * 10_000 + 1..=(chunk + 1) * 10_000)
            .map(|g| format!("({g}, 'row-{g} ü', {}, {}.{:02})", g % 10, (g % 5000) / 8, g % 100))
            .collect();
        conn.query_drop(format!("INSERT INTO {qualified} VALUES {}", values.join(","))).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("mysync");
    let source = format!(
        "type = \"mysql\"\nurl = \"{}\"\nschema = \"{db}\"\ntable = \"{table}\"\nsnapshot_chunk_rows = 5000",
        server.url()
    );
    let CdcTask { spec, log, target } = cdc_task(dir.path(), &name, r#"commit_interval = "500ms""#, &source, table);

    let mut child = spawn_run(&spec, &log);
    let mut round = 0;
    for (i, wait_ms) in [1500u64, 2500, 2000, 3000].into_iter().enumerate() {
        let until = Instant::now() + Duration::from_millis(wait_ms);
        while Instant::now() < until {
            churn(&mut conn, server, &qualified, round).await;
            round += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        if i == 1 {
            conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        child = spawn_run(&spec, &log);
    }
    for _ in 0..5 {
        churn(&mut conn, server, &qualified, round).await;
        round += 1;
    }
    let expected = source_rows(&mut conn, &qualified).await;
    converge_then_stop(&target, &expected, || order_rows(&target), &mut child, &log).await;
    assert!(round > 10, "changes were made while syncing");
    conn.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
