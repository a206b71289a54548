//! The contract of the mapping stage.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::SyncResult;

/// Turns a batch of source rows into a batch of target rows. Compiled once per task and
/// called from one thread at a time per task; it must not keep per-batch state.
pub trait ColumnMapping: Send + Sync {
    /// The schema of every batch [`ColumnMapping::map`] returns.
    fn output_schema(&self) -> arrow::datatypes::SchemaRef;

    /// Maps every row. A row that cannot be mapped (not JSON, a value that cannot be cast) is
    /// left out of `rows` and listed in `rejected` with its reason, in input order; the error
    /// policy of the task decides what happens to it. An `Err` is for the whole batch.
    fn map(&self, input: &RecordBatch) -> SyncResult<MappedBatch>;

    /// The schema this mapping expects from the source, when it depends on one.
    fn input_schema(&self) -> Option<SchemaRef> {
        None
    }
}

/// The output of a mapping: the rows that mapped, and those that did not.
#[derive(Debug)]
pub struct MappedBatch {
    pub rows: RecordBatch,
    pub rejected: Vec<Rejected>,
}

/// One input row the mapping could not turn into a target row.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Index of the row in the input batch.
    pub row: usize,
    /// Why, naming the column and the value's problem.
    pub reason: String,
    /// The raw record as the source delivered it (the Kafka value), when there is one.
    pub raw: Option<Vec<u8>>,
}
