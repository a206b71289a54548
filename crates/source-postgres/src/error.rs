//! The one place where PostgreSQL client errors become [`SyncError`]s.
//!
//! The kind is chosen by what a retry could change: a server that is down, restarting, out of
//! connections or briefly holding our slot is transient; refused credentials, a missing
//! database or table, missing privileges and anything the server rejects as invalid are
//! definite ([`ErrorKind::Source`]) and stop the task with the server's reason as the cause.

use pgwire_replication::PgWireError;
use rtsync_core::{ErrorKind, SyncError};
use tokio_postgres::error::SqlState;

/// SQLSTATE classes and codes a retry can cure.
fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("57P") // admin/crash shutdown, cannot connect now
        || code.starts_with("53") // insufficient resources (too many connections, disk full)
        || code == "40001" // serialization failure
        || code == "40P01" // deadlock
        || code == "55006" // object in use: our slot is still held by a dying walsender
        || code == "55P03" // lock not available
}

fn auth_sqlstate(code: &str) -> bool {
    code == "28P01" || code == "28000"
}

/// A tokio-postgres error, with `doing` saying what rtsync was doing ("reading the catalog of
/// public.orders").
pub(crate) fn pg_error(err: tokio_postgres::Error, doing: &str) -> SyncError {
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        if auth_sqlstate(code) {
            return SyncError::with_source(
                ErrorKind::Source,
                format!(
                    "{doing}: PostgreSQL refused the credentials; check user and password, and that pg_hba.conf admits this host"
                ),
                err,
            );
        }
        if *db.code() == SqlState::INVALID_CATALOG_NAME {
            return SyncError::with_source(
                ErrorKind::Source,
                format!("{doing}: the database does not exist; check the url"),
                err,
            );
        }
        if *db.code() == SqlState::INSUFFICIENT_PRIVILEGE {
            return SyncError::with_source(
                ErrorKind::Source,
                format!(
                    "{doing}: permission denied; grant the user the privilege named below (see the PostgreSQL source docs)"
                ),
                err,
            );
        }
        let kind = if transient_sqlstate(code) { ErrorKind::Transient } else { ErrorKind::Source };
        return SyncError::with_source(kind, doing.to_string(), err);
    }
    // No server answer: the connection could not be made or broke (refused, reset, timed
    // out, closed). The server may come back.
    SyncError::with_source(
        ErrorKind::Transient,
        format!("{doing}: PostgreSQL is unreachable or closed the connection"),
        err,
    )
}

/// A replication-protocol error from pgwire-replication.
pub(crate) fn repl_error(err: PgWireError, doing: &str) -> SyncError {
    let code = match &err {
        PgWireError::Server(msg) => msg.rsplit_once("(SQLSTATE ").map(|(_, c)| c.trim_end_matches(')').to_string()),
        _ => None,
    };
    let kind = match (&err, code.as_deref()) {
        (PgWireError::Server(_), Some(c)) if auth_sqlstate(c) => {
            return SyncError::with_source(
                ErrorKind::Source,
                format!(
                    "{doing}: PostgreSQL refused the credentials of the replication connection; check user and password, and that pg_hba.conf admits replication connections from this host"
                ),
                err,
            );
        }
        (PgWireError::Server(_), Some(c)) if transient_sqlstate(c) => ErrorKind::Transient,
        (PgWireError::Server(_), _) => ErrorKind::Source,
        (PgWireError::Auth(_), _) => ErrorKind::Source,
        (PgWireError::MessageTooLarge { .. }, _) => ErrorKind::Data,
        (e, _) if e.is_transient() => ErrorKind::Transient,
        (PgWireError::Tls(_), _) => ErrorKind::Source,
        // Protocol / internal: a broken stream; a new attempt reconnects.
        _ => ErrorKind::Transient,
    };
    SyncError::with_source(kind, doing.to_string(), err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replication_errors_are_classified() {
        let e = repl_error(
            PgWireError::Server("password authentication failed for user \"x\" (SQLSTATE 28P01)".into()),
            "connecting",
        );
        assert_eq!(e.kind(), ErrorKind::Source);
        assert!(e.to_string().contains("credentials"));
        let e = repl_error(
            PgWireError::Server("replication slot \"s\" is active for PID 1 (SQLSTATE 55006)".into()),
            "starting",
        );
        assert_eq!(e.kind(), ErrorKind::Transient);
        let e = repl_error(PgWireError::Server("publication \"p\" does not exist (SQLSTATE 42704)".into()), "starting");
        assert_eq!(e.kind(), ErrorKind::Source);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(repl_error(io.into(), "connecting").kind(), ErrorKind::Transient);
    }
}
