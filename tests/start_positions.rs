//! Each start position is honoured: earliest, explicit offsets and a timestamp against the
//! real broker (tansu); latest against librdkafka's mock cluster, because tansu answers
//! "latest" offset look-ups wrongly after multi-record batches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use rtsync::{RunOptions, SourceSpec, TaskSpec, run_task};
use rtsync_core::arrow::array::AsArray;
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_engine::TaskMetrics;
use rtsync_mapping::ColumnSpec;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use rtsync_source_kafka::{KafkaSourceConfig, StartOffset};
use tokio::sync::watch;

fn spec(servers: &str, topic: &str, root: &str, start: StartOffset) -> TaskSpec {
    let name = unique("start");
    TaskSpec {
        name: name.clone(),
        source: SourceSpec::Kafka(KafkaSourceConfig { start_offset: start, ..KafkaSourceConfig::new(servers, topic) }),
        sink: LakehouseSinkConfig::new(root, "public", &name),
        columns: vec![ColumnSpec { name: "id".into(), expr: "$.id".into(), ty: "bigint".into() }],
        error_policy: rtsync_core::ErrorPolicy::Fail,
        commit_interval: Duration::from_millis(200),
        max_buffered_rows: 1_000_000,
        max_buffered_bytes: 1 << 28,
    }
}

/// Runs the task until `rows` rows are committed (and a little longer, to catch extras),
/// stops it, and returns the ids in the table.
async fn sync(spec: &TaskSpec, rows: u64, after_start: impl FnOnce() + Send + 'static) -> Vec<i64> {
    let metrics = Arc::new(TaskMetrics::default());
    let (stop, shutdown) = watch::channel(false);
    let task = {
        let spec = spec.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move { run_task(&spec, RunOptions { metrics, shutdown, retry: false }).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(after_start).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.rows_out.load(std::sync::atomic::Ordering::Relaxed) < rows
        && Instant::now() < deadline
        && !task.is_finished()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
    let batches = query_table(&spec.sink, "SELECT id FROM t ORDER BY id").await.unwrap();
    batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect()
}

fn produce_ids(servers: &str, topic: &str, partition: i32, ids: impl Iterator<Item = i64>) {
    let p = producer(servers);
    for id in ids {
        send(&p, topic, partition, &id.to_string(), Some(format!("{{\"id\":{id}}}").as_bytes()), None);
    }
    flush(&p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earliest_offsets_and_timestamp_on_the_broker() {
    let servers = bootstrap();
    let topic = unique("starts");
    create_topic(&servers, &topic, 2).await;
    // Batch A: ids 0..10 on partition 0, 10..20 on partition 1.
    produce_ids(&servers, &topic, 0, 0..10);
    produce_ids(&servers, &topic, 1, 10..20);
    std::thread::sleep(Duration::from_millis(1500));
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    std::thread::sleep(Duration::from_millis(500));
    // Batch B: ids 100..105 on partition 0, 110..115 on partition 1.
    produce_ids(&servers, &topic, 0, 100..105);
    produce_ids(&servers, &topic, 1, 110..115);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();

    let all: Vec<i64> = (0..20).chain(100..105).chain(110..115).collect();
    let earliest = sync(&spec(&servers, &topic, root, StartOffset::Earliest), 30, || {}).await;
    assert_eq!(earliest, all);

    let offsets = StartOffset::parse("0:7").unwrap();
    let from_offsets = sync(&spec(&servers, &topic, root, offsets), 23, || {}).await;
    let expected: Vec<i64> = (7..20).chain(100..105).chain(110..115).collect();
    assert_eq!(from_offsets, expected, "partition 0 from offset 7, partition 1 from its start");

    let from_time = sync(&spec(&servers, &topic, root, StartOffset::Timestamp(t)), 10, || {}).await;
    let expected: Vec<i64> = (100..105).chain(110..115).collect();
    assert_eq!(from_time, expected, "only messages after the instant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_skips_what_was_there_on_the_mock_cluster() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("events", 2, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    produce_ids(&servers, "events", 0, 0..10);
    produce_ids(&servers, "events", 1, 10..20);
    let dir = tempfile::tempdir().unwrap();
    let s = spec(&servers, "events", dir.path().to_str().unwrap(), StartOffset::Latest);
    let srv = servers.clone();
    let ids = sync(&s, 6, move || {
        produce_ids(&srv, "events", 0, 50..53);
        produce_ids(&srv, "events", 1, 60..63);
    })
    .await;
    assert_eq!(ids, vec![50, 51, 52, 60, 61, 62]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_table_not_the_start_offset() {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("resume", 1, 1).unwrap();
    let servers = cluster.bootstrap_servers();
    produce_ids(&servers, "resume", 0, 0..5);
    let dir = tempfile::tempdir().unwrap();
    let s = spec(&servers, "resume", dir.path().to_str().unwrap(), StartOffset::Earliest);
    assert_eq!(sync(&s, 5, || {}).await, vec![0, 1, 2, 3, 4]);
    let srv = servers.clone();
    let ids = sync(&s, 3, move || produce_ids(&srv, "resume", 0, 5..8)).await;
    assert_eq!(ids, (0..8).collect::<Vec<i64>>(), "nothing read twice, nothing skipped");
    let table = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", &s.name);
    assert_eq!(count_rows(&table).await, 8);
}
