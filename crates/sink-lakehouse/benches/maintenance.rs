//! Figures for the lakehouse issue: the sink's write + commit throughput on local disk and on
//! the S3 server, commit latency p50/p99 over many small commits with maintenance on, and the
//! time to read the table afterwards with and without maintenance.
//!
//! Not a test: it prints figures. With the S3 server of `scripts/services.sh`:
//!
//! ```text
//! eval "$(scripts/services.sh env)"
//! cargo bench -p rtsync-sink-lakehouse --bench maintenance -- [--commits N]
//! ```
//!
//! Without `RTSYNC_S3_ROOT` the S3 figures are left out (said in the output).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use rtsync_core::{Checkpoint, Sink};
use rtsync_sink_lakehouse::{DeltaSink, LakehouseSinkConfig, maintenance, query_table};

fn batch(from: i64, rows: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("customer", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
    ]));
    let ids = from..from + rows;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(ids.clone())),
        Arc::new(StringArray::from_iter_values(ids.clone().map(|i| format!("customer-{}", i % 10_000)))),
        Arc::new(StringArray::from_iter_values(ids.map(|i| ["Zürich", "Basel", "Bern"][(i % 3) as usize]))),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Commits `commits` times `rows` rows; returns the latency of each commit (write + commit).
async fn drive(config: &LakehouseSinkConfig, commits: u64, rows: i64) -> Vec<Duration> {
    let mut sink = DeltaSink::new("bench", config.clone()).unwrap();
    sink.open(batch(0, 1).schema()).await.unwrap();
    let mut latencies = Vec::with_capacity(commits as usize);
    for epoch in 1..=commits {
        let started = Instant::now();
        sink.write(batch(epoch as i64 * rows, rows)).await.unwrap();
        let checkpoint = Checkpoint { task: "bench".into(), epoch, position: serde_json::json!({ "next": epoch }) };
        sink.commit(&checkpoint).await.unwrap();
        latencies.push(started.elapsed());
    }
    latencies
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn read_time(config: &LakehouseSinkConfig) -> (f64, u64) {
    let started = Instant::now();
    let out = query_table(config, "SELECT count(*), sum(id) FROM t").await.unwrap();
    let n = out[0].column(0).as_any().downcast_ref::<Int64Array>().unwrap().value(0) as u64;
    (started.elapsed().as_secs_f64() * 1000.0, n)
}

#[tokio::main]
async fn main() {
    let commits = arg("--commits", 1000);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().to_str().unwrap().to_string();

    // Throughput: 20 commits of 100,000 rows, local disk vs the S3 server.
    let mut stores = vec![("local disk", LakehouseSinkConfig::new(&local, "bench", "throughput"))];
    match (std::env::var("RTSYNC_S3_ROOT"), std::env::var("RTSYNC_S3_OPTIONS")) {
        (Ok(root), Ok(options)) => {
            let options: HashMap<String, String> = options
                .split_whitespace()
                .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                .collect();
            let root = format!("{root}/bench-{}", std::process::id());
            stores.push((
                "S3 server (moto)",
                LakehouseSinkConfig::new(root, "bench", "throughput").with_storage_options(options),
            ));
        }
        _ => println!("RTSYNC_S3_ROOT is not set: no S3 figures"),
    }
    for (name, config) in &stores {
        let mut config = config.clone();
        config.maintenance = false;
        let started = Instant::now();
        drive(&config, 20, 100_000).await;
        let secs = started.elapsed().as_secs_f64();
        println!("throughput on {name}: 2,000,000 rows in 20 commits in {secs:.2}s = {:.0} rows/s", 2e6 / secs);
    }

    // Commit latency over many small commits, maintenance on (its defaults) and off; reads after.
    for on in [true, false] {
        let mut config = LakehouseSinkConfig::new(&local, "bench", if on { "maintained" } else { "unmaintained" });
        config.maintenance = on;
        let mut latencies = drive(&config, commits, 100).await;
        latencies.sort_unstable();
        let info = maintenance::table_info(&config).await.unwrap();
        let (ms, rows) = read_time(&config).await;
        println!(
            "maintenance {}: {commits} commits of 100 rows: commit p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             then {} active files, read of {rows} rows {ms:.0} ms",
            if on { "on " } else { "off" },
            quantile(&latencies, 0.5),
            quantile(&latencies, 0.99),
            quantile(&latencies, 1.0),
            info.active_files,
        );
    }
}
