//! One error type for the whole pipeline. Its [`ErrorKind`] decides what the engine does:
//! a transient error is retried with backoff as a new attempt, every other kind stops the
//! task with a message a user can act on.

use std::error::Error as StdError;
use std::fmt;

pub type SyncResult<T> = Result<T, SyncError>;
type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong, as far as the engine's reaction is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Broker down, connection reset, storage hiccup: back off and retry.
    Transient,
    /// The task's configuration is wrong (bad JSONPath, unknown field, missing option).
    Config,
    /// The source is reachable but refuses us or lacks what we need (auth, missing
    /// topic/table, binlog not ROW, wal_level not logical).
    Source,
    /// A record could not be decoded or cast and the error policy is `fail`.
    Data,
    /// The target table could not be written (path, permissions, incompatible schema).
    Sink,
    /// Another writer holds the task's table (a zombie twin): never retried blindly.
    Fenced,
    /// A bug: an invariant of rtsync itself was broken.
    Internal,
}

impl ErrorKind {
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Transient)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Config => "config",
            ErrorKind::Source => "source",
            ErrorKind::Data => "data",
            ErrorKind::Sink => "sink",
            ErrorKind::Fenced => "fenced",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `SyncError { kind, context, source }`: the context says what rtsync was doing and what to
/// check, the source is the underlying cause, kept as a cause and never pasted into the text.
#[derive(Debug)]
pub struct SyncError {
    kind: ErrorKind,
    context: String,
    source: Option<Cause>,
}

impl SyncError {
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Self {
        Self { kind, context: context.into(), source: None }
    }

    pub fn with_source(kind: ErrorKind, context: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self { kind, context: context.into(), source: Some(source.into()) }
    }

    pub fn transient(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, context)
    }

    pub fn config(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, context)
    }

    pub fn source_err(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Source, context)
    }

    pub fn data(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, context)
    }

    pub fn sink(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Sink, context)
    }

    pub fn internal(context: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, context)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn context(&self) -> &str {
        &self.context
    }

    /// Adds outer context, keeping kind and cause: `"opening the sink: <inner context>"`.
    pub fn context_prefix(mut self, outer: impl fmt::Display) -> Self {
        self.context = format!("{outer}: {}", self.context);
        self
    }

    /// The whole chain on one line: "context: cause: cause's cause". For logs and the CLI.
    pub fn report(&self) -> String {
        let mut out = self.context.clone();
        let mut next: Option<&(dyn StdError + 'static)> = self.source.as_deref().map(|e| e as _);
        while let Some(err) = next {
            let text = err.to_string();
            if !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            next = err.source();
        }
        out
    }
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)
    }
}

impl StdError for SyncError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

impl From<arrow::error::ArrowError> for SyncError {
    fn from(err: arrow::error::ArrowError) -> Self {
        SyncError::with_source(ErrorKind::Internal, "arrow operation failed", err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_walks_the_cause_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err = SyncError::with_source(ErrorKind::Transient, "connecting to 127.0.0.1:9", io)
            .context_prefix("opening the source");
        assert_eq!(err.report(), "opening the source: connecting to 127.0.0.1:9: connection refused");
        assert_eq!(err.to_string(), "opening the source: connecting to 127.0.0.1:9");
        assert!(err.kind().is_transient());
    }
}
