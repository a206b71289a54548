//! PostgreSQL change data capture for rtsync: one table, mirrored through logical replication
//! (the built-in `pgoutput` plugin) as Arrow [`ChangeBatch`]es.
//!
//! # Use as a library
//!
//! Make a [`PostgresSource`] from a [`PostgresSourceConfig`] (URL, schema, table) and a task
//! name, which names the replication slot and the publication (`rtsync_<task>`). Then drive it
//! through the [`Source`] trait, one call at a time: [`Source::check`] runs the pre-flight
//! checks, [`Source::describe`] reads the columns and the primary key, [`Source::open`] starts
//! after a position (`None` on a first start: snapshot, then stream), [`Source::next_batch`]
//! hands out [`ChangeBatch`]es (Arrow rows tagged with [`OP_COLUMN`](rtsync_core::OP_COLUMN),
//! and the [`PgPosition`] just after them), [`Source::ack`] tells the server that everything up
//! to a position is stored for good, and [`Source::close`] disconnects. Store `batch.end`
//! durably together with what you did with the rows (as text through `Display`/`FromStr`, or
//! as JSON through serde) before you acknowledge it, and hand it back to `open` to resume.
//! [`drop_replication_objects`] removes the slot and the publication when the task is gone for
//! good: a slot nobody reads holds WAL on the server. `examples/postgres_tail.rs` does all of
//! this against a server (`cargo run -p rtsync-source-postgres --example postgres_tail`).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use rtsync_source_postgres::{PgPosition, PostgresSource, PostgresSourceConfig, Source, SyncResult};
//!
//! # async fn tail(saved: Option<String>) -> SyncResult<()> {
//! let url = "postgres://rtsync:rtsync@127.0.0.1:15432/rtsync";
//! let mut source = PostgresSource::new("orders", PostgresSourceConfig::new(url, "public", "orders"))?;
//! source.check().await?;
//! // `saved`: the position this program stored last time, if any.
//! let resume = saved.map(|text| text.parse::<PgPosition>()).transpose()?;
//! source.open(resume).await?;
//! while let Some(batch) = source.next_batch(Duration::from_secs(1)).await? {
//!     println!("{} change rows up to {}", batch.num_rows(), batch.end);
//!     let checkpoint = batch.end.to_string(); // store it with the rows, durably…
//!     source.ack(&batch.end).await?; // …then let the server drop the WAL before it
//! #   let _ = checkpoint;
//! }
//! source.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Objects on the server
//!
//! Each task owns a **publication** `FOR TABLE schema.table` and a logical **replication
//! slot**, both named `rtsync_<task>` unless configured ([`PostgresSourceConfig`]). They are
//! created on first start and removed by [`drop_replication_objects`] when the task is
//! undeployed. A publication named in the configuration is the user's and is never dropped.
//!
//! # Snapshot
//!
//! On a first start the slot is created on a replication connection with `EXPORT_SNAPSHOT`.
//! The exported snapshot is imported at once into a `REPEATABLE READ` transaction on an
//! ordinary connection (`SET TRANSACTION SNAPSHOT`), so the copy sees exactly the
//! transactions committed before the slot's *consistent point*, and the slot streams exactly
//! the ones committed after it: nothing is missed, nothing is seen twice.
//!
//! The table is copied in primary-key order, one keyset chunk per query
//! (`COPY (SELECT … WHERE (key) > (last key) ORDER BY key LIMIT n) TO STDOUT`), each chunk
//! one batch of rows with `__op = 'r'`, so memory holds one chunk however large the table.
//! Each batch's position carries the last key copied (it orders positions and counts the rows
//! for the progress figures). The last snapshot batch (empty when the table ended exactly at a
//! chunk boundary, or is empty) carries the stream position instead, so the engine commits the
//! snapshot's end.
//!
//! **An interrupted snapshot starts over.** The exported snapshot dies with the process, and
//! no later read sees the table as of the slot's consistent point. Continuing after the last
//! copied key from a fresh read and replaying the stream from the consistent point does not
//! converge once values travel between keys: an UPDATE that changes a row's key and leaves an
//! out-of-line TOAST value unchanged takes that value from the old key's stored row, and after
//! a fresh read the stored row can be a *later* state of that key (a swap of two keys then
//! lands one row's value under the other; the CDC fuzzer found it). So the next attempt drops
//! the slot, creates a new one with a new exported snapshot, emits a truncate row (see below)
//! so the rows copied so far go, and copies the whole table again; the stream then starts at
//! the new consistent point. Debezium's initial snapshot does the same. A table without a
//! primary key (REPLICA IDENTITY FULL, or a replica-identity index used as the key) is copied
//! by one unordered COPY, and starts over the same way.
//!
//! With `snapshot = "never"` the slot is created without a snapshot and only changes committed
//! after that are streamed.
//!
//! # Streaming
//!
//! `START_REPLICATION` (via `pgwire-replication`) from the position's LSN, protocol version 1,
//! text values under pinned session settings (ISO dates, UTC, exact floats, hex bytea, ISO
//! 8601 intervals). The messages are decoded here (`src/pgoutput.rs`) straight into Arrow
//! builders:
//!
//! * Insert → `__op = 'c'` with the new row; Update → `'u'` with the new row; Delete → `'d'`
//!   with the old image (the key columns, or every column with REPLICA IDENTITY FULL; the
//!   others NULL).
//! * An update that changes the key is one `'u'` row: the new image plus the old key in the
//!   reserved `__before_<key>` columns (`rtsync_core::batch`'s change-row contract), so an
//!   upsert sink removes the old row and carries over what the update did not send.
//! * A TOASTed value an update did not change is not sent by PostgreSQL. When the update
//!   carries the full old row (REPLICA IDENTITY FULL) the value is taken from it. Otherwise the
//!   column is NULL in the row and its name is listed in the reserved column
//!   [`UNCHANGED_COLUMN`] (`__unchanged`, `List<Utf8>`, NULL when nothing is missing; the
//!   column appears only in batches that need it). The sink keeps the value the row held before
//!   the change: its stored value, an earlier image of the same key in the same commit, or,
//!   after a key change, the old key's value (pgoutput sends an out-of-line TOAST value of a
//!   key-changing update only as unchanged, under the old key).
//! * Truncate of the table → one row with `__op = 't'` ([`TRUNCATE_OP`]) and every column
//!   NULL, in stream order: the sink deletes every target row written before it.
//! * Relation messages map columns by name. A column added at the source appears in the
//!   batches from then on (earlier rows of the batch get NULL); a dropped column stays in the
//!   schema and is NULL from then on; a type change that alters the Arrow type stops the task.
//! * Begin/Commit frame transactions; Type, Origin and logical Messages are ignored.
//!
//! A batch ends only at a transaction boundary, except that a transaction larger than
//! `max_batch_rows` is split; its pieces carry the position of the last *complete*
//! transaction, so the position only advances at its commit (a crash in between replays the
//! whole transaction, which an upsert sink applies idempotently).
//!
//! # Position
//!
//! [`PgPosition`]: `Snapshot { slot_lsn, rows, last_key }` while copying, then
//! `Streaming { lsn }` where `lsn` is the end LSN of the last transaction emitted (the
//! consistent point right after the snapshot). Restarting the slot at that LSN makes
//! PostgreSQL skip exactly the transactions already emitted. LSNs display as PostgreSQL does
//! (`16/B374D848`).
//!
//! # Acknowledgement
//!
//! The server is told a flushed LSN only in [`Source::ack`], which the engine calls after the
//! sink's commit is durable; a received change is never acknowledged. Snapshot positions are
//! never sent (the slot must keep its consistent point until the copy is committed). The
//! replication worker answers keepalives by itself, also while the engine is busy writing, so
//! `wal_sender_timeout` never cuts a slow commit. When the task is idle (between transactions,
//! nothing buffered, everything emitted acknowledged) a keepalive's WAL end is confirmed as
//! flushed, like PostgreSQL's own subscriber does, so an idle table never holds WAL back.
//!
//! # Errors
//!
//! An unreachable server, a dropped connection, a slot still held by a dying walsender, too
//! many connections: transient, the engine retries. Refused credentials, a missing database or
//! table, `wal_level` not logical, no REPLICATION privilege, no primary key nor REPLICA
//! IDENTITY FULL, no free slot, a missing or invalidated slot on resume: definite
//! ([`rtsync_core::ErrorKind::Source`]), with the fix in the message. The pre-flight checks
//! are named functions, run by [`Source::check`] (`ensure_wal_level_logical`,
//! `ensure_replication_privilege`, `ensure_table_exists`,
//! `ensure_primary_key_or_replica_identity_full`, `ensure_free_replication_slot`). A value that
//! does not parse is a data error naming the column, the value and the transaction.

pub mod browse;
#[doc(hidden)]
pub mod catalog;
mod config;
mod error;
mod pgoutput;
mod position;
mod rows;
mod snapshot;
mod stream;
mod tls;
mod types;
pub mod verify;

use std::time::Duration;

use async_trait::async_trait;
use rtsync_core::arrow::datatypes::{Schema, SchemaRef};
use tokio_postgres::Client;

pub use config::{DEFAULT_MAX_BATCH_ROWS, DEFAULT_SNAPSHOT_CHUNK_ROWS, PostgresSourceConfig, SnapshotMode};
pub use position::{Lsn, PgPosition};
pub use rows::{TRUNCATE_OP, UNCHANGED_COLUMN};
/// The `rtsync-core` contracts and types a user of this crate needs, so that a program can
/// depend on this crate alone.
pub use rtsync_core::{
    ChangeBatch, ErrorKind, Position, SnapshotProgress, Source, SyncError, SyncResult, TableDescription, arrow,
};

use crate::catalog::{
    TableInfo, ensure_free_replication_slot, ensure_primary_key_or_replica_identity_full, ensure_replication_privilege,
    ensure_table_exists, ensure_wal_level_logical, lost_slot_error, unusable_slot,
};
use crate::config::ConnectionParams;
use crate::error::{pg_error, repl_error};
use crate::rows::RowsBuilder;
use crate::snapshot::SnapshotReader;
use crate::stream::{Fill, StreamReader};

/// How long undeploy waits for a stopped task's walsender to release the slot.
const SLOT_RELEASE_WAIT: Duration = Duration::from_secs(15);

enum Phase {
    /// Before `open`, or after `close`.
    Closed,
    Snapshot(SnapshotReader),
    Streaming(StreamReader),
}

/// One PostgreSQL table as an rtsync [`Source`].
pub struct PostgresSource {
    task: String,
    config: PostgresSourceConfig,
    conn: ConnectionParams,
    slot: String,
    publication: String,
    client: Option<Client>,
    table: Option<TableInfo>,
    rows: Option<RowsBuilder>,
    phase: Phase,
    /// The position of the last batch emitted (or where `open` started).
    emitted: Option<PgPosition>,
    /// The position of the last batch emitted in this session, if any.
    last_batch: Option<PgPosition>,
    /// The last position the engine reported durable (or the resume position).
    acked: Option<PgPosition>,
    /// A re-snapshot over an existing target starts with a truncate row.
    pending_truncate: bool,
    /// The planner's estimate of the table's rows, taken when a snapshot starts.
    estimated_rows: Option<u64>,
}

/// What [`drop_replication_objects`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedObjects {
    pub slot: Option<String>,
    pub publication: Option<String>,
}

/// Undeploy: drops the task's replication slot and, when its name was derived from the task
/// (rtsync created it), its publication. Waits up to 15 s for a stopped task's walsender to
/// release the slot. Idempotent: objects already gone are not an error.
pub async fn drop_replication_objects(config: &PostgresSourceConfig, task: &str) -> SyncResult<DroppedObjects> {
    config.validate()?;
    let conn = config.connection()?;
    let client = catalog::connect(&conn).await?;
    let slot = config.slot_name(task);
    let slot_dropped = catalog::drop_slot(&client, &slot, SLOT_RELEASE_WAIT).await?;
    let mut publication = None;
    if config.publication_name.is_none() {
        let name = config.publication_name(task);
        if catalog::drop_publication(&client, &name).await? {
            publication = Some(name);
        }
    }
    tracing::info!(task, slot = %slot, slot_dropped, publication = ?publication, "dropped replication objects");
    Ok(DroppedObjects { slot: slot_dropped.then_some(slot), publication })
}

impl PostgresSource {
    /// A source for `task` (its name derives the slot and publication names). Validates the
    /// configuration; connects only in [`Source::check`] / [`Source::open`].
    pub fn new(task: impl Into<String>, config: PostgresSourceConfig) -> SyncResult<Self> {
        config.validate()?;
        let task = task.into();
        let mut conn = config.connection()?;
        // The task's name on every connection, so pg_stat_activity tells which task it is.
        conn.pg.application_name(format!("rtsync {task}"));
        Ok(Self {
            slot: config.slot_name(&task),
            publication: config.publication_name(&task),
            task,
            config,
            conn,
            client: None,
            table: None,
            rows: None,
            phase: Phase::Closed,
            emitted: None,
            last_batch: None,
            acked: None,
            pending_truncate: false,
            estimated_rows: None,
        })
    }

    pub fn slot_name(&self) -> &str {
        &self.slot
    }

    pub fn publication_name(&self) -> &str {
        &self.publication
    }

    /// Drops this task's slot and (derived) publication; see [`drop_replication_objects`].
    pub async fn drop_replication_objects(&mut self) -> SyncResult<DroppedObjects> {
        self.close_inner().await;
        drop_replication_objects(&self.config, &self.task).await
    }

    /// Takes the planner's estimate of the table's rows for the snapshot's progress (a
    /// failure only costs the estimate).
    async fn estimate_rows(&mut self) {
        let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
        let estimate = match self.client().await {
            Ok(client) => catalog::estimated_rows(client, &schema, &table).await,
            Err(e) => Err(e),
        };
        self.estimated_rows = estimate.unwrap_or_else(|e| {
            tracing::debug!(task = %self.task, error = %e.report(), "no row estimate for the snapshot's progress");
            None
        });
    }

    fn table_name(&self) -> String {
        format!("{}.{}", self.config.schema, self.config.table)
    }

    fn application_name(&self) -> String {
        format!("rtsync {}", self.task)
    }

    async fn client(&mut self) -> SyncResult<&Client> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(catalog::connect(&self.conn).await?);
        }
        self.client.as_ref().ok_or_else(|| SyncError::internal("no PostgreSQL connection"))
    }

    async fn table_info(&mut self) -> SyncResult<TableInfo> {
        if let Some(t) = &self.table {
            return Ok(t.clone());
        }
        let (schema, table) = (self.config.schema.clone(), self.config.table.clone());
        let info = catalog::describe_table(self.client().await?, &schema, &table).await?;
        self.table = Some(info.clone());
        Ok(info)
    }

    /// Creates the slot; for a snapshot, imports its exported snapshot into a transaction on
    /// the SQL connection. Drops a leftover slot of the same name first: without a committed
    /// position nothing depends on it, and only a new slot can export a snapshot.
    async fn new_slot(&mut self, with_snapshot: bool) -> SyncResult<Lsn> {
        let slot = self.slot.clone();
        let (conn, publication, app) = (self.conn.clone(), self.publication.clone(), self.application_name());
        let client = self.client().await?;
        if catalog::slot_info(client, &slot).await?.is_some() {
            tracing::info!(slot = %slot, "dropping the leftover replication slot to start over");
            catalog::drop_slot(client, &slot, SLOT_RELEASE_WAIT).await?;
        }
        if with_snapshot {
            catalog::create_slot_with_snapshot(client, &conn, &slot, &publication, &app).await
        } else {
            catalog::create_slot(client, &slot).await
        }
    }

    fn snapshot_reader(&self, info: &TableInfo, slot_lsn: Lsn) -> SyncResult<SnapshotReader> {
        let rows = self.rows.as_ref().ok_or_else(|| SyncError::internal("the source is not open"))?;
        SnapshotReader::new(rows, &info.key, &info.schema, &info.name, self.config.snapshot_chunk_rows, slot_lsn)
    }

    /// Starts the replication stream at `start` (a stream position's LSN).
    async fn start_stream(&mut self, start: Lsn) -> SyncResult<()> {
        let info = self.table_info().await?;
        let cfg = catalog::replication_config(&self.conn, &self.slot, &self.publication, &self.application_name())
            .with_buffer_size(self.config.read_ahead_changes)
            .with_start_lsn(start.into())
            // Until the first ack the worker reports this as flushed: only what is durable.
            .with_ack_lsn(start.into());
        let mut client = pgwire_replication::ReplicationClient::connect(cfg)
            .await
            .map_err(|e| repl_error(e, &format!("connecting the replication stream of slot {}", self.slot)))?;
        client
            .wait_started()
            .await
            .map_err(|e| repl_error(e, &format!("starting replication from slot {} at {start}", self.slot)))?;
        tracing::info!(task = %self.task, slot = %self.slot, start = %start, "streaming changes");
        self.phase = Phase::Streaming(StreamReader::new(
            client,
            &info.schema,
            &info.name,
            info.key.clone(),
            start,
            self.last_batch.clone(),
            self.acked.clone(),
            self.config.max_batch_rows,
        ));
        Ok(())
    }

    async fn open_inner(&mut self, resume: Option<PgPosition>) -> SyncResult<SchemaRef> {
        let info = self.table_info().await?;
        let publication = self.publication.clone();
        catalog::ensure_publication(self.client().await?, &publication, &info).await?;
        self.rows = Some(RowsBuilder::new(
            info.columns.clone(),
            self.config.max_batch_rows.max(self.config.snapshot_chunk_rows).min(1 << 16),
        ));
        self.pending_truncate = false;
        self.last_batch = None;

        let resume = match resume {
            Some(pos) => {
                let (database, slot_name) = (self.conn.database.clone(), self.slot.clone());
                let slot = catalog::slot_info(self.client().await?, &slot_name).await?;
                match unusable_slot(&self.slot, slot.as_ref(), &database) {
                    None => Some(pos),
                    Some(reason) if self.config.resnapshot_on_lost_slot => {
                        tracing::warn!(task = %self.task, reason = %reason, "re-snapshotting the table: the replication slot is lost");
                        self.pending_truncate = true;
                        None
                    }
                    Some(reason) => return Err(lost_slot_error(&reason)),
                }
            }
            None => None,
        };
        self.acked = resume.clone();
        match resume {
            None if self.config.snapshot == SnapshotMode::Never => {
                let lsn = self.new_slot(false).await?;
                let start = PgPosition::Streaming { lsn };
                // Nothing precedes the slot: its start is as good as durable.
                self.acked = Some(start.clone());
                self.emitted = Some(start);
                self.start_stream(lsn).await?;
            }
            None => {
                let lsn = self.new_slot(true).await?;
                let reader = self.snapshot_reader(&info, lsn)?;
                self.emitted = Some(reader.position());
                self.estimate_rows().await;
                tracing::info!(task = %self.task, table = %self.table_name(), slot_lsn = %lsn, estimated_rows = ?self.estimated_rows, "snapshot started");
                self.phase = Phase::Snapshot(reader);
            }
            Some(PgPosition::Snapshot { rows, .. }) => {
                // The exported snapshot died with the process: start over from a new slot,
                // the rows copied so far truncated first (see the crate doc).
                self.acked = None;
                self.pending_truncate = true;
                let lsn = self.new_slot(true).await?;
                let reader = self.snapshot_reader(&info, lsn)?;
                self.emitted = Some(reader.position());
                self.estimate_rows().await;
                tracing::info!(task = %self.task, table = %self.table_name(), slot_lsn = %lsn, rows_before = rows, estimated_rows = ?self.estimated_rows, "snapshot interrupted before: copying the table again from a new slot");
                self.phase = Phase::Snapshot(reader);
            }
            Some(PgPosition::Streaming { lsn }) => {
                self.emitted = Some(PgPosition::Streaming { lsn });
                self.start_stream(lsn).await?;
            }
        }
        Ok(self.rows.as_ref().map(RowsBuilder::schema).unwrap_or_else(|| std::sync::Arc::new(Schema::empty())))
    }

    fn emit(&mut self, position: PgPosition) -> SyncResult<ChangeBatch<PgPosition>> {
        let rows = self.rows.as_mut().ok_or_else(|| SyncError::internal("the source is not open"))?;
        let (rows, event_time_ms, source_bytes) = rows.finish()?;
        self.last_batch = Some(position.clone());
        match self.emitted.as_mut() {
            Some(e) => e.advance(&position),
            None => self.emitted = Some(position.clone()),
        }
        if let Phase::Streaming(s) = &mut self.phase {
            s.emitted(&position);
        }
        Ok(ChangeBatch { rows, end: position, event_time_ms, source_bytes })
    }

    async fn next_snapshot_batch(&mut self) -> SyncResult<Option<ChangeBatch<PgPosition>>> {
        let Phase::Snapshot(reader) = &mut self.phase else {
            return Ok(None);
        };
        let (Some(client), Some(rows)) = (self.client.as_ref(), self.rows.as_mut()) else {
            return Err(SyncError::internal("the source is not open"));
        };
        if std::mem::take(&mut self.pending_truncate) {
            rows.finish_row(TRUNCATE_OP, None);
        }
        let max = self.config.snapshot_chunk_rows;
        reader.read(client, rows, max).await?;
        if !reader.is_done() {
            let position = reader.position();
            return self.emit(position).map(Some);
        }
        // The copy is complete: end the snapshot transaction and stream from the slot's
        // consistent point; the last rows carry that stream position.
        let slot_lsn = reader.slot_lsn;
        tracing::info!(task = %self.task, table = %format!("{}.{}", self.config.schema, self.config.table), rows = reader.rows_total, "snapshot complete");
        client.batch_execute("COMMIT").await.map_err(|e| pg_error(e, "ending the snapshot transaction"))?;
        // Emitted even when empty, so that the engine commits "snapshot complete".
        let batch = self.emit(PgPosition::Streaming { lsn: slot_lsn })?;
        self.start_stream(slot_lsn).await?;
        Ok(Some(batch))
    }

    async fn close_inner(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Streaming(s) => s.close().await,
            Phase::Snapshot(_) | Phase::Closed => {}
        }
        self.client = None;
    }
}

#[async_trait]
impl Source for PostgresSource {
    type Position = PgPosition;

    async fn check(&mut self) -> SyncResult<()> {
        let (schema, table, slot) = (self.config.schema.clone(), self.config.table.clone(), self.slot.clone());
        let client = self.client().await?;
        ensure_wal_level_logical(client).await?;
        ensure_replication_privilege(client).await?;
        ensure_table_exists(client, &schema, &table).await?;
        ensure_primary_key_or_replica_identity_full(client, &schema, &table).await?;
        ensure_free_replication_slot(client, &slot).await?;
        Ok(())
    }

    async fn describe(&mut self) -> SyncResult<Option<TableDescription>> {
        let info = self.table_info().await?;
        Ok(Some(TableDescription {
            schema: std::sync::Arc::new(Schema::new(rows::table_fields(&info.columns))),
            primary_key: info.key.clone(),
        }))
    }

    async fn open(&mut self, resume: Option<PgPosition>) -> SyncResult<SchemaRef> {
        self.open_inner(resume)
            .await
            .map_err(|e| e.context_prefix(format!("opening PostgreSQL table {}", self.table_name())))
    }

    async fn next_batch(&mut self, max_wait: Duration) -> SyncResult<Option<ChangeBatch<PgPosition>>> {
        match &self.phase {
            Phase::Closed => Err(SyncError::internal("next_batch called before open")),
            Phase::Snapshot(_) => self.next_snapshot_batch().await,
            Phase::Streaming(_) => {
                let deadline = tokio::time::Instant::now() + max_wait;
                let (Phase::Streaming(stream), Some(client), Some(rows), Some(table)) =
                    (&mut self.phase, self.client.as_ref(), self.rows.as_mut(), self.table.as_mut())
                else {
                    return Err(SyncError::internal("the source is not open"));
                };
                match stream.fill(rows, client, &mut table.types, deadline).await? {
                    Fill::Idle => Ok(None),
                    Fill::Ready => {
                        let position = stream.take_position();
                        self.emit(position).map(Some)
                    }
                }
            }
        }
    }

    fn snapshot_progress(&self) -> Option<SnapshotProgress> {
        match &self.phase {
            Phase::Snapshot(reader) => {
                Some(SnapshotProgress { rows: reader.rows_total, estimated_rows: self.estimated_rows })
            }
            Phase::Streaming(_) | Phase::Closed => None,
        }
    }

    async fn ack(&mut self, durable: &PgPosition) -> SyncResult<()> {
        match self.acked.as_mut() {
            Some(a) => a.advance(durable),
            None => self.acked = Some(durable.clone()),
        }
        if let Phase::Streaming(s) = &mut self.phase {
            s.ack(durable);
        }
        Ok(())
    }

    fn start_position(&self) -> Option<PgPosition> {
        self.emitted.clone()
    }

    async fn close(&mut self) -> SyncResult<()> {
        self.close_inner().await;
        Ok(())
    }
}
