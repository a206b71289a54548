//! The control plane's error: a one-line message a user can act on, and a [`Code`] that
//! decides the HTTP status the API answers with and the CLI's exit.

use std::fmt;

use rtsync_core::{ErrorKind, SyncError};
use serde::{Deserialize, Serialize};

pub type Result<T> = std::result::Result<T, Error>;

/// What kind of failure, as far as a client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The request is wrong: unknown type, invalid JSONPath, missing field (400).
    BadRequest,
    /// A named thing does not exist (404).
    NotFound,
    /// The request clashes with the catalog's state: duplicate name, task already deployed,
    /// data source in use, no free vcluster slot (409).
    Conflict,
    /// The daemon requires a token and the request has none, or a wrong one (401).
    Unauthorized,
    /// The request came from somewhere the daemon does not serve: a foreign `Host` (DNS
    /// rebinding) or another site's page (`Origin`, `Sec-Fetch-Site`) (403).
    Forbidden,
    /// A state-changing request whose body is not declared as `application/json` (415).
    UnsupportedMediaType,
    /// The path exists but does not answer this method (405, with `Allow`).
    MethodNotAllowed,
    /// A service the request needs cannot be reached right now (503).
    Unavailable,
    /// A bug or a broken catalog (500).
    Internal,
}

impl Code {
    pub fn http_status(self) -> u16 {
        match self {
            Code::BadRequest => 400,
            Code::NotFound => 404,
            Code::Conflict => 409,
            Code::Unauthorized => 401,
            Code::Forbidden => 403,
            Code::UnsupportedMediaType => 415,
            Code::MethodNotAllowed => 405,
            Code::Unavailable => 503,
            Code::Internal => 500,
        }
    }

    pub fn from_http_status(status: u16) -> Self {
        match status {
            401 => Code::Unauthorized,
            403 => Code::Forbidden,
            415 => Code::UnsupportedMediaType,
            405 => Code::MethodNotAllowed,
            404 => Code::NotFound,
            409 => Code::Conflict,
            503 => Code::Unavailable,
            400..=499 => Code::BadRequest,
            _ => Code::Internal,
        }
    }
}

/// A control-plane failure. The message is complete (causes included): it is what the API
/// returns and the CLI prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Error {
    pub code: Code,
    pub message: String,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Code::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Code::Conflict, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// Prefixes what was being done: `deploying task x: <message>`.
    pub fn context(mut self, doing: impl fmt::Display) -> Self {
        self.message = format!("{doing}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<SyncError> for Error {
    fn from(err: SyncError) -> Self {
        let code = match err.kind() {
            ErrorKind::Config | ErrorKind::Source | ErrorKind::Data | ErrorKind::Sink => Code::BadRequest,
            ErrorKind::Transient => Code::Unavailable,
            ErrorKind::Fenced => Code::Conflict,
            ErrorKind::Internal => Code::Internal,
        };
        Error::new(code, err.report())
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(e, _) = &err
            && e.code == rusqlite::ErrorCode::ConstraintViolation
        {
            return Error::conflict(format!("the catalog refused the change: {err}"));
        }
        Error::internal(format!("catalog: {err}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::internal(format!("catalog record is not valid JSON: {err}"))
    }
}
