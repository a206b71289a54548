//! End-to-end throughput and freshness: Kafka → mapping → Delta, through the real task.
//!
//! Not a test: it prints figures. Run with a broker from `scripts/services.sh`:
//!
//! ```text
//! eval "$(scripts/services.sh env)"
//! cargo bench --workspace --bench kafka_to_delta -- [--messages N] [--rate MSGS_PER_SEC] [--seconds S]
//!     [--no-avro] [--dbz-rows N] [--dbz-changes N] [--kdi PATH]
//! ```
//!
//! Without `RTSYNC_KAFKA_BOOTSTRAP` it uses librdkafka's in-process mock cluster.
//!
//! Every message is produced by a child process (this binary again, `--child-produce`), so the
//! peak RSS printed for a phase (read from /proc, reset before the phase) is the task's own.
//!
//! 1. JSON throughput: N messages of ~300 bytes are produced first, then one task with 8
//!    computed columns syncs them; messages/s and MB/s from the task's start to the commit
//!    holding the last message. Then a bare librdkafka consumer (a `BaseConsumer` with the
//!    source's own client settings, touching each payload and nothing more) drains the same
//!    topic: its rate is the ceiling, and rtsync/bare is the figure.
//! 2. With `--kdi PATH`: kafka-delta-ingest (a binary built from its public repository) ingests
//!    the same topic into a Delta table created with the same 8 columns, with the same 1 s
//!    latency; timed from its start until the table's log counts N rows.
//! 3. Avro (unless `--no-avro`): the same orders as Avro records in the Confluent wire format,
//!    schema from a Schema Registry served on loopback: once with the record's own typed
//!    columns (nested structs and lists), once with the same 8 JSONPath columns.
//! 4. Debezium upserts (unless `--dbz-rows 0`): `--dbz-rows` (1,000,000) snapshot events load
//!    an upsert table keyed by id, then the task stops while `--dbz-changes` (500,000) change
//!    events are written (70 % updates of random rows, 20 % inserts, 10 % deletes with their
//!    tombstones), and the task catches up; the table is checked (count, sum of ids, sum of a
//!    column the updates change) against the events.
//! 5. Freshness (unless `--seconds 0`): messages at `--rate` for `--seconds` while the task runs
//!    with a 1 s commit interval; p50/p99 of (commit time − message timestamp) from the engine's
//!    per-row histogram.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use apache_avro::Schema as AvroSchema;
use apache_avro::types::Value as Avro;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rtsync::{RunOptions, SourceSpec, TaskSpec, run_task};
use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_engine::TaskMetrics;
use rtsync_mapping::ColumnSpec;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use rtsync_source_kafka::{KafkaSource, KafkaSourceConfig, MessageFormat, SchemaRegistryConfig};
use tokio::sync::watch;

mod common;
use common::{arg, flag, log_since, peak_rss_mib, reset_peak_rss, rss_mib};

#[path = "../tests/common/registry.rs"]
mod registry;

const PARTITIONS: i32 = 3;
const REGISTRY_AUTH: (&str, &str) = ("bench", "bench-secret");

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

/// The same order as an Avro record (amount a decimal, created_at timestamp-micros).
const ORDER_AVRO: &str = r#"{"type": "record", "name": "Order", "namespace": "bench", "fields": [
  {"name": "id", "type": "long"},
  {"name": "type", "type": "string"},
  {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
    {"name": "id", "type": "long"}, {"name": "name", "type": "string"}, {"name": "tier", "type": "string"},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
      {"name": "city", "type": "string"}, {"name": "zip", "type": "string"}]}}]}},
  {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
    {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}, {"name": "price", "type": "double"}]}}},
  {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}},
  {"name": "currency", "type": "string"},
  {"name": "paid", "type": "boolean"},
  {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-micros"}}]}"#;

fn avro_order(i: u64) -> Avro {
    let s = |v: String| Avro::String(v);
    let cents = (i % 100_000) as i64 * 100 + (i % 100) as i64;
    let created = 1_764_072_000_000_000i64 + (((i / 60) % 60) * 60 + i % 60) as i64 * 1_000_000 + 123_000;
    Avro::Record(vec![
        ("id".into(), Avro::Long(i as i64)),
        ("type".into(), s("order_created".into())),
        (
            "customer".into(),
            Avro::Record(vec![
                ("id".into(), Avro::Long((i % 10_000) as i64)),
                ("name".into(), s(format!("customer-{}", i % 10_000))),
                ("tier".into(), s("gold".into())),
                (
                    "address".into(),
                    Avro::Record(vec![("city".into(), s("Zürich".into())), ("zip".into(), s("8001".into()))]),
                ),
            ]),
        ),
        (
            "items".into(),
            Avro::Array(vec![
                Avro::Record(vec![
                    ("sku".into(), s(format!("SKU-{:05}", i % 100_000))),
                    ("qty".into(), Avro::Int((i % 9 + 1) as i32)),
                    ("price".into(), Avro::Double(19.99)),
                ]),
                Avro::Record(vec![
                    ("sku".into(), s("SKU-00042".into())),
                    ("qty".into(), Avro::Int(1)),
                    ("price".into(), Avro::Double(5.5)),
                ]),
            ]),
        ),
        ("amount".into(), Avro::Decimal(apache_avro::Decimal::from(cents.to_be_bytes().to_vec()))),
        ("currency".into(), s("CHF".into())),
        ("paid".into(), Avro::Boolean(!i.is_multiple_of(3))),
        ("created_at".into(), Avro::TimestampMicros(created)),
    ])
}

/// The 8 computed columns: over the JSON text, or over the Avro record rendered as JSON.
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

/// The Debezium phase's change plan: which row each change event touches.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DbzOp {
    /// Snapshot read of row `id` (qty = id % 1000).
    Read,
    Update(i64),
    Insert,
    Delete,
}

/// Change `j` of the Debezium change phase over a table loaded with rows `0..rows`: 70 %
/// updates of random rows that are never deleted (ids not divisible by 10), 20 % inserts of
/// new ids, 10 % deletes of distinct ids divisible by 10 (a stride permutation).
fn dbz_change(j: u64, rows: u64) -> (u64, DbzOp) {
    let mix = |x: u64| {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    match j % 10 {
        0 => {
            let tens = (rows / 10).max(1);
            (10 * ((j / 10).wrapping_mul(7_919) % tens), DbzOp::Delete)
        }
        1 | 2 => (rows + j, DbzOp::Insert),
        _ => {
            let mut id = mix(j) % rows;
            if id.is_multiple_of(10) {
                id = (id + 1).min(rows - 1);
            }
            (id, DbzOp::Update((j % 997) as i64))
        }
    }
}

fn dbz_row(id: u64, qty: i64) -> String {
    format!(
        "{{\"id\":{id},\"customer\":\"customer-{}\",\"city\":\"Zürich\",\"qty\":{qty},\"amount\":\"{}.{:02}\",\"updated_at\":\"2026-11-25T12:{:02}:{:02}.123456Z\"}}",
        id % 10_000,
        id % 100_000,
        id % 100,
        (id / 60) % 60,
        id % 60
    )
}

/// A schemaless Debezium JSON event (key, value; `None` value: the tombstone after a delete).
fn dbz_event(id: u64, op: DbzOp, lsn: u64) -> Vec<(String, Option<String>)> {
    let key = format!("{{\"id\":{id}}}");
    let source = format!("\"source\":{{\"connector\":\"postgresql\",\"db\":\"bench\",\"table\":\"orders\",\"lsn\":{lsn}}}");
    let event = |before: String, after: String, code: &str| {
        format!("{{\"before\":{before},\"after\":{after},\"op\":\"{code}\",{source},\"ts_ms\":1764072000000}}")
    };
    let initial = dbz_row(id, (id % 1000) as i64);
    match op {
        DbzOp::Read => vec![(key, Some(event("null".into(), initial, "r")))],
        DbzOp::Insert => vec![(key, Some(event("null".into(), initial, "c")))],
        DbzOp::Update(qty) => vec![(key, Some(event(initial, dbz_row(id, qty), "u")))],
        DbzOp::Delete => vec![(key.clone(), Some(event(initial, "null".into(), "d"))), (key, None)],
    }
}

/// What a child producer writes.
#[derive(Clone, Copy)]
enum Payload {
    Json,
    Avro { schema_id: u32 },
    /// Snapshot reads of rows `from..from + count`.
    DbzLoad,
    /// Changes `from..from + count` of [`dbz_change`] over a table of `rows` rows.
    DbzChanges { rows: u64 },
}

impl Payload {
    fn args(self) -> Vec<String> {
        match self {
            Payload::Json => vec!["json".into(), "0".into()],
            Payload::Avro { schema_id } => vec!["avro".into(), schema_id.to_string()],
            Payload::DbzLoad => vec!["dbz-load".into(), "0".into()],
            Payload::DbzChanges { rows } => vec!["dbz-changes".into(), rows.to_string()],
        }
    }

    fn parse(kind: &str, n: u64) -> Self {
        match kind {
            "json" => Payload::Json,
            "avro" => Payload::Avro { schema_id: n as u32 },
            "dbz-load" => Payload::DbzLoad,
            "dbz-changes" => Payload::DbzChanges { rows: n },
            other => panic!("unknown payload {other}"),
        }
    }
}

/// Produces `count` messages from index `from` (at `rate` per second when given); the payload
/// bytes. Runs in the child process.
fn produce(servers: &str, topic: &str, payload: Payload, from: u64, count: u64, rate: Option<u64>) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "10")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let avro_schema = AvroSchema::parse_str(ORDER_AVRO).expect("order schema");
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut send = |partition: i32, key: Option<&str>, value: Option<&[u8]>| {
        bytes += value.map_or(0, <[u8]>::len) as u64;
        let mut rec = BaseRecord::<str, [u8]>::to(topic).partition(partition);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    };
    for i in from..from + count {
        let partition = (i % PARTITIONS as u64) as i32;
        match payload {
            Payload::Json => send(partition, None, Some(order(i).as_bytes())),
            Payload::Avro { schema_id } => {
                let mut wire = vec![0u8];
                wire.extend(schema_id.to_be_bytes());
                wire.extend(apache_avro::to_avro_datum(&avro_schema, avro_order(i)).expect("avro datum"));
                send(partition, None, Some(&wire));
            }
            Payload::DbzLoad | Payload::DbzChanges { .. } => {
                let (id, op) = match payload {
                    Payload::DbzChanges { rows } => dbz_change(i, rows),
                    _ => (i, DbzOp::Read),
                };
                for (key, value) in dbz_event(id, op, i) {
                    send((id % PARTITIONS as u64) as i32, Some(&key), value.as_deref().map(str::as_bytes));
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
    producer.flush(Duration::from_secs(300)).expect("flush");
    bytes
}

/// Produces from a child process (this bench binary again), so none of the producer's memory
/// counts in this process's RSS; returns the payload bytes it wrote.
fn produce_in_child(servers: &str, topic: &str, payload: Payload, from: u64, count: u64, rate: Option<u64>) -> u64 {
    let exe = std::env::current_exe().expect("current exe");
    let mut args = vec!["--child-produce".to_string(), servers.into(), topic.into()];
    args.extend(payload.args());
    args.extend([from.to_string(), count.to_string(), rate.unwrap_or(0).to_string()]);
    let out = std::process::Command::new(exe)
        .args(&args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("starting the producer process");
    assert!(out.status.success(), "the producer process failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("the producer's byte count")
}

/// `--child-produce SERVERS TOPIC KIND N FROM COUNT RATE`: this process is a producer.
fn child_produce(args: &[String]) {
    let n = |i: usize| args[i].parse::<u64>().expect("number");
    let payload = Payload::parse(&args[2], n(3));
    let rate = Some(n(6)).filter(|r| *r > 0);
    let bytes = produce(&args[0], &args[1], payload, n(4), n(5), rate);
    println!("{bytes}");
}

fn kafka_source(servers: &str, topic: &str, format: MessageFormat, registry: Option<&str>) -> KafkaSourceConfig {
    let mut source = KafkaSourceConfig::new(servers, topic);
    source.format = format;
    source.schema_registry = registry.map(|url| SchemaRegistryConfig {
        url: url.to_string(),
        basic_auth_user_info: Some(format!("{}:{}", REGISTRY_AUTH.0, REGISTRY_AUTH.1)),
        ssl_ca_location: None,
    });
    source
}

fn spec(name: &str, source: KafkaSourceConfig, columns: Vec<ColumnSpec>, root: &str) -> TaskSpec {
    TaskSpec {
        name: name.to_string(),
        source: SourceSpec::Kafka(source),
        sink: LakehouseSinkConfig::new(root, "bench", name),
        columns,
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

/// Syncs `messages` already produced to `spec`'s topic; prints and returns messages/s.
async fn throughput(what: &str, spec: &TaskSpec, messages: u64, bytes: u64) -> f64 {
    reset_peak_rss();
    let rss_before = rss_mib();
    let metrics = Arc::new(TaskMetrics::default());
    let elapsed = sync_until(spec, messages, metrics.clone(), || {}).await;
    let secs = elapsed.as_secs_f64();
    let s = metrics.snapshot();
    let ours = messages as f64 / secs;
    println!(
        "{what}: {messages} messages ({:.0} B avg) in {secs:.2}s = {ours:.0} msg/s, {:.1} MB/s; {} commits, mean commit latency {:.0} ms; peak RSS {:.0} MiB ({rss_before:.0} MiB before the task)",
        bytes as f64 / messages as f64,
        bytes as f64 / secs / 1e6,
        s.commits,
        s.commit_latency_ms_total as f64 / s.commits.max(1) as f64,
        peak_rss_mib()
    );
    ours
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

/// kafka-delta-ingest on `topic` into a new table of the same 8 columns (created here, as it
/// requires): how long until its log's adds count `messages` rows.
async fn kdi_run(kdi: &str, servers: &str, topic: &str, root: &str, messages: u64) -> Result<Duration, String> {
    let sink = LakehouseSinkConfig::new(root, "bench", "kdi_orders");
    let table = std::path::PathBuf::from(sink.table_location());
    std::fs::create_dir_all(table.join("_delta_log")).map_err(|e| e.to_string())?;
    let field = |name: &str, ty: &str| serde_json::json!({"name": name, "type": ty, "nullable": true, "metadata": {}});
    let schema = serde_json::json!({"type": "struct", "fields": [
        field("id", "long"), field("customer", "string"), field("city", "string"), field("sku", "string"),
        field("price", "double"), field("amount", "decimal(18,2)"), field("created_at", "timestamp"),
        field("paid", "boolean"),
    ]});
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let first = [
        serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
        serde_json::json!({"metaData": {"id": format!("kdi-bench-{now}"), "format": {"provider": "parquet", "options": {}},
            "schemaString": schema.to_string(), "partitionColumns": [], "configuration": {}, "createdTime": now}}),
    ]
    .iter()
    .map(|a| a.to_string() + "\n")
    .collect::<String>();
    std::fs::write(table.join("_delta_log").join(format!("{:020}.json", 0)), first).map_err(|e| e.to_string())?;
    let log = table.with_file_name("kdi.log");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(kdi)
        .args(["ingest", topic, table.to_str().unwrap(), "--kafka", servers, "--consumer_group"])
        .arg(format!("kdi-bench-{now}"))
        .args(["--app_id", "kdi-bench", "--auto_offset_reset", "earliest", "--allowed_latency", "1"])
        // JMESPath over the message as it arrived; the other four columns are its own fields.
        .args(["-t", "customer: customer.name", "-t", "city: customer.address.city"])
        .args(["-t", "sku: items[0].sku", "-t", "price: items[0].price"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{kdi}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    let result = loop {
        let rows = log_since(&sink, 0).rows_added;
        if rows >= messages {
            break Ok(started.elapsed());
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            break Err(format!("exited with {status} after {rows} rows; the end of its log:\n{tail}"));
        }
        if Instant::now() > deadline {
            break Err(format!("kafka-delta-ingest had {rows} of {messages} rows after 30 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill().await;
    result
}

/// `SELECT count(*), sum(id), sum(qty)` of a table, as BIGINTs.
async fn count_sum(table: &LakehouseSinkConfig) -> [i64; 3] {
    let sql = "SELECT CAST(count(*) AS BIGINT), CAST(sum(id) AS BIGINT), CAST(sum(qty) AS BIGINT) FROM t";
    let batches = query_table(table, sql).await.expect("reading the Delta table back");
    let b = &batches[0];
    [0, 1, 2].map(|i| {
        let c = b.column(i).as_primitive::<Int64Type>();
        if c.is_null(0) { 0 } else { c.value(0) }
    })
}

/// What the table must hold after the load of `rows` rows and `changes` changes.
fn dbz_expected(rows: u64, changes: u64) -> [i64; 3] {
    let mut qty: HashMap<u64, i64> = (0..rows).map(|id| (id, (id % 1000) as i64)).collect();
    for j in 0..changes {
        match dbz_change(j, rows) {
            (id, DbzOp::Insert) => {
                qty.insert(id, (id % 1000) as i64);
            }
            (id, DbzOp::Update(q)) => {
                qty.insert(id, q);
            }
            (id, DbzOp::Delete) => {
                qty.remove(&id);
            }
            (_, DbzOp::Read) => unreachable!(),
        }
    }
    [qty.len() as i64, qty.keys().map(|&k| k as i64).sum(), qty.values().sum()]
}

async fn debezium(servers: &str, topic: &str, root: &str, rows: u64, changes: u64) {
    let mut source = kafka_source(servers, topic, MessageFormat::DebeziumJson, None);
    source.key_columns = vec!["id".into()];
    let c = |n: &str, t: &str| ColumnSpec { name: n.into(), expr: format!("$.{n}"), ty: t.into() };
    let columns = vec![
        c("id", "bigint"),
        c("customer", "string"),
        c("city", "string"),
        c("qty", "int"),
        c("amount", "decimal(18,2)"),
        c("updated_at", "timestamp"),
    ];
    let spec = spec("debezium", source, columns, root);
    eprintln!("debezium: producing {rows} snapshot events …");
    let bytes = produce_in_child(servers, topic, Payload::DbzLoad, 0, rows, None);
    throughput("debezium-json snapshot events upserted into an empty table", &spec, rows, bytes).await;
    let events = (0..changes).filter(|j| !matches!(dbz_change(*j, rows).1, DbzOp::Read)).count() as u64;
    eprintln!("debezium: producing {changes} change events (and the deletes' tombstones) while the task is stopped …");
    let bytes = produce_in_child(servers, topic, Payload::DbzChanges { rows }, 0, changes, None);
    throughput(
        &format!("debezium-json changes (70 % updates, 20 % inserts, 10 % deletes) caught up on a {rows}-row table"),
        &spec,
        events,
        bytes,
    )
    .await;
    let got = count_sum(&spec.sink).await;
    let want = dbz_expected(rows, changes);
    assert_eq!(got, want, "the Debezium table (count, sum(id), sum(qty)) differs from the events");
    println!("debezium table checked: {} rows, sum(id) and sum(qty) as the events say", got[0]);
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-produce") {
        child_produce(&args[i + 1..]);
        return;
    }
    common::log_from_env();
    let messages: u64 = arg("--messages", 2_000_000);
    let rate: u64 = arg("--rate", 50_000);
    let seconds: u64 = arg("--seconds", 20);
    let dbz_rows: u64 = arg("--dbz-rows", 1_000_000);
    let dbz_changes: u64 = arg("--dbz-changes", 500_000);
    let kdi: String = arg("--kdi", String::new());
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
    let topic = |what: &str| format!("bench_{what}_{stamp}");
    for t in ["json", "avro", "dbz", "fresh"] {
        let r = admin
            .create_topics(&[NewTopic::new(&topic(t), PARTITIONS, TopicReplication::Fixed(1))], &AdminOptions::new())
            .await
            .expect("create");
        for x in r {
            x.expect("create topic");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8 path").to_string();

    eprintln!("producing {messages} JSON messages to {servers} …");
    let bytes = produce_in_child(&servers, &topic("json"), Payload::Json, 0, messages, None);
    let json_spec = spec("throughput", KafkaSourceConfig::new(&servers, topic("json")), columns(), &root);
    let ours = throughput("JSON, 8 computed columns", &json_spec, messages, bytes).await;

    let (srv, tp) = (servers.clone(), topic("json"));
    let (bare_elapsed, bare_bytes) =
        tokio::task::spawn_blocking(move || bare_consume(&srv, &tp, messages)).await.expect("bare consumer");
    let bare = messages as f64 / bare_elapsed.as_secs_f64();
    println!(
        "bare librdkafka consumer, same topic and client settings: {messages} messages in {:.2}s = {bare:.0} msg/s, {:.1} MB/s",
        bare_elapsed.as_secs_f64(),
        bare_bytes as f64 / bare_elapsed.as_secs_f64() / 1e6
    );
    println!("rtsync/bare: {:.0} %", 100.0 * ours / bare);

    if !kdi.is_empty() {
        eprintln!("kafka-delta-ingest ({kdi}) on the same topic …");
        match kdi_run(&kdi, &servers, &topic("json"), &root, messages).await {
            Ok(took) => {
                let theirs = messages as f64 / took.as_secs_f64();
                println!(
                    "kafka-delta-ingest, same topic and columns, 1 s latency: {messages} rows in {:.2}s = {theirs:.0} msg/s; rtsync/kafka-delta-ingest: {:.1}x",
                    took.as_secs_f64(),
                    ours / theirs
                );
            }
            Err(e) => println!("kafka-delta-ingest: {e}"),
        }
    }

    if !flag("--no-avro") {
        let registry = registry::Registry::start(REGISTRY_AUTH.0, REGISTRY_AUTH.1);
        let schema_id = registry.register(&format!("{}-value", topic("avro")), ORDER_AVRO);
        eprintln!("producing {messages} Avro messages …");
        let bytes = produce_in_child(&servers, &topic("avro"), Payload::Avro { schema_id }, 0, messages, None);
        let source = kafka_source(&servers, &topic("avro"), MessageFormat::Avro, Some(&registry.url));
        let typed = spec("avro_typed", source.clone(), Vec::new(), &root);
        let typed_rate = throughput("Avro, the record's own typed columns", &typed, messages, bytes).await;
        let computed = spec("avro_computed", source, columns(), &root);
        let computed_rate = throughput("Avro, the same 8 computed columns", &computed, messages, bytes).await;
        println!(
            "Avro/JSON: {:.0} % with typed columns, {:.0} % with the 8 computed columns",
            100.0 * typed_rate / ours,
            100.0 * computed_rate / ours
        );
        let sql = "SELECT CAST(count(*) AS BIGINT), CAST(sum(id) AS BIGINT) FROM t";
        for table in [&json_spec.sink, &typed.sink, &computed.sink] {
            let b = &query_table(table, sql).await.expect("reading back")[0];
            let got = [0, 1].map(|i| b.column(i).as_primitive::<Int64Type>().value(0));
            assert_eq!(got, [messages as i64, (messages * (messages - 1) / 2) as i64], "table {}", table.table);
        }
    }

    if dbz_rows > 0 {
        debezium(&servers, &topic("dbz"), &root, dbz_rows, dbz_changes).await;
    }

    if seconds == 0 {
        return;
    }

    let total = rate * seconds;
    eprintln!("freshness: producing {total} messages at {rate}/s while syncing …");
    reset_peak_rss();
    let rss_before = rss_mib();
    let metrics = Arc::new(TaskMetrics::default());
    let (srv, tp) = (servers.clone(), topic("fresh"));
    let fresh = spec("freshness", KafkaSourceConfig::new(&servers, topic("fresh")), columns(), &root);
    sync_until(&fresh, total, metrics.clone(), move || {
        produce_in_child(&srv, &tp, Payload::Json, 0, total, Some(rate));
    })
    .await;
    let h = metrics.freshness();
    println!(
        "freshness at {rate} msg/s, commit_interval 1s: p50 {} ms, p99 {} ms over {} rows; peak RSS {:.0} MiB ({rss_before:.0} MiB before the task)",
        h.quantile(0.5),
        h.quantile(0.99),
        h.count(),
        peak_rss_mib()
    );
}
