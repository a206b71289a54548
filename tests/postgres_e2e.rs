//! PostgreSQL → Delta through `rtsync run`, against the real PostgreSQL started by
//! `scripts/services.sh` (wal_level=logical): snapshot while writes continue, then every insert,
//! update, delete and primary-key change, with the runner SIGKILLed mid-snapshot and
//! mid-stream; at the end the Delta table equals the source table, row by row.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::datatypes::{Decimal128Type, Int64Type};
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use tokio_postgres::{Client, NoTls};

fn pg_url() -> String {
    std::env::var("RTSYNC_PG_URL").unwrap_or_else(|_| panic!("RTSYNC_PG_URL is not set: run the README's test command"))
}

async fn connect() -> Client {
    let (client, conn) = tokio_postgres::connect(&pg_url(), NoTls).await.expect("connect to RTSYNC_PG_URL");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

type Row = (String, Option<i64>, Option<String>);

async fn source_rows(client: &Client, table: &str) -> BTreeMap<i64, Row> {
    let rows = client.query(&format!("SELECT id, name, qty, price::text FROM {table}"), &[]).await.unwrap();
    rows.iter()
        .map(|r| {
            (r.get::<_, i64>(0), (r.get::<_, String>(1), r.get::<_, Option<i64>>(2), r.get::<_, Option<String>>(3)))
        })
        .collect()
}

async fn target_rows(table: &LakehouseSinkConfig) -> BTreeMap<i64, Row> {
    let mut out = BTreeMap::new();
    for b in query_table(table, "SELECT id, name, qty, price FROM t").await.unwrap() {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let names = b.column(1).as_string::<i32>();
        let qty = b.column(2).as_primitive::<Int64Type>();
        let price = b.column(3).as_primitive::<Decimal128Type>();
        for i in 0..b.num_rows() {
            let p = price.is_valid(i).then(|| {
                let v = price.value(i);
                format!("{}.{:02}", v / 100, (v % 100).abs())
            });
            let prev = out.insert(ids.value(i), (names.value(i).to_string(), qty.is_valid(i).then(|| qty.value(i)), p));
            assert!(prev.is_none(), "id {} twice in the target", ids.value(i));
        }
    }
    out
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
    let client = connect().await;
    let table = unique("orders").to_lowercase();
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, name text NOT NULL, qty bigint, price numeric(12,2));
             INSERT INTO {table} SELECT g, 'row-' || g || ' ü', g % 10, (g % 5000) / 8.0 FROM generate_series(1, 60000) g;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let name = unique("pgsync");
    let body = format!(
        "name = \"{name}\"\ncommit_interval = \"500ms\"\n[source]\ntype = \"postgresql\"\nurl = \"{}\"\nschema = \"public\"\ntable = \"{table}\"\nsnapshot_chunk_rows = 5000\n\
         [sink]\nroot = \"{}\"\nschema = \"public\"\ntable = \"{table}\"\n",
        pg_url(),
        root.display()
    );
    let spec = write_spec(dir.path(), &name, &body);
    let log = dir.path().join("run.log");
    let target = LakehouseSinkConfig::new(root.to_str().unwrap(), "public", &table);

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
    converge_then_stop(&target, &expected, || target_rows(&target), &mut child, &log).await;
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
