//! Delta tables on object storage, against the S3 server (moto) and the Azure Storage emulator
//! (azurite) started by `scripts/services.sh`: a Kafka task and a PostgreSQL task write to each
//! store through SIGKILLs and are read back exactly by the independent Python reader;
//! compaction and vacuum run on the store; two copies of one task race on one table and the
//! table ends exactly-once; and a long run of commits keeps the table's files bounded while
//! every read sees each row once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/cells.rs"]
mod cells;
mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rtsync_core::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use rtsync_core::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use rtsync_core::{Checkpoint, ErrorKind, Sink};
use rtsync_sink_lakehouse::{DeltaSink, LakehouseSinkConfig, maintenance, query_table};

/// A place tables go: a root URI (or local directory) and its storage options.
#[derive(Clone, Debug)]
struct Store {
    root: String,
    options: HashMap<String, String>,
}

impl Store {
    /// The store named by `RTSYNC_<KIND>_ROOT` and `RTSYNC_<KIND>_OPTIONS` (`scripts/services.sh
    /// env`), under a prefix of its own.
    fn from_env(kind: &str) -> Store {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run `scripts/services.sh start s3 azurite` and `eval \"$(scripts/services.sh env)\"` first")
            })
        };
        let root = var(&format!("RTSYNC_{kind}_ROOT"));
        let options = var(&format!("RTSYNC_{kind}_OPTIONS"))
            .split_whitespace()
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        Store { root: format!("{root}/{}", unique("lake")), options }
    }

    fn local(dir: &Path) -> Store {
        Store { root: dir.join("lake").to_str().unwrap().to_string(), options: HashMap::new() }
    }

    fn table(&self, name: &str) -> LakehouseSinkConfig {
        LakehouseSinkConfig::new(&self.root, "public", name).with_storage_options(self.options.clone())
    }

    /// The `[sink]` lines naming this store.
    fn sink_toml(&self, table: &str) -> String {
        let options: Vec<String> = self.options.iter().map(|(k, v)| format!("{k:?} = {v:?}")).collect();
        format!(
            "root = {:?}\nschema = \"public\"\ntable = {table:?}\nstorage_options = {{ {} }}\n",
            self.root,
            options.join(", ")
        )
    }
}

/// `rtsync run SPEC` with the instance-metadata probe of the cloud SDKs turned off.
fn run_task(spec: &Path, log: &Path) -> Child {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_rtsync"))
        .args(["run", spec.to_str().unwrap(), "--progress", "never"])
        .env("RTSYNC_LOG", "info")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("spawn rtsync")
}

// ---------------------------------------------------------------------------------------------
// Kafka → store, SIGKILLed
// ---------------------------------------------------------------------------------------------

const KAFKA_MESSAGES: u64 = 3000;

fn kafka_spec(
    name: &str,
    servers: &str,
    topic: &str,
    store: &Store,
    commit_interval: &str,
    sink_extra: &str,
) -> String {
    format!(
        r#"name = "{name}"
commit_interval = "{commit_interval}"
[source]
type = "kafka"
bootstrap_servers = "{servers}"
topic = "{topic}"
start_offset = "earliest"
properties = {{ "session.timeout.ms" = "6000" }}
[sink]
{sink}{sink_extra}
[[columns]]
name = "id"
expr = "$.id"
type = "bigint"
[[columns]]
name = "name"
expr = "$.name"
type = "string"
"#,
        sink = store.sink_toml(name),
    )
}

async fn kafka_task_survives_sigkills(store: Store) {
    let servers = bootstrap();
    let topic = unique("lake_orders");
    let name = unique("lakesync");
    create_topic(&servers, &topic, 2).await;
    let dir = tempfile::tempdir().unwrap();
    // Maintenance on a short leash: compactions and vacuums happen while the task is killed.
    let extra = "compact_min_files = 4\ncompact_interval = \"1s\"\nvacuum_retention = \"0s\"\n";
    let spec = write_spec(dir.path(), &name, &kafka_spec(&name, &servers, &topic, &store, "300ms", extra));
    let log = dir.path().join("rtsync.log");
    let table = store.table(&name);

    let (s, t) = (servers.clone(), topic.clone());
    let producing = std::thread::spawn(move || {
        let p = producer(&s);
        for i in 0..KAFKA_MESSAGES {
            let value = format!("{{\"id\": {i}, \"name\": \"n{i} ü\"}}");
            send(&p, &t, (i % 2) as i32, &i.to_string(), Some(value.as_bytes()), None);
            if i % 100 == 99 {
                p.poll(Duration::ZERO);
                std::thread::sleep(Duration::from_millis(150));
            }
        }
        flush(&p);
    });
    let mut child = run_task(&spec, &log);
    for kill_after in [1800u64, 2600, 1500] {
        std::thread::sleep(Duration::from_millis(kill_after));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        child = run_task(&spec, &log);
    }
    producing.join().unwrap();
    let landed = wait_rows(&table, KAFKA_MESSAGES, Duration::from_secs(240)).await;
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "rtsync exited with {status}; log:\n{log_text}");
    assert_eq!(landed, KAFKA_MESSAGES, "rows landed; log:\n{log_text}");
    assert_eq!(log_text.matches("kafka source opened").count(), 4, "one start per run");

    // The independent reader, with the store's options, finds every message once.
    let expect_rows = |read: &serde_json::Value| {
        let rows = read["rows"].as_object().unwrap();
        assert_eq!(rows.len() as u64, KAFKA_MESSAGES);
        for i in 0..KAFKA_MESSAGES {
            assert_eq!(rows[&i.to_string()]["name"], format!("n{i} ü"), "message {i}");
        }
    };
    expect_rows(&cells::read_delta(&table, "id"));

    // Compaction and vacuum on the store: one file left, the replaced ones deleted, the rows
    // the same.
    maintenance::optimize(&table).await.unwrap();
    let info = maintenance::table_info(&table).await.unwrap();
    assert_eq!(info.active_files, 1, "{info:?}");
    assert!(info.last_compaction_ms.is_some(), "{info:?}");
    // the dry run names the files the vacuum deletes (paths relative to the table in one, to
    // the store in the other: compared by file name)
    let names = |files: Vec<String>| {
        let mut names: Vec<String> = files.iter().map(|f| f.rsplit('/').next().unwrap().to_string()).collect();
        names.sort();
        names
    };
    let listed = names(maintenance::vacuum(&table, Some(Duration::ZERO), true).await.unwrap());
    let deleted = names(maintenance::vacuum(&table, Some(Duration::ZERO), false).await.unwrap());
    assert_eq!(listed, deleted);
    let info = maintenance::table_info(&table).await.unwrap();
    assert!(info.last_vacuum_ms.is_some(), "{info:?}");
    expect_rows(&cells::read_delta(&table, "id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_s3_survives_sigkills_exactly_once() {
    kafka_task_survives_sigkills(Store::from_env("S3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_azure_survives_sigkills_exactly_once() {
    kafka_task_survives_sigkills(Store::from_env("AZURE")).await;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL → store, SIGKILLed
// ---------------------------------------------------------------------------------------------

async fn pg_source_rows(client: &tokio_postgres::Client, table: &str) -> BTreeMap<i64, OrderRow> {
    let rows = client.query(&format!("SELECT id, name, qty, price::text FROM {table}"), &[]).await.unwrap();
    rows.iter()
        .map(|r| {
            (r.get::<_, i64>(0), (r.get::<_, String>(1), r.get::<_, Option<i64>>(2), r.get::<_, Option<String>>(3)))
        })
        .collect()
}

async fn pg_churn(client: &tokio_postgres::Client, table: &str, round: i64) {
    let base = 1_000_000 + round * 1000;
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO {table} (id, name, qty, price) SELECT g, 'new-' || g, g % 7, (g % 1000) / 4.0 FROM generate_series({base}, {base} + 19) g;
             UPDATE {table} SET qty = qty + 1, name = name || '+' WHERE id % 97 = {m};
             DELETE FROM {table} WHERE id % 89 = {m};
             UPDATE {table} SET id = id + 5000000 WHERE id = {base} + 7;
             COMMIT;",
            m = round % 89
        ))
        .await
        .unwrap();
}

async fn postgres_task_survives_sigkills(store: Store) {
    let client = pg_connect().await;
    let source_table = unique("lake_orders").to_lowercase();
    client
        .batch_execute(&format!(
            "CREATE TABLE {source_table} (id bigint PRIMARY KEY, name text NOT NULL, qty bigint, price numeric(12,2));
             INSERT INTO {source_table} SELECT g, 'row-' || g || ' ü', g % 10, (g % 5000) / 8.0 FROM generate_series(1, 8000) g;"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = unique("lakepg");
    let body = format!(
        "name = \"{name}\"\ncommit_interval = \"500ms\"\n[source]\ntype = \"postgresql\"\nurl = \"{}\"\n\
         schema = \"public\"\ntable = \"{source_table}\"\nsnapshot_chunk_rows = 2000\n[sink]\n{}\
         compact_min_files = 4\ncompact_interval = \"1s\"\nvacuum_retention = \"0s\"\n",
        pg_url(),
        store.sink_toml(&source_table)
    );
    let spec = write_spec(dir.path(), &name, &body);
    let log = dir.path().join("run.log");
    let target = store.table(&source_table);

    let mut child = run_task(&spec, &log);
    let mut round = 0;
    for wait_ms in [1500u64, 2500, 2000] {
        let until = Instant::now() + Duration::from_millis(wait_ms);
        while Instant::now() < until {
            pg_churn(&client, &source_table, round).await;
            round += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        child = run_task(&spec, &log);
    }
    for _ in 0..3 {
        pg_churn(&client, &source_table, round).await;
        round += 1;
    }
    let expected = pg_source_rows(&client, &source_table).await;
    converge_then_stop(&target, &expected, || order_rows(&target), &mut child, &log).await;

    // The independent reader agrees, row by row.
    let read = cells::read_delta(&target, "id");
    let rows = read["rows"].as_object().unwrap();
    assert_eq!(rows.len(), expected.len());
    for (id, (name, qty, price)) in &expected {
        let row = &rows[&id.to_string()];
        assert_eq!(row["name"], name.as_str(), "row {id}");
        assert_eq!(row["qty"].as_str().map(str::to_string), qty.map(|q| q.to_string()), "row {id}");
        assert_eq!(row["price"].as_str(), price.as_deref(), "row {id}");
    }

    let rtsync::SourceSpec::Postgresql(config) = rtsync::TaskSpec::load(&spec).unwrap().source else { unreachable!() };
    rtsync_source_postgres::drop_replication_objects(&config, &name).await.unwrap();
    client.batch_execute(&format!("DROP TABLE {source_table}")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_s3_survives_sigkills_exactly() {
    postgres_task_survives_sigkills(Store::from_env("S3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_azure_survives_sigkills_exactly() {
    postgres_task_survives_sigkills(Store::from_env("AZURE")).await;
}

// ---------------------------------------------------------------------------------------------
// Two copies of one task race on one table
// ---------------------------------------------------------------------------------------------

const TWIN_ROWS_PER_COMMIT: i64 = 5;
const TWIN_TARGET: i64 = 400;

fn twin_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("writer", DataType::Utf8, true)]))
}

/// The source both copies read: row `id` sits at position `id`, so a copy that resumes from
/// the table's checkpoint writes exactly the rows after it.
fn twin_rows(from: i64, writer: &str) -> RecordBatch {
    let ids: Vec<i64> = (from..from + TWIN_ROWS_PER_COMMIT).collect();
    let writers = vec![writer; ids.len()];
    RecordBatch::try_new(twin_schema(), vec![Arc::new(Int64Array::from(ids)), Arc::new(StringArray::from(writers))])
        .unwrap()
}

/// One copy of the task: open (resume from the table), write and commit until the source is
/// done; a fenced copy stops and, like a supervisor that still owns the task, opens again.
/// Returns how often it was fenced.
async fn twin(config: LakehouseSinkConfig, writer: &'static str, start: Arc<tokio::sync::Barrier>) -> u32 {
    let mut fenced = 0;
    let mut first = true;
    loop {
        let mut sink = DeltaSink::new("twin_task", config.clone()).unwrap().with_checkpoint_interval(7);
        let checkpoint = match sink.open(twin_schema()).await {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::Transient || e.kind() == ErrorKind::Sink => {
                // both copies may race to create the table: the loser opens again
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => panic!("{writer}: open failed: {e}"),
        };
        if first {
            // both copies hold the same checkpoint before either commits: a race is certain
            start.wait().await;
            first = false;
        }
        let (mut epoch, mut position) = checkpoint.map_or((0, 0), |c| (c.epoch, c.position["next"].as_i64().unwrap()));
        loop {
            if position >= TWIN_TARGET {
                return fenced;
            }
            sink.write(twin_rows(position, writer)).await.unwrap();
            epoch += 1;
            position += TWIN_ROWS_PER_COMMIT;
            let checkpoint =
                Checkpoint { task: "twin_task".into(), epoch, position: serde_json::json!({ "next": position }) };
            match sink.commit(&checkpoint).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Fenced => {
                    fenced += 1;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Transient => break,
                Err(e) => panic!("{writer}: commit of epoch {epoch} failed: {e}"),
            }
        }
    }
}

async fn twins_race(store: Store) {
    let config = store.table(&unique("twins"));
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let a = tokio::spawn(twin(config.clone(), "a", start.clone()));
    let b = tokio::spawn(twin(config.clone(), "b", start));
    let fenced = a.await.unwrap() + b.await.unwrap();
    assert!(fenced >= 1, "the copies raced for the same epoch: one was fenced");

    let mut ids = Vec::new();
    let mut writers = BTreeMap::new();
    for b in query_table(&config, "SELECT id, writer FROM t ORDER BY id").await.unwrap() {
        let id = b.column(0).as_primitive::<Int64Type>();
        let w = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            ids.push(id.value(i));
            *writers.entry(w.value(i).to_string()).or_insert(0) += 1;
        }
    }
    assert_eq!(
        ids,
        (0..TWIN_TARGET).collect::<Vec<_>>(),
        "every row once (fenced {fenced} times; by writer {writers:?})"
    );
    // the table's checkpoint is where its rows end
    let mut sink = DeltaSink::new("twin_task", config.clone()).unwrap();
    let checkpoint = sink.open(twin_schema()).await.unwrap().unwrap();
    assert_eq!(checkpoint.position["next"].as_i64(), Some(TWIN_TARGET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_writers_on_a_local_table_end_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    twins_race(Store::local(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_writers_on_s3_end_exactly_once() {
    twins_race(Store::from_env("S3")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_writers_on_azure_end_exactly_once() {
    twins_race(Store::from_env("AZURE")).await;
}

// ---------------------------------------------------------------------------------------------
// Long run: hundreds of commits into one table
// ---------------------------------------------------------------------------------------------

const LONG_RUN_WAVES: u64 = 300;

/// Hundreds of commits of a Kafka task (one message per commit at least: the next is produced
/// once the previous one is visible); every read taken meanwhile, compactions included, holds
/// each row once and no gap; the table ends with a bounded number of files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_commits_keep_files_bounded_and_reads_exact() {
    let servers = bootstrap();
    let topic = unique("lake_long");
    let name = unique("lakelong");
    create_topic(&servers, &topic, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(dir.path());
    // (vacuum keeps its default retention: readers of older snapshots still read replaced files)
    let extra = "compact_min_files = 8\ncompact_interval = \"2s\"\n";
    let spec = write_spec(dir.path(), &name, &kafka_spec(&name, &servers, &topic, &store, "100ms", extra));
    let log = dir.path().join("rtsync.log");
    let table = store.table(&name);
    let mut child = run_task(&spec, &log);
    let p = producer(&servers);
    let mut reads = 0u64;
    for i in 0..LONG_RUN_WAVES {
        let value = format!("{{\"id\": {i}, \"name\": \"n{i}\"}}");
        send(&p, &topic, 0, &i.to_string(), Some(value.as_bytes()), None);
        flush(&p);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = match read_ids(&table).await {
                Some(ids) => ids,
                // the table is not there until the first commit
                None if i == 0 => Vec::new(),
                None => panic!("the table could not be read after message {i}"),
            };
            reads += 1;
            // one partition, committed in order: a prefix of the ids, each once
            assert_eq!(seen, (0..seen.len() as i64).collect::<Vec<_>>(), "read {reads} after message {i}");
            if seen.len() as u64 == i + 1 {
                break;
            }
            assert!(Instant::now() < deadline, "message {i} not visible within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "rtsync exited with {status}; log:\n{log_text}");
    let info = maintenance::table_info(&table).await.unwrap();
    assert!(info.version >= LONG_RUN_WAVES, "one commit per message at least: {info:?}");
    assert!(info.last_compaction_ms.is_some(), "{info:?}");
    assert!(info.active_files < LONG_RUN_WAVES / 4, "files stay bounded: {info:?} after {} commits", info.version);
    eprintln!("long run: {info:?}, {reads} reads");
}

async fn read_ids(table: &LakehouseSinkConfig) -> Option<Vec<i64>> {
    let batches = query_table(table, "SELECT id FROM t ORDER BY id").await.ok()?;
    Some(batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect())
}
