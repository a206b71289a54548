//! Shared helpers for the end-to-end tests: the broker started by `scripts/services.sh`,
//! unique topic and table names, producing, running the `rtsync` binary, reading tables.

#![allow(dead_code)]

pub mod mysql;
#[allow(unused_imports)]
pub use mysql::MySqlServer;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};

/// The broker the services script started (`RTSYNC_KAFKA_BOOTSTRAP`).
pub fn bootstrap() -> String {
    std::env::var("RTSYNC_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!("RTSYNC_KAFKA_BOOTSTRAP is not set: run `scripts/services.sh start kafka` and `eval \"$(scripts/services.sh env)\"` first (the README's test command does both)")
    })
}

/// The Python with the `deltalake` package (`RTSYNC_PYTHON`), the independent reader.
pub fn python() -> String {
    std::env::var("RTSYNC_PYTHON").unwrap_or_else(|_| panic!("RTSYNC_PYTHON is not set: run the README's test command"))
}

/// The PostgreSQL the services script started (`RTSYNC_PG_URL`).
pub fn pg_url() -> String {
    std::env::var("RTSYNC_PG_URL").unwrap_or_else(|_| panic!("RTSYNC_PG_URL is not set: run the README's test command"))
}

/// A client of [`pg_url`], its connection driven in the background.
pub async fn pg_connect() -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await.expect("connect to RTSYNC_PG_URL");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A new, empty database on [`pg_url`]'s server, named after `prefix`; its URL (a catalog of
/// one test's own).
pub async fn pg_database(prefix: &str) -> String {
    let name = unique(prefix);
    pg_connect().await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
    let base = pg_url();
    let (server, _db) = base.rsplit_once('/').expect("RTSYNC_PG_URL ends with /DATABASE");
    format!("{server}/{name}")
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

pub async fn create_topic(servers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", servers).create().expect("admin client");
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

pub fn producer(servers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// Sends one message to an explicit partition, waiting for queue room.
pub fn send(producer: &BaseProducer, topic: &str, partition: i32, key: &str, value: Option<&[u8]>, ts_ms: Option<i64>) {
    let mut record = BaseRecord::<str, [u8]>::to(topic).key(key).partition(partition);
    if let Some(v) = value {
        record = record.payload(v);
    }
    if let Some(ts) = ts_ms {
        record = record.timestamp(ts);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, back)) => {
                assert!(
                    matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)),
                    "produce failed: {e}"
                );
                record = back;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

pub fn flush(producer: &BaseProducer) {
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// A spec file in `dir` for a Kafka task.
pub fn write_spec(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}

/// Starts `rtsync run SPEC` as a child process, its output in `log`.
pub fn spawn_run(spec: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_rtsync"))
        .args(["run", spec.to_str().unwrap(), "--progress", "never"])
        .env("RTSYNC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("spawn rtsync")
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

pub fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rtsync did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub async fn count_rows(table: &LakehouseSinkConfig) -> u64 {
    if !table.root.contains("://") && !Path::new(&table.table_location()).join("_delta_log").exists() {
        return 0;
    }
    match query_table(table, "SELECT count(*) FROM t").await {
        Ok(b) => {
            b[0].column(0).as_any().downcast_ref::<rtsync_core::arrow::array::Int64Array>().unwrap().value(0) as u64
        }
        Err(_) => 0,
    }
}

/// Polls the table until it holds `rows` rows.
pub async fn wait_rows(table: &LakehouseSinkConfig, rows: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let n = count_rows(table).await;
        if n >= rows || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs `script` with the independent Python reader; returns its stdout parsed as JSON.
pub fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    // Once the script is done, leave without the interpreter's teardown: the deltalake package
    // can abort there ("terminate called without an active exception") after a good answer.
    let script = format!("{script}\nimport os as _os, sys as _sys\n_sys.stdout.flush()\n_os._exit(0)\n");
    let out = Command::new(python()).arg("-c").arg(&script).args(args).output().expect("python");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("python printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The offsets a consumer group has committed for partitions 0..partitions of `topic`.
pub fn committed_offsets(servers: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(20)).expect("committed offsets");
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            other => panic!("partition {p}: no committed offset ({other:?})"),
        })
        .collect()
}

/// The end of a CDC end-to-end test: waits up to 180 s until the target table holds exactly
/// `expected` (as `target_rows` reads it), stops `rtsync run` with SIGTERM, and asserts a clean
/// exit and every row.
pub async fn converge_then_stop<K, V, F, Fut>(
    target: &LakehouseSinkConfig,
    expected: &std::collections::BTreeMap<K, V>,
    target_rows: F,
    child: &mut Child,
    log: &Path,
) where
    K: Ord + std::fmt::Debug,
    V: PartialEq + std::fmt::Debug,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::collections::BTreeMap<K, V>>,
{
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut got = std::collections::BTreeMap::new();
    while Instant::now() < deadline {
        if count_rows(target).await == expected.len() as u64 {
            got = target_rows().await;
            if &got == expected {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sigterm(child);
    let status = wait_exit(child, Duration::from_secs(60));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "rtsync exited with {status}:\n{text}");
    assert_eq!(got.len(), expected.len(), "row count; log:\n{text}");
    for (id, row) in expected {
        assert_eq!(got.get(id), Some(row), "row {id:?}");
    }
}

/// A CDC `rtsync run` task in `dir`: the spec file, its log, and the target `public.<table>` under
/// `dir/lake`. `options` are the spec's top-level lines (`commit_interval = "500ms"`), `source`
/// the body of its `[source]` section.
pub struct CdcTask {
    pub spec: PathBuf,
    pub log: PathBuf,
    pub target: LakehouseSinkConfig,
}

pub fn cdc_task(dir: &Path, name: &str, options: &str, source: &str, table: &str) -> CdcTask {
    let root = dir.join("lake");
    let body = format!(
        "name = \"{name}\"\n{options}\n[source]\n{source}\n\
         [sink]\nroot = \"{}\"\nschema = \"public\"\ntable = \"{table}\"\n",
        root.display()
    );
    CdcTask {
        spec: write_spec(dir, name, &body),
        log: dir.join("run.log"),
        target: LakehouseSinkConfig::new(root.to_str().unwrap(), "public", table),
    }
}

/// `name, qty, price` of the CDC end-to-end tests' `orders` tables (price as its decimal text).
pub type OrderRow = (String, Option<i64>, Option<String>);

/// The target's orders by id; an id there twice fails the test.
pub async fn order_rows(table: &LakehouseSinkConfig) -> std::collections::BTreeMap<i64, OrderRow> {
    use rtsync_core::arrow::array::{Array, AsArray};
    use rtsync_core::arrow::datatypes::{Decimal128Type, Int64Type};
    let mut out = std::collections::BTreeMap::new();
    for b in query_table(table, "SELECT id, name, qty, price FROM t").await.unwrap() {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let names = b.column(1).as_string::<i32>();
        let qty = b.column(2).as_primitive::<Int64Type>();
        let price = b.column(3).as_primitive::<Decimal128Type>();
        for i in 0..b.num_rows() {
            let p = price.is_valid(i).then(|| {
                let v = price.value(i);
                format!("{}.{:02}", v / 100, (v % 100).abs())
            });
            let prev = out.insert(ids.value(i), (names.value(i).to_string(), qty.is_valid(i).then(|| qty.value(i)), p));
            assert!(prev.is_none(), "id {} twice in the target", ids.value(i));
        }
    }
    out
}

/// Edits a Delta table as a writer that is not rtsync, in three commits: sets `column` of row
/// `update` to 'tampered', deletes row `delete`, and appends a copy of row `copy` with key `extra`
/// (`[update, delete, copy, extra]`; the key column is `id`).
pub fn tamper_delta(location: &str, column: &str, [update, delete, copy, extra]: [i64; 4]) {
    const TAMPER: &str = r#"
import sys, json
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder, write_deltalake
path, column, update, delete, copy, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
DeltaTable(path).update(updates={column: "'tampered'"}, predicate=f"id = {update}")
DeltaTable(path).delete(f"id = {delete}")
# QueryBuilder applies deletion vectors (to_pyarrow_table refuses merge-on-read tables)
read = QueryBuilder().register("t", DeltaTable(path)).execute(f"SELECT * FROM t WHERE id = {copy}")
row = pa.RecordBatchReader.from_stream(read).read_all()
i = row.schema.get_field_index("id")
row = row.set_column(i, row.schema.field(i), pa.array([extra], type=row.schema.field(i).type))
write_deltalake(path, row, mode="append")
print(json.dumps({"version": DeltaTable(path).version()}))
"#;
    let args = [update, delete, copy, extra].map(|k| k.to_string());
    let out = python_json(TAMPER, &[location, column, &args[0], &args[1], &args[2], &args[3]]);
    assert!(out["version"].as_i64().unwrap_or(0) > 0, "{out}");
}
