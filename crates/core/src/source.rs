//! The contract of a source.

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;

use crate::{ChangeBatch, Position, SyncResult};

/// One Kafka topic or one database table, read in order. Calls never overlap.
#[async_trait]
pub trait Source: Send {
    type Position: Position;

    /// Pre-flight: connects and checks what streaming needs (topic exists, binlog ROW,
    /// wal_level logical, privileges). A definite error names the fix. Called before
    /// [`Source::open`], may be called alone (`datasource test`).
    async fn check(&mut self) -> SyncResult<()>;

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

    /// Releases connections; called once when the task stops.
    async fn close(&mut self) -> SyncResult<()> {
        Ok(())
    }
}
