//! Configuration values shared by every task, whatever its source.

use serde::{Deserialize, Serialize};

/// The name of a task; also the Delta `txn` application id of its commits.
pub type TaskName = String;

/// What happens to a record that cannot be decoded or cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// Stop the task with an error naming the record (default): nothing is skipped.
    #[default]
    Fail,
    /// Write the raw record and the reason to the `<table>__dlq` table, count it, go on.
    DeadLetter,
}

impl std::str::FromStr for ErrorPolicy {
    type Err = crate::SyncError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail" => Ok(ErrorPolicy::Fail),
            "dead_letter" | "dead-letter" | "dlq" => Ok(ErrorPolicy::DeadLetter),
            other => Err(crate::SyncError::config(format!(
                "error_policy: unknown value {other:?}; expected \"fail\" or \"dead_letter\""
            ))),
        }
    }
}
