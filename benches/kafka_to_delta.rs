//! End-to-end throughput and freshness: Kafka JSON → mapping → Delta, through the real task.
//!
//! Not a test: it prints figures. Run with a broker from `scripts/services.sh`:
//!
//! ```text
//! eval "$(scripts/services.sh env)"
//! cargo bench --bench kafka_to_delta -- [--messages N] [--rate MSGS_PER_SEC] [--seconds S]
//! ```
//!
//! Without `RTSYNC_KAFKA_BOOTSTRAP` it uses librdkafka's in-process mock cluster.
//!
//! Phase 1 (throughput): N messages of ~300 bytes are produced first, then one task with 8
//! computed columns syncs them; messages/s and MB/s are measured from the task's start to the
//! commit holding the last message. Then a bare librdkafka consumer (a `BaseConsumer` with the
//! source's own client settings, touching each payload and nothing more) drains the same topic
//! from the beginning: its rate is the ceiling, and rtsync/bare is the figure. Phase 2
//! (freshness): messages are produced at a steady rate while the task runs with a 1 s commit
//! interval; p50/p99 of (commit time − message timestamp) come from the engine's per-row
//! histogram. Peak RSS is read from /proc, reset before each phase (so the producer's buffers
//! do not count). `--seconds 0` skips phase 2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rtsync::{RunOptions, SourceSpec, TaskSpec, run_task};
use rtsync_engine::TaskMetrics;
use rtsync_mapping::ColumnSpec;
use rtsync_sink_lakehouse::LakehouseSinkConfig;
use rtsync_source_kafka::{KafkaSource, KafkaSourceConfig};
use tokio::sync::watch;

mod common;
use common::{arg, peak_rss_mib, reset_peak_rss};

const PARTITIONS: i32 = 3;

/// A ~300-byte order.
fn order(i: u64) -> String {
    format!(
        "{{\"id\":{i},\"type\":\"order_created\",\"customer\":{{\"id\":{},\"name\":\"customer-{}\",\"tier\":\"gold\",\"address\":{{\"city\":\"Zürich\",\"zip\":\"8001\"}}}},\
         \"items\":[{{\"sku\":\"SKU-{:05}\",\"qty\":{},\"price\":19.99}},{{\"sku\":\"SKU-00042\",\"qty\":1,\"price\":5.50}}],\
         \"amount\":{}.{:02},\"currency\":\"CHF\",\"paid\":{},\"created_at\":\"2026-11-25T12:{:02}:{:02}.123Z\"}}",
        i % 10_000,
        i % 10_000,
        i % 100_000,
        i % 9 + 1,
        i % 100_000,
        i % 100,
        !i.is_multiple_of(3),
        (i / 60) % 60,
        i % 60
    )
}

fn columns() -> Vec<ColumnSpec> {
    let c = |n: &str, e: &str, t: &str| ColumnSpec { name: n.into(), expr: e.into(), ty: t.into() };
    vec![
        c("id", "$.id", "bigint"),
        c("customer", "$.customer.name", "string"),
        c("city", "$.customer.address.city", "string"),
        c("sku", "$.items[0].sku", "string"),
        c("price", "$.items[0].price", "double"),
        c("amount", "$.amount", "decimal(18,2)"),
        c("created_at", "$.created_at", "timestamp"),
        c("paid", "$.paid", "boolean"),
    ]
}

fn produce(servers: &str, topic: &str, from: u64, count: u64, rate: Option<u64>) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let started = Instant::now();
    let mut bytes = 0u64;
    for i in from..from + count {
        let value = order(i);
        bytes += value.len() as u64;
        let mut rec = BaseRecord::<(), str>::to(topic).payload(&value).partition((i % PARTITIONS as u64) as i32);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        if let Some(rate) = rate
            && (i - from) % 500 == 499
        {
            producer.poll(Duration::ZERO);
            let due = Duration::from_secs_f64((i - from + 1) as f64 / rate as f64);
            if let Some(w) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(w);
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    bytes
}

fn spec(name: &str, servers: &str, topic: &str, root: &str) -> TaskSpec {
    TaskSpec {
        name: name.to_string(),
        source: SourceSpec::Kafka(KafkaSourceConfig::new(servers, topic)),
        sink: LakehouseSinkConfig::new(root, "bench", name),
        columns: columns(),
        error_policy: rtsync_core::ErrorPolicy::Fail,
        commit_interval: Duration::from_secs(1),
        max_buffered_rows: rtsync_engine::DEFAULT_MAX_BUFFERED_ROWS,
        max_buffered_bytes: rtsync_engine::DEFAULT_MAX_BUFFERED_BYTES,
    }
}

async fn sync_until(
    spec: &TaskSpec,
    rows: u64,
    metrics: Arc<TaskMetrics>,
    during: impl FnOnce() + Send + 'static,
) -> Duration {
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let task = {
        let spec = spec.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move { run_task(&spec, RunOptions { metrics, shutdown, retry: false }).await })
    };
    let side = std::thread::spawn(during);
    let elapsed = loop {
        if metrics.rows_out.load(Ordering::Relaxed) >= rows {
            break started.elapsed();
        }
        if task.is_finished() {
            panic!("task ended early: {:?}", task.await);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    side.join().expect("producer thread");
    let _ = stop.send(true);
    task.await.expect("join").expect("task");
    elapsed
}

/// Drains `messages` messages of `topic` from the beginning with a bare `BaseConsumer` built
/// from the source's own client settings; how long it took and the payload bytes seen.
fn bare_consume(servers: &str, topic: &str, messages: u64) -> (Duration, u64) {
    let source = KafkaSource::new("bare", KafkaSourceConfig::new(servers, topic)).expect("source config");
    let started = Instant::now();
    let consumer: BaseConsumer = source.client_config().create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let (mut seen, mut bytes) = (0u64, 0u64);
    while seen < messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                seen += 1;
                bytes += msg.payload().map_or(0, <[u8]>::len) as u64;
            }
            Some(Err(err)) => panic!("bare consumer: {err}"),
            None => {}
        }
    }
    (started.elapsed(), bytes)
}

#[tokio::main]
async fn main() {
    let messages: u64 = arg("--messages", 2_000_000);
    let rate: u64 = arg("--rate", 50_000);
    let seconds: u64 = arg("--seconds", 20);
    let _mock;
    let servers = match std::env::var("RTSYNC_KAFKA_BOOTSTRAP") {
        Ok(s) => s,
        Err(_) => {
            let cluster = MockCluster::new(1).expect("mock cluster");
            let s = cluster.bootstrap_servers();
            _mock = cluster;
            s
        }
    };
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &servers).create().expect("admin");
    let stamp = std::process::id();
    let topic1 = format!("bench_tp_{stamp}");
    let topic2 = format!("bench_fresh_{stamp}");
    for t in [&topic1, &topic2] {
        let r = admin
            .create_topics(&[NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))], &AdminOptions::new())
            .await
            .expect("create");
        for x in r {
            x.expect("create topic");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8 path").to_string();

    eprintln!("producing {messages} messages to {servers} …");
    let bytes = produce(&servers, &topic1, 0, messages, None);
    let avg = bytes as f64 / messages as f64;
    reset_peak_rss();
    let rss_before = peak_rss_mib();
    let metrics = Arc::new(TaskMetrics::default());
    let elapsed = sync_until(&spec("throughput", &servers, &topic1, &root), messages, metrics.clone(), || {}).await;
    let secs = elapsed.as_secs_f64();
    let s = metrics.snapshot();
    let ours = messages as f64 / secs;
    println!(
        "throughput: {messages} messages ({avg:.0} B avg, 8 computed columns) in {secs:.2}s = {ours:.0} msg/s, {:.1} MB/s; {} commits, mean commit latency {:.0} ms",
        bytes as f64 / secs / 1e6,
        s.commits,
        s.commit_latency_ms_total as f64 / s.commits.max(1) as f64
    );
    println!(
        "peak RSS during the throughput phase: {:.0} MiB ({rss_before:.0} MiB at its start, the producer's freed buffers included)",
        peak_rss_mib()
    );

    let (srv, tp) = (servers.clone(), topic1.clone());
    let (bare_elapsed, bare_bytes) =
        tokio::task::spawn_blocking(move || bare_consume(&srv, &tp, messages)).await.expect("bare consumer");
    let bare = messages as f64 / bare_elapsed.as_secs_f64();
    println!(
        "bare librdkafka consumer, same topic and client settings: {messages} messages in {:.2}s = {bare:.0} msg/s, {:.1} MB/s",
        bare_elapsed.as_secs_f64(),
        bare_bytes as f64 / bare_elapsed.as_secs_f64() / 1e6
    );
    println!("rtsync/bare: {:.0} %", 100.0 * ours / bare);

    if seconds == 0 {
        return;
    }

    let total = rate * seconds;
    eprintln!("freshness: producing {total} messages at {rate}/s while syncing …");
    reset_peak_rss();
    let metrics = Arc::new(TaskMetrics::default());
    let (srv, tp) = (servers.clone(), topic2.clone());
    sync_until(&spec("freshness", &servers, &topic2, &root), total, metrics.clone(), move || {
        produce(&srv, &tp, 0, total, Some(rate));
    })
    .await;
    let h = metrics.freshness();
    println!(
        "freshness at {rate} msg/s, commit_interval 1s: p50 {} ms, p99 {} ms over {} rows",
        h.quantile(0.5),
        h.quantile(0.99),
        h.count()
    );
    println!("peak RSS during the freshness phase (producer included): {:.0} MiB", peak_rss_mib());
}
