//! The contract of a sink: rows in, one transaction per commit with the checkpoint inside.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::SyncResult;

/// Where a task stands, committed in the same transaction as the data it covers.
///
/// `epoch` counts the task's commits into this table (Delta `txn` version); `position` is the
/// source position (serialized [`crate::Position`]) that every committed row is before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub task: String,
    pub epoch: u64,
    pub position: serde_json::Value,
}

/// What one commit did, for metrics and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitStats {
    /// The table version the commit created (None: nothing was written and no commit made).
    pub version: Option<i64>,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
}

/// A target table. Calls never overlap: the engine awaits each before the next.
#[async_trait]
pub trait Sink: Send {
    /// Called once before anything else. Creates the table from `schema` if it is missing,
    /// adds columns the table lacks, and returns the last checkpoint of this task committed in
    /// it (None: the task never committed here).
    async fn open(&mut self, schema: SchemaRef) -> SyncResult<Option<Checkpoint>>;

    /// Buffers rows for the next commit. Nothing is visible to readers, nor durable, until
    /// [`Sink::commit`] returns. Batches may carry [`crate::OP_COLUMN`] in upsert mode.
    async fn write(&mut self, batch: RecordBatch) -> SyncResult<()>;

    /// Makes everything written since the last commit visible and durable in ONE transaction
    /// that also records `checkpoint`. Returning Ok promises durability. Idempotent per epoch:
    /// committing an epoch the table already holds is a no-op. Fails with
    /// [`crate::ErrorKind::Fenced`] when the table holds a higher epoch of the same task,
    /// which means another process is writing as this task.
    async fn commit(&mut self, checkpoint: &Checkpoint) -> SyncResult<CommitStats>;

    /// Rows buffered and not yet committed.
    fn buffered_rows(&self) -> usize;

    /// Approximate bytes buffered and not yet committed (encoded and in flight).
    fn buffered_bytes(&self) -> usize;
}
