//! A simulator of SQL Server's CDC behaviour, behind [`CdcServer`], so the whole connector
//! runs against it in tests: one table with an integer primary key, transactions whose
//! changes the *capture job* ([`SimDb::capture`]) harvests later (so `fn_cdc_get_max_lsn`
//! lags), change tables in the documented shape (3/4 update pairs sharing `__$seqval`,
//! several changes per row per transaction, `__$command_id`, a big-endian `__$update_mask`,
//! `(max)` columns NULL in both images of an update that did not change them), a key change
//! logged as a delete and an insert (as SQL Server does), inclusive LSN bounds, the cleanup
//! job raising the minimum LSN ([`SimDb::cleanup`]), SNAPSHOT-isolation reads (a connection's
//! snapshot sees the table as of its start), and a second capture instance created after a
//! column is added ([`SimDb::add_column`], [`SimDb::enable_capture_instance`]).
//!
//! The crate `rtsync-mssql-sim` (tests only) puts a TDS endpoint in front of it, so that
//! tiberius's login and row decoding and the connector's own SQL run against it too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rtsync_core::{SyncError, SyncResult};
use tiberius::ColumnData;

use crate::position::Lsn;
use crate::rows::{ChangeRow, OP_DELETE, OP_INSERT, OP_UPDATE_AFTER, OP_UPDATE_BEFORE, mask_of};
use crate::server::{CaptureInstance, CatalogColumn, CdcServer, LsnBounds, Preflight};
use crate::sql::SqlColumn;
use crate::{Connect, server};

/// A row's values by column name.
pub type Values = HashMap<String, ColumnData<'static>>;

#[derive(Debug, Clone)]
struct LoggedChange {
    operation: u8,
    command_id: i32,
    seqval: u64,
    values: Values,
    /// For operation 3/4: the columns the update changed.
    changed: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
struct LoggedTx {
    lsn: Lsn,
    changes: Vec<LoggedChange>,
}

#[derive(Debug, Clone)]
struct SimInstance {
    ci: CaptureInstance,
    min_lsn: Lsn,
    /// Change rows with their `__$command_id`.
    ct: Vec<(ChangeRow, i32)>,
}

/// The simulated database. Share it as `Arc<Mutex<SimDb>>` ([`SimHandle`]).
#[derive(Debug)]
pub struct SimDb {
    pub preflight: Preflight,
    schema: String,
    table: String,
    columns: Vec<CatalogColumn>,
    key: String,
    rows: BTreeMap<i64, Values>,
    next_lsn: u64,
    next_seq: u64,
    uncaptured: Vec<LoggedTx>,
    instances: Vec<SimInstance>,
    max_lsn: Lsn,
}

/// A handle to a simulated database; [`SimHandle::connect`] opens "connections".
#[derive(Debug, Clone)]
pub struct SimHandle(pub Arc<Mutex<SimDb>>);

/// A connection to the simulator: its own SNAPSHOT transaction, if one is open.
pub struct SimServer {
    db: SimHandle,
    snapshot: Option<BTreeMap<i64, Values>>,
}

/// One transaction being built ([`SimDb::transaction`]).
pub struct SimTx<'a> {
    db: &'a mut SimDb,
    changes: Vec<LoggedChange>,
    command_id: i32,
}

impl SimDb {
    /// A user database with CDC on, one table `schema.table` with `columns` (the first is the
    /// integer primary key) and one capture instance `<schema>_<table>`.
    pub fn create(schema: &str, table: &str, columns: Vec<CatalogColumn>) -> SimHandle {
        let key = columns[0].column.name.clone();
        let mut db = SimDb {
            preflight: Preflight {
                database: "rtsync_sim".into(),
                database_id: 5,
                is_cdc_enabled: true,
                snapshot_isolation_state: 1,
                can_select_table: true,
                can_select_cdc: true,
                can_view_database_state: true,
                max_text_repl_size: -1,
                last_capture_scan: Some("2026-01-01 00:00:00.000".into()),
            },
            schema: schema.into(),
            table: table.into(),
            columns,
            key,
            rows: BTreeMap::new(),
            next_lsn: 0x10,
            next_seq: 1,
            uncaptured: Vec::new(),
            instances: Vec::new(),
            max_lsn: Lsn::from_u64(0x0F),
        };
        db.enable_capture_instance(&format!("{schema}_{table}"));
        SimHandle(Arc::new(Mutex::new(db)))
    }

    /// Runs `f` as one transaction and commits it at the next LSN (the capture job harvests it
    /// later). Returns the commit LSN.
    pub fn transaction(&mut self, f: impl FnOnce(&mut SimTx<'_>)) -> Lsn {
        let mut tx = SimTx { db: self, changes: Vec::new(), command_id: 0 };
        f(&mut tx);
        let changes = tx.changes;
        let lsn = Lsn::from_u64(self.next_lsn);
        self.next_lsn += 1;
        if !changes.is_empty() {
            self.uncaptured.push(LoggedTx { lsn, changes });
        }
        lsn
    }

    /// The capture job: harvests every committed transaction into the change tables of the
    /// instances that started at or before it, and advances the max LSN.
    pub fn capture(&mut self) {
        for tx in std::mem::take(&mut self.uncaptured) {
            for inst in &mut self.instances {
                if inst.ci.start_lsn > tx.lsn {
                    continue;
                }
                let ncols = inst.ci.columns.len();
                let mask_len = ncols.div_ceil(8);
                for c in &tx.changes {
                    let ordinals: Vec<usize> = match &c.changed {
                        None => (1..=ncols).collect(),
                        Some(changed) => inst
                            .ci
                            .columns
                            .iter()
                            .filter(|(col, _)| changed.contains(&col.column.name))
                            .map(|(_, o)| *o)
                            .collect(),
                    };
                    let values = inst
                        .ci
                        .columns
                        .iter()
                        .map(|(col, o)| {
                            let unchanged_lob = c.changed.is_some() && col.column.ty.is_lob() && !ordinals.contains(o);
                            let v = c.values.get(&col.column.name).cloned().unwrap_or(ColumnData::String(None));
                            if unchanged_lob { null_like(&v) } else { v }
                        })
                        .collect();
                    let row = ChangeRow {
                        start_lsn: tx.lsn,
                        seqval: Lsn::from_u64(c.seqval),
                        operation: c.operation,
                        update_mask: mask_of(&ordinals, mask_len),
                        values,
                    };
                    inst.ct.push((row, c.command_id));
                }
            }
            self.max_lsn = tx.lsn;
        }
    }

    /// Transactions committed but not yet harvested.
    pub fn capture_lag(&self) -> usize {
        self.uncaptured.len()
    }

    /// The cleanup job: removes change rows below `below` and raises the minimum LSN.
    pub fn cleanup(&mut self, below: Lsn) {
        for inst in &mut self.instances {
            inst.ct.retain(|(r, _)| r.start_lsn >= below);
            if inst.min_lsn < below {
                inst.min_lsn = below;
            }
        }
    }

    /// `ALTER TABLE … ADD column NULL`.
    pub fn add_column(&mut self, column: CatalogColumn) {
        self.columns.push(column);
    }

    /// `sys.sp_cdc_enable_table` for the table's current shape: a new capture instance that
    /// starts at the next LSN.
    pub fn enable_capture_instance(&mut self, name: &str) {
        let start = Lsn::from_u64(self.next_lsn);
        let columns = self.columns.iter().enumerate().map(|(i, c)| (c.clone(), i + 1)).collect();
        self.instances.push(SimInstance {
            ci: CaptureInstance {
                name: name.into(),
                start_lsn: start,
                has_command_id: true,
                columns,
                index_columns: vec![self.key.clone()],
            },
            min_lsn: start,
            ct: Vec::new(),
        });
    }

    /// `sys.sp_cdc_disable_table` for one instance.
    pub fn disable_capture_instance(&mut self, name: &str) {
        self.instances.retain(|i| i.ci.name != name);
    }

    /// The table's rows by key (what the target must equal).
    pub fn table(&self) -> &BTreeMap<i64, Values> {
        &self.rows
    }

    pub fn columns(&self) -> &[CatalogColumn] {
        &self.columns
    }

    /// The simulated table's schema and name.
    pub fn qualified_name(&self) -> (&str, &str) {
        (&self.schema, &self.table)
    }

    pub fn max_lsn(&self) -> Lsn {
        self.max_lsn
    }
}

fn null_like(v: &ColumnData<'static>) -> ColumnData<'static> {
    match v {
        ColumnData::Binary(_) => ColumnData::Binary(None),
        ColumnData::Xml(_) => ColumnData::Xml(None),
        _ => ColumnData::String(None),
    }
}

fn key_of(values: &Values, key: &str) -> i64 {
    match values.get(key) {
        Some(ColumnData::I32(Some(v))) => i64::from(*v),
        Some(ColumnData::I64(Some(v))) => *v,
        Some(ColumnData::I16(Some(v))) => i64::from(*v),
        other => panic!("the simulator's key {key} must be an integer, got {other:?}"),
    }
}

impl SimTx<'_> {
    fn log(&mut self, operation: u8, values: Values, changed: Option<Vec<String>>, seqval: u64) {
        self.changes.push(LoggedChange { operation, command_id: self.command_id, seqval, values, changed });
    }

    fn seq(&mut self) -> u64 {
        self.db.next_seq += 1;
        self.db.next_seq
    }

    /// INSERT; every column not given is NULL.
    pub fn insert(&mut self, values: Values) {
        self.command_id += 1;
        let mut row: Values =
            self.db.columns.iter().map(|c| (c.column.name.clone(), ColumnData::String(None))).collect();
        row.extend(values);
        let k = key_of(&row, &self.db.key);
        assert!(!self.db.rows.contains_key(&k), "duplicate key {k}");
        self.db.rows.insert(k, row.clone());
        let s = self.seq();
        self.log(OP_INSERT, row, None, s);
    }

    /// UPDATE of row `key` with `set`. A change of the key is logged as a delete and an insert.
    pub fn update(&mut self, key: i64, set: Values) {
        self.command_id += 1;
        let Some(old) = self.db.rows.get(&key).cloned() else {
            return;
        };
        let mut new = old.clone();
        new.extend(set.clone());
        let new_key = key_of(&new, &self.db.key);
        if new_key != key {
            assert!(!self.db.rows.contains_key(&new_key), "duplicate key {new_key}");
            self.db.rows.remove(&key);
            self.db.rows.insert(new_key, new.clone());
            let s = self.seq();
            self.log(OP_DELETE, old, None, s);
            let s = self.seq();
            self.log(OP_INSERT, new, None, s);
            return;
        }
        self.db.rows.insert(key, new.clone());
        let changed: Vec<String> = set.keys().cloned().collect();
        let s = self.seq();
        self.log(OP_UPDATE_BEFORE, old, Some(changed.clone()), s);
        self.log(OP_UPDATE_AFTER, new, Some(changed), s);
    }

    pub fn delete(&mut self, key: i64) {
        self.command_id += 1;
        if let Some(old) = self.db.rows.remove(&key) {
            let s = self.seq();
            self.log(OP_DELETE, old, None, s);
        }
    }

    pub fn contains(&self, key: i64) -> bool {
        self.db.rows.contains_key(&key)
    }

    /// The keys the table holds within this transaction.
    pub fn keys(&self) -> Vec<i64> {
        self.db.rows.keys().copied().collect()
    }
}

impl SimHandle {
    pub fn lock(&self) -> MutexGuard<'_, SimDb> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection factory for [`crate::SqlServerSource::with_server`].
    pub fn connect(&self) -> Connect<SimServer> {
        let db = self.clone();
        Arc::new(move || {
            let db = db.clone();
            Box::pin(async move { Ok(SimServer { db, snapshot: None }) })
        })
    }
}

fn project(values: &Values, columns: &[SqlColumn]) -> Vec<ColumnData<'static>> {
    columns.iter().map(|c| values.get(&c.name).cloned().unwrap_or(ColumnData::String(None))).collect()
}

#[async_trait]
impl CdcServer for SimServer {
    async fn preflight(&mut self, _schema: &str, _table: &str) -> SyncResult<Preflight> {
        Ok(self.db.lock().preflight.clone())
    }

    async fn table_columns(&mut self, schema: &str, table: &str) -> SyncResult<Vec<CatalogColumn>> {
        let db = self.db.lock();
        Ok(if db.schema == schema && db.table == table { db.columns.clone() } else { Vec::new() })
    }

    async fn primary_key(&mut self, _schema: &str, _table: &str) -> SyncResult<Vec<String>> {
        Ok(vec![self.db.lock().key.clone()])
    }

    async fn capture_instances(&mut self, _schema: &str, _table: &str) -> SyncResult<Vec<CaptureInstance>> {
        Ok(self.db.lock().instances.iter().map(|i| i.ci.clone()).collect())
    }

    async fn lsn_bounds(&mut self, ci: &str, schema: &str, table: &str) -> SyncResult<LsnBounds> {
        let db = self.db.lock();
        let min = db.instances.iter().find(|i| i.ci.name == ci).map(|i| i.min_lsn).unwrap_or(Lsn::ZERO);
        let ours = db.schema == schema && db.table == table;
        Ok(LsnBounds { min, max: db.max_lsn, capture_instances: if ours { db.instances.len() } else { 0 } })
    }

    async fn estimated_rows(&mut self, schema: &str, table: &str) -> SyncResult<Option<u64>> {
        let db = self.db.lock();
        Ok((db.schema == schema && db.table == table).then_some(db.rows.len() as u64))
    }

    async fn begin_snapshot(&mut self) -> SyncResult<Lsn> {
        let db = self.db.lock();
        self.snapshot = Some(db.rows.clone());
        Ok(db.max_lsn)
    }

    async fn snapshot_chunk(
        &mut self,
        _schema: &str,
        _table: &str,
        columns: &[SqlColumn],
        _key: &[SqlColumn],
        after: Option<&[String]>,
        limit: usize,
    ) -> SyncResult<Vec<(Vec<ColumnData<'static>>, Vec<String>)>> {
        let snap = self.snapshot.as_ref().ok_or_else(|| SyncError::internal("simulator: no snapshot transaction"))?;
        let after: Option<i64> = match after {
            Some(k) => {
                Some(k.first().and_then(|s| s.parse().ok()).ok_or_else(|| SyncError::internal("simulator: bad key"))?)
            }
            None => None,
        };
        let range = match after {
            Some(a) => snap.range(a + 1..),
            None => snap.range(..),
        };
        Ok(range.take(limit).map(|(k, v)| (project(v, columns), vec![k.to_string()])).collect())
    }

    async fn end_snapshot(&mut self) -> SyncResult<()> {
        self.snapshot = None;
        Ok(())
    }

    async fn changes(
        &mut self,
        ci: &CaptureInstance,
        columns: &[SqlColumn],
        from: Lsn,
        inclusive_from: bool,
        skip: u64,
        to: Lsn,
        limit: usize,
    ) -> SyncResult<Vec<ChangeRow>> {
        let db = self.db.lock();
        let inst = db
            .instances
            .iter()
            .find(|i| i.ci.name == ci.name)
            .ok_or_else(|| SyncError::source_err(format!("simulator: invalid object name 'cdc.{}_CT'", ci.name)))?;
        let mut rows: Vec<&(ChangeRow, i32)> = inst
            .ct
            .iter()
            .filter(|(r, _)| {
                (if inclusive_from { r.start_lsn >= from } else { r.start_lsn > from }) && r.start_lsn <= to
            })
            .collect();
        rows.sort_by(|(a, ca), (b, cb)| {
            (a.start_lsn, ca, a.seqval, a.operation).cmp(&(b.start_lsn, cb, b.seqval, b.operation))
        });
        let index: HashMap<&str, usize> =
            inst.ci.columns.iter().enumerate().map(|(i, (c, _))| (c.column.name.as_str(), i)).collect();
        Ok(rows
            .into_iter()
            .skip(skip as usize)
            .take(limit)
            .map(|(r, _)| ChangeRow {
                values: columns
                    .iter()
                    .map(|c| {
                        index.get(c.name.as_str()).map(|&i| r.values[i].clone()).unwrap_or(ColumnData::String(None))
                    })
                    .collect(),
                ..r.clone()
            })
            .collect())
    }
}

/// A catalog column (for building simulated tables).
pub fn column(name: &str, type_name: &str, max_length: i16, precision: u8, scale: u8) -> CatalogColumn {
    let ty = crate::types::SqlType::parse(name, type_name, max_length, precision, scale)
        .unwrap_or(crate::types::SqlType::Text { lob: false });
    let decl = server::type_decl(type_name, max_length, precision, scale);
    CatalogColumn { column: SqlColumn { name: name.into(), ty, decl: decl.clone() }, nullable: true, source_type: decl }
}
