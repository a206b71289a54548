//! Merge-on-read against copy-on-write on one table: bytes written per changed row and commit
//! latency of random single-row updates, and the key index's rebuild time.
//!
//! ```text
//! cargo run -p rtsync-sink-lakehouse --example mor_vs_cow -- [ROWS] [COMMITS] [UPDATES_PER_COMMIT]
//! ```
//!
//! (defaults 1,000,000 rows, 5 commits of 1,000 updates). Each mode gets its own table of
//! ROWS rows of ~100 bytes, loaded as a snapshot (plain appends), then COMMITS commits of
//! random updates spread over the whole key range. Bytes written are measured on disk (the
//! table directory's growth, log included), not as reported by the sink.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rtsync_sink_lakehouse::arrow::array::{Int64Array, RecordBatch, StringArray};
use rtsync_sink_lakehouse::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rtsync_sink_lakehouse::{ApplyMode, Checkpoint, DeltaSink, LakehouseSinkConfig, Sink};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("customer", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("note", DataType::Utf8, true),
        Field::new(rtsync_core::OP_COLUMN, DataType::Utf8, false),
    ]))
}

fn rows(ids: &[i64], op: &str, salt: i64) -> RecordBatch {
    let customer: Vec<String> = ids.iter().map(|i| format!("customer-{:08}", (i * 7919 + salt) % 1_000_000)).collect();
    let note: Vec<String> = ids.iter().map(|i| format!("note {i} {salt} {}", "x".repeat(48))).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(customer)),
            Arc::new(Int64Array::from(ids.iter().map(|i| i * 3 + salt).collect::<Vec<_>>())),
            Arc::new(StringArray::from(note)),
            Arc::new(StringArray::from(vec![op; ids.len()])),
        ],
    )
    .unwrap()
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() { dir_bytes(&e.path()) } else { meta.len() }
        })
        .sum()
}

fn checkpoint(epoch: u64) -> Checkpoint {
    Checkpoint { task: "bench".into(), epoch, position: serde_json::json!({ "epoch": epoch }) }
}

async fn run(apply: ApplyMode, total: i64, commits: u64, per_commit: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().join("lake").to_str().unwrap(), "public", "bench");
    config.apply = apply;
    config.maintenance = false;
    config.index_dir = Some(dir.path().join("index").to_str().unwrap().to_string());
    let mut sink = DeltaSink::upsert("bench", config.clone(), vec!["id".into()]).unwrap();
    sink.open(schema()).await.unwrap();
    let started = Instant::now();
    let mut epoch = 0;
    let chunk = 250_000i64;
    let mut at = 0;
    while at < total {
        let ids: Vec<i64> = (at..(at + chunk).min(total)).collect();
        sink.write(rows(&ids, "r", 0)).await.unwrap();
        epoch += 1;
        sink.commit(&checkpoint(epoch)).await.unwrap();
        at += chunk;
    }
    let table_dir = Path::new(&config.table_location()).to_path_buf();
    println!(
        "{apply}: loaded {total} rows in {:.1} s, table {:.1} MiB",
        started.elapsed().as_secs_f64(),
        dir_bytes(&table_dir) as f64 / 1048576.0
    );
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut latencies = Vec::new();
    let before = dir_bytes(&table_dir);
    for c in 0..commits {
        let ids: Vec<i64> = (0..per_commit)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % total as u64) as i64
            })
            .collect();
        sink.write(rows(&ids, "u", c as i64 + 1)).await.unwrap();
        epoch += 1;
        let t = Instant::now();
        sink.commit(&checkpoint(epoch)).await.unwrap();
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let written = dir_bytes(&table_dir) - before;
    let changed = commits * per_commit as u64;
    latencies.sort_by(f64::total_cmp);
    println!(
        "{apply}: {commits} commits of {per_commit} random updates: {:.0} bytes written per changed row, commit latency median {:.0} ms, max {:.0} ms",
        written as f64 / changed as f64,
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    if apply == ApplyMode::MergeOnRead {
        let index = sink.key_index_path().unwrap().to_path_buf();
        drop(sink);
        std::fs::remove_file(&index).unwrap();
        let t = Instant::now();
        let mut sink = DeltaSink::upsert("bench", config.clone(), vec!["id".into()]).unwrap();
        sink.open(schema()).await.unwrap();
        println!(
            "{apply}: key index rebuilt for {total} keys in {:.1} s ({:.1} MiB on disk)",
            t.elapsed().as_secs_f64(),
            std::fs::metadata(&index).unwrap().len() as f64 / 1048576.0
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let commits: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let per_commit: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1000);
    for apply in [ApplyMode::MergeOnRead, ApplyMode::CopyOnWrite] {
        run(apply, total, commits, per_commit).await;
    }
}
