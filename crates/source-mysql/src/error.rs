//! The one place where mysql_async errors become [`SyncError`]s.
//!
//! Lost connections, server shutdowns, lock timeouts and too-many-connections are transient
//! (the engine retries the attempt); refused credentials, missing privileges, unknown
//! databases/tables and binlog errors (a purged position) are definite and carry the fix.

use mysql_async::Error as MyError;
use rtsync_core::{ErrorKind, SyncError};

/// Server error codes that say "try again later".
const TRANSIENT_CODES: &[u16] = &[
    1040, // ER_CON_COUNT_ERROR: too many connections
    1053, // ER_SERVER_SHUTDOWN
    1077, // ER_NORMAL_SHUTDOWN
    1152, // ER_ABORTING_CONNECTION
    1159, // ER_NET_READ_INTERRUPTED
    1161, // ER_NET_WRITE_INTERRUPTED
    1205, // ER_LOCK_WAIT_TIMEOUT
    1213, // ER_LOCK_DEADLOCK
    1317, // ER_QUERY_INTERRUPTED
    1412, // ER_TABLE_DEF_CHANGED: a DDL ran after the consistent snapshot began; a new snapshot reads it
    1927, // ER_CONNECTION_KILLED (MariaDB)
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
    3024, // ER_QUERY_TIMEOUT
    4031, // ER_CLIENT_INTERACTION_TIMEOUT
];

/// ER_ACCESS_DENIED_ERROR and friends.
const ACCESS_CODES: &[u16] = &[1044, 1045, 1142, 1143, 1227, 1370, 1698, 3118];

/// The server's error code, when the error came from the server.
pub(crate) fn server_code(err: &MyError) -> Option<u16> {
    match err {
        MyError::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Wraps a mysql_async error with `doing` ("reading the binlog of db.t from 127.0.0.1:3306").
pub(crate) fn my_err(doing: impl Into<String>, err: MyError) -> SyncError {
    let doing = doing.into();
    let (kind, hint) = match &err {
        MyError::Io(_) => (ErrorKind::Transient, "the server is unreachable or closed the connection"),
        MyError::Driver(d) => match d {
            mysql_async::DriverError::ConnectionClosed | mysql_async::DriverError::PoolDisconnected => {
                (ErrorKind::Transient, "the connection was closed")
            }
            _ => (ErrorKind::Source, "the server answered something the client did not expect"),
        },
        MyError::Url(_) => (ErrorKind::Config, "check source.url"),
        MyError::Other(_) => (ErrorKind::Transient, "unexpected client error"),
        MyError::Server(s) => match s.code {
            c if TRANSIENT_CODES.contains(&c) => (ErrorKind::Transient, "the server is busy or going away"),
            1045 => (
                ErrorKind::Source,
                "the server refused the user name or password; check source.url / source.user / source.password",
            ),
            c if ACCESS_CODES.contains(&c) => (
                ErrorKind::Source,
                "the user lacks a privilege; grant SELECT on the table plus REPLICATION SLAVE and REPLICATION CLIENT (MariaDB: BINLOG MONITOR) on *.*",
            ),
            1049 => (ErrorKind::Source, "the database does not exist; check source.schema"),
            1146 => (ErrorKind::Source, "the table does not exist; check source.schema and source.table"),
            1236 => (
                ErrorKind::Source,
                "the server cannot send the binlog from this position (purged, or another replica uses the same server_id)",
            ),
            _ => (ErrorKind::Source, "the server refused the request"),
        },
    };
    SyncError::with_source(kind, format!("{doing}: {hint}"), err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn server(code: u16) -> MyError {
        MyError::Server(mysql_async::ServerError { code, message: "m".into(), state: "HY000".into() })
    }

    #[test]
    fn kinds_follow_the_cause() {
        assert!(my_err("x", server(2013)).kind().is_transient());
        assert!(my_err("x", server(1205)).kind().is_transient());
        assert!(my_err("reading a snapshot chunk", server(1412)).kind().is_transient(), "an ALTER during the snapshot");
        let denied = my_err("connecting", server(1045));
        assert_eq!(denied.kind(), ErrorKind::Source);
        assert!(denied.to_string().contains("password"));
        assert!(my_err("x", server(1227)).to_string().contains("REPLICATION SLAVE"));
        let io = MyError::Io(mysql_async::IoError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        let err = my_err("connecting to h:1", io);
        assert!(err.kind().is_transient());
        assert!(err.report().contains("refused"));
    }
}
