//! Change batches: what a source hands to the engine.

use arrow::array::Int64Array;
use arrow::record_batch::RecordBatch;

/// The reserved column that tags each row image with its operation. Sources that only append
/// (Kafka) leave it out; every row is then an insert.
pub const OP_COLUMN: &str = "__op";

/// The reserved column listing, per row, the columns whose values the source did not send
/// (PostgreSQL TOAST values an UPDATE left unchanged): `List<Utf8>`, NULL when none. Those
/// columns are NULL in the row and the sink keeps the stored value.
pub const UNCHANGED_COLUMN: &str = "__unchanged";

/// The operation of one row image, stored in [`OP_COLUMN`] as its one-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `r`: read by the snapshot.
    Read,
    /// `c`: inserted.
    Create,
    /// `u`: updated; the row holds the after-image.
    Update,
    /// `d`: deleted; the row holds the before-image (at least the key).
    Delete,
    /// `t`: the table was truncated; every row committed before this one is gone. The row's
    /// other columns are NULL.
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "r" => Some(Op::Read),
            "c" => Some(Op::Create),
            "u" => Some(Op::Update),
            "d" => Some(Op::Delete),
            "t" => Some(Op::Truncate),
            _ => None,
        }
    }
}

/// Row images read from the source, and the position the stream stands at after them.
#[derive(Debug, Clone)]
pub struct ChangeBatch<P> {
    /// The rows, in source order. May carry [`OP_COLUMN`].
    pub rows: RecordBatch,
    /// The position just after the last row of this batch.
    pub end: P,
    /// Per row, when the source says the record was produced (epoch milliseconds), for
    /// freshness: Kafka message timestamps, commit times of database transactions.
    pub event_time_ms: Option<Int64Array>,
    /// Bytes read from the source for these rows (payloads), for throughput metrics.
    pub source_bytes: u64,
}

impl<P> ChangeBatch<P> {
    pub fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }
}
