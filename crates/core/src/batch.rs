//! Change batches: what a source hands to the engine.
//!
//! # The change-row contract
//!
//! Every source that mirrors a table tags each row image with [`OP_COLUMN`]. Two shapes need
//! more than an op and an image, and travel the same way from every source to every sink:
//!
//! * **A value the source did not send.** PostgreSQL leaves out a TOASTed value an UPDATE did
//!   not change; SQL Server reports an unchanged `(max)` column as NULL with the update mask
//!   saying so; Debezium writes `__debezium_unavailable_value`; MySQL's `PARTIAL_JSON` row
//!   images would omit whole documents. The source sets that column to NULL and names it in
//!   [`UNCHANGED_COLUMN`] (`List<Utf8>`, NULL when every column was sent). The value the
//!   target must hold is the one the row had before this change.
//! * **A change of the primary key.** An UPDATE that changes the key is ONE row with
//!   `__op = 'u'`: the new image (under the new key) plus the OLD key in the reserved columns
//!   [`before_key_column`]`(k)` (`__before_<k>`, one per key column, same type), which are NULL
//!   on every other row. The sink removes the row under the old key and writes the new image;
//!   a column the update did not send takes the value the OLD key's row held, wherever that
//!   row is: in the table, earlier in the same commit, or itself the product of an earlier key
//!   change. A source whose after-images are always complete (MySQL with `binlog_row_image =
//!   FULL`) may instead send a delete of the old key followed by an insert of the new row.
//!
//! Both columns appear only in batches that need them; sinks never store them.

use arrow::array::Int64Array;
use arrow::record_batch::RecordBatch;

/// The reserved column that tags each row image with its operation. Sources that only append
/// (Kafka) leave it out; every row is then an insert.
pub const OP_COLUMN: &str = "__op";

/// The reserved column listing, per row, the columns whose values the source did not send
/// (PostgreSQL TOAST values an UPDATE left unchanged, SQL Server `(max)` columns outside the
/// update mask): `List<Utf8>`, NULL when none. Those columns are NULL in the row and the sink
/// keeps the value the row held before the change (under its old key after a key change).
pub const UNCHANGED_COLUMN: &str = "__unchanged";

/// The prefix of the reserved columns that carry a key-changing update's OLD key (see the
/// module docs): `__before_<key column>`.
pub const BEFORE_KEY_PREFIX: &str = "__before_";

/// The reserved column that carries the old value of key column `key` on a key-changing update.
pub fn before_key_column(key: &str) -> String {
    format!("{BEFORE_KEY_PREFIX}{key}")
}

/// True for the reserved columns of the change-row contract, which no target table stores:
/// [`UNCHANGED_COLUMN`] and the `__before_<k>` old-key columns. [`OP_COLUMN`] is not among them
/// (an append sink keeps it as the row's operation).
pub fn is_contract_column(name: &str) -> bool {
    name == UNCHANGED_COLUMN || name.starts_with(BEFORE_KEY_PREFIX)
}

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
