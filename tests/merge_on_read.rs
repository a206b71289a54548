//! Merge-on-read upserts at the sink: a seeded random workload of inserts, updates, deletes,
//! primary-key changes, TOAST-unchanged values, a truncate and a column added at the source,
//! applied commit by commit, with restarts (the key index caught up, lost, or behind the
//! table), a compaction and background purges in between. After every few commits the table
//! is read back by rtsync's own reader and by three independent ones that apply deletion
//! vectors (Python `deltalake` QueryBuilder, polars and DuckDB's delta extension), and
//! compared row by row with an
//! oracle that applied the same changes to a map.
//!
//! The seed is printed; `RTSYNC_MOR_SEED=<seed>` replays a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtsync_core::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use rtsync_core::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use rtsync_core::{OP_COLUMN, UNCHANGED_COLUMN, before_key_column};
use rtsync_sink_lakehouse::{ApplyMode, Checkpoint, DeltaSink, LakehouseSinkConfig, Sink, query_table};

const READER: &str = include_str!("common/delta_rows.py");

/// A row as stored: name, big, extra.
type Stored = (Option<String>, Option<String>, Option<i64>);

/// One change row: key, old key (a key change), name, big (None + unchanged: not sent), op.
struct Change {
    id: i64,
    before: Option<i64>,
    name: Option<String>,
    big: Option<String>,
    big_unchanged: bool,
    extra: Option<i64>,
    op: &'static str,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn schema(extra: bool) -> SchemaRef {
    let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let mut fields = vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("big", DataType::Utf8, true),
    ];
    if extra {
        fields.push(Field::new("extra", DataType::Int64, true));
    }
    fields.extend([
        Field::new(OP_COLUMN, DataType::Utf8, false),
        Field::new(UNCHANGED_COLUMN, list, true),
        Field::new(before_key_column("id"), DataType::Int64, true),
    ]);
    Arc::new(Schema::new(fields))
}

fn batch(changes: &[Change], extra: bool) -> RecordBatch {
    let mut unchanged = ListBuilder::new(StringBuilder::new());
    for c in changes {
        if c.big_unchanged {
            unchanged.values().append_value("big");
            unchanged.append(true);
        } else {
            unchanged.append(false);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(changes.iter().map(|c| c.id).collect::<Vec<_>>())),
        Arc::new(StringArray::from(changes.iter().map(|c| c.name.clone()).collect::<Vec<_>>())),
        Arc::new(StringArray::from(changes.iter().map(|c| c.big.clone()).collect::<Vec<_>>())),
    ];
    if extra {
        columns.push(Arc::new(Int64Array::from(changes.iter().map(|c| c.extra).collect::<Vec<_>>())));
    }
    columns.push(Arc::new(StringArray::from(changes.iter().map(|c| c.op).collect::<Vec<_>>())));
    columns.push(Arc::new(unchanged.finish()));
    columns.push(Arc::new(Int64Array::from(changes.iter().map(|c| c.before).collect::<Vec<_>>())));
    RecordBatch::try_new(schema(extra), columns).unwrap()
}

/// Random changes of one commit, applied to `oracle` as the source applied them.
fn workload(
    rng: &mut Rng,
    oracle: &mut BTreeMap<i64, Stored>,
    next_id: &mut i64,
    n: usize,
    extra: bool,
) -> Vec<Change> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let keys: Vec<i64> = oracle.keys().copied().collect();
        let pick = |rng: &mut Rng| keys[rng.below(keys.len() as u64) as usize];
        let name = Some(format!("n{}", rng.below(1_000_000)));
        let big = Some(format!("big-{}-{}", rng.below(1_000_000), "x".repeat(rng.below(64) as usize)));
        let extra_value = extra.then(|| rng.below(1000) as i64);
        let kind = if keys.is_empty() { 0 } else { rng.below(10) };
        let change = match kind {
            // insert
            0..=2 => {
                let id = *next_id;
                *next_id += 1;
                oracle.insert(id, (name.clone(), big.clone(), extra_value));
                Change { id, before: None, name, big, big_unchanged: false, extra: extra_value, op: "c" }
            }
            // update, `big` sent or TOAST-unchanged
            3..=6 => {
                let id = pick(rng);
                let unchanged = rng.below(2) == 0;
                let row = oracle.get_mut(&id).unwrap();
                row.0 = name.clone();
                if !unchanged {
                    row.1 = big.clone();
                }
                row.2 = extra_value;
                Change {
                    id,
                    before: None,
                    name,
                    big: if unchanged { None } else { big },
                    big_unchanged: unchanged,
                    extra: extra_value,
                    op: "u",
                }
            }
            // delete
            7 => {
                let id = pick(rng);
                oracle.remove(&id);
                Change { id, before: None, name: None, big: None, big_unchanged: false, extra: None, op: "d" }
            }
            // primary-key change carrying the unsent `big` from the old key
            _ => {
                let old = pick(rng);
                let id = *next_id;
                *next_id += 1;
                let (_, carried, _) = oracle.remove(&old).unwrap();
                oracle.insert(id, (name.clone(), carried, extra_value));
                Change { id, before: Some(old), name, big: None, big_unchanged: true, extra: extra_value, op: "u" }
            }
        };
        let _ = i;
        out.push(change);
    }
    out
}

fn expected(oracle: &BTreeMap<i64, Stored>, extra: bool) -> Vec<serde_json::Value> {
    oracle
        .iter()
        .map(|(id, (name, big, x))| {
            let mut row = vec![serde_json::json!(id), serde_json::json!(name), serde_json::json!(big)];
            if extra {
                row.push(serde_json::json!(x));
            }
            serde_json::Value::Array(row)
        })
        .collect()
}

/// The table by rtsync's reader, as JSON rows in `columns` order.
async fn rtsync_rows(config: &LakehouseSinkConfig, extra: bool) -> Vec<serde_json::Value> {
    let sql = if extra {
        "SELECT id, name, big, extra FROM t ORDER BY id"
    } else {
        "SELECT id, name, big FROM t ORDER BY id"
    };
    let mut out = Vec::new();
    for b in query_table(config, sql).await.unwrap() {
        let text = |c: usize, i: usize| {
            let a = b.column(c).as_string::<i32>();
            a.is_valid(i).then(|| a.value(i).to_string())
        };
        for i in 0..b.num_rows() {
            let mut row = vec![
                serde_json::json!(b.column(0).as_primitive::<Int64Type>().value(i)),
                serde_json::json!(text(1, i)),
                serde_json::json!(text(2, i)),
            ];
            if extra {
                let x = b.column(3).as_primitive::<Int64Type>();
                row.push(serde_json::json!(x.is_valid(i).then(|| x.value(i))));
            }
            out.push(serde_json::Value::Array(row));
        }
    }
    out
}

fn first_difference(label: &str, got: &[serde_json::Value], want: &[serde_json::Value]) -> Option<String> {
    if got == want {
        return None;
    }
    let at = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
    Some(format!(
        "{label}: {} rows, expected {}; first difference at row {at}: got {:?}, expected {:?}",
        got.len(),
        want.len(),
        got.get(at),
        want.get(at)
    ))
}

/// Every reader agrees with the oracle, row by row.
async fn check(config: &LakehouseSinkConfig, oracle: &BTreeMap<i64, Stored>, extra: bool, seed: u64, commit: u64) {
    let want = expected(oracle, extra);
    let ours = rtsync_rows(config, extra).await;
    if let Some(d) = first_difference("rtsync query_table", &ours, &want) {
        panic!("seed {seed}, after commit {commit}: {d}");
    }
    let read = common::python_json(READER, &[&config.table_location()]);
    let columns: Vec<&str> = read["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let width = if extra { 4 } else { 3 };
    assert_eq!(&columns[..width], &["id", "name", "big", "extra"][..width], "seed {seed}");
    for reader in ["querybuilder", "polars", "duckdb"] {
        let rows: Vec<serde_json::Value> = read[reader]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| serde_json::Value::Array(r.as_array().unwrap()[..width].to_vec()))
            .collect();
        if let Some(d) = first_difference(reader, &rows, &want) {
            panic!("seed {seed}, after commit {commit}: {d}");
        }
    }
}

/// Data files whose `add` in the log carries a deletion vector (the table is merge-on-read).
fn adds_with_deletion_vectors(config: &LakehouseSinkConfig) -> usize {
    let log = std::path::Path::new(&config.table_location()).join("_delta_log");
    std::fs::read_dir(log)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("{\"add\"") && l.contains("\"deletionVector\":{"))
                .count()
        })
        .sum()
}

fn checkpoint(epoch: u64) -> Checkpoint {
    Checkpoint { task: "mor".into(), epoch, position: serde_json::json!({ "lsn": epoch }) }
}

async fn open(config: &LakehouseSinkConfig, extra: bool, epoch: u64) -> DeltaSink {
    let mut sink = DeltaSink::upsert("mor", config.clone(), vec!["id".into()]).unwrap();
    let held = sink.open(schema(extra)).await.unwrap();
    assert_eq!(held.map(|c| c.epoch), (epoch > 0).then_some(epoch), "the table holds the last epoch");
    assert_eq!(sink.apply_mode(), Some(ApplyMode::MergeOnRead));
    sink
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_changes_read_back_by_independent_readers() {
    let seed: u64 = std::env::var("RTSYNC_MOR_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    println!("seed {seed} (RTSYNC_MOR_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    let mut config = LakehouseSinkConfig::new(dir.path().join("lake").to_str().unwrap(), "public", "mor_random");
    config.index_dir = Some(index_dir.to_str().unwrap().to_string());
    // maintenance often, so compactions and purges run between (and race with) the commits
    config.compact_interval = Duration::from_millis(700);
    config.compact_min_files = 8;
    config.purge_threshold = 0.2;

    let mut oracle: BTreeMap<i64, Stored> = BTreeMap::new();
    let mut next_id = 0i64;
    let mut epoch = 0u64;
    let mut extra = false;
    let mut sink = open(&config, extra, epoch).await;

    // the snapshot: appended in chunks
    for _ in 0..3 {
        let rows: Vec<Change> = (0..400)
            .map(|_| {
                let id = next_id;
                next_id += 1;
                let name = Some(format!("s{id}"));
                let big = Some(format!("big-{id}"));
                oracle.insert(id, (name.clone(), big.clone(), None));
                Change { id, before: None, name, big, big_unchanged: false, extra: None, op: "r" }
            })
            .collect();
        epoch += 1;
        sink.write(batch(&rows, extra)).await.unwrap();
        sink.commit(&checkpoint(epoch)).await.unwrap();
    }
    check(&config, &oracle, extra, seed, epoch).await;

    for round in 0..24u64 {
        match round {
            // restart: the index is caught up from the table
            6 => {
                drop(sink);
                sink = open(&config, extra, epoch).await;
            }
            // restart on another machine: no index, rebuilt from the table
            9 => {
                let index = sink.key_index_path().unwrap().to_path_buf();
                drop(sink);
                std::fs::remove_file(&index).unwrap();
                sink = open(&config, extra, epoch).await;
            }
            // a compaction by hand (deltalake's OPTIMIZE, which applies the deletion vectors)
            12 => {
                rtsync_sink_lakehouse::maintenance::optimize(&config).await.unwrap();
            }
            // the source added a column
            14 => {
                drop(sink);
                extra = true;
                sink = open(&config, extra, epoch).await;
            }
            // a crash between a commit and the index update: the index is behind the table
            17 => {
                let index = sink.key_index_path().unwrap().to_path_buf();
                drop(sink);
                let behind = index.with_extension("behind");
                std::fs::copy(&index, &behind).unwrap();
                sink = open(&config, extra, epoch).await;
                for _ in 0..2 {
                    let changes = workload(&mut rng, &mut oracle, &mut next_id, 40, extra);
                    epoch += 1;
                    sink.write(batch(&changes, extra)).await.unwrap();
                    sink.commit(&checkpoint(epoch)).await.unwrap();
                }
                drop(sink);
                std::fs::rename(&behind, &index).unwrap();
                sink = open(&config, extra, epoch).await;
            }
            _ => {}
        }
        let n = 10 + rng.below(120) as usize;
        let mut changes = workload(&mut rng, &mut oracle, &mut next_id, n, extra);
        if round == 20 {
            // a truncate in the middle of a commit: what came before it is gone
            oracle.clear();
            changes.push(Change {
                id: 0,
                before: None,
                name: None,
                big: None,
                big_unchanged: false,
                extra: None,
                op: "t",
            });
            changes.extend(workload(&mut rng, &mut oracle, &mut next_id, 30, extra));
        }
        // the commit's changes arrive in several batches
        let cut = rng.below(changes.len() as u64) as usize;
        epoch += 1;
        sink.write(batch(&changes[..cut], extra)).await.unwrap();
        sink.write(batch(&changes[cut..], extra)).await.unwrap();
        sink.commit(&checkpoint(epoch)).await.unwrap();
        if round % 4 == 3 {
            check(&config, &oracle, extra, seed, epoch).await;
        } else if let Some(d) =
            first_difference("rtsync query_table", &rtsync_rows(&config, extra).await, &expected(&oracle, extra))
        {
            panic!("seed {seed}, after commit {epoch}: {d}");
        }
    }
    assert!(adds_with_deletion_vectors(&config) > 0, "updates and deletes were written as deletion vectors");

    // background maintenance purges files whose deletion vectors hide over 20% of their rows
    let metrics = sink.maintenance_metrics().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.snapshot().files_purged == 0 && Instant::now() < deadline {
        let changes = workload(&mut rng, &mut oracle, &mut next_id, 60, extra);
        epoch += 1;
        sink.write(batch(&changes, extra)).await.unwrap();
        sink.commit(&checkpoint(epoch)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(metrics.snapshot().files_purged > 0, "seed {seed}: no purge ran: {:?}", metrics.snapshot());
    let changes = workload(&mut rng, &mut oracle, &mut next_id, 60, extra);
    epoch += 1;
    sink.write(batch(&changes, extra)).await.unwrap();
    sink.commit(&checkpoint(epoch)).await.unwrap();
    check(&config, &oracle, extra, seed, epoch).await;
}

/// An existing copy-on-write table stays copy-on-write under the merge-on-read default, and a
/// table created with `apply = "copy_on_write"` has no deletion vectors.
#[tokio::test]
async fn copy_on_write_tables_keep_their_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LakehouseSinkConfig::new(dir.path().to_str().unwrap(), "public", "cow");
    config.apply = ApplyMode::CopyOnWrite;
    config.maintenance = false;
    let mut sink = DeltaSink::upsert("mor", config.clone(), vec!["id".into()]).unwrap();
    sink.open(schema(false)).await.unwrap();
    assert_eq!(sink.apply_mode(), Some(ApplyMode::CopyOnWrite));
    let mut oracle = BTreeMap::new();
    let mut next_id = 0;
    let mut rng = Rng(7);
    for epoch in 1..=4 {
        let changes = workload(&mut rng, &mut oracle, &mut next_id, 50, false);
        sink.write(batch(&changes, false)).await.unwrap();
        sink.commit(&checkpoint(epoch)).await.unwrap();
    }
    drop(sink);
    config.apply = ApplyMode::MergeOnRead;
    let mut sink = DeltaSink::upsert("mor", config.clone(), vec!["id".into()]).unwrap();
    sink.open(schema(false)).await.unwrap();
    assert_eq!(sink.apply_mode(), Some(ApplyMode::CopyOnWrite), "the table has no deletion vectors");
    let changes = workload(&mut rng, &mut oracle, &mut next_id, 50, false);
    sink.write(batch(&changes, false)).await.unwrap();
    sink.commit(&checkpoint(5)).await.unwrap();
    assert_eq!(adds_with_deletion_vectors(&config), 0);
    check(&config, &oracle, false, 7, 5).await;
}
