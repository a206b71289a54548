//! `rtsync demo`: the whole pipeline with no external service.
//!
//! librdkafka's in-process mock cluster plays the broker. A producer thread writes sample
//! JSON orders (nested objects, arrays, unicode, decimals, and a few malformed messages) at a
//! steady rate while the task syncs them into `<root>/public/demo_orders`; when every message
//! has landed the task stops cleanly and the demo reads the table back.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rtsync_core::{ErrorKind, ErrorPolicy, SyncError, SyncResult};
use rtsync_engine::TaskMetrics;
use rtsync_mapping::ColumnSpec;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use rtsync_source_kafka::{KafkaSourceConfig, StartOffset};
use tokio::sync::watch;

use crate::progress::thousands;
use rtsync_control::{RunOptions, SourceSpec, TaskSpec, run_task};

pub const DEMO_TASK: &str = "demo_orders";
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
/// Every this many messages one is not JSON, to show the dead-letter table.
const MALFORMED_EVERY: u64 = 10_000;

pub struct DemoOptions {
    pub root: String,
    pub messages: u64,
    /// How long the producer spreads the messages over.
    pub produce_over: Duration,
}

/// What the demo measured.
pub struct DemoReport {
    pub produced: u64,
    pub rows_in_table: u64,
    pub dead_lettered: u64,
    pub elapsed: Duration,
    pub freshness_p50_ms: u64,
    pub freshness_p99_ms: u64,
    pub table: String,
}

/// The sample order number `i` as JSON; malformed every `MALFORMED_EVERY` messages.
pub fn sample_order(i: u64) -> String {
    if i % MALFORMED_EVERY == MALFORMED_EVERY - 1 {
        return format!("{{\"id\": {i}, \"customer\": oops");
    }
    let cities = ["Zürich", "東京", "São Paulo", "Reykjavík", "Kraków"];
    let names = ["Ada", "Grace", "Linus", "Zoë", "Søren 🚀"];
    let city = cities[(i % 5) as usize];
    let name = names[(i % 5) as usize];
    let qty = i % 7 + 1;
    let cents = (i * 137) % 100_000;
    let paid = !i.is_multiple_of(3);
    let coupon = if i.is_multiple_of(4) { "null".to_string() } else { format!("\"C{}\"", i % 50) };
    let secs = 1_764_000_000 + i;
    let created = chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    format!(
        "{{\"id\":{i},\"customer\":{{\"name\":\"{name}\",\"address\":{{\"city\":\"{city}\"}}}},\
         \"items\":[{{\"sku\":\"SKU-{}\",\"qty\":{qty}}},{{\"sku\":\"SKU-{}\",\"qty\":1}}],\
         \"amount\":{}.{:02},\"paid\":{paid},\"coupon\":{coupon},\"created_at\":\"{created}\"}}",
        i % 1000,
        (i + 7) % 1000,
        cents / 100,
        cents % 100
    )
}

/// The demo's columns: eight computed from JSONPath plus the partition and offset.
pub fn demo_columns() -> Vec<ColumnSpec> {
    let col = |name: &str, expr: &str, ty: &str| ColumnSpec { name: name.into(), expr: expr.into(), ty: ty.into() };
    vec![
        col("id", "$.id", "bigint"),
        col("customer", "$.customer.name", "string"),
        col("city", "$.customer.address.city", "string"),
        col("first_sku", "$.items[0].sku", "string"),
        col("first_qty", "$.items[0].qty", "int"),
        col("amount", "$.amount", "decimal(12,2)"),
        col("paid", "$.paid", "boolean"),
        col("coupon", "$.coupon", "string"),
        col("created_at", "$.created_at", "timestamp"),
        col("kafka_partition", "partition", "int"),
        col("kafka_offset", "offset", "bigint"),
    ]
}

fn kafka_err(doing: &str) -> impl Fn(rdkafka::error::KafkaError) -> SyncError + '_ {
    move |e| SyncError::with_source(ErrorKind::Internal, doing.to_string(), e)
}

pub async fn run_demo(opts: DemoOptions) -> SyncResult<DemoReport> {
    let cluster = MockCluster::new(1).map_err(kafka_err("starting the in-process Kafka mock cluster"))?;
    cluster.create_topic(TOPIC, PARTITIONS, 1).map_err(kafka_err("creating the demo topic"))?;
    let servers = cluster.bootstrap_servers();

    let sink = LakehouseSinkConfig::new(&opts.root, "public", DEMO_TASK);
    let spec = TaskSpec {
        name: DEMO_TASK.to_string(),
        source: SourceSpec::Kafka(KafkaSourceConfig {
            start_offset: StartOffset::Earliest,
            ..KafkaSourceConfig::new(&servers, TOPIC)
        }),
        sink: sink.clone(),
        columns: demo_columns(),
        error_policy: ErrorPolicy::DeadLetter,
        commit_interval: Duration::from_secs(1),
        max_buffered_rows: rtsync_engine::DEFAULT_MAX_BUFFERED_ROWS,
        max_buffered_bytes: rtsync_engine::DEFAULT_MAX_BUFFERED_BYTES,
    };
    spec.validate()?;
    // The demo's tables are its own: each run starts them afresh (a new mock cluster has new
    // offsets, which an old checkpoint would not match).
    for table in [&sink, &spec.dead_letter_sink()] {
        let dir = std::path::Path::new(&table.table_location()).to_path_buf();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                SyncError::with_source(
                    ErrorKind::Sink,
                    format!("removing the previous demo table {}", dir.display()),
                    e,
                )
            })?;
        }
    }

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("linger.ms", "5")
        .create()
        .map_err(kafka_err("creating the demo producer"))?;
    let total = opts.messages;
    let spread = opts.produce_over;
    let produce = std::thread::spawn(move || -> Result<(), String> {
        let started = Instant::now();
        let chunk = (total / 50).max(1);
        for i in 0..total {
            let key = (i % 1000).to_string();
            let value = sample_order(i);
            let mut record = BaseRecord::to(TOPIC).key(&key).payload(&value).partition((i % PARTITIONS as u64) as i32);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((err, back)) => {
                        if !matches!(err.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)) {
                            return Err(err.to_string());
                        }
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
            if (i + 1) % chunk == 0 {
                producer.poll(Duration::ZERO);
                // Spread production over `spread` so freshness is measured on a live stream.
                let due = spread.mul_f64((i + 1) as f64 / total as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        producer.flush(Duration::from_secs(30)).map_err(|e| e.to_string())
    });

    let metrics = Arc::new(TaskMetrics::default());
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let task = {
        let spec = spec.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move { run_task(&spec, RunOptions { metrics, shutdown, retry: true }).await })
    };
    // The progress line on a terminal only: in a log file it would be a stream of redraws.
    let progress = std::io::stderr().is_terminal().then(|| crate::progress::spawn(metrics.clone()));
    let deadline = Instant::now() + opts.produce_over + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = metrics.rows_out.load(Ordering::Relaxed) + metrics.dead_lettered.load(Ordering::Relaxed);
        if done >= total || task.is_finished() || Instant::now() > deadline {
            break;
        }
    }
    let _ = stop.send(true);
    let result = task.await.map_err(|e| SyncError::with_source(ErrorKind::Internal, "the demo task panicked", e))?;
    if let Some(progress) = progress {
        progress.abort();
        crate::progress::finish();
    }
    result?;
    let elapsed = started.elapsed();
    produce
        .join()
        .map_err(|_| SyncError::internal("the demo producer panicked"))?
        .map_err(|e| SyncError::internal(format!("producing demo messages failed: {e}")))?;
    drop(cluster);

    let rows_in_table = count(&sink).await?;
    let dead_lettered = count(&spec.dead_letter_sink()).await.unwrap_or(0);
    let snap = metrics.snapshot();
    Ok(DemoReport {
        produced: total,
        rows_in_table,
        dead_lettered,
        elapsed,
        freshness_p50_ms: snap.freshness_p50_ms,
        freshness_p99_ms: snap.freshness_p99_ms,
        table: sink.table_location(),
    })
}

async fn count(table: &LakehouseSinkConfig) -> SyncResult<u64> {
    let batches = query_table(table, "SELECT count(*) AS n FROM t").await?;
    let n = batches
        .first()
        .and_then(|b| b.column(0).as_any().downcast_ref::<rtsync_core::arrow::array::Int64Array>().map(|a| a.value(0)))
        .unwrap_or(0);
    Ok(n as u64)
}

/// Prints what landed: counts, a few rows, the dead letters, freshness.
pub async fn print_report(report: &DemoReport, root: &str) -> SyncResult<()> {
    let sink = LakehouseSinkConfig::new(root, "public", DEMO_TASK);
    println!("table            {}", report.table);
    println!("messages         {} produced", thousands(report.produced));
    println!("rows in table    {}", thousands(report.rows_in_table));
    println!("dead letters     {} (in {}__dlq)", thousands(report.dead_lettered), DEMO_TASK);
    println!(
        "throughput       {} msg/s over {:.1}s (the producer was paced)",
        thousands((report.produced as f64 / report.elapsed.as_secs_f64().max(1e-3)) as u64),
        report.elapsed.as_secs_f64()
    );
    println!(
        "freshness        p50 {} ms, p99 {} ms (message timestamp → Delta commit)",
        report.freshness_p50_ms, report.freshness_p99_ms
    );
    let sample = query_table(
        &sink,
        "SELECT id, customer, city, first_sku, first_qty, amount, paid, coupon, created_at FROM t ORDER BY id LIMIT 5",
    )
    .await?;
    println!("\nfirst rows:\n{}", rtsync_core::arrow::util::pretty::pretty_format_batches(&sample)?);
    let dlq = sink.sibling(format!("{DEMO_TASK}__dlq"));
    if report.dead_lettered > 0 {
        let letters =
            query_table(&dlq, "SELECT \"partition\", \"offset\", reason FROM t ORDER BY \"offset\" LIMIT 3").await?;
        println!("dead letters:\n{}", rtsync_core::arrow::util::pretty::pretty_format_batches(&letters)?);
    }
    Ok(())
}
