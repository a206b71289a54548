//! The SQL Server source against the CDC simulator: a seeded random workload (inserts,
//! updates of some columns so `(max)` values arrive unchanged, key changes, deletes, several
//! changes of one row in one transaction) with a lagging capture job, small batches that split
//! transactions and update pairs, SIGKILL-style restarts (everything not committed is lost
//! and the source reopens at the committed position), a second capture instance after a
//! column is added, and a cleanup job below the position. The applied changes (the
//! change-row contract, applied as the upsert sink does) must equal the simulated table, row
//! by row and value by value. Then the cleanup job passes the position: the task stops with
//! an error naming the fix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::arrow::util::display::array_value_to_string;
use rtsync_core::{OP_COLUMN, Position, Source, UNCHANGED_COLUMN, before_key_column};
use rtsync_source_sqlserver::rows::{RowColumn, RowsBuilder};
use rtsync_source_sqlserver::sim::{SimDb, SimHandle, Values, column};
use rtsync_source_sqlserver::{MssqlPosition, SqlServerSource, SqlServerSourceConfig};
use tiberius::ColumnData;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime2, Time};

/// A row as text values by column name.
type Row = BTreeMap<String, Option<String>>;

/// The target: rows by key text, maintained as the upsert sink does.
#[derive(Default, Clone)]
struct Model {
    rows: BTreeMap<String, Row>,
}

impl Model {
    fn apply(&mut self, batch: &RecordBatch) {
        let schema = batch.schema();
        let ops = batch.column_by_name(OP_COLUMN).unwrap().as_string::<i32>();
        let unchanged = batch.column_by_name(UNCHANGED_COLUMN).map(|c| c.as_list::<i32>().clone());
        let before = batch.column_by_name(&before_key_column("id")).cloned();
        for i in 0..batch.num_rows() {
            let mut row = Row::new();
            for (f, col) in schema.fields().iter().zip(batch.columns()) {
                let name = f.name();
                if name == OP_COLUMN || name == UNCHANGED_COLUMN || name.starts_with("__before_") {
                    continue;
                }
                row.insert(name.clone(), col.is_valid(i).then(|| array_value_to_string(col, i).unwrap()));
            }
            let key = row["id"].clone().unwrap_or_default();
            match ops.value(i) {
                "t" => self.rows.clear(),
                "d" => {
                    self.rows.remove(&key);
                }
                _ => {
                    let old_key =
                        before.as_ref().filter(|b| b.is_valid(i)).map(|b| array_value_to_string(b, i).unwrap());
                    let previous = match &old_key {
                        Some(k) => self.rows.remove(k),
                        None => self.rows.get(&key).cloned(),
                    };
                    if let Some(u) = unchanged.as_ref().filter(|u| u.is_valid(i)) {
                        let names = u.value(i);
                        for n in names.as_string::<i32>().iter().flatten() {
                            let kept = previous.as_ref().and_then(|p| p.get(n).cloned()).flatten();
                            row.insert(n.to_string(), kept);
                        }
                    }
                    // Columns the batch does not carry (added later) keep their value.
                    if let Some(p) = &previous {
                        for (n, v) in p {
                            row.entry(n.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    self.rows.insert(key, row);
                }
            }
        }
    }
}

/// A small deterministic generator (no dependency): SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn text(s: String) -> ColumnData<'static> {
    ColumnData::String(Some(Cow::Owned(s)))
}

fn random_values(rng: &mut Rng, id: i64, all: bool, extra: bool) -> Values {
    let mut v = Values::new();
    v.insert("id".into(), ColumnData::I32(Some(id as i32)));
    let mut maybe = |name: &str, value: ColumnData<'static>, rng: &mut Rng| {
        if all || rng.below(2) == 0 {
            v.insert(name.into(), if rng.below(8) == 0 { null_of(&value) } else { value });
        }
    };
    let n = rng.below(1000) as i32;
    maybe("n", ColumnData::I32(Some(n)), rng);
    let name = format!("name-{}", rng.below(100_000));
    maybe("name", text(name), rng);
    let doc = "d".repeat(rng.below(3000) as usize) + &rng.next().to_string();
    maybe("doc", text(doc), rng);
    let blob: Vec<u8> = (0..rng.below(64)).map(|i| (i * 7 + rng.below(256)) as u8).collect();
    maybe("blob", ColumnData::Binary(Some(Cow::Owned(blob))), rng);
    let cents = rng.next() as i64 % 10_000_000_000;
    maybe("price", ColumnData::Numeric(Some(Numeric::new_with_scale(i128::from(cents), 4))), rng);
    let at = DateTime2::new(Date::new(730_000 + rng.below(10_000) as u32), Time::new(rng.below(864_000_000_000), 7));
    maybe("at", ColumnData::DateTime2(Some(at)), rng);
    if extra {
        let e = format!("extra-{}", rng.below(50));
        maybe("note", text(e), rng);
    }
    v
}

fn null_of(v: &ColumnData<'static>) -> ColumnData<'static> {
    match v {
        ColumnData::I32(_) => ColumnData::I32(None),
        ColumnData::Binary(_) => ColumnData::Binary(None),
        ColumnData::Numeric(_) => ColumnData::Numeric(None),
        ColumnData::DateTime2(_) => ColumnData::DateTime2(None),
        _ => ColumnData::String(None),
    }
}

fn sim() -> SimHandle {
    SimDb::create(
        "dbo",
        "orders",
        vec![
            column("id", "int", 4, 10, 0),
            column("n", "int", 4, 10, 0),
            column("name", "nvarchar", 100, 0, 0),
            column("doc", "nvarchar", -1, 0, 0),
            column("blob", "varbinary", -1, 0, 0),
            column("price", "money", 8, 19, 4),
            column("at", "datetime2", 8, 27, 7),
        ],
    )
}

/// The simulated table rendered the way the model renders the target.
fn expected(db: &SimHandle) -> BTreeMap<String, Row> {
    let db = db.lock();
    let columns: Vec<RowColumn> =
        db.columns().iter().enumerate().map(|(i, c)| RowColumn { column: c.column.clone(), ordinal: i + 1 }).collect();
    let mut b = RowsBuilder::new(columns.clone(), &["id".to_string()]).unwrap();
    for values in db.table().values() {
        let row: Vec<ColumnData<'static>> =
            columns.iter().map(|c| values.get(&c.column.name).cloned().unwrap_or(ColumnData::String(None))).collect();
        b.push_read(&row).unwrap();
    }
    let (batch, _) = b.finish().unwrap();
    let mut m = Model::default();
    m.apply(&batch);
    m.rows
}

fn config(batch: usize) -> SqlServerSourceConfig {
    let mut c = SqlServerSourceConfig::new("mssql://sim:sim@127.0.0.1:1/rtsync_sim", "dbo", "orders");
    c.max_batch_rows = batch;
    c.snapshot_chunk_rows = 5;
    c.poll_interval_ms = 1;
    c.idle_advance_secs = 0;
    c
}

async fn open(
    db: &SimHandle,
    batch: usize,
    resume: Option<MssqlPosition>,
) -> SqlServerSource<rtsync_source_sqlserver::sim::SimServer> {
    let mut s = SqlServerSource::with_server("sim_task", config(batch), db.connect());
    s.check().await.unwrap();
    s.describe().await.unwrap().unwrap();
    s.open(resume).await.unwrap();
    s
}

/// Random transactions against the simulator.
fn workload(db: &SimHandle, rng: &mut Rng, txs: usize, next_id: &mut i64, extra: bool) {
    for _ in 0..txs {
        let mut d = db.lock();
        let keys: Vec<i64> = d.table().keys().copied().collect();
        d.transaction(|tx| {
            for _ in 0..1 + rng.below(4) {
                let pick = |rng: &mut Rng| keys.get(rng.below(keys.len().max(1) as u64) as usize).copied();
                match rng.below(10) {
                    0..=3 => {
                        *next_id += 1;
                        tx.insert(random_values(rng, *next_id, true, extra));
                    }
                    4..=6 => {
                        if let Some(k) = pick(rng).filter(|k| tx.contains(*k)) {
                            let mut set = random_values(rng, k, false, extra);
                            if rng.below(3) == 0 {
                                // Only a small column: the LOBs arrive unchanged.
                                set.retain(|n, _| n == "id" || n == "n");
                            }
                            tx.update(k, set.clone());
                            // Several changes of one row in one transaction.
                            if rng.below(4) == 0 {
                                set.insert("n".into(), ColumnData::I32(Some(-1)));
                                tx.update(k, set);
                            }
                        }
                    }
                    7 => {
                        if let Some(k) = pick(rng).filter(|k| tx.contains(*k)) {
                            *next_id += 1;
                            let mut set = Values::new();
                            set.insert("id".into(), ColumnData::I32(Some(*next_id as i32)));
                            tx.update(k, set);
                        }
                    }
                    _ => {
                        if let Some(k) = pick(rng) {
                            tx.delete(k);
                        }
                    }
                }
            }
        });
        if rng.below(3) == 0 {
            d.capture();
        }
    }
}

/// Reads batches as the engine does: commits every few batches, crashes now and then (drops
/// the source and what is not committed), until the source has caught up with the capture
/// job. Returns the committed model and position.
async fn drive(
    db: &SimHandle,
    rng: &mut Rng,
    model: &mut Model,
    committed: &mut Option<MssqlPosition>,
    batch: usize,
    crashes: bool,
) {
    let mut source = open(db, batch, committed.clone()).await;
    let mut pending = model.clone();
    let mut pending_pos = committed.clone();
    let mut idle = 0;
    loop {
        let b = source.next_batch(Duration::from_millis(5)).await.unwrap();
        match b {
            Some(b) => {
                idle = 0;
                if let Some(p) = &pending_pos {
                    assert!(b.end.covers(p), "the position moved backward: {} after {p}", b.end);
                }
                pending.apply(&b.rows);
                pending_pos = Some(b.end);
            }
            None => idle += 1,
        }
        if rng.below(3) == 0 || idle > 0 {
            *model = pending.clone();
            *committed = pending_pos.clone();
        }
        if crashes && rng.below(9) == 0 {
            // SIGKILL: what is not committed is gone; restart from the committed position.
            drop(source);
            pending = model.clone();
            pending_pos = committed.clone();
            source = open(db, batch, committed.clone()).await;
        }
        let caught_up = {
            let d = db.lock();
            d.capture_lag() == 0
                && matches!(committed, Some(MssqlPosition::Streaming { lsn, rows: None }) if *lsn >= d.max_lsn())
        };
        if idle >= 2 && caught_up {
            break;
        }
        if idle >= 2 {
            db.lock().capture();
        }
    }
    source.close().await.unwrap();
}

fn assert_same(model: &Model, db: &SimHandle, seed: u64, what: &str) {
    let want = expected(db);
    // A column the target never received a value for reads as NULL.
    let mut model = model.clone();
    for (k, row) in model.rows.iter_mut() {
        if let Some(w) = want.get(k) {
            for n in w.keys() {
                row.entry(n.clone()).or_insert(None);
            }
        }
    }
    if model.rows != want {
        let mut diff = Vec::new();
        for (k, w) in &want {
            match model.rows.get(k) {
                Some(h) if h == w => {}
                Some(h) => diff.push(format!("id {k}: want {w:?}\n        have {h:?}")),
                None => diff.push(format!("id {k}: missing")),
            }
        }
        diff.extend(model.rows.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("id {k}: not in the source")));
        panic!("seed {seed}, {what}: the target differs from the source in {} rows:\n{}", diff.len(), diff.join("\n"));
    }
}

#[tokio::test]
async fn random_workload_with_restarts_equals_the_source() {
    for seed in [1u64, 2, 3, 42, 2026] {
        let mut rng = Rng(seed);
        let db = sim();
        let mut next_id = 0;
        // Rows before the snapshot, some harvested, some not (capture-job lag).
        workload(&db, &mut rng, 30, &mut next_id, false);
        let mut model = Model::default();
        let mut committed = None;
        workload(&db, &mut rng, 10, &mut next_id, false);
        drive(&db, &mut rng, &mut model, &mut committed, 2 + seed as usize % 6, true).await;
        assert!(!model.rows.is_empty());
        assert_same(&model, &db, seed, "after the snapshot and the first changes");

        workload(&db, &mut rng, 60, &mut next_id, false);
        drive(&db, &mut rng, &mut model, &mut committed, 3, true).await;
        assert_same(&model, &db, seed, "after 60 more transactions with restarts");

        // The cleanup job below the committed position: nothing the task needs is gone.
        let below = committed.as_ref().unwrap().lsn();
        db.lock().cleanup(below);
        // Schema change: a column added, a second capture instance for the new shape; the
        // old one is read up to the new one's start.
        {
            let mut d = db.lock();
            d.add_column(column("note", "nvarchar", 100, 0, 0));
        }
        workload(&db, &mut rng, 5, &mut next_id, false);
        db.lock().enable_capture_instance("dbo_orders_v2");
        workload(&db, &mut rng, 40, &mut next_id, true);
        db.lock().capture();
        drive(&db, &mut rng, &mut model, &mut committed, 4, true).await;
        assert_same(&model, &db, seed, "after the second capture instance");
        assert!(
            model.rows.values().any(|r| r.get("note").is_some_and(Option::is_some)),
            "seed {seed}: the new column's values arrived"
        );
    }
}

#[tokio::test]
async fn retention_loss_stops_with_the_fix_or_resnapshots() {
    let mut rng = Rng(7);
    let db = sim();
    let mut next_id = 0;
    workload(&db, &mut rng, 20, &mut next_id, false);
    db.lock().capture();
    let mut model = Model::default();
    let mut committed = None;
    drive(&db, &mut rng, &mut model, &mut committed, 10, false).await;
    let stopped_at = committed.clone().unwrap();
    // The task is down while changes happen and the cleanup job removes some of them.
    workload(&db, &mut rng, 20, &mut next_id, false);
    db.lock().capture();
    let max = db.lock().max_lsn();
    db.lock().cleanup(max);
    let mut s = SqlServerSource::with_server("sim_task", config(10), db.connect());
    s.check().await.unwrap();
    let err = s.open(Some(stopped_at.clone())).await.unwrap_err();
    assert!(err.to_string().contains("cleanup job removed changes"), "{err}");
    assert!(err.to_string().contains("sp_cdc_change_job"), "{err}");
    // With resnapshot_on_retention_loss the table is copied again after a truncate row.
    let mut c = config(10);
    c.resnapshot_on_retention_loss = true;
    let mut s = SqlServerSource::with_server("sim_task", c, db.connect());
    s.check().await.unwrap();
    s.open(Some(stopped_at)).await.unwrap();
    let first = s.next_batch(Duration::from_millis(5)).await.unwrap().unwrap();
    assert_eq!(first.rows.column_by_name(OP_COLUMN).unwrap().as_string::<i32>().value(0), "t");
    // The copy's progress: one chunk of the server's row count.
    let rows_now = db.lock().table().len() as u64;
    assert!(first.end.is_snapshot() && rows_now > 5, "{rows_now} rows: more than a chunk");
    let progress = s.snapshot_progress().expect("a snapshot is running");
    assert_eq!((progress.rows, progress.estimated_rows), (5, Some(rows_now)));
    let mut model2 = model.clone();
    model2.apply(&first.rows);
    loop {
        match s.next_batch(Duration::from_millis(5)).await.unwrap() {
            Some(b) if b.end.is_snapshot() || b.num_rows() > 0 => model2.apply(&b.rows),
            Some(b) => {
                model2.apply(&b.rows);
                break;
            }
            None => break,
        }
    }
    assert_same(&model2, &db, 7, "after the re-snapshot");
    assert_eq!(s.snapshot_progress(), None, "streaming: no snapshot");
}

#[tokio::test]
async fn preflight_refuses_what_streaming_cannot_use() {
    let db = sim();
    db.lock().preflight.is_cdc_enabled = false;
    let mut s = SqlServerSource::with_server("t", config(10), db.connect());
    assert!(s.check().await.unwrap_err().to_string().contains("sp_cdc_enable_db"));
    let db = sim();
    db.lock().preflight.database_id = 1;
    let mut s = SqlServerSource::with_server("t", config(10), db.connect());
    assert!(s.check().await.unwrap_err().to_string().contains("system database"));
    let db = sim();
    db.lock().disable_capture_instance("dbo_orders");
    let mut s = SqlServerSource::with_server("t", config(10), db.connect());
    assert!(s.check().await.unwrap_err().to_string().contains("sp_cdc_enable_table"));
}
