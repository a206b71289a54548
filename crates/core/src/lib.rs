//! The model and contracts every rtsync connector and the engine share.
//!
//! A *source* turns one Kafka topic or one database table into a stream of [`ChangeBatch`]es:
//! Arrow row images, optionally tagged with the reserved [`OP_COLUMN`], plus the typed
//! [`Position`] the batch ends at. A [`ColumnMapping`] turns source columns into target
//! columns. A [`Sink`] writes target rows and commits them together with a [`Checkpoint`] in
//! one transaction, so the position lives in the table it describes. The engine drives the
//! three and acknowledges the source only after a durable commit.
//!
//! This crate holds no client library and no runtime: connectors depend on it, never on each
//! other.

pub mod batch;
pub mod civil;
pub mod config;
pub mod duration;
pub mod error;
pub mod json;
pub mod kafka;
pub mod mapping;
pub mod position;
pub mod secret;
pub mod sink;
pub mod source;
pub mod text;
pub mod verify;

pub use batch::{
    BEFORE_KEY_PREFIX, ChangeBatch, OP_COLUMN, Op, UNCHANGED_COLUMN, before_key_column, is_contract_column,
};
pub use config::{ErrorPolicy, TaskName};
pub use error::{ErrorKind, SyncError, SyncResult};
pub use mapping::{ColumnMapping, MappedBatch, Rejected};
pub use position::Position;
pub use sink::{Checkpoint, CommitStats, Sink};
pub use source::{ColumnSummary, SchemaSummary, SnapshotProgress, Source, TableDescription};

/// Re-exported so that every crate of the workspace names one arrow.
pub use arrow;
