//! The one place where delta crate errors become rtsync errors.

use deltalake::DeltaTableError;
use deltalake::kernel::transaction::{CommitConflictError, TransactionError};
use rtsync_core::{ErrorKind, SyncError};

/// Storage hiccups are transient; a twin committing as the same task is fenced; the rest
/// (permissions, schema, invalid location) is a definite write failure naming `doing`.
pub fn classify(err: DeltaTableError, doing: &str) -> SyncError {
    let (kind, hint) = match &err {
        DeltaTableError::Transaction { source } => match source {
            TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction) => (
                ErrorKind::Fenced,
                "another process committed as this task at the same time (a second copy of the task is running)",
            ),
            TransactionError::VersionAlreadyExists(_) | TransactionError::MaxCommitAttempts(_) => {
                (ErrorKind::Transient, "the commit raced with other writers of the table")
            }
            _ => (ErrorKind::Sink, "the Delta transaction was refused"),
        },
        DeltaTableError::ObjectStore { source } => {
            let text = source.to_string();
            if text.contains("Permission denied")
                || text.contains("Read-only")
                || text.contains("AccessDenied")
                || text.contains("Forbidden")
            {
                (ErrorKind::Sink, "the storage refused the write: check permissions on the table location")
            } else {
                (ErrorKind::Transient, "storage I/O failed")
            }
        }
        DeltaTableError::Io { source } => {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                (ErrorKind::Sink, "the storage refused the write: check permissions on the table location")
            } else {
                (ErrorKind::Transient, "storage I/O failed")
            }
        }
        DeltaTableError::SchemaMismatch { .. } | DeltaTableError::Arrow { .. } => {
            (ErrorKind::Sink, "the rows do not fit the table's columns: check column types against the existing table")
        }
        DeltaTableError::InvalidTableLocation(_) => (ErrorKind::Sink, "the table location is not usable"),
        _ => (ErrorKind::Sink, "the target table could not be written"),
    };
    SyncError::with_source(kind, format!("{doing}: {hint}"), err)
}
