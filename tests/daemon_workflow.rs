//! The seed's workflow, end to end, through the CLI against a running daemon and the real
//! broker: confirm a SYNC vcluster, find data sources, explore the topic, create and configure
//! a REALTIME task, preview, deploy, watch it, stop and start it, read runs and attempt logs,
//! undeploy it and deploy again.

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use daemon_support::Daemon;
use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use serde_json::Value;

const PARTITIONS: i32 = 3;

/// One record per batch: tansu reports a partition's high watermark wrongly after
/// multi-record batches (see tests/start_positions.rs), and this test checks offsets and lag.
fn single_record_producer(servers: &str) -> rdkafka::producer::BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap()
}

fn produce_range(servers: &str, topic: &str, ids: std::ops::Range<i64>) {
    let p = single_record_producer(servers);
    for i in ids {
        let value = format!("{{\"id\":{i},\"data\":{{\"code\":\"C{i}\",\"n\":{}}},\"tags\":[\"a\"]}}", i * 2);
        send(&p, topic, (i % PARTITIONS as i64) as i32, &i.to_string(), Some(value.as_bytes()), None);
    }
    flush(&p);
}

/// id → (how many rows, code) in the table.
async fn rows_by_id(table: &LakehouseSinkConfig) -> BTreeMap<i64, (usize, String)> {
    let batches = query_table(table, "SELECT id, code FROM t").await.unwrap();
    let mut out: BTreeMap<i64, (usize, String)> = BTreeMap::new();
    for b in &batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let codes = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            let e = out.entry(ids.value(i)).or_insert((0, String::new()));
            e.0 += 1;
            e.1 = if codes.is_valid(i) { codes.value(i).to_string() } else { "NULL".into() };
        }
    }
    out
}

fn assert_each_id(rows: &BTreeMap<i64, (usize, String)>, n: i64, times: usize) {
    assert_eq!(rows.len() as i64, n, "distinct ids");
    for i in 0..n {
        assert_eq!(rows.get(&i), Some(&(times, format!("C{i}"))), "id {i}");
    }
}

fn find<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|v| v[key] == name).unwrap_or_else(|| panic!("{name} not in {list:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_from_the_cli() {
    seed_workflow(None).await;
}

/// The same workflow with a PostgreSQL catalog (one worker, which holds the task's lease):
/// every command answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_on_a_postgres_catalog() {
    seed_workflow(Some(pg_database("scale_dw_catalog").await)).await;
}

async fn seed_workflow(catalog: Option<String>) {
    let servers = bootstrap();
    let topic = unique("dw_orders");
    create_topic(&servers, &topic, PARTITIONS).await;
    produce_range(&servers, &topic, 0..300);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = match &catalog {
        None => Daemon::start(&data),
        Some(url) => {
            let lake = data.join("lakehouse");
            let args = ["--catalog", url.as_str(), "--lakehouse-root", lake.to_str().unwrap()];
            Daemon::start_with(&data, Daemon::free_port(), &args, &[])
        }
    };

    // Step 1: a SYNC vcluster exists from the first start.
    let vcs = d.json(&["vcluster", "list"]);
    let default = find(&vcs, "name", "default");
    assert_eq!(default["vcluster_type"], "SYNC");
    assert!(default["slots"].as_i64().unwrap() >= 1);
    assert!(d.ok(&["vcluster", "list"]).contains("SYNC"));

    // Step 2: data sources; the lakehouse one exists, a Kafka one is created and tested.
    let lake = find(&d.json(&["datasource", "list"]), "name", "lakehouse").clone();
    assert_eq!(lake["ds_type"], 1);
    let lake_root = lake["properties"]["root"].as_str().unwrap().to_string();
    assert!(lake_root.ends_with("data/lakehouse"), "{lake_root}");
    d.ok(&[
        "datasource",
        "create",
        "kafka_src",
        "--type",
        "2",
        "--set",
        &format!("bootstrap.servers={servers}"),
        "--set",
        "socket.timeout.ms=20000",
    ]);
    let kafkas = d.json(&["datasource", "list", "--type", "kafka"]);
    assert_eq!(kafkas.as_array().unwrap().len(), 1);
    assert_eq!(kafkas[0]["properties"]["bootstrap.servers"], servers.as_str());
    assert!(d.ok(&["datasource", "test", "kafka_src"]).starts_with("ok: connected to Kafka"));
    assert!(d.ok(&["datasource", "test", "kafka_src", "--object", &topic]).contains("exists"));
    assert!(d.ok(&["datasource", "test", "lakehouse"]).contains("writable"));

    // Step 3: explore the source.
    let ns = d.json(&["meta", "namespaces", "kafka_src"]);
    assert_eq!(ns[0]["name"], "default");
    let objects = d.json(&["meta", "objects", "kafka_src", "default"]);
    let t = find(&objects, "name", &topic);
    assert_eq!(t["partitions"], 3);
    assert_eq!(t["messages"], 300);
    let detail = d.json(&["meta", "detail", "kafka_src", "default", &topic, "--sample", "30"]);
    assert_eq!(detail["sampled"], 30);
    let cols = &detail["columns"];
    assert_eq!(find(cols, "path", "$.id")["type"], "bigint");
    assert_eq!(find(cols, "path", "$.data.code")["type"], "string");
    assert_eq!(find(cols, "path", "$.data.code")["column_arg"], "data_code=$.data.code:string");
    assert_eq!(find(cols, "path", "$.tags")["type"], "json");
    assert_eq!(detail["builtin"].as_array().unwrap().len(), 6);
    assert!(d.ok(&["meta", "detail", "kafka_src", "default", &topic]).contains("$.data.code"));

    // Step 4: create the task in a folder.
    d.ok(&["folder", "create", "sync_jobs"]);
    assert!(
        d.ok(&["task", "create", "rt_orders", "--type", "REALTIME", "--folder", "sync_jobs"])
            .contains("task rt_orders created")
    );
    let tasks = d.json(&["task", "list", "--folder", "sync_jobs"]);
    assert_eq!(tasks[0]["state"], "draft");
    assert_eq!(tasks[0]["task_type"], 14);

    // Step 5/6: configure source, target and JSONPath columns; preview writes nothing.
    d.ok(&[
        "task",
        "configure",
        "rt_orders",
        "--source",
        "kafka_src",
        "--source-schema",
        "default",
        "--source-table",
        &topic,
        "--sink",
        "lakehouse",
        "--sink-schema",
        "public",
        "--sink-table",
        "orders_rt",
        "--start-offset",
        "earliest",
        "--column",
        "id=$.id:bigint",
        "--column",
        "code=$.data.code:string",
        "--column",
        "n=$.data.n:int",
        "--column",
        "kp=partition:int",
        "--column",
        "ko=offset:bigint",
        "--commit-interval",
        "300ms",
    ]);
    let preview = d.json(&["task", "preview", "rt_orders", "--limit", "5"]);
    let rows = preview["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for r in rows {
        let id = r["id"].as_i64().unwrap();
        assert_eq!(r["code"], format!("C{id}"));
        assert_eq!(r["n"].as_i64(), Some(id * 2));
    }
    assert!(d.ok(&["task", "preview", "rt_orders", "--limit", "3"]).contains("nothing was written"));
    let table = LakehouseSinkConfig::new(&lake_root, "public", "orders_rt");
    assert!(!std::path::Path::new(&table.table_location()).exists(), "preview must not create the table");

    // Step 7: deploy; the task runs continuously.
    let out = d.ok(&["task", "deploy", "rt_orders", "-y"]);
    assert!(out.contains("deployed as version 1"), "{out}");
    assert_eq!(wait_rows(&table, 300, Duration::from_secs(90)).await, 300, "{}", d.log_text());
    assert_each_id(&rows_by_id(&table).await, 300, 1);

    // Step 8: watch it.
    let show = d.wait_task("rt_orders", Duration::from_secs(30), "status saved", |v| {
        v["status"]["rows_synced"] == 300 && v["status"]["lag"] == 0
    });
    assert_eq!(show["task"]["state"], "running");
    assert_eq!(show["status"]["phase"], "running");
    assert_eq!(show["status"]["position"], "0:100,1:100,2:100");
    assert_eq!(show["deployed"]["version"], 1);
    assert_eq!(show["app_id"], "rt_orders");
    assert!(show["status"]["freshness_ms"].as_i64().is_some());
    let text = d.ok(&["task", "show", "rt_orders"]);
    for field in [
        "status",
        "deployed version",
        "vcluster",
        "position",
        "lag",
        "rows synced",
        "rows/s",
        "freshness",
        "last error",
    ] {
        assert!(text.contains(field), "task show lacks {field}:\n{text}");
    }
    let runs = d.json(&["runs", "list", "--task", "rt_orders"]);
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["status"], "running");
    let run1 = runs[0]["id"].as_i64().unwrap().to_string();
    let detail = d.json(&["runs", "detail", &run1]);
    assert_eq!(detail["attempts"][0]["status"], "running");
    let log = d.json(&["attempts", "log", &run1]);
    let lines: Vec<&str> = log["lines"].as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert!(lines.iter().any(|l| l.starts_with("attempt 1 of run")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("kafka source opened")),
        "engine/connector events reach the attempt log: {lines:?}"
    );
    let (status, metrics) = d.get("/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("rtsync_task_rows_out_total{task=\"rt_orders\"} 300"), "{metrics}");
    assert!(metrics.contains("rtsync_task_commits_total{task=\"rt_orders\"}"));
    assert!(metrics.contains("rtsync_vcluster_slots_used{vcluster=\"default\",type=\"SYNC\"} 1"));
    // The target is browsable as a Lakehouse table.
    assert_eq!(find(&d.json(&["meta", "objects", "lakehouse", "public"]), "name", "orders_rt")["kind"], "table");
    let tcols = d.json(&["meta", "detail", "lakehouse", "public", "orders_rt"]);
    assert_eq!(find(&tcols["columns"], "name", "id")["type"], "long");
    assert_eq!(find(&tcols["columns"], "name", "code")["type"], "string");

    // Stop keeps the position; nothing restarts until start.
    assert!(d.ok(&["task", "stop", "rt_orders"]).contains("position kept (0:100,1:100,2:100)"));
    produce_range(&servers, &topic, 300..450);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count_rows(&table).await, 300, "a stopped task does not run");
    let show = d.json(&["task", "show", "rt_orders"]);
    assert_eq!(show["task"]["state"], "stopped");
    assert_eq!(show["status"]["lag"], 150);
    assert_eq!(d.json(&["runs", "list", "--task", "rt_orders"])[0]["status"], "stopped");
    assert!(d.ok(&["task", "start", "rt_orders"]).contains("resumes"));
    assert_eq!(wait_rows(&table, 450, Duration::from_secs(60)).await, 450);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_each_id(&rows_by_id(&table).await, 450, 1);
    let runs = d.json(&["runs", "list", "--task", "rt_orders"]);
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["status"], "running");
    assert_eq!(runs[1]["status"], "stopped");

    // Undeploy forgets the position: the next deploy reads the topic again from earliest
    // under a new Delta app id, so every message lands a second time.
    assert!(d.ok(&["task", "undeploy", "rt_orders", "-y"]).contains("rt_orders.2"));
    let show = d.json(&["task", "show", "rt_orders"]);
    assert_eq!(show["task"]["state"], "draft");
    assert!(show["deployed"].is_null());
    assert!(show["status"]["position"].is_null());
    assert_eq!(d.json(&["runs", "list", "--task", "rt_orders"])[0]["status"], "undeployed");
    let out = d.ok(&["task", "deploy", "rt_orders", "-y"]);
    assert!(out.contains("version 1") || out.contains("version 2"), "{out}");
    assert_eq!(wait_rows(&table, 900, Duration::from_secs(90)).await, 900);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_each_id(&rows_by_id(&table).await, 450, 2);
    let show = d.wait_task("rt_orders", Duration::from_secs(20), "caught up", |v| {
        v["status"]["position"] == "0:150,1:150,2:150"
    });
    assert_eq!(show["app_id"], "rt_orders.2");

    // A clean shutdown commits and ends the attempt as interrupted; the run goes on.
    assert!(d.ok(&["task", "list"]).contains("rt_orders"));
    let run = d.json(&["runs", "list", "--task", "rt_orders"])[0]["id"].as_i64().unwrap().to_string();
    let mut d = d;
    assert!(d.terminate().success(), "{}", d.log_text());
    d.restart();
    let detail = d.json(&["runs", "detail", &run]);
    assert_eq!(detail["run"]["status"], "running");
    assert_eq!(detail["attempts"][0]["status"], "interrupted");
    let reason = detail["attempts"][1]["reason"].as_str().unwrap();
    match catalog {
        None => assert_eq!(reason, "daemon restart"),
        // The restarted worker claims the task's lease again and continues its run.
        Some(_) => assert!(reason.starts_with("lease ") && reason.contains("claimed by worker"), "{reason}"),
    }
    produce_range(&servers, &topic, 450..460);
    assert_eq!(wait_rows(&table, 910, Duration::from_secs(60)).await, 910);
}
