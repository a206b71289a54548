//! The contract of a source.

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;

use crate::{ChangeBatch, Position, SyncResult};

/// What a table source reads: the row schema (without [`crate::OP_COLUMN`]) and the columns
/// that identify a row. Filled from the source's catalog before the task opens its sink, so the
/// target table can be created from it and upserts know their key.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDescription {
    /// Columns in source order, with the Arrow types the source emits for them.
    pub schema: SchemaRef,
    /// Primary-key columns in key order; empty when the table has none (then only REPLICA
    /// IDENTITY FULL / full row images can identify rows, and the task appends).
    pub primary_key: Vec<String>,
}

/// How far a table source's initial copy has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotProgress {
    /// Rows this snapshot has emitted, counting those a resumed attempt committed before.
    pub rows: u64,
    /// The server's estimate of the table's rows when the copy started (planner or
    /// statistics, never a count): None when it has none.
    pub estimated_rows: Option<u64>,
}

/// A namespace of a database (a PostgreSQL schema, a MySQL database) when browsing it.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaSummary {
    pub name: String,
    /// Base tables it holds.
    pub tables: i64,
}

/// One column of a database table when browsing it: the type the server declares next to
/// the Arrow type the connector emits for it (which the Delta table takes).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSummary {
    pub name: String,
    /// As the server spells it: `numeric(12,2)`, `bigint(20) unsigned`, `integer[]`.
    pub source_type: String,
    pub target_type: arrow::datatypes::DataType,
    pub nullable: bool,
}

/// One Kafka topic or one database table, read in order. Calls never overlap.
#[async_trait]
pub trait Source: Send {
    type Position: Position;

    /// Pre-flight: connects and checks what streaming needs (topic exists, binlog ROW,
    /// wal_level logical, privileges). A definite error names the fix. Called before
    /// [`Source::open`], may be called alone (`datasource test`).
    async fn check(&mut self) -> SyncResult<()>;

    /// Table sources (CDC): the table's columns and primary key, read from the source's
    /// catalog. Called after [`Source::check`] and before [`Source::open`]. Kafka returns None.
    async fn describe(&mut self) -> SyncResult<Option<TableDescription>> {
        Ok(None)
    }

    /// Opens the stream just after `resume` (None: first start; the source takes a snapshot
    /// or its configured start position). Returns the schema of the rows it will emit.
    async fn open(&mut self, resume: Option<Self::Position>) -> SyncResult<SchemaRef>;

    /// The next batch, or None when nothing is available right now (the engine then decides
    /// whether to commit). Waits at most about `max_wait` for data to arrive.
    async fn next_batch(&mut self, max_wait: std::time::Duration) -> SyncResult<Option<ChangeBatch<Self::Position>>>;

    /// Called only after everything up to `durable` is committed in the sink: the source may
    /// now tell the server (commit Kafka group offsets, confirm a PostgreSQL LSN). Errors here
    /// are reported but never undo the commit.
    async fn ack(&mut self, _durable: &Self::Position) -> SyncResult<()> {
        Ok(())
    }

    /// The position the source stands at when nothing has been read yet after `open`, so an
    /// idle task can still commit where it starts (e.g. resolved "latest" offsets).
    fn start_position(&self) -> Option<Self::Position> {
        None
    }

    /// While the initial copy of a table runs: how far it has come (the engine turns it into
    /// a percentage and an ETA). None when there is no copy running.
    fn snapshot_progress(&self) -> Option<SnapshotProgress> {
        None
    }

    /// Releases connections; called once when the task stops.
    async fn close(&mut self) -> SyncResult<()> {
        Ok(())
    }
}
