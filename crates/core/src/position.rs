//! Typed source positions.

use std::fmt::{Debug, Display};
use std::str::FromStr;

use arrow::record_batch::RecordBatch;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::SyncError;

/// A source's place in its stream: Kafka offsets per partition, a MySQL binlog file+pos and
/// GTID set, a PostgreSQL LSN. Round-trips through serde and `Display`/`FromStr`.
///
/// Positions only move forward: [`Position::advance`] never lowers a component, so a stored
/// position can never be rewound by a late or replayed batch.
pub trait Position:
    Clone + Debug + Display + FromStr<Err = SyncError> + Serialize + DeserializeOwned + Send + Sync + PartialEq + 'static
{
    /// True when every record up to and including what `other` names is already covered by
    /// `self`. Used to skip records that a previous attempt already committed.
    fn covers(&self, other: &Self) -> bool;

    /// Moves `self` forward to include `later`; components that `later` does not name stay.
    fn advance(&mut self, later: &Self);

    /// The position just after row `row` of a source batch, when the source can name it. The
    /// engine uses it to tag dead-lettered records and to skip re-dead-lettering them.
    fn of_row(_rows: &RecordBatch, _row: usize) -> Option<Self> {
        None
    }
}
