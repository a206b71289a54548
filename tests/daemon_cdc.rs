//! The seed's workflow for database sources, through the CLI against a running daemon and the
//! real PostgreSQL and MariaDB: create the data source, test it, browse schemas, tables and
//! columns (`meta`), preview the first rows, deploy, watch inserts/updates/deletes arrive,
//! stop and start without duplicates, and undeploy (which drops a PostgreSQL task's slot and
//! publication).

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use daemon_support::Daemon;
use mysql_async::prelude::Queryable;
use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use serde_json::Value;
use tokio_postgres::NoTls;

type Rows = BTreeMap<i64, (String, Option<i64>)>;

const WAIT: Duration = Duration::from_secs(90);

async fn target_rows(table: &LakehouseSinkConfig) -> Rows {
    let mut out = BTreeMap::new();
    let Ok(batches) = query_table(table, "SELECT id, name, qty FROM t").await else {
        return out;
    };
    for b in batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let names = b.column(1).as_string::<i32>();
        let qty = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let prev = out.insert(ids.value(i), (names.value(i).to_string(), qty.is_valid(i).then(|| qty.value(i))));
            assert!(prev.is_none(), "id {} twice in the target", ids.value(i));
        }
    }
    out
}

/// Waits until the target equals what `source` returns.
async fn converge<F, Fut>(target: &LakehouseSinkConfig, d: &Daemon, task: &str, mut source: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Rows>,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (want, got) = (source().await, target_rows(target).await);
        if want == got {
            return;
        }
        if std::time::Instant::now() > deadline {
            let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).take(5).collect();
            let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(k)).take(5).collect();
            panic!(
                "task {task}: target ({} rows) never matched the source ({} rows); missing {missing:?}, extra {extra:?}\n{}",
                got.len(),
                want.len(),
                d.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The task's replication slots and publications on the server.
async fn slots(client: &tokio_postgres::Client, task: &str) -> (i64, i64) {
    let pattern = format!("%{}%", task.replace('_', "\\_"));
    let count = |sql: &'static str| {
        let pattern = pattern.clone();
        async move { client.query_one(sql, &[&pattern]).await.unwrap().get::<_, i64>(0) }
    };
    let n = count("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE $1").await;
    let p = count("SELECT count(*) FROM pg_publication WHERE pubname LIKE $1").await;
    (n, p)
}

fn column<'a>(detail: &'a Value, name: &str) -> &'a Value {
    detail["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {detail:#}"))
}

/// The part of the workflow that does not depend on the database: task create, configure
/// (refusing JSONPath columns), preview, deploy; returns once the snapshot arrived.
fn create_and_deploy(d: &Daemon, task: &str, ds: &str, schema: &str, table: &str) {
    d.ok(&["task", "create", task, "--type", "REALTIME", "--folder", "default"]);
    let refused = d.fail(&[
        "task",
        "configure",
        task,
        "--source",
        ds,
        "--source-schema",
        schema,
        "--source-table",
        table,
        "--column",
        "x=$.a:string",
    ]);
    assert!(refused.contains("table source") && refused.contains("--clear-columns"), "{refused}");
    d.ok(&["task", "configure", task, "--source", ds, "--source-schema", schema, "--source-table", table]);
    let shown = d.json(&["task", "show", task]);
    assert_eq!(shown["task"]["state"], "draft", "{shown:#}");

    let preview = d.json(&["task", "preview", task, "--limit", "3"]);
    let names: Vec<&str> = preview["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "name", "qty"], "{preview:#}");
    let rows = preview["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{preview:#}");
    for (i, r) in rows.iter().enumerate() {
        let id = i as i64 + 1;
        assert_eq!(r["id"], id, "{preview:#}");
        assert_eq!(r["name"], format!("row-{id}"), "{preview:#}");
        assert_eq!(r["qty"], id % 10, "{preview:#}");
    }

    let out = d.ok(&["task", "deploy", task, "-y"]);
    assert!(out.contains("deployed as version 1"), "{out}");
    d.wait_task(task, WAIT, "the snapshot", |v| v["status"]["rows_synced"].as_i64().unwrap_or(0) >= 200);
}

/// Stop, write while stopped, start: the new rows arrive once, nothing is copied twice.
async fn stop_write_start<F, Fut>(d: &Daemon, task: &str, target: &LakehouseSinkConfig, write: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    d.ok(&["task", "stop", task]);
    d.wait_task(task, WAIT, "stopping", |v| v["task"]["state"] == "stopped");
    write().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target_rows(target).await;
    assert!(!before.contains_key(&5000), "a stopped task wrote");
    d.ok(&["task", "start", task]);
    d.wait_task(task, WAIT, "running again", |v| v["task"]["state"] == "running" && v["status"]["phase"] == "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_table_through_the_daemon() {
    let url = std::env::var("RTSYNC_PG_URL").expect("RTSYNC_PG_URL is not set: run the README's test command");
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let schema = unique("dcdc").to_lowercase();
    let table = "items";
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.{table} (id bigint PRIMARY KEY, name text NOT NULL, qty bigint);
             INSERT INTO {schema}.{table} SELECT g, 'row-' || g, g % 10 FROM generate_series(1, 200) g;
             ANALYZE {schema}.{table};"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let task = unique("pg_items").to_lowercase();

    d.ok(&["datasource", "create", "shop_pg", "--type", "postgresql", "--set", &format!("url={url}")]);
    let tested = d.ok(&["datasource", "test", "shop_pg", "--object", &format!("{schema}.{table}")]);
    assert!(tested.contains("ready for CDC"), "{tested}");
    let server = d.ok(&["datasource", "test", "shop_pg"]);
    assert!(server.contains("connected to PostgreSQL") && server.contains("wal_level logical"), "{server}");

    let namespaces = d.json(&["meta", "namespaces", "shop_pg"]);
    let ns = namespaces.as_array().unwrap().iter().find(|n| n["name"] == schema.as_str()).expect("our schema listed");
    assert_eq!(ns["objects"], 1);
    assert!(!namespaces.as_array().unwrap().iter().any(|n| n["name"] == "pg_catalog"), "{namespaces:#}");
    let objects = d.json(&["meta", "objects", "shop_pg", &schema]);
    assert_eq!(objects.as_array().unwrap().len(), 1, "{objects:#}");
    assert_eq!(objects[0]["name"], table);
    assert_eq!(objects[0]["kind"], "table");
    assert_eq!(objects[0]["primary_key"], serde_json::json!(["id"]));
    assert_eq!(objects[0]["estimated_rows"], 200);
    let detail = d.json(&["meta", "detail", "shop_pg", &schema, table]);
    assert_eq!(detail["primary_key"], serde_json::json!(["id"]));
    assert_eq!(column(&detail, "id")["source_type"], "bigint");
    assert_eq!(column(&detail, "id")["type"], "long");
    assert_eq!(column(&detail, "id")["nullable"], false);
    assert_eq!(column(&detail, "name")["source_type"], "text");
    assert_eq!(column(&detail, "name")["type"], "string");
    assert_eq!(column(&detail, "qty")["nullable"], true);
    let missing = d.fail(&["meta", "detail", "shop_pg", &schema, "nope"]);
    assert!(missing.contains("does not exist"), "{missing}");
    let text = d.ok(&["meta", "detail", "shop_pg", &schema, table]);
    assert!(text.contains("SOURCE TYPE") && text.contains("primary key: id"), "{text}");

    create_and_deploy(&d, &task, "shop_pg", &schema, table);
    let root = dir.path().join("data").join("lakehouse");
    let target = LakehouseSinkConfig::new(root.to_str().unwrap(), "public", table);
    let (cl, select) = (&client, format!("SELECT id, name, qty FROM {schema}.{table}"));
    let select = select.as_str();
    let source = move || async move {
        let rows = cl.query(select, &[]).await.unwrap();
        rows.iter().map(|r| (r.get::<_, i64>(0), (r.get::<_, String>(1), r.get::<_, Option<i64>>(2)))).collect::<Rows>()
    };
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.{table} SELECT g, 'new-' || g, NULL FROM generate_series(201, 300) g;
             UPDATE {schema}.{table} SET name = name || '+', qty = -1 WHERE id % 7 = 0;
             DELETE FROM {schema}.{table} WHERE id % 11 = 0;"
        ))
        .await
        .unwrap();
    converge(&target, &d, &task, source).await;

    let late = format!(
        "INSERT INTO {schema}.{table} SELECT g, 'late-' || g, 1 FROM generate_series(5000, 5049) g;
         DELETE FROM {schema}.{table} WHERE id BETWEEN 1 AND 5;"
    );
    let late = late.as_str();
    stop_write_start(&d, &task, &target, move || async move {
        cl.batch_execute(late).await.unwrap();
    })
    .await;
    converge(&target, &d, &task, source).await;

    assert_eq!(slots(&client, &task).await, (1, 1), "the task owns one slot and one publication");
    let out = d.ok(&["task", "undeploy", &task, "-y"]);
    assert!(out.contains("undeployed"), "{out}");
    assert_eq!(slots(&client, &task).await, (0, 0), "undeploy drops the slot and the publication: {out}");
    client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}

per_mysql_server!(async mysql_table_through_the_daemon);

async fn mysql_table_through_the_daemon(server: MySqlServer) {
    let url = server.url();
    let mut conn = server.connect().await;
    let db = unique("dcdc").to_lowercase();
    let table = "items";
    conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {db}.{table} (id bigint PRIMARY KEY, name varchar(100) NOT NULL, qty bigint) CHARACTER SET utf8mb4"
    ))
    .await
    .unwrap();
    let values: Vec<String> = (1..=200).map(|g| format!("({g}, 'row-{g}', {})", g % 10)).collect();
    conn.query_drop(format!("INSERT INTO {db}.{table} VALUES {}", values.join(","))).await.unwrap();
    conn.query_drop(format!("ANALYZE TABLE {db}.{table}")).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let task = unique("my_items").to_lowercase();
    d.ok(&["datasource", "create", "shop_my", "--type", "mysql", "--set", &format!("url={url}")]);
    let tested = d.ok(&["datasource", "test", "shop_my", "--object", &format!("{db}.{table}")]);
    assert!(tested.contains("ready for CDC"), "{tested}");
    let server_check = d.ok(&["datasource", "test", "shop_my"]);
    assert!(
        server_check.contains("binlog settings") && server_check.contains("replication privileges"),
        "{server_check}"
    );

    let namespaces = d.json(&["meta", "namespaces", "shop_my"]);
    let ns = namespaces.as_array().unwrap().iter().find(|n| n["name"] == db.as_str()).expect("our database listed");
    assert_eq!(ns["objects"], 1);
    assert!(!namespaces.as_array().unwrap().iter().any(|n| n["name"] == "mysql"), "{namespaces:#}");
    let objects = d.json(&["meta", "objects", "shop_my", &db]);
    assert_eq!(objects[0]["name"], table);
    assert_eq!(objects[0]["primary_key"], serde_json::json!(["id"]));
    let detail = d.json(&["meta", "detail", "shop_my", &db, table]);
    assert_eq!(detail["primary_key"], serde_json::json!(["id"]));
    assert!(column(&detail, "id")["source_type"].as_str().unwrap().starts_with("bigint"), "{detail:#}");
    assert_eq!(column(&detail, "id")["type"], "long");
    assert_eq!(column(&detail, "name")["source_type"], "varchar(100)");
    assert_eq!(column(&detail, "name")["nullable"], false);
    assert_eq!(column(&detail, "qty")["nullable"], true);
    let missing = d.fail(&["meta", "objects", "shop_my", "no_such_db"]);
    assert!(missing.contains("does not exist"), "{missing}");

    create_and_deploy(&d, &task, "shop_my", &db, table);
    let root = dir.path().join("data").join("lakehouse");
    let target = LakehouseSinkConfig::new(root.to_str().unwrap(), "public", table);
    let reader = server.pool();
    let select = format!("SELECT id, name, qty FROM {db}.{table}");
    let source = || {
        let reader = reader.clone();
        let sql = select.clone();
        async move {
            let mut c = reader.get_conn().await.unwrap();
            let rows: Vec<(i64, String, Option<i64>)> = c.query(sql).await.unwrap();
            rows.into_iter().map(|(id, n, q)| (id, (n, q))).collect::<Rows>()
        }
    };
    let more: Vec<String> = (201..=300).map(|g| format!("({g}, 'new-{g}', NULL)")).collect();
    conn.query_drop(format!("INSERT INTO {db}.{table} VALUES {}", more.join(","))).await.unwrap();
    conn.query_drop(format!("UPDATE {db}.{table} SET name = CONCAT(name, '+'), qty = -1 WHERE id % 7 = 0"))
        .await
        .unwrap();
    conn.query_drop(format!("DELETE FROM {db}.{table} WHERE id % 11 = 0")).await.unwrap();
    converge(&target, &d, &task, source).await;

    let late: Vec<String> = (5000..5050).map(|g| format!("({g}, 'late-{g}', 1)")).collect();
    let writes = [
        format!("INSERT INTO {db}.{table} VALUES {}", late.join(",")),
        format!("DELETE FROM {db}.{table} WHERE id BETWEEN 1 AND 5"),
    ];
    let (c, writes) = (&mut conn, &writes);
    stop_write_start(&d, &task, &target, move || async move {
        for w in writes {
            c.query_drop(w).await.unwrap();
        }
    })
    .await;
    converge(&target, &d, &task, source).await;

    let out = d.ok(&["task", "undeploy", &task, "-y"]);
    assert!(out.contains("undeployed"), "{out}");
    let shown = d.json(&["task", "show", &task]);
    assert_eq!(shown["task"]["state"], "draft", "{shown:#}");
    let mut c = reader.get_conn().await.unwrap();
    c.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
    drop(c);
    let _ = reader.disconnect().await;
}

/// A large table's initial copy shows its progress in `task show` (the API's task): rows
/// copied of the planner's estimate, a percentage and an ETA; it goes once the copy is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_progress_in_task_show() {
    const ROWS: i64 = 300_000;
    let url = pg_url();
    let client = pg_connect().await;
    let schema = unique("dsnap").to_lowercase();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.big (id bigint PRIMARY KEY, name text NOT NULL, qty bigint);
             INSERT INTO {schema}.big SELECT g, 'row-' || g, g % 10 FROM generate_series(1, {ROWS}) g;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let task = unique("pg_big").to_lowercase();
    d.ok(&["datasource", "create", "big_pg", "--type", "postgresql", "--set", &format!("url={url}")]);
    d.ok(&["task", "create", &task, "--type", "REALTIME", "--folder", "default"]);
    d.ok(&["task", "configure", &task, "--source", "big_pg", "--source-schema", &schema, "--source-table", "big"]);
    d.ok(&["task", "deploy", &task, "-y"]);

    // Sample the task as the UI does, until the copy is over.
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    let done = loop {
        let (status, body) = d.get(&format!("/api/v1/tasks/{task}")).expect("the daemon answers");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let s = &v["status"];
        if !s["snapshot"].is_null() {
            seen.push((std::time::Instant::now(), s["snapshot"].clone()));
        } else if s["rows_synced"].as_i64().unwrap_or(0) >= ROWS {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "the copy did not end; last:\n{v:#}\nlog:\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!seen.is_empty(), "the copy never showed its progress: {done:#}");
    let mut last_rows = 0;
    for (_, p) in &seen {
        let rows = p["rows"].as_i64().unwrap();
        assert!(rows >= last_rows && rows <= ROWS, "rows only grow: {seen:#?}");
        last_rows = rows;
        let est = p["estimated_rows"].as_i64().expect("the planner's estimate");
        assert!((ROWS / 2..=ROWS * 2).contains(&est), "estimate {est} for {ROWS} rows");
        if let Some(pct) = p["percent"].as_i64() {
            assert_eq!(pct, rows * 100 / est, "{p}");
        }
    }
    // The rate (hence the ETA) needs a second of copying.
    let watched = seen.last().unwrap().0 - seen[0].0;
    eprintln!(
        "snapshot of {ROWS} rows watched for {watched:?} in {} samples; last {}",
        seen.len(),
        seen.last().unwrap().1
    );
    assert!(
        watched < Duration::from_secs(2) || seen.iter().any(|(_, p)| p["eta_secs"].as_i64().is_some()),
        "a copy watched for {watched:?} had no ETA: {seen:#?}"
    );
    assert!(done["status"]["snapshot"].is_null(), "{done:#}");
    d.ok(&["task", "undeploy", &task, "-y"]);
    client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}
