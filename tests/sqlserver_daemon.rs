//! SQL Server through the daemon, against the TDS simulator (`rtsync-mssql-sim`, in this test's
//! process): `datasource create --type sqlserver` and `datasource test` (also with a wrong
//! password), `meta` namespaces/objects/detail, `task preview`, `task deploy`, changes streamed
//! while the task runs, `task verify` equal, then a Delta table edited behind rtsync's back
//! (one row updated, one deleted, one added by an independent Python writer) and verify naming
//! exactly those keys, and undeploy leaving the CDC configuration alone.
//!
//! No SQL Server runs here: the simulator answers the connector's own SQL over TDS (see
//! README "SQL Server" for what that proves and what it does not).

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::time::{Duration, Instant};

use common::*;
use daemon_support::Daemon;
use rtsync_mssql_sim::workload::{Workload, every_type_table};
use rtsync_mssql_sim::{Credentials, TdsSim};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

fn verify(d: &Daemon, task: &str) -> (bool, Value) {
    let r = d.cli(&["task", "verify", task, "--format", "json"]);
    let report: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {}\n{}\n{}", r.stdout, r.stderr, d.log_text()));
    (r.ok, report)
}

fn column<'a>(detail: &'a Value, name: &str) -> &'a Value {
    detail["columns"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{detail:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlserver_table_through_the_daemon() {
    let table = "orders";
    let db = every_type_table("dbo", table);
    let mut w = Workload::new(17);
    w.seed(&db, 300);
    let sim = TdsSim::start(db.clone(), Credentials::default(), 0).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    d.ok(&["datasource", "create", "shop_ms", "--type", "sqlserver", "--set", &format!("url={}", sim.url())]);
    let tested = d.ok(&["datasource", "test", "shop_ms", "--object", "dbo.orders"]);
    assert!(tested.contains("ready for CDC"), "{tested}");
    let bad = sim.url().replace(":Sim_Passw0rd@", ":wrong@");
    d.ok(&["datasource", "create", "shop_bad", "--type", "sqlserver", "--set", &format!("url={bad}")]);
    let refused = d.fail(&["datasource", "test", "shop_bad", "--object", "dbo.orders"]);
    assert!(refused.contains("Login failed for user"), "{refused}");

    let namespaces = d.json(&["meta", "namespaces", "shop_ms"]);
    assert_eq!(namespaces, json!([{"name": "dbo", "objects": 1}]), "{namespaces:#}");
    let objects = d.json(&["meta", "objects", "shop_ms", "dbo"]);
    assert_eq!(objects[0]["name"], table, "{objects:#}");
    assert_eq!(objects[0]["primary_key"], json!(["id"]), "{objects:#}");
    let detail = d.json(&["meta", "detail", "shop_ms", "dbo", table]);
    assert_eq!(column(&detail, "c_money")["source_type"], "money", "{detail:#}");
    assert_eq!(column(&detail, "c_money")["type"], "decimal(19,4)", "{detail:#}");
    assert_eq!(column(&detail, "c_nvarchar_max")["source_type"], "nvarchar(max)", "{detail:#}");
    assert_eq!(column(&detail, "c_datetime2_7")["type"], "string", "{detail:#}");

    let task = "ms_orders";
    d.ok(&["task", "create", task, "--type", "REALTIME", "--folder", "default"]);
    d.ok(&["task", "configure", task, "--source", "shop_ms", "--source-schema", "dbo", "--source-table", table]);
    let preview = d.json(&["task", "preview", task, "--limit", "3"]);
    assert_eq!(preview["rows"].as_array().unwrap().len(), 3, "{preview:#}");
    assert_eq!(preview["rows"][0]["id"], 1, "{preview:#}");
    let out = d.ok(&["task", "deploy", task, "-y"]);
    assert!(out.contains("deployed as version 1"), "{out}");
    d.wait_task(task, WAIT, "the snapshot", |v| v["status"]["rows_synced"].as_i64().unwrap_or(0) >= 300);

    // Changes while the task streams, the capture job lagging behind.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        w.transaction(&db);
        if w.rng.below(2) == 0 {
            db.lock().capture();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    db.lock().capture();
    assert!(w.counts.updates > 10 && w.counts.deletes > 3, "{:?}", w.counts);

    let deadline = Instant::now() + WAIT;
    let report = loop {
        let (ok, report) = verify(&d, task);
        if ok && report["equal"] == true {
            break report;
        }
        assert!(Instant::now() < deadline, "the task never verified equal; last report:\n{report:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let rows = db.lock().table().len() as u64;
    assert_eq!(report["source_rows"], rows, "{report:#}");
    assert_eq!(report["target_rows"], rows, "{report:#}");

    let keys: Vec<i64> = db.lock().table().keys().take(3).copied().collect();
    let location = dir.path().join("data").join("lakehouse").join("public").join(table);
    tamper_delta(location.to_str().unwrap(), "c_varchar", [keys[0], keys[1], keys[2], 999_999]);
    let (ok, report) = verify(&d, task);
    assert!(!ok, "verify must exit non-zero when differences persist: {report:#}");
    assert_eq!(report["differences_total"], 3, "{report:#}");
    assert_eq!(
        report["differences"],
        json!([
            {"key": [keys[0].to_string()], "kind": "values_differ", "columns": ["c_varchar"]},
            {"key": [keys[1].to_string()], "kind": "missing_in_lake"},
            {"key": ["999999"], "kind": "extra_in_lake"},
        ]),
        "{report:#}"
    );

    let out = d.ok(&["task", "undeploy", task, "-y"]);
    assert!(out.contains("undeployed") && out.contains("left as it is"), "{out}");
}
