//! A lakehouse data source on object storage, through the daemon: a Kafka task writes to S3
//! (moto) and to Azure (azurite); the data source is tested, browsed (`meta`) through the store,
//! its secrets never shown, and its table inspected, compacted and vacuumed with `rtsync table`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod daemon_support;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use daemon_support::Daemon;
use rtsync_core::arrow::array::AsArray;
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};

const ROWS: i64 = 120;
const ROUNDS: i64 = 4;

/// `RTSYNC_<KIND>_ROOT` under a prefix of its own, and `RTSYNC_<KIND>_OPTIONS`.
fn store(kind: &str) -> (String, HashMap<String, String>) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run `scripts/services.sh start s3 azurite` and `eval \"$(scripts/services.sh env)\"`")
        })
    };
    let root = format!("{}/{}", var(&format!("RTSYNC_{kind}_ROOT")), unique("dlake"));
    let options = var(&format!("RTSYNC_{kind}_OPTIONS"))
        .split_whitespace()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    (root, options)
}

async fn lakehouse_on_a_store_through_the_daemon(kind: &str) {
    let servers = bootstrap();
    let topic = unique("dls_orders");
    create_topic(&servers, &topic, 2).await;

    let (root, options) = store(kind);
    let dir = tempfile::tempdir().unwrap();
    // Explicit credentials are given; the cloud SDKs must not probe an instance-metadata host.
    let d = Daemon::start_with(
        &dir.path().join("data"),
        Daemon::free_port(),
        &[],
        &[("AWS_EC2_METADATA_DISABLED", "true")],
    );
    let mut create = vec![
        "datasource".to_string(),
        "create".into(),
        "store".into(),
        "--type".into(),
        "lakehouse".into(),
        "--set".into(),
        format!("root={root}"),
    ];
    for (k, v) in &options {
        create.push("--set".into());
        create.push(format!("{k}={v}"));
    }
    d.ok(&create.iter().map(String::as_str).collect::<Vec<_>>());
    let shown = d.ok(&["datasource", "show", "store", "--format", "json"]);
    for (k, v) in &options {
        if rtsync_core::secret::is_secret_key(k) {
            assert!(!shown.contains(v.as_str()), "{k} shown: {shown}");
        }
    }
    let tested = d.ok(&["datasource", "test", "store"]);
    assert!(tested.contains("reachable"), "{tested}");

    d.ok(&["datasource", "create", "k", "--type", "kafka", "--set", &format!("bootstrap.servers={servers}")]);
    d.ok(&["task", "create", "to_store"]);
    d.ok(&[
        "task",
        "configure",
        "to_store",
        "--source",
        "k",
        "--source-table",
        &topic,
        "--sink",
        "store",
        "--sink-table",
        "orders",
        "--column",
        "id=$.id:bigint",
        "--column",
        "code=$.code:string",
        "--commit-interval",
        "300ms",
    ]);
    d.ok(&["task", "deploy", "to_store", "-y"]);
    // Four rounds, each synced before the next: four commits, four small files.
    let p = producer(&servers);
    for round in 0..ROUNDS {
        for i in round * ROWS / ROUNDS..(round + 1) * ROWS / ROUNDS {
            let value = format!("{{\"id\":{i},\"code\":\"C{i}\"}}");
            send(&p, &topic, (i % 2) as i32, &i.to_string(), Some(value.as_bytes()), None);
        }
        flush(&p);
        let synced = (round + 1) * ROWS / ROUNDS;
        d.wait_task("to_store", Duration::from_secs(60), "the round synced", |v| v["status"]["rows_synced"] == synced);
    }
    d.ok(&["task", "stop", "to_store"]);

    // Browsing reads the store.
    let namespaces = d.json(&["meta", "namespaces", "store"]);
    let public = namespaces.as_array().unwrap().iter().find(|n| n["name"] == "public").expect("schema public listed");
    assert_eq!(public["objects"], 1, "{namespaces:#}");
    let objects = d.json(&["meta", "objects", "store", "public"]);
    assert_eq!(objects[0]["name"], "orders", "{objects:#}");
    let detail = d.json(&["meta", "detail", "store", "public", "orders"]);
    let columns: Vec<&str> =
        detail["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["id", "code"], "{detail:#}");
    assert!(d.fail(&["meta", "objects", "store", "nope"]).contains("does not exist"));

    // The table's health, a compaction and a vacuum, all on the store.
    let info = d.json(&["table", "info", "store", "public.orders"]);
    let files_before = info["active_files"].as_u64().unwrap();
    assert!(files_before >= ROUNDS as u64, "a file per commit before compaction: {info:#}");
    assert_eq!(info["small_files"].as_u64().unwrap(), files_before, "{info:#}");
    let optimized = d.json(&["table", "optimize", "store", "public.orders"]);
    assert_eq!(optimized["files_removed"].as_u64().unwrap(), files_before, "{optimized:#}");
    assert_eq!(optimized["files_added"], 1, "{optimized:#}");
    let info = d.json(&["table", "info", "store", "public.orders"]);
    assert_eq!(info["active_files"], 1, "{info:#}");
    assert!(info["last_compaction"].is_string(), "{info:#}");
    let dry = d.json(&["table", "vacuum", "store", "public.orders", "--dry-run", "--retention", "0s"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["files"].as_array().unwrap().len() as u64, files_before, "{dry:#}");
    let vacuumed = d.json(&["table", "vacuum", "store", "public.orders", "--retention", "0s"]);
    assert_eq!(vacuumed["files"].as_array().unwrap().len() as u64, files_before, "{vacuumed:#}");
    assert!(d.ok(&["table", "info", "store", "public.orders"]).contains("last vacuum"));

    // Every row once, read back from the store after compaction and vacuum.
    let table = LakehouseSinkConfig::new(&root, "public", "orders").with_storage_options(options);
    let batches = query_table(&table, "SELECT id FROM t ORDER BY id").await.unwrap();
    let ids: Vec<i64> =
        batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
    assert_eq!(ids, (0..ROWS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lakehouse_data_source_on_s3() {
    lakehouse_on_a_store_through_the_daemon("S3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lakehouse_data_source_on_azure() {
    lakehouse_on_a_store_through_the_daemon("AZURE").await;
}
