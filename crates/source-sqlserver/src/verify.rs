//! `task verify` on SQL Server: the table read in key order inside one SNAPSHOT-isolation
//! transaction, with the same keyset chunks (the same SQL) as the task's snapshot, each row
//! converted to the values the target holds by the connector's own conversion and hashed here
//! over the canonical text of [`rtsync_core::verify`]. Nothing is summed in SQL: the table
//! crosses the network once per pass (and once more when ranges differ), and the verifier
//! keeps each row's key and hash in memory, not its values.
//!
//! The columns are those of the table's newest capture instance (what the task writes), the
//! key its primary key (or the capture instance's index). The position is the database's max
//! LSN read in the snapshot transaction; a task has reached it when its committed position
//! covers it (an idle task commits its advancing position every `idle_advance_secs`).

use std::collections::HashSet;

use async_trait::async_trait;
use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::verify::{
    CanonRow, KeyPart, RangeChecksum, TableVerifier, VerifyColumn, canonical_text, hash_values, is_comparable,
    key_order,
};
use rtsync_core::{Position, SyncError, SyncResult};

use crate::position::{Lsn, MssqlPosition};
use crate::rows::{RowColumn, RowsBuilder};
use crate::server::{CdcServer, TdsServer};
use crate::sql::SqlColumn;
use crate::{Connect, SqlServerSourceConfig, ensure_capture_instance, ensure_key};

type KeyOrder = fn(&str) -> Option<KeyPart>;

/// One table of a SQL Server source, for `task verify`.
pub struct SqlServerVerifier<S: CdcServer = TdsServer> {
    server: S,
    schema: String,
    table: String,
    capture_instance: String,
    columns: Vec<VerifyColumn>,
    key: Vec<String>,
    read: Vec<RowColumn>,
    key_columns: Vec<SqlColumn>,
    orders: Vec<KeyOrder>,
    chunk_rows: usize,
    /// The snapshot's rows in the target's key order: key texts, their order, row hash.
    rows: Vec<(Vec<String>, Vec<KeyPart>, u64)>,
    snapshot_lsn: Lsn,
}

impl SqlServerVerifier<TdsServer> {
    pub async fn connect(config: &SqlServerSourceConfig, task: &str) -> SyncResult<Self> {
        config.validate()?;
        let server = TdsServer::connect(config, &format!("rtsync verify {task}")).await?;
        Self::new(server, config).await
    }
}

impl<S: CdcServer> SqlServerVerifier<S> {
    /// A verifier over a connection `connect` opens (the simulator in tests).
    pub async fn with_server(connect: Connect<S>, config: &SqlServerSourceConfig) -> SyncResult<Self> {
        Self::new(connect().await?, config).await
    }

    async fn new(mut server: S, config: &SqlServerSourceConfig) -> SyncResult<Self> {
        let (schema, table) = (config.schema.clone(), config.table.clone());
        let pk = server.primary_key(&schema, &table).await?;
        let mut instances = server.capture_instances(&schema, &table).await?;
        if let Some(ci) = &config.capture_instance {
            instances.retain(|i| &i.name == ci);
        }
        ensure_capture_instance(&instances, &schema, &table)?;
        instances.sort_by_key(|i| i.start_lsn);
        let newest = instances.pop().ok_or_else(|| SyncError::internal("no capture instance"))?;
        let key = ensure_key(&pk, &newest, &schema, &table)?;
        let read: Vec<RowColumn> = newest
            .columns
            .iter()
            .map(|(c, ordinal)| RowColumn { column: c.column.clone(), ordinal: *ordinal })
            .collect();
        let mut orders = Vec::new();
        let mut key_columns = Vec::new();
        for k in &key {
            let c = read.iter().find(|c| &c.column.name == k).ok_or_else(|| {
                SyncError::source_err(format!("key column {k} is not captured by capture instance {}", newest.name))
            })?;
            let order = key_order(&c.column.ty.arrow_type()).ok_or_else(|| {
                SyncError::source_err(format!(
                    "key column {k} ({}) cannot be verified: its type has no exact order",
                    c.column.decl
                ))
            })?;
            orders.push(order);
            key_columns.push(c.column.clone());
        }
        let columns = read
            .iter()
            .map(|c| {
                if is_comparable(&c.column.ty.arrow_type()) {
                    VerifyColumn::compared(&c.column.name)
                } else {
                    VerifyColumn::skipped(&c.column.name, format!("{} has no canonical text", c.column.decl))
                }
            })
            .collect();
        Ok(SqlServerVerifier {
            server,
            schema,
            table,
            capture_instance: newest.name,
            columns,
            key,
            read,
            key_columns,
            orders,
            chunk_rows: config.snapshot_chunk_rows.max(1),
            rows: Vec::new(),
            snapshot_lsn: Lsn::ZERO,
        })
    }

    fn order_of(&self, key: &[String]) -> SyncResult<Vec<KeyPart>> {
        key.iter()
            .zip(&self.orders)
            .map(|(k, order)| order(k).ok_or_else(|| SyncError::data(format!("key value {k:?} has no order"))))
            .collect()
    }

    /// Every row of the table as the open transaction sees it, as canonical texts (any order).
    async fn scan(&mut self, mut each: impl FnMut(CanonRow)) -> SyncResult<()> {
        let sql: Vec<SqlColumn> = self.read.iter().map(|c| c.column.clone()).collect();
        let compared: Vec<usize> =
            self.columns.iter().enumerate().filter(|(_, c)| c.is_compared()).map(|(i, _)| i).collect();
        let key_at: Vec<usize> =
            self.key.iter().filter_map(|k| self.read.iter().position(|c| &c.column.name == k)).collect();
        let mut after: Option<Vec<String>> = None;
        loop {
            let chunk = self
                .server
                .snapshot_chunk(&self.schema, &self.table, &sql, &self.key_columns, after.as_deref(), self.chunk_rows)
                .await?;
            let n = chunk.len();
            let mut b = RowsBuilder::new(self.read.clone(), &[])?;
            for (values, _) in &chunk {
                b.push_read(values)?;
            }
            after = chunk.into_iter().last().map(|(_, k)| k);
            let (batch, _) = b.finish()?;
            for row in canon_rows(&batch, &key_at, &compared) {
                each(row);
            }
            if n < self.chunk_rows {
                return Ok(());
            }
        }
    }

    fn position_json(lsn: Lsn) -> SyncResult<serde_json::Value> {
        serde_json::to_value(MssqlPosition::Streaming { lsn, rows: None })
            .map_err(|e| SyncError::internal(format!("serializing a position: {e}")))
    }

    /// The range (index into `bounds`) a key falls in: the last first key at or below it.
    fn range_of(bounds: &[Vec<KeyPart>], key: &[KeyPart]) -> usize {
        bounds.partition_point(|b| b.as_slice() <= key).saturating_sub(1)
    }
}

/// The rows of `batch` as canonical texts: the key columns (`key_at`) and the compared ones.
fn canon_rows(batch: &RecordBatch, key_at: &[usize], compared: &[usize]) -> Vec<CanonRow> {
    let text = |col: usize, row: usize| {
        let mut s = String::new();
        canonical_text(batch.column(col), row, &mut s).then_some(s)
    };
    (0..batch.num_rows())
        .map(|r| CanonRow {
            key: key_at.iter().map(|&c| text(c, r).unwrap_or_default()).collect(),
            values: compared.iter().map(|&c| text(c, r)).collect(),
        })
        .collect()
}

#[async_trait]
impl<S: CdcServer + Sync> TableVerifier for SqlServerVerifier<S> {
    fn columns(&self) -> &[VerifyColumn] {
        &self.columns
    }

    fn key(&self) -> &[String] {
        &self.key
    }

    async fn begin_snapshot(&mut self) -> SyncResult<serde_json::Value> {
        self.snapshot_lsn = self.server.begin_snapshot().await?;
        let mut rows = Vec::new();
        self.scan(|r| rows.push(r)).await?;
        let mut keyed = Vec::with_capacity(rows.len());
        for r in rows {
            let order = self.order_of(&r.key)?;
            keyed.push((r.key, order, hash_values(&r.values)));
        }
        keyed.sort_by(|a, b| a.1.cmp(&b.1));
        self.rows = keyed;
        Self::position_json(self.snapshot_lsn)
    }

    async fn count(&mut self) -> SyncResult<u64> {
        Ok(self.rows.len() as u64)
    }

    async fn bounds(&mut self, rows_per_range: u64) -> SyncResult<Vec<Vec<String>>> {
        Ok(self.rows.iter().step_by(rows_per_range.max(1) as usize).map(|r| r.0.clone()).collect())
    }

    async fn checksums(&mut self, rows_per_range: u64) -> SyncResult<Vec<RangeChecksum>> {
        Ok(self
            .rows
            .chunks(rows_per_range.max(1) as usize)
            .map(|c| RangeChecksum {
                rows: c.len() as u64,
                sum: c.iter().fold(0u64, |s, r| s.wrapping_add(r.2)),
                first_key: c[0].0.clone(),
            })
            .collect())
    }

    async fn rows_in_ranges(
        &mut self,
        _rows_per_range: u64,
        bounds: &[Vec<String>],
        ranges: &[u64],
    ) -> SyncResult<Vec<CanonRow>> {
        let bounds: Vec<Vec<KeyPart>> = bounds.iter().map(|b| self.order_of(b)).collect::<SyncResult<_>>()?;
        let wanted: HashSet<usize> = ranges.iter().map(|&r| r as usize).collect();
        let mut rows = Vec::new();
        self.scan(|r| rows.push(r)).await?;
        let mut out = Vec::new();
        for r in rows {
            let order = self.order_of(&r.key)?;
            if wanted.contains(&Self::range_of(&bounds, &order)) {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn end_snapshot(&mut self) -> SyncResult<()> {
        self.rows = Vec::new();
        self.server.end_snapshot().await
    }

    async fn position(&mut self) -> SyncResult<serde_json::Value> {
        let bounds = self.server.lsn_bounds(&self.capture_instance, &self.schema, &self.table).await?;
        Self::position_json(bounds.max)
    }

    async fn rows_by_key(&mut self, keys: &[Vec<String>]) -> SyncResult<Vec<CanonRow>> {
        let wanted: HashSet<&Vec<String>> = keys.iter().collect();
        self.server.begin_snapshot().await?;
        let mut rows = Vec::new();
        let scanned = self.scan(|r| rows.push(r)).await;
        self.server.end_snapshot().await?;
        scanned?;
        Ok(rows.into_iter().filter(|r| wanted.contains(&r.key)).collect())
    }

    async fn reached(
        &mut self,
        committed: Option<&serde_json::Value>,
        target: &serde_json::Value,
    ) -> SyncResult<Option<bool>> {
        let parse = |v: &serde_json::Value| serde_json::from_value::<MssqlPosition>(v.clone()).ok();
        Ok(match (committed.and_then(parse), parse(target)) {
            (Some(c), Some(t)) => Some(c.covers(&t)),
            (None, Some(_)) => Some(false),
            _ => None,
        })
    }

    fn describe_position(&self, position: &serde_json::Value) -> String {
        serde_json::from_value::<MssqlPosition>(position.clone())
            .map(|p| p.to_string())
            .unwrap_or_else(|_| position.to_string())
    }
}
