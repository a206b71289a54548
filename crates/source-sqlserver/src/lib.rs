//! SQL Server change data capture for rtsync: one table, read from its CDC capture instance
//! as Arrow [`ChangeBatch`]es.
//!
//! # What the server must have
//!
//! CDC enabled on a user database (`EXEC sys.sp_cdc_enable_db`; never on a system database
//! such as `master`) and on the table (`EXEC sys.sp_cdc_enable_table`, which creates a
//! *capture instance* and its change table `cdc.<instance>_CT`), SQL Server Agent running the
//! capture job, `ALLOW_SNAPSHOT_ISOLATION ON`, and a user with SELECT on the table and on the
//! `cdc` schema and VIEW DATABASE STATE. The pre-flight check ([`Source::check`]) verifies
//! each with a named function ([`ensure_user_database`], [`ensure_cdc_enabled`],
//! [`ensure_snapshot_isolation`], [`ensure_permissions`], [`ensure_capture_instance`],
//! [`ensure_key`]) whose error names the statement that fixes it. rtsync never changes the
//! CDC configuration: it belongs to the DBA, and undeploy leaves it alone.
//!
//! # Snapshot
//!
//! On a first start the table is copied inside one SNAPSHOT-isolation transaction whose first
//! read is `sys.fn_cdc_get_max_lsn()`: that read fixes the transaction's snapshot point, so
//! the LSN it returns is consistent with the rows the copy sees. Every change the capture job
//! had harvested up to that LSN committed before the snapshot point (it is in the copy);
//! every change it harvests later has a greater LSN and is streamed. A change committed
//! before the snapshot point but harvested after it is both in the copy and streamed: the
//! upsert sink applies it again, which converges to the same row (nothing is ever missed).
//!
//! The copy runs in primary-key order, one keyset chunk per batch (`SELECT TOP (n) … WHERE
//! key > @last ORDER BY key`, the key compared through a lossless `CONVERT` of its text), each
//! batch's position carrying the last key copied. A resumed snapshot copies the remaining
//! chunks in a fresh snapshot transaction and then streams from the ORIGINAL LSN: every row
//! the fresh read sees is at least as new as that LSN, and every change after it is replayed
//! in order, so the target converges to the source.
//!
//! # Streaming
//!
//! The change table of the capture instance is polled (every `poll_interval_ms` while idle)
//! up to `sys.fn_cdc_get_max_lsn()` (so a lagging capture job only delays), ordered as
//! Microsoft documents it: `__$start_lsn` (the commit LSN), `__$command_id`, `__$seqval`,
//! `__$operation`. Operations 1 (delete) and 2 (insert) are one row each; an update is the
//! pair 3 (before) → 4 (after) with the same `__$seqval`, and a 3 not followed by its 4 (or a
//! 4 without its 3) stops the task with a data error rather than being dropped. A `(max)`
//! column (and text, ntext, image, xml) that an update did not change arrives NULL with its
//! bit clear in `__$update_mask` (big-endian: the LAST byte holds ordinals 1..8); it is
//! listed in `__unchanged` so the sink keeps the stored value. An update whose key changed
//! carries the old key in `__before_<k>` (SQL Server usually logs such updates as a delete and
//! an insert instead, which needs nothing special). See `rtsync_core::batch`.
//!
//! # Position
//!
//! [`MssqlPosition`]: `Snapshot { lsn, rows, last_key }` while copying, then
//! `Streaming { lsn, rows }`: every transaction committed at or below `lsn` has been emitted
//! (`rows: None`), or of the transaction AT `lsn` its first `rows` change rows (a transaction
//! larger than a batch is split there). It is committed in the Delta transaction with the
//! data. An idle table's position still advances to the max LSN, committed every
//! `idle_advance_secs` (each advance is a Delta commit), so an idle task never falls behind
//! the cleanup job's retention.
//!
//! # Capture instances and retention
//!
//! A table has at most two capture instances; the second is how a DBA captures a new shape of
//! the table. The source reads the older one up to the LSN just before the newer one's
//! `start_lsn`, then the newer one (new columns appear in the batches from then on, and the
//! sink adds them to the target). Every poll reads the table's number of capture instances with
//! the LSN bounds and re-reads them when it changed, before reading up to that max LSN: the
//! changes up to it committed before a new instance existed, so the older one holds them all.
//! When the cleanup job has removed changes the position still
//! needs (`sys.fn_cdc_get_min_lsn(ci)` above the next LSN to read), the task stops with an
//! error naming the fix, or copies the table again when `resnapshot_on_retention_loss` is set.
//!
//! # Errors
//!
//! An unreachable server, a dropped connection, a deadlock or a timeout: transient, the
//! engine retries. Refused credentials, missing CDC setup or permissions, no key, lost
//! retention: definite ([`rtsync_core::ErrorKind::Source`]). A value that does not fit its
//! column: a data error naming the column.

pub mod browse;
pub mod config;
pub mod position;
pub mod rows;
pub mod server;
pub mod sim;
pub mod sql;
pub mod types;
pub mod verify;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rtsync_core::arrow::datatypes::{Field, Schema, SchemaRef};
use rtsync_core::{ChangeBatch, Position, SnapshotProgress, Source, SyncError, SyncResult, TableDescription};

pub use config::SqlServerSourceConfig;
pub use position::{Lsn, MssqlPosition};
pub use server::{CaptureInstance, CatalogColumn, CdcServer, LsnBounds, Preflight, TdsServer};

use crate::rows::{RowColumn, RowsBuilder};
use crate::sql::SqlColumn;

/// How often a streaming task re-reads the table's capture instances, to find a new one.
const CAPTURE_INSTANCE_REFRESH: Duration = Duration::from_secs(10);

/// System databases (`master`, `tempdb`, `model`, `msdb`) have ids 1 to 4.
const MAX_SYSTEM_DATABASE_ID: i32 = 4;

/// Refuses a system database: CDC cannot be enabled there.
pub fn ensure_user_database(p: &Preflight) -> SyncResult<()> {
    if p.database_id <= MAX_SYSTEM_DATABASE_ID {
        return Err(SyncError::source_err(format!(
            "database {} is a system database, where CDC cannot be enabled: name a user database in the url (mssql://user:password@host:1433/<database>)",
            p.database
        )));
    }
    Ok(())
}

pub fn ensure_cdc_enabled(p: &Preflight) -> SyncResult<()> {
    if !p.is_cdc_enabled {
        return Err(SyncError::source_err(format!(
            "CDC is not enabled on database {}: run USE [{}]; EXEC sys.sp_cdc_enable_db; (as sysadmin) and make sure SQL Server Agent runs",
            p.database, p.database
        )));
    }
    Ok(())
}

pub fn ensure_snapshot_isolation(p: &Preflight) -> SyncResult<()> {
    if p.snapshot_isolation_state != 1 {
        return Err(SyncError::source_err(format!(
            "database {} does not allow SNAPSHOT isolation, which the consistent snapshot needs: run ALTER DATABASE [{}] SET ALLOW_SNAPSHOT_ISOLATION ON",
            p.database, p.database
        )));
    }
    Ok(())
}

pub fn ensure_permissions(p: &Preflight, schema: &str, table: &str) -> SyncResult<()> {
    let mut missing = Vec::new();
    if !p.can_select_table {
        missing.push(format!("GRANT SELECT ON [{schema}].[{table}] TO <user>"));
    }
    if !p.can_select_cdc {
        missing.push("GRANT SELECT ON SCHEMA::cdc TO <user>".to_string());
    }
    if !p.can_view_database_state {
        missing.push("GRANT VIEW DATABASE STATE TO <user>".to_string());
    }
    if !missing.is_empty() {
        return Err(SyncError::source_err(format!(
            "the user lacks permissions on database {}: {}",
            p.database,
            missing.join("; ")
        )));
    }
    Ok(())
}

pub fn ensure_capture_instance(instances: &[CaptureInstance], schema: &str, table: &str) -> SyncResult<()> {
    if instances.is_empty() {
        return Err(SyncError::source_err(format!(
            "table [{schema}].[{table}] has no CDC capture instance: run EXEC sys.sp_cdc_enable_table @source_schema = N'{schema}', @source_name = N'{table}', @role_name = NULL"
        )));
    }
    Ok(())
}

/// The key rows are identified by: the primary key, else the capture instance's index.
pub fn ensure_key(
    primary_key: &[String],
    instance: &CaptureInstance,
    schema: &str,
    table: &str,
) -> SyncResult<Vec<String>> {
    if !primary_key.is_empty() {
        return Ok(primary_key.to_vec());
    }
    if !instance.index_columns.is_empty() {
        return Ok(instance.index_columns.clone());
    }
    Err(SyncError::source_err(format!(
        "table [{schema}].[{table}] has no primary key and its capture instance {} no unique index: add a primary key, or re-create the capture instance with @index_name naming a unique index",
        instance.name
    )))
}

/// The warnings of the pre-flight check that do not stop the task.
pub fn preflight_warnings(p: &Preflight, columns: &[CatalogColumn]) -> Vec<String> {
    let mut out = Vec::new();
    if p.max_text_repl_size != -1 && columns.iter().any(|c| c.column.ty.is_lob()) {
        out.push(format!(
            "max text repl size is {} bytes: larger values of the table's (max)/text/xml columns are truncated in the change table; run EXEC sp_configure 'max text repl size', -1; RECONFIGURE",
            p.max_text_repl_size
        ));
    }
    if p.last_capture_scan.is_none() {
        out.push("the CDC capture job has not finished a log scan yet: make sure SQL Server Agent runs (changes are streamed once it does)".to_string());
    }
    out
}

type ServerFuture<S> = Pin<Box<dyn Future<Output = SyncResult<S>> + Send>>;

/// Opens a connection to the server (a new one per call).
pub type Connect<S> = Arc<dyn Fn() -> ServerFuture<S> + Send + Sync>;

enum Phase {
    Closed,
    Snapshot { lsn: Lsn, rows: u64, last_key: Option<Vec<String>>, in_transaction: bool },
    Streaming,
}

/// One SQL Server table as an rtsync [`Source`], over any [`CdcServer`].
pub struct SqlServerSource<S: CdcServer = TdsServer> {
    task: String,
    config: SqlServerSourceConfig,
    connect: Connect<S>,
    server: Option<S>,
    columns: Vec<CatalogColumn>,
    key: Vec<String>,
    instances: Vec<CaptureInstance>,
    /// Index into `instances` of the one being read.
    current: usize,
    rows: Option<RowsBuilder>,
    phase: Phase,
    /// Where reading stands (may be ahead of `emitted` while idle).
    cursor: Option<MssqlPosition>,
    emitted: Option<MssqlPosition>,
    last_emit: Instant,
    /// A re-snapshot over an existing target starts with a truncate row.
    pending_truncate: bool,
    /// When the capture instances were last read.
    instances_read: Instant,
    /// How many capture instances the table had then (before the `capture_instance` filter).
    instances_seen: usize,
    /// The server's count of the table's rows when the running snapshot started.
    estimated_rows: Option<u64>,
}

impl SqlServerSource<TdsServer> {
    /// A source over TDS. Validates the configuration; connects in check/open.
    pub fn new(task: impl Into<String>, config: SqlServerSourceConfig) -> SyncResult<Self> {
        config.validate()?;
        let task = task.into();
        let app = format!("rtsync {task}");
        let cfg = config.clone();
        let connect: Connect<TdsServer> = Arc::new(move || {
            let (cfg, app) = (cfg.clone(), app.clone());
            Box::pin(async move { TdsServer::connect(&cfg, &app).await })
        });
        Ok(Self::with_server(task, config, connect))
    }
}

impl<S: CdcServer> SqlServerSource<S> {
    /// A source over the server `connect` opens (the simulator in tests).
    pub fn with_server(task: impl Into<String>, config: SqlServerSourceConfig, connect: Connect<S>) -> Self {
        Self {
            task: task.into(),
            config,
            connect,
            server: None,
            columns: Vec::new(),
            key: Vec::new(),
            instances: Vec::new(),
            current: 0,
            rows: None,
            phase: Phase::Closed,
            cursor: None,
            emitted: None,
            last_emit: Instant::now(),
            pending_truncate: false,
            instances_read: Instant::now(),
            instances_seen: 0,
            estimated_rows: None,
        }
    }

    async fn server(&mut self) -> SyncResult<&mut S> {
        if self.server.is_none() {
            self.server = Some((self.connect)().await?);
        }
        self.server.as_mut().ok_or_else(|| SyncError::internal("no SQL Server connection"))
    }

    fn table_name(&self) -> String {
        format!("[{}].[{}]", self.config.schema, self.config.table)
    }

    async fn load_catalog(&mut self) -> SyncResult<()> {
        let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
        let server = self.server().await?;
        let columns = server.table_columns(&schema, &table).await?;
        if columns.is_empty() {
            return Err(SyncError::source_err(format!(
                "table [{schema}].[{table}] does not exist, or the user cannot see it"
            )));
        }
        let pk = server.primary_key(&schema, &table).await?;
        let mut instances = server.capture_instances(&schema, &table).await?;
        self.instances_seen = instances.len();
        if let Some(ci) = &self.config.capture_instance {
            instances.retain(|i| &i.name == ci);
            if instances.is_empty() {
                return Err(SyncError::source_err(format!(
                    "capture instance {ci} (the configured capture_instance) is not one of table [{schema}].[{table}]'s"
                )));
            }
        }
        ensure_capture_instance(&instances, &schema, &table)?;
        instances.sort_by_key(|i| i.start_lsn);
        let newest = instances.last().ok_or_else(|| SyncError::internal("no capture instance"))?;
        self.key = ensure_key(&pk, newest, &schema, &table)?;
        self.columns = columns;
        self.instances = instances;
        self.instances_read = Instant::now();
        Ok(())
    }

    fn row_columns(&self, instance: usize) -> Vec<RowColumn> {
        self.instances[instance]
            .columns
            .iter()
            .map(|(c, ordinal)| RowColumn { column: c.column.clone(), ordinal: *ordinal })
            .collect()
    }

    /// The snapshot reads the table's columns that the instance captures, in its order.
    fn snapshot_columns(&self) -> Vec<SqlColumn> {
        self.rows.as_ref().map(|r| r.columns().iter().map(|c| c.column.clone()).collect()).unwrap_or_default()
    }

    fn key_columns(&self) -> Vec<SqlColumn> {
        let cols = self.snapshot_columns();
        self.key.iter().filter_map(|k| cols.iter().find(|c| &c.name == k).cloned()).collect()
    }

    /// The instance that holds the changes after `lsn`: the newest one starting at or before
    /// the next LSN, else None (no instance covers it).
    fn instance_for(&self, lsn: Lsn) -> Option<usize> {
        self.instances.iter().rposition(|i| i.start_lsn <= lsn.increment())
    }

    fn use_instance(&mut self, index: usize) -> SyncResult<()> {
        self.current = index;
        self.rows = Some(RowsBuilder::new(self.row_columns(index), &self.key)?);
        Ok(())
    }

    fn schema(&self) -> SchemaRef {
        self.rows.as_ref().map(RowsBuilder::schema).unwrap_or_else(|| Arc::new(Schema::empty()))
    }

    /// Takes the server's row count for the snapshot's progress (a failure only costs it).
    async fn estimate_rows(&mut self) {
        let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
        let estimate = match self.server().await {
            Ok(server) => server.estimated_rows(&schema, &table).await,
            Err(e) => Err(e),
        };
        self.estimated_rows = estimate.unwrap_or_else(|e| {
            tracing::debug!(task = %self.task, error = %e.report(), "no row estimate for the snapshot's progress");
            None
        });
    }

    async fn start_snapshot(&mut self) -> SyncResult<()> {
        self.estimate_rows().await;
        let lsn = self.server().await?.begin_snapshot().await?;
        // The instances were read before the snapshot point, so one that starts after `lsn`
        // still holds every change after the snapshot point; changes between `lsn` and its
        // start committed before it was created, hence before the snapshot point.
        let index = self.instance_for(lsn).unwrap_or(0);
        self.use_instance(index)?;
        tracing::info!(task = %self.task, table = %self.table_name(), lsn = %lsn, capture_instance = %self.instances[index].name, "snapshot started");
        self.phase = Phase::Snapshot { lsn, rows: 0, last_key: None, in_transaction: true };
        self.cursor = Some(MssqlPosition::Snapshot { lsn, rows: 0, last_key: None });
        Ok(())
    }

    /// Checks that the change table still holds everything after the cursor; on loss, stops
    /// or (with `resnapshot_on_retention_loss`) copies the table again. True: re-snapshotting.
    async fn ensure_retention(&mut self, min_lsn: Lsn, next: Lsn) -> SyncResult<bool> {
        // A fresh instance's min LSN is its start: changes before it were never captured,
        // and a position below it comes from a snapshot taken after it was created.
        let ci = self.instances[self.current].name.clone();
        if min_lsn == Lsn::ZERO || min_lsn <= next || min_lsn <= self.instances[self.current].start_lsn {
            return Ok(false);
        }
        if self.config.resnapshot_on_retention_loss {
            tracing::warn!(task = %self.task, capture_instance = %ci, min_lsn = %min_lsn, next = %next, "re-snapshotting the table: the cleanup job removed changes the task needs");
            return Ok(true);
        }
        Err(SyncError::source_err(format!(
            "the CDC cleanup job removed changes this task still needs: capture instance {ci} starts at {min_lsn}, the task needs {next} on; raise the retention (EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = <minutes>), then redeploy the task with a fresh snapshot (or set resnapshot_on_retention_loss = true)"
        )))
    }

    fn emit(&mut self, position: MssqlPosition) -> SyncResult<ChangeBatch<MssqlPosition>> {
        let rows = self.rows.as_mut().ok_or_else(|| SyncError::internal("the source is not open"))?;
        let (rows, source_bytes) = rows.finish()?;
        match self.emitted.as_mut() {
            Some(e) => e.advance(&position),
            None => self.emitted = Some(position.clone()),
        }
        self.cursor = Some(position.clone());
        self.last_emit = Instant::now();
        Ok(ChangeBatch { rows, end: position, event_time_ms: None, source_bytes })
    }

    async fn next_snapshot_chunk(&mut self) -> SyncResult<ChangeBatch<MssqlPosition>> {
        let Phase::Snapshot { lsn, rows, last_key, in_transaction } = &self.phase else {
            return Err(SyncError::internal("not in a snapshot"));
        };
        let (lsn, done, last_key, in_transaction) = (*lsn, *rows, last_key.clone(), *in_transaction);
        if !in_transaction {
            // A resumed snapshot: the rest from a fresh snapshot transaction (see the crate doc).
            self.server().await?.begin_snapshot().await?;
        }
        let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
        let (columns, key) = (self.snapshot_columns(), self.key_columns());
        let limit = self.config.snapshot_chunk_rows;
        let chunk =
            self.server().await?.snapshot_chunk(&schema, &table, &columns, &key, last_key.as_deref(), limit).await?;
        let n = chunk.len();
        let mut new_key = last_key;
        let rows = self.rows.as_mut().ok_or_else(|| SyncError::internal("the source is not open"))?;
        if std::mem::take(&mut self.pending_truncate) {
            rows.push_truncate();
        }
        for (values, k) in chunk {
            rows.push_read(&values)?;
            new_key = Some(k);
        }
        let copied = done + n as u64;
        if n < limit {
            self.server().await?.end_snapshot().await?;
            tracing::info!(task = %self.task, table = %self.table_name(), rows = copied, "snapshot done");
            self.phase = Phase::Streaming;
            return self.emit(MssqlPosition::Streaming { lsn, rows: None });
        }
        self.phase = Phase::Snapshot { lsn, rows: copied, last_key: new_key.clone(), in_transaction: true };
        self.emit(MssqlPosition::Snapshot { lsn, rows: copied, last_key: new_key })
    }

    /// One poll of the change table. Some(batch) when it returned rows, or when an idle
    /// position advance is due.
    async fn poll_changes(&mut self) -> SyncResult<Option<ChangeBatch<MssqlPosition>>> {
        let cursor = self.cursor.clone().ok_or_else(|| SyncError::internal("the source is not open"))?;
        let (from, skip) = match &cursor {
            MssqlPosition::Streaming { lsn, rows } => (*lsn, *rows),
            MssqlPosition::Snapshot { lsn, .. } => (*lsn, None),
        };
        let next_needed = if skip.is_some() { from } else { from.increment() };
        let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
        let name = self.instances[self.current].name.clone();
        let bounds = self.server().await?.lsn_bounds(&name, &schema, &table).await?;
        // A new capture instance is noticed before reading up to this max LSN: every change
        // at or below it committed before the new instance existed, so the older one has it.
        if bounds.capture_instances != self.instances_seen || self.instances_read.elapsed() >= CAPTURE_INSTANCE_REFRESH
        {
            self.refresh_instances().await?;
        }
        let ci = self.instances[self.current].clone();
        let (min_lsn, max_lsn) = (bounds.min, bounds.max);
        if self.ensure_retention(min_lsn, next_needed).await? {
            self.start_snapshot().await?;
            self.pending_truncate = true;
            return Ok(None);
        }
        let next_instance = self.instances.get(self.current + 1).map(|i| i.start_lsn);
        let to = match next_instance {
            Some(start) if start.decrement() < max_lsn => start.decrement(),
            _ => max_lsn,
        };
        if skip.is_none() && from >= to {
            if let Some(start) = next_instance
                && from >= start.decrement()
                && start <= max_lsn
            {
                tracing::info!(task = %self.task, from = %ci.name, to = %self.instances[self.current + 1].name, start_lsn = %start, "switching to the newer capture instance");
                self.use_instance(self.current + 1)?;
                return self.emit(MssqlPosition::Streaming { lsn: from, rows: None }).map(Some);
            }
            return self.idle_advance(from);
        }
        let limit = self.config.max_batch_rows.max(2);
        let columns: Vec<SqlColumn> =
            self.rows.as_ref().map(|r| r.columns().iter().map(|c| c.column.clone()).collect()).unwrap_or_default();
        let mut changes =
            self.server().await?.changes(&ci, &columns, from, skip.is_some(), skip.unwrap_or(0), to, limit).await?;
        let full = changes.len() == limit;
        if full && changes.last().is_some_and(|c| c.operation == rows::OP_UPDATE_BEFORE) {
            // Its after-image is in the next page: read the pair together then.
            changes.pop();
        }
        if changes.is_empty() && !full {
            self.cursor = Some(MssqlPosition::Streaming { lsn: to, rows: None });
            return self.idle_advance(to);
        }
        let end = if full {
            let last = changes.last().map(|c| c.start_lsn).unwrap_or(from);
            let mut n = changes.iter().filter(|c| c.start_lsn == last).count() as u64;
            if last == from {
                n += skip.unwrap_or(0);
            }
            MssqlPosition::Streaming { lsn: last, rows: Some(n) }
        } else {
            MssqlPosition::Streaming { lsn: to, rows: None }
        };
        let rows = self.rows.as_mut().ok_or_else(|| SyncError::internal("the source is not open"))?;
        for c in changes {
            rows.push_change(c)?;
        }
        if rows.has_pending_before() {
            return Err(SyncError::data(format!(
                "change table of {}: an update's before-image (operation 3) is the last change up to {to}, without its after-image (operation 4)",
                ci.name
            )));
        }
        self.emit(end).map(Some)
    }

    /// Re-reads the capture instances (a DBA may add one for a new table shape while the task
    /// runs), keeping the one being read.
    async fn refresh_instances(&mut self) -> SyncResult<()> {
        let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
        let mut instances = self.server().await?.capture_instances(&schema, &table).await?;
        self.instances_seen = instances.len();
        if let Some(ci) = &self.config.capture_instance {
            instances.retain(|i| &i.name == ci);
        }
        instances.sort_by_key(|i| i.start_lsn);
        self.instances_read = Instant::now();
        let current = self.instances[self.current].name.clone();
        if let Some(index) = instances.iter().position(|i| i.name == current) {
            self.instances = instances;
            self.current = index;
        }
        Ok(())
    }

    /// Nothing new up to `to`: advance the read position, and emit it (an empty batch, one
    /// Delta commit) when the last emit is `idle_advance_secs` old.
    fn idle_advance(&mut self, to: Lsn) -> SyncResult<Option<ChangeBatch<MssqlPosition>>> {
        let pos = MssqlPosition::Streaming { lsn: to, rows: None };
        let ahead = self.emitted.as_ref().is_none_or(|e| !e.covers(&pos));
        if ahead && self.last_emit.elapsed() >= Duration::from_secs(self.config.idle_advance_secs) {
            return self.emit(pos).map(Some);
        }
        if self.cursor.as_ref().is_none_or(|c| !c.covers(&pos)) {
            self.cursor = Some(pos);
        }
        Ok(None)
    }
}

#[async_trait]
impl<S: CdcServer> Source for SqlServerSource<S> {
    type Position = MssqlPosition;

    async fn check(&mut self) -> SyncResult<()> {
        let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
        let p = self.server().await?.preflight(&schema, &table).await?;
        ensure_user_database(&p)?;
        ensure_cdc_enabled(&p)?;
        ensure_snapshot_isolation(&p)?;
        ensure_permissions(&p, &schema, &table)?;
        self.load_catalog().await?;
        for w in preflight_warnings(&p, &self.columns) {
            tracing::warn!(task = %self.task, table = %self.table_name(), "{w}");
        }
        Ok(())
    }

    async fn describe(&mut self) -> SyncResult<Option<TableDescription>> {
        if self.instances.is_empty() {
            self.load_catalog().await?;
        }
        let newest = self.instances.len() - 1;
        let fields: Vec<Field> = self.instances[newest]
            .columns
            .iter()
            .map(|(c, _)| Field::new(&c.column.name, c.column.ty.arrow_type(), true))
            .collect();
        Ok(Some(TableDescription { schema: Arc::new(Schema::new(fields)), primary_key: self.key.clone() }))
    }

    async fn open(&mut self, resume: Option<MssqlPosition>) -> SyncResult<SchemaRef> {
        if self.instances.is_empty() {
            self.load_catalog().await?;
        }
        self.emitted = resume.clone();
        self.last_emit = Instant::now();
        match resume {
            None => self.start_snapshot().await?,
            Some(MssqlPosition::Snapshot { lsn, rows, last_key }) => {
                let index = self.instance_for(lsn).unwrap_or(0);
                self.use_instance(index)?;
                self.estimate_rows().await;
                tracing::info!(task = %self.task, table = %self.table_name(), lsn = %lsn, rows, "snapshot resumed");
                self.phase = Phase::Snapshot { lsn, rows, last_key: last_key.clone(), in_transaction: false };
                self.cursor = Some(MssqlPosition::Snapshot { lsn, rows, last_key });
            }
            Some(MssqlPosition::Streaming { lsn, rows }) => {
                let next = if rows.is_some() { lsn } else { lsn.increment() };
                let index = self.instances.iter().rposition(|i| i.start_lsn <= next).unwrap_or(0);
                self.use_instance(index)?;
                let ci = self.instances[index].name.clone();
                let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
                let min_lsn = self.server().await?.lsn_bounds(&ci, &schema, &table).await?.min;
                if self.ensure_retention(min_lsn, next).await? {
                    self.start_snapshot().await?;
                    self.pending_truncate = true;
                } else {
                    tracing::info!(task = %self.task, table = %self.table_name(), position = %MssqlPosition::Streaming { lsn, rows }, capture_instance = %ci, "streaming changes");
                    self.phase = Phase::Streaming;
                    self.cursor = Some(MssqlPosition::Streaming { lsn, rows });
                }
            }
        }
        Ok(self.schema())
    }

    async fn next_batch(&mut self, max_wait: Duration) -> SyncResult<Option<ChangeBatch<MssqlPosition>>> {
        let deadline = Instant::now() + max_wait;
        loop {
            let batch = match self.phase {
                Phase::Closed => return Err(SyncError::internal("next_batch on a closed SQL Server source")),
                Phase::Snapshot { .. } => Some(self.next_snapshot_chunk().await?),
                Phase::Streaming => self.poll_changes().await?,
            };
            if batch.is_some() {
                return Ok(batch);
            }
            if matches!(self.phase, Phase::Snapshot { .. }) {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let poll = Duration::from_millis(self.config.poll_interval_ms);
            tokio::time::sleep(poll.min(deadline - now)).await;
        }
    }

    fn start_position(&self) -> Option<MssqlPosition> {
        match self.phase {
            Phase::Streaming => self.emitted.clone(),
            _ => None,
        }
    }

    fn snapshot_progress(&self) -> Option<SnapshotProgress> {
        match &self.phase {
            Phase::Snapshot { rows, .. } => Some(SnapshotProgress { rows: *rows, estimated_rows: self.estimated_rows }),
            Phase::Streaming | Phase::Closed => None,
        }
    }

    async fn close(&mut self) -> SyncResult<()> {
        self.server = None;
        self.phase = Phase::Closed;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn preflight() -> Preflight {
        Preflight {
            database: "shop".into(),
            database_id: 5,
            is_cdc_enabled: true,
            snapshot_isolation_state: 1,
            can_select_table: true,
            can_select_cdc: true,
            can_view_database_state: true,
            max_text_repl_size: -1,
            last_capture_scan: Some("2026-01-01 00:00:00.000".into()),
        }
    }

    #[test]
    fn preflight_checks_name_the_fix() {
        let ok = preflight();
        ensure_user_database(&ok).unwrap();
        ensure_cdc_enabled(&ok).unwrap();
        ensure_snapshot_isolation(&ok).unwrap();
        ensure_permissions(&ok, "dbo", "t").unwrap();
        let master = Preflight { database: "master".into(), database_id: 1, ..preflight() };
        assert!(ensure_user_database(&master).unwrap_err().to_string().contains("system database"));
        let off = Preflight { is_cdc_enabled: false, ..preflight() };
        assert!(ensure_cdc_enabled(&off).unwrap_err().to_string().contains("EXEC sys.sp_cdc_enable_db"));
        let si = Preflight { snapshot_isolation_state: 0, ..preflight() };
        assert!(ensure_snapshot_isolation(&si).unwrap_err().to_string().contains("SET ALLOW_SNAPSHOT_ISOLATION ON"));
        let perms = Preflight { can_select_cdc: false, can_view_database_state: false, ..preflight() };
        let err = ensure_permissions(&perms, "dbo", "t").unwrap_err().to_string();
        assert!(err.contains("GRANT SELECT ON SCHEMA::cdc") && err.contains("GRANT VIEW DATABASE STATE"), "{err}");
        assert!(ensure_capture_instance(&[], "dbo", "t").unwrap_err().to_string().contains("sys.sp_cdc_enable_table"));
        let ci = CaptureInstance {
            name: "dbo_t".into(),
            start_lsn: Lsn::ZERO,
            has_command_id: true,
            columns: Vec::new(),
            index_columns: Vec::new(),
        };
        assert_eq!(ensure_key(&["id".into()], &ci, "dbo", "t").unwrap(), ["id"]);
        assert!(ensure_key(&[], &ci, "dbo", "t").unwrap_err().to_string().contains("no primary key"));
        let ci = CaptureInstance { index_columns: vec!["code".into()], ..ci };
        assert_eq!(ensure_key(&[], &ci, "dbo", "t").unwrap(), ["code"]);
    }

    #[test]
    fn warnings_for_truncated_lobs_and_a_stopped_agent() {
        let lob = CatalogColumn {
            column: SqlColumn {
                name: "doc".into(),
                ty: types::SqlType::Text { lob: true },
                decl: "nvarchar(max)".into(),
            },
            nullable: true,
            source_type: "nvarchar(max)".into(),
        };
        assert!(preflight_warnings(&preflight(), std::slice::from_ref(&lob)).is_empty());
        let p = Preflight { max_text_repl_size: 65_536, last_capture_scan: None, ..preflight() };
        let w = preflight_warnings(&p, &[lob]);
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("max text repl size") && w[1].contains("SQL Server Agent"));
    }
}
