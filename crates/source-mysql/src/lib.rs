//! MySQL / MariaDB binlog change-data-capture source: one table (MySQL 5.7/8.x, Aurora MySQL,
//! PolarDB MySQL, MariaDB 10.3+) as a stream of Arrow [`ChangeBatch`]es.
//!
//! # Use as a library
//!
//! Make a [`MySqlSource`] from a [`MySqlSourceConfig`] (URL, database, table) and a task name,
//! which picks the server id the source registers with as a replica. Then drive it through the
//! [`Source`] trait, one call at a time: [`Source::check`] runs the pre-flight checks,
//! [`Source::describe`] reads the columns and the primary key, [`Source::open`] starts after a
//! position (`None` on a first start: snapshot, then stream), [`Source::next_batch`] hands out
//! [`ChangeBatch`]es (Arrow rows tagged with [`OP_COLUMN`](rtsync_core::OP_COLUMN), and the
//! [`MySqlPosition`] just after them), [`Source::ack`] does nothing for MySQL (the server keeps
//! no state for a replica) but call it anyway once a position is stored, and
//! [`Source::close`] disconnects. Store `batch.end` durably together with what you did with the
//! rows (as text through `Display`/`FromStr`, or as JSON through serde) and hand it back to
//! `open` to resume: the binlog must still hold it then. `examples/mysql_tail.rs` does all of
//! this against a server (`cargo run -p rtsync-source-mysql --example mysql_tail`).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use rtsync_source_mysql::{MySqlPosition, MySqlSource, MySqlSourceConfig, Source, SyncResult};
//!
//! # async fn tail(saved: Option<String>) -> SyncResult<()> {
//! let url = "mysql://rtsync:rtsync@127.0.0.1:13306/rtsync";
//! let mut source = MySqlSource::new("orders", MySqlSourceConfig::new(url, "shop", "orders"))?;
//! source.check().await?;
//! // `saved`: the position this program stored last time, if any.
//! let resume = saved.map(|text| text.parse::<MySqlPosition>()).transpose()?;
//! source.open(resume).await?;
//! while let Some(batch) = source.next_batch(Duration::from_secs(1)).await? {
//!     println!("{} change rows up to {}", batch.num_rows(), batch.end);
//!     let checkpoint = batch.end.to_string(); // store it with the rows, durably
//!     source.ack(&batch.end).await?;
//! #   let _ = checkpoint;
//! }
//! source.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! **Pre-flight.** [`Source::check`] reads the flavour and binlog settings once
//! ([`ServerInfo`], then [`MySqlSource::server_info`]) and runs named checks that each say how
//! to fix what they find: `ensure_log_bin_on`, `ensure_row_binlog_format`,
//! `ensure_full_row_image`, `ensure_replication_privileges` (REPLICATION SLAVE + REPLICATION
//! CLIENT / MariaDB BINLOG MONITOR + SELECT), `ensure_table_exists`, `ensure_primary_key`,
//! `ensure_decodable_charsets` and `ensure_server_id_differs`.
//! Each task registers as a replica with its own server id, derived from the task name inside
//! `server_id_range` unless `server_id` is set.
//!
//! **Snapshot.** A task's first start copies the table inside one REPEATABLE READ snapshot
//! transaction tied to a binlog position B, then streams from B. How the snapshot is tied to B
//! ([`SnapshotLocking`]):
//! * MariaDB: `START TRANSACTION WITH CONSISTENT SNAPSHOT` and, in the same transaction,
//!   `SHOW STATUS LIKE 'binlog_snapshot_%'`: MariaDB reports the binlog position of exactly
//!   that snapshot. No lock of any kind.
//! * MySQL: `LOCK TABLES t READ` on a second connection for the milliseconds it takes to start
//!   the snapshot and read `SHOW BINARY LOG STATUS` (or `SHOW MASTER STATUS` before 8.2) with
//!   its executed GTID set. Only writers of this one table wait; nothing global like
//!   `FLUSH TABLES WITH READ LOCK`, which RDS and Aurora refuse anyway.
//! * Fallback (`none`, and what `auto` does on MySQL when LOCK TABLES is not granted): read B
//!   first, then start the snapshot. The copy may already contain changes logged after B.
//!   Streaming from B replays them, and because every row event carries the full row image
//!   and the sink applies upserts by key, replaying a change over a copy that already has it
//!   rewrites the same row: after the stream passes the snapshot's start the target equals
//!   the source. Between B and that point the target may briefly show a row newer than its
//!   neighbours; it never loses or duplicates one.
//!
//! The copy reads primary-key chunks (`WHERE k > ? ORDER BY k LIMIT n`, expanded for
//! composite keys), each emitted as one batch of `__op = 'r'` rows whose position is B plus
//! [`SnapshotProgress`] (rows copied, last key). Memory holds one chunk plus the bounded
//! channel. A task that crashes mid-copy resumes with a *fresh* snapshot reading only keys
//! after the last committed one, and then streams from the ORIGINAL B. The rows copied before
//! the crash are as of B; the new ones are as of a later point; the binlog from B replays
//! every change to both, so by the same full-image argument the target converges.
//!
//! **Position.** [`MySqlPosition`]: binlog file + offset of the end of the last whole
//! transaction, plus the GTIDs covered — a MySQL GTID set (`uuid:1-5,…`, tags included) or a
//! MariaDB `domain-server-seq` list — plus snapshot progress while copying. It only moves at
//! transaction boundaries (XID, COMMIT, or a DDL's own group), so a batch never ends inside a
//! transaction: a resume never replays half of one. (One exception bounds memory: a
//! transaction of more than `2 × max_batch_rows` rows of the table is handed over in parts
//! that carry the position *before* it; a restart replays it whole, which upserts absorb.)
//! The stream resumes by GTID when the position has GTIDs (MySQL `COM_BINLOG_DUMP_GTID`;
//! MariaDB `@slave_connect_state`) — that survives a fail-over to a replica whose files
//! differ — and by file + offset otherwise ([`ResumeBy`]). An idle task still emits an empty
//! batch with its advancing position every `idle_position_secs`, so its checkpoint does not
//! age into binlog files the server purges.
//!
//! **Streaming.** One replica connection (`@mariadb_slave_capability=4`, a heartbeat every
//! `heartbeat_secs`). Events are decoded by the binlog decoder (`src/binlog.rs`): TABLE_MAP,
//! WRITE/UPDATE/DELETE rows v1 and v2, MariaDB's zlib-compressed rows and query events (decoded, never dropped),
//! MySQL 8 TRANSACTION_PAYLOAD (decompressed by the client; a payload it failed to expand is
//! detected and refused, not skipped), GTID events of both flavours, ROTATE (the first fake
//! one's name has its CRC stripped), heartbeats. Row images are walked column by column
//! straight into Arrow builders. An UPDATE that changes the primary key becomes a delete of
//! the old key and an insert of the new row. A lost connection, a server restart or a stream
//! that just ends is reconnected in place from the last committed transaction for up to
//! `reconnect_timeout_secs`, then reported as transient.
//!
//! **Schema changes.** A DDL on the table makes the decoder re-read its columns from
//! information_schema; the next TABLE_MAP (which, with `binlog_row_metadata=FULL`, names its
//! columns itself and is the authority for the layout of the rows that follow) switches the
//! batches to the new schema: batches before carry the old columns, batches after the new
//! ones (an added column appears; the sink adds it to the target). A TRUNCATE, which logs no
//! row events, becomes one row with `__op = 't'` (every column NULL): the sink empties the
//! table there. DROP and RENAME of the table stop the task with an error naming them.
//!
//! **Acknowledgement.** MySQL keeps no state for a replica (no slot): [`Source::ack`] does
//! nothing. The position lives in the Delta table, and the binlog must still hold it when the
//! task restarts — a purged position is a definite error naming `on_purged_binlog`, whose
//! `resnapshot` value copies the table again, starting with a truncate row (`__op = 't'`) so
//! rows deleted while the binlog was lost do not survive in the target.
//!
//! **Errors.** One conversion point (`src/error.rs`): unreachable servers, lost connections, lock
//! timeouts and shutdowns are transient; refused credentials, missing privileges, missing
//! tables, binlog settings, purged positions, undecodable events and unsupported DDL are
//! definite and name the fix. Nothing read from the binlog is silently skipped: an event that
//! cannot be decoded stops the task.
//!
//! Types: see [`schema`] for the MySQL → Arrow mapping.

mod binlog;
pub mod browse;
mod config;
mod decode;
mod error;
mod gtid;
mod position;
mod preflight;
pub mod schema;
mod snapshot;
mod stream;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rtsync_core::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;

pub use config::{MySqlSourceConfig, OnPurgedBinlog, ResumeBy, SnapshotLocking, SnapshotMode};
pub use gtid::{Gtids, MariaGtid, MariaGtidList, MySqlGtidSet};
pub use position::{KeyValue, MySqlPosition, SnapshotProgress};
pub use preflight::{Flavor, ServerInfo};
/// The `rtsync-core` contracts and types a user of this crate needs, so that a program can
/// depend on this crate alone.
pub use rtsync_core::{ChangeBatch, ErrorKind, Position, Source, SyncError, SyncResult, TableDescription, arrow};
pub use schema::{ColumnKind, ColumnSpec, TableSchema};

use crate::preflight::{
    ensure_decodable_charsets, ensure_full_row_image, ensure_log_bin_on, ensure_primary_key,
    ensure_replication_privileges, ensure_row_binlog_format, ensure_server_id_differs, ensure_table_exists,
};
use crate::stream::{Start, Worker};

/// Batches in flight between the worker and the engine.
const CHANNEL_DEPTH: usize = 4;

/// One MySQL or MariaDB table as an rtsync [`Source`].
pub struct MySqlSource {
    config: Arc<MySqlSourceConfig>,
    task: String,
    server_id: u32,
    info: Option<ServerInfo>,
    table: Option<TableSchema>,
    batches: Option<mpsc::Receiver<SyncResult<ChangeBatch<MySqlPosition>>>>,
    worker: Option<tokio::task::JoinHandle<()>>,
    /// Rows the running snapshot has copied (None once streaming), and the optimizer's
    /// estimate of the table's rows taken when it started.
    snapshot_rows: Option<u64>,
    estimated_rows: Option<u64>,
}

impl MySqlSource {
    /// A source for `task` (its name picks the replica server id unless `server_id` is set).
    pub fn new(task: impl Into<String>, config: MySqlSourceConfig) -> SyncResult<Self> {
        config.validate()?;
        let task = task.into();
        let server_id = config.server_id_for(&task);
        Ok(Self {
            config: Arc::new(config),
            task,
            server_id,
            info: None,
            table: None,
            batches: None,
            worker: None,
            snapshot_rows: None,
            estimated_rows: None,
        })
    }

    /// The replica server id this task registers with.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The server's flavour and settings, once [`Source::check`] ran.
    pub fn server_info(&self) -> Option<&ServerInfo> {
        self.info.as_ref()
    }

    /// The table's columns as last read from the catalog.
    pub fn table(&self) -> Option<&TableSchema> {
        self.table.as_ref()
    }

    /// The optimizer's estimate of the table's rows for a snapshot's progress (a failure
    /// only costs the estimate).
    async fn estimate_rows(&self) -> Option<u64> {
        let cfg = &self.config;
        let estimate = async {
            let mut conn = snapshot::connect(&cfg.opts()?, cfg).await?;
            let rows = snapshot::estimated_rows(&mut conn, &cfg.schema, &cfg.table).await;
            let _ = conn.disconnect().await;
            rows
        };
        estimate.await.unwrap_or_else(|e| {
            tracing::debug!(task = %self.task, error = %e.report(), "no row estimate for the snapshot's progress");
            None
        })
    }

    fn table_or_err(&self) -> SyncResult<&TableSchema> {
        self.table.as_ref().ok_or_else(|| SyncError::internal("the MySQL source was not checked before use"))
    }
}

#[async_trait]
impl Source for MySqlSource {
    type Position = MySqlPosition;

    async fn check(&mut self) -> SyncResult<()> {
        let cfg = &self.config;
        let opts = cfg.opts()?;
        let mut conn = snapshot::connect(&opts, cfg).await?;
        let info = ServerInfo::read(&mut conn).await?;
        ensure_log_bin_on(&info)?;
        ensure_row_binlog_format(&info)?;
        ensure_full_row_image(&info)?;
        ensure_server_id_differs(&info, self.server_id)?;
        let table = schema::read_table(&mut conn, &cfg.schema, &cfg.table, info.flavor.mariadb).await?;
        let table = ensure_table_exists(table.as_ref(), cfg)?.clone();
        ensure_primary_key(&table, cfg)?;
        ensure_decodable_charsets(&table, cfg)?;
        ensure_replication_privileges(&mut conn, &info, cfg).await?;
        if !info.full_row_metadata() {
            tracing::warn!(
                task = %self.task,
                "binlog_row_metadata is not FULL: column names come from information_schema, so a schema change while the task lags can stop it; SET GLOBAL binlog_row_metadata = 'FULL'"
            );
        }
        tracing::info!(task = %self.task, server = %info.flavor.version_string, flavor = info.flavor.name(), server_id = self.server_id, "mysql source checked");
        let _ = conn.disconnect().await;
        self.info = Some(info);
        self.table = Some(table);
        Ok(())
    }

    async fn describe(&mut self) -> SyncResult<Option<TableDescription>> {
        if self.table.is_none() {
            self.check().await?;
        }
        let table = self.table_or_err()?;
        Ok(Some(TableDescription { schema: table.row_schema(), primary_key: table.primary_key.clone() }))
    }

    async fn open(&mut self, resume: Option<MySqlPosition>) -> SyncResult<SchemaRef> {
        if self.info.is_none() || self.table.is_none() {
            self.check().await?;
        }
        self.close().await?;
        let (Some(info), Some(table)) = (self.info.clone(), self.table.clone()) else {
            return Err(SyncError::internal("the MySQL source was not checked before open"));
        };
        let start = match resume {
            Some(p) if p.is_snapshot() => Start::Snapshot(Some(p)),
            Some(p) => Start::Stream(p),
            None => match self.config.snapshot_mode {
                SnapshotMode::Initial => Start::Snapshot(None),
                SnapshotMode::Never => Start::Now,
            },
        };
        self.snapshot_rows = match &start {
            Start::Snapshot(p) => Some(p.as_ref().and_then(|p| p.snapshot.as_ref()).map_or(0, |s| s.rows)),
            _ => None,
        };
        self.estimated_rows = None;
        if self.snapshot_rows.is_some() {
            self.estimated_rows = self.estimate_rows().await;
        }
        let schema = schema::batch_schema(&table.columns);
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let worker =
            Worker { cfg: self.config.clone(), opts: self.config.opts()?, info, table, server_id: self.server_id, tx };
        self.worker = Some(tokio::spawn(worker.run(start)));
        self.batches = Some(rx);
        Ok(schema)
    }

    async fn next_batch(&mut self, max_wait: Duration) -> SyncResult<Option<ChangeBatch<MySqlPosition>>> {
        let Some(rx) = self.batches.as_mut() else {
            return Err(SyncError::internal("next_batch called before open"));
        };
        match tokio::time::timeout(max_wait, rx.recv()).await {
            Err(_) => Ok(None),
            Ok(Some(Ok(batch))) => {
                self.snapshot_rows = batch.end.snapshot.as_ref().map(|s| s.rows);
                Ok(Some(batch))
            }
            Ok(Some(Err(e))) => Err(e),
            Ok(None) => Err(SyncError::internal("the MySQL binlog worker stopped without an error")),
        }
    }

    fn snapshot_progress(&self) -> Option<rtsync_core::SnapshotProgress> {
        let rows = self.snapshot_rows?;
        Some(rtsync_core::SnapshotProgress { rows, estimated_rows: self.estimated_rows })
    }

    /// MySQL keeps no replica state to confirm: the position lives in the target table.
    async fn ack(&mut self, _durable: &MySqlPosition) -> SyncResult<()> {
        Ok(())
    }

    async fn close(&mut self) -> SyncResult<()> {
        self.batches = None;
        if let Some(worker) = self.worker.take() {
            worker.abort();
            let _ = worker.await;
        }
        Ok(())
    }
}

impl Drop for MySqlSource {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.abort();
        }
    }
}
