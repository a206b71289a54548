//! The daemon's web UI in a real browser: headless Chromium (Debian's package) driven by
//! `tests/ui/ui_check.js` through playwright-core, against a real daemon syncing a real topic.
//! The whole workflow goes through the UI alone: a Kafka data source created and tested, its
//! topic browsed, a task created, configured with the suggested JSONPath columns, previewed,
//! deployed, its charts watched while messages arrive, stopped and started, an attempt's log
//! read, the target table's health shown, and an alert rule created and tested. A screenshot of
//! every step is kept under `<target>/ui-artifacts/` (the test prints the directory).

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use common::*;
use daemon_support::Daemon;
use rtsync_core::arrow::array::AsArray;
use rtsync_core::arrow::datatypes::Int64Type;
use serde_json::{Value, json};

/// Messages on the topic before the browser opens.
const INITIAL: i64 = 40;

fn order(i: i64) -> String {
    format!("{{\"id\":{i},\"customer\":{{\"name\":\"n{i}\"}}}}")
}

/// Produces one order every 100 ms after the first `INITIAL` until told to stop; counts them.
fn keep_producing(
    servers: String,
    topic: String,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicI64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let p = producer(&servers);
        while !stop.load(Ordering::SeqCst) {
            let i = produced.load(Ordering::SeqCst);
            send(&p, &topic, 0, &i.to_string(), Some(order(i).as_bytes()), None);
            flush(&p);
            produced.store(i + 1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn artifacts_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp: the screenshots go beside it.
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    target.join("ui-artifacts").join(format!("web_ui-{stamp}-{}", std::process::id()))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_drives_the_whole_workflow_in_chromium() {
    let node_path = std::env::var("RTSYNC_UI_NODE_PATH")
        .expect("RTSYNC_UI_NODE_PATH is not set: run the README's test command (scripts/services.sh install ui)");
    let chromium = std::env::var("RTSYNC_CHROMIUM")
        .expect("RTSYNC_CHROMIUM is not set: run the README's test command (scripts/services.sh install ui)");
    let servers = bootstrap();
    let topic = unique("ui_orders");
    create_topic(&servers, &topic, 1).await;
    let p = producer(&servers);
    for i in 0..INITIAL {
        send(&p, &topic, 0, &i.to_string(), Some(order(i).as_bytes()), None);
    }
    flush(&p);
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicI64::new(INITIAL));
    let producing = keep_producing(servers.clone(), topic.clone(), stop.clone(), produced.clone());

    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let (status, root) = d.get("/").unwrap();
    assert_eq!(status, 200);
    assert!(root.contains("<title>rtsync</title>"), "{root}");
    assert_eq!(d.get("/ui/").unwrap().1, root, "served at / and /ui/");

    let artifacts = artifacts_dir();
    println!("web UI screenshots: {}", artifacts.display());
    let config = json!({
        "base": d.url, "chromium": chromium, "artifacts": artifacts, "servers": servers, "topic": topic,
        "datasource": "ui_kafka", "task": "ui_made", "table": "ui_made", "initial": INITIAL,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ui/ui_check.js");
    let out = Command::new("node")
        .args([script, &config.to_string()])
        .env("NODE_PATH", &node_path)
        .output()
        .expect("node is not installed: run the README's test command (scripts/services.sh install ui)");
    stop.store(true, Ordering::SeqCst);
    producing.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ui: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("ui_check printed no JSON ({e}): {stdout}\n{stderr}\ndaemon log:\n{}", d.log_text())
    });
    assert!(
        out.status.success(),
        "ui_check failed at step {}: {}\nscreenshots: {}\n{ui:#}\n{stderr}\ndaemon log:\n{}",
        ui["step"],
        ui["failed"],
        artifacts.display(),
        d.log_text()
    );
    println!("{ui:#}");

    // Nothing went wrong in the page, and it asked for nothing beyond the daemon.
    assert_eq!(ui["errors"], json!([]), "no script errors");
    assert_eq!(ui["blocked"], json!([]), "the UI loads nothing from outside the daemon");
    assert!(ui["version"].as_str().unwrap().starts_with("daemon "), "{ui:#}");
    assert_eq!(ui["tasks_before"], 0, "no task before the UI made one");
    let shots = strings(&ui["screenshots"]);
    assert_eq!(shots.len(), 14, "a screenshot per step: {shots:?}");
    for s in &shots {
        let len = std::fs::metadata(s).unwrap().len();
        assert!(len > 10_000, "{s} is {len} bytes: not a page");
    }

    // The data source, tested and browsed.
    assert!(ui["test_message"].as_str().unwrap().starts_with("ok: "), "{ui:#}");
    assert_eq!(ui["namespaces"], json!(["default"]));
    assert!(strings(&ui["objects"]).contains(&topic.as_str()), "{ui:#}");
    assert_eq!(strings(&ui["topic_paths"]), ["$.customer", "$.customer.name", "$.id"], "the topic's JSONPaths");

    // Configured with the suggested columns; the preview maps them.
    assert!(ui["created_head"].as_str().unwrap().starts_with("ui_made"), "{ui:#}");
    assert_eq!(
        ui["suggested"],
        json!(["customer=$.customer:json", "customer_name=$.customer.name:string", "id=$.id:bigint"]),
        "columns suggested from the topic's sample"
    );
    assert_eq!(ui["preview_headers"], json!(["customer : json", "customer_name : string", "id : bigint"]));
    assert_eq!(ui["preview_rows"], 20, "the live preview reads 20 rows");
    assert_eq!(ui["preview_first"], json!(["{\"name\":\"n0\"}", "n0", "0"]), "{ui:#}");
    assert_eq!(ui["form_kept"], true, "the status refresh must not wipe the form being edited");

    // Deployed: it syncs, and the charts move with time axes and units.
    assert!(ui["deployed_head"].as_str().unwrap().contains("running"), "{ui:#}");
    assert_eq!(ui["deployed_status"]["Deployed version"], "1");
    let charts = &ui["charts"];
    assert!(charts["rate"]["points"].as_u64().unwrap() >= charts["before"]["rate"]["points"].as_u64().unwrap() + 3);
    assert!(charts["rate"]["latest"][0].as_f64().unwrap() > 0.0, "{charts:#}");
    assert!(
        charts["rows"].as_i64().unwrap() > charts["before"]["rows"].as_i64().unwrap(),
        "rows synced went up: {charts:#}"
    );
    assert_eq!(charts["rate"]["unit"], "rows/s");
    assert_eq!(charts["fresh"]["unit"], "s");
    assert_eq!(charts["lag"]["unit"], "messages", "Kafka's lag is in messages");
    assert!(charts["fresh"]["points"].as_u64().unwrap() >= 2, "{charts:#}");
    for c in ["rate", "fresh", "lag"] {
        let x = strings(&charts[c]["x_ticks"]);
        assert!(
            !x.is_empty() && x.iter().all(|t| t.len() == 8 && t.as_bytes()[2] == b':'),
            "{c}: a clock on the time axis: {x:?}"
        );
        let y = strings(&charts[c]["y_ticks"]);
        assert!(y.len() >= 2 && y[0] == "0", "{c}: a value axis from 0: {y:?}");
    }
    assert!(ui["moving_status"]["Lag"].as_str().unwrap().ends_with(" messages"), "{ui:#}");

    // Stopped and started again: a second run, and an attempt's log.
    assert!(ui["stopped_head"].as_str().unwrap().contains("stopped"), "{ui:#}");
    assert!(ui["started_status"]["Status"].as_str().unwrap().starts_with("running (run 2, attempt 1)"), "{ui:#}");
    assert_eq!(ui["runs"].as_array().unwrap().len(), 2, "{ui:#}");
    assert!(strings(&ui["log_lines"]).iter().any(|l| l.contains("INFO task started")), "the attempt's log: {ui:#}");
    assert_eq!(ui["task_health_title"], "Table health public.ui_made", "{ui:#}");
    let task_files: u64 = ui["task_health"][1].as_str().unwrap().replace(',', "").parse().unwrap();
    assert!(task_files >= 1, "the task's page shows its table's files: {ui:#}");

    // The table's columns and health.
    assert_eq!(ui["table_columns"], json!(["customer", "customer_name", "id"]), "{ui:#}");
    assert_eq!(ui["table_health"][1], "ACTIVE FILES", "{ui:#}");
    assert_eq!(
        ui["alert_rule"].as_array().unwrap()[..6],
        ["ui_lag", "task ui_made", "lag>1000000", "60 s", "log only", "0"],
        "{ui:#}"
    );
    assert_eq!(ui["alert_sections"], json!(["Firing", "Rules", "Create a rule", "History"]), "{ui:#}");
    assert_eq!(d.json(&["alert", "show", "ui_lag"])["rule"]["scope"], "ui_made", "the UI's rule is the API's");
    let files: u64 = ui["table_health_row"][1].as_str().unwrap().replace(',', "").parse().unwrap();
    assert!(files >= 1, "{ui:#}");

    // Everything produced lands once, read back from the table.
    let total = produced.load(Ordering::SeqCst);
    d.wait_task("ui_made", Duration::from_secs(60), "every message synced", |v| v["status"]["rows_synced"] == total);
    let made = d.json(&["task", "show", "ui_made"]);
    assert_eq!(made["task"]["deployed_version"], 1);
    assert_eq!(made["deployed"]["config"]["source_table"], topic.as_str());
    let table = rtsync_sink_lakehouse::LakehouseSinkConfig::new(
        dir.path().join("data/lakehouse").to_str().unwrap(),
        "public",
        "ui_made",
    );
    let batches = rtsync_sink_lakehouse::query_table(
        &table,
        "SELECT count(*), count(DISTINCT id), min(id), max(id), min(customer_name) FROM t",
    )
    .await
    .unwrap();
    let n = |i: usize| batches[0].column(i).as_primitive::<Int64Type>().value(0);
    assert_eq!((n(0), n(1), n(2), n(3)), (total, total, 0, total - 1));
    assert_eq!(batches[0].column(4).as_string::<i32>().value(0), "n0");
}
