//! The daemon's web UI, driven in jsdom (tests/ui/ui_check.js) the way a browser would: the
//! task list, a running task's status, its JSONPath columns and live preview, its runs and
//! attempt logs, metadata browsing and vclusters, all against a daemon syncing a real topic.

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::process::Command;
use std::time::Duration;

use common::*;
use daemon_support::Daemon;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_shows_and_drives_a_task() {
    let node_path = std::env::var("RTSYNC_UI_NODE_PATH")
        .expect("RTSYNC_UI_NODE_PATH is not set: run the README's test command (scripts/services.sh install ui)");
    let servers = bootstrap();
    let topic = unique("ui_orders");
    create_topic(&servers, &topic, 1).await;
    let p = producer(&servers);
    for i in 0..40i64 {
        let value = format!("{{\"id\":{i},\"customer\":{{\"name\":\"n{i}\"}}}}");
        send(&p, &topic, 0, &i.to_string(), Some(value.as_bytes()), None);
    }
    flush(&p);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    d.ok(&["datasource", "create", "ui_kafka", "--type", "kafka", "--set", &format!("bootstrap.servers={servers}")]);
    d.ok(&["task", "create", "ui_task", "--type", "REALTIME", "--folder", "default"]);
    d.ok(&[
        "task",
        "configure",
        "ui_task",
        "--source",
        "ui_kafka",
        "--source-table",
        &topic,
        "--column",
        "id=$.id:bigint",
        "--column",
        "customer=$.customer.name:string",
    ]);
    d.ok(&["task", "deploy", "ui_task", "-y"]);
    d.wait_task("ui_task", Duration::from_secs(60), "40 rows", |v| v["status"]["rows_synced"] == 40);

    // Served at / and /ui/.
    let (status, root) = d.get("/").unwrap();
    assert_eq!(status, 200);
    assert!(root.contains("<title>rtsync</title>"), "{root}");
    assert_eq!(d.get("/ui/").unwrap().1, root);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/ui_check.js");
    let out = Command::new("node")
        .args([script, &d.url, "ui_task", "ui_kafka", "default", &topic])
        .env("NODE_PATH", &node_path)
        .output()
        .expect("node is not installed: run the README's test command (scripts/services.sh install ui)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ui_check failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let ui: Value = serde_json::from_str(stdout.trim()).unwrap();

    let row = ui["task_row"].as_str().unwrap();
    assert!(row.starts_with("ui_taskrunning1"), "the list shows name, state, version: {row}");
    assert!(row.contains("40"), "rows synced in the list: {row}");
    assert_eq!(ui["status"]["Rows synced"], "40", "{ui:#}");
    assert_eq!(ui["status"]["Deployed version"], "1");
    assert!(ui["status"]["Status"].as_str().unwrap().starts_with("running (run 1, attempt 1)"), "{ui:#}");
    assert!(ui["status"]["Position"].as_str().unwrap().contains("0:40"), "{ui:#}");
    assert_eq!(
        ui["columns"],
        serde_json::json!([
            {"name": "id", "expr": "$.id", "type": "bigint"},
            {"name": "customer", "expr": "$.customer.name", "type": "string"}
        ])
    );
    assert_eq!(ui["preview_headers"], serde_json::json!(["id : bigint", "customer : string"]));
    assert_eq!(ui["preview_rows"], 20, "the live preview reads 20 rows");
    assert!(ui["log_lines"].as_i64().unwrap() >= 1, "{ui:#}");
    assert_eq!(ui["form_kept"], true, "the status refresh must not wipe the form being edited");
    assert_eq!(ui["namespaces"], serde_json::json!(["default"]));
    assert!(ui["objects"].as_array().unwrap().iter().any(|o| o == topic.as_str()), "{ui:#}");
    assert!(ui["vclusters"].as_array().unwrap().iter().any(|v| v == "default:SYNC"), "{ui:#}");
    assert_eq!(ui["errors"], serde_json::json!([]), "no script errors");

    // The task made with the UI alone: suggested columns, deployed, synced, readable.
    assert_eq!(
        ui["suggested"],
        serde_json::json!(["customer=$.customer:json", "customer_name=$.customer.name:string", "id=$.id:bigint"]),
        "columns suggested from the topic's sample"
    );
    assert!(ui["made_status"].as_str().unwrap().contains("running"), "{ui:#}");
    assert_eq!(ui["table_health"][1], "Active files", "{ui:#}");
    assert!(ui["table_files"].as_u64().unwrap() >= 1, "{ui:#}");
    let made = d.json(&["task", "show", "ui_made"]);
    assert_eq!(made["task"]["deployed_version"], 1);
    assert_eq!(made["deployed"]["config"]["source_table"], topic.as_str());
    let table = rtsync_sink_lakehouse::LakehouseSinkConfig::new(
        dir.path().join("data/lakehouse").to_str().unwrap(),
        "public",
        "ui_made",
    );
    let batches =
        rtsync_sink_lakehouse::query_table(&table, "SELECT count(*), count(DISTINCT id), min(customer_name) FROM t")
            .await
            .unwrap();
    use rtsync_core::arrow::array::AsArray;
    use rtsync_core::arrow::datatypes::Int64Type;
    assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 40);
    assert_eq!(batches[0].column(1).as_primitive::<Int64Type>().value(0), 40);
    assert_eq!(batches[0].column(2).as_string::<i32>().value(0), "n0");

    // The preview saved the draft as shown: nothing changed, so the deployed task runs on.
    let shown = d.json(&["task", "show", "ui_task"]);
    assert_eq!(shown["task"]["state"], "running");
}
