//! The PostgreSQL source's configuration, and the connection settings derived from it.

use std::fmt;
use std::time::Duration;

use rtsync_core::SyncError;
use serde::{Deserialize, Serialize};

use crate::tls::{SslMode, TlsSettings};

/// Rows per snapshot chunk: one keyset query (`WHERE key > last ORDER BY key LIMIT n`), and at
/// most this many rows per batch, so memory is bounded by the chunk, not the table.
pub const DEFAULT_SNAPSHOT_CHUNK_ROWS: usize = 100_000;
/// Rows per streamed batch, at most (a transaction bigger than this is split, see the crate doc).
pub const DEFAULT_MAX_BATCH_ROWS: usize = 65_536;
/// Changes the replication connection reads ahead of the task: it keeps draining the server
/// while the task commits to the lake, so a commit does not pause the stream. Memory is about
/// this many changes times their size in the WAL.
pub const DEFAULT_READ_AHEAD_CHANGES: usize = 131_072;
/// The schema read when none is given.
pub const DEFAULT_SCHEMA: &str = "public";
/// Prefix of the slot and publication names derived from the task name.
pub const NAME_PREFIX: &str = "rtsync_";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_LEN: usize = 63;
/// How long connecting may take before it counts as "unreachable".
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Session settings pinned on every connection (snapshot, catalog and replication), so that
/// values render the same in the snapshot's COPY and in pgoutput's text tuples: ISO dates,
/// UTC time stamps, shortest exact floats, hex bytea, ISO 8601 intervals, and no timeout that
/// would cut a long snapshot transaction.
pub const SESSION_OPTIONS: &str = "-c DateStyle=ISO,MDY -c TimeZone=UTC -c extra_float_digits=3 -c bytea_output=hex \
     -c IntervalStyle=iso_8601 -c standard_conforming_strings=on -c statement_timeout=0 \
     -c lock_timeout=0 -c idle_in_transaction_session_timeout=0";

/// What the task does before streaming when it starts without a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Copy the whole table (consistent with the slot), then stream changes (default).
    #[default]
    Initial,
    /// Copy nothing: stream only changes committed after the slot is created.
    Never,
}

/// One table of one PostgreSQL database.
///
/// ```toml
/// url = "postgres://user:password@127.0.0.1:5432/shop"
/// schema = "public"
/// table = "orders"
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `postgres://[user[:password]@]host[:port]/database[?options]` (libpq URL syntax; also
    /// the key=value form). TLS as libpq: `sslmode=disable|prefer|require|verify-ca|verify-full`
    /// (default `prefer`) and `sslrootcert=PATH` (PEM; default Mozilla's roots).
    pub url: String,
    /// Overrides the URL's user.
    #[serde(default)]
    pub user: Option<String>,
    /// Overrides the URL's password. Never printed.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "default_schema")]
    pub schema: String,
    pub table: String,
    /// Replication slot; default `rtsync_<task>` (sanitized to `[a-z0-9_]`, at most 63 chars).
    #[serde(default)]
    pub slot_name: Option<String>,
    /// Publication; default `rtsync_<task>`. Created `FOR TABLE schema.table` when missing.
    /// A publication given here is never dropped by [`crate::drop_replication_objects`].
    #[serde(default)]
    pub publication_name: Option<String>,
    #[serde(default)]
    pub snapshot: SnapshotMode,
    #[serde(default = "default_chunk_rows")]
    pub snapshot_chunk_rows: usize,
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    /// Changes read from the server ahead of the task (default `DEFAULT_READ_AHEAD_CHANGES`,
    /// 131,072): the stream keeps draining the server while the task commits.
    #[serde(default = "default_read_ahead_changes")]
    pub read_ahead_changes: usize,
    /// When the slot is missing or invalidated on resume: `false` (default) stops the task
    /// with an error saying to re-snapshot; `true` recreates the slot and re-snapshots,
    /// emitting a truncate (`__op = 't'`) first so the target is rebuilt from scratch.
    #[serde(default)]
    pub resnapshot_on_lost_slot: bool,
}

fn default_schema() -> String {
    DEFAULT_SCHEMA.to_string()
}

fn default_chunk_rows() -> usize {
    DEFAULT_SNAPSHOT_CHUNK_ROWS
}

fn default_max_batch_rows() -> usize {
    DEFAULT_MAX_BATCH_ROWS
}

fn default_read_ahead_changes() -> usize {
    DEFAULT_READ_AHEAD_CHANGES
}

impl fmt::Debug for PostgresSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSourceConfig")
            .field("url", &redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("slot_name", &self.slot_name)
            .field("publication_name", &self.publication_name)
            .field("snapshot", &self.snapshot)
            .field("snapshot_chunk_rows", &self.snapshot_chunk_rows)
            .field("max_batch_rows", &self.max_batch_rows)
            .field("read_ahead_changes", &self.read_ahead_changes)
            .field("resnapshot_on_lost_slot", &self.resnapshot_on_lost_slot)
            .finish()
    }
}

impl PostgresSourceConfig {
    pub fn new(url: impl Into<String>, schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: None,
            password: None,
            schema: schema.into(),
            table: table.into(),
            slot_name: None,
            publication_name: None,
            snapshot: SnapshotMode::Initial,
            snapshot_chunk_rows: DEFAULT_SNAPSHOT_CHUNK_ROWS,
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            read_ahead_changes: DEFAULT_READ_AHEAD_CHANGES,
            resnapshot_on_lost_slot: false,
        }
    }

    /// Checks every field; the error names the field and what is wrong with it.
    pub fn validate(&self) -> Result<(), SyncError> {
        self.connection()?;
        if self.schema.trim().is_empty() {
            return Err(SyncError::config("postgres source: schema must not be empty"));
        }
        if self.table.trim().is_empty() {
            return Err(SyncError::config("postgres source: table must not be empty"));
        }
        for (field, name) in [("slot_name", &self.slot_name), ("publication_name", &self.publication_name)] {
            if let Some(name) = name {
                check_object_name(field, name)?;
            }
        }
        if self.snapshot_chunk_rows == 0 {
            return Err(SyncError::config("postgres source: snapshot_chunk_rows must be at least 1"));
        }
        if self.max_batch_rows == 0 {
            return Err(SyncError::config("postgres source: max_batch_rows must be at least 1"));
        }
        if self.read_ahead_changes == 0 {
            return Err(SyncError::config("postgres source: read_ahead_changes must be at least 1"));
        }
        Ok(())
    }

    /// The replication slot of `task`.
    pub fn slot_name(&self, task: &str) -> String {
        self.slot_name.clone().unwrap_or_else(|| derived_name(task))
    }

    /// The publication of `task`.
    pub fn publication_name(&self, task: &str) -> String {
        self.publication_name.clone().unwrap_or_else(|| derived_name(task))
    }

    /// The parsed URL with `user`/`password` applied.
    pub fn connection(&self) -> Result<ConnectionParams, SyncError> {
        let (conninfo, tls) = crate::tls::split_tls_options(&self.url)
            .map_err(|why| SyncError::config(format!("postgres source: url {}: {why}", redact_url(&self.url))))?;
        let mut pg: tokio_postgres::Config = conninfo.parse().map_err(|e| {
            SyncError::with_source(
                rtsync_core::ErrorKind::Config,
                format!(
                    "postgres source: url {:?} is not a PostgreSQL URL (postgres://user:password@host:port/database)",
                    redact_url(&self.url)
                ),
                e,
            )
        })?;
        if let Some(user) = &self.user {
            pg.user(user);
        }
        if let Some(password) = &self.password {
            pg.password(password);
        }
        let host = match pg.get_hosts() {
            [] => "localhost".to_string(),
            [tokio_postgres::config::Host::Tcp(h)] => h.clone(),
            [tokio_postgres::config::Host::Unix(p)] => p.to_string_lossy().into_owned(),
            _ => {
                return Err(SyncError::config("postgres source: url names several hosts; give exactly one"));
            }
        };
        let port = match pg.get_ports() {
            [] => 5432,
            [p] => *p,
            _ => {
                return Err(SyncError::config("postgres source: url names several ports; give exactly one"));
            }
        };
        let user = pg.get_user().map(str::to_string).ok_or_else(|| {
            SyncError::config("postgres source: no user: put it in the url (postgres://user@host/db) or set user")
        })?;
        let password = pg.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
        let database = pg.get_dbname().map(str::to_string).unwrap_or_else(|| user.clone());
        pg.ssl_mode(match tls.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if let Some(root) = &tls.root_cert
            && !root.is_file()
        {
            return Err(SyncError::config(format!(
                "postgres source: sslrootcert {} is not a readable file",
                root.display()
            )));
        }
        pg.options(SESSION_OPTIONS);
        pg.connect_timeout(CONNECT_TIMEOUT);
        pg.application_name("rtsync");
        Ok(ConnectionParams { pg, host, port, user, password, database, tls })
    }
}

/// Where and as whom to connect: the tokio-postgres config for SQL connections, and the same
/// parts for the replication connection.
#[derive(Clone)]
pub struct ConnectionParams {
    pub pg: tokio_postgres::Config,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub tls: TlsSettings,
}

impl fmt::Debug for ConnectionParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.display())
    }
}

impl ConnectionParams {
    /// `user@host:port/database`, for messages (never the password).
    pub fn display(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.database)
    }
}

/// `rtsync_<task>`: lower-case `[a-z0-9_]`, at most 63 characters. When sanitizing changed
/// the name or it had to be cut, a hash of the original name is appended so that two tasks
/// never share a slot (`a-b` and `a_b` differ).
pub fn derived_name(task: &str) -> String {
    let clean: String =
        task.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    let exact = clean == task && NAME_PREFIX.len() + clean.len() <= MAX_IDENTIFIER_LEN;
    if exact {
        return format!("{NAME_PREFIX}{clean}");
    }
    let hash = format!("_{:08x}", fnv1a(task.as_bytes()));
    let room = MAX_IDENTIFIER_LEN - NAME_PREFIX.len() - hash.len();
    let cut: String = clean.chars().take(room).collect();
    format!("{NAME_PREFIX}{cut}{hash}")
}

/// A stable 32-bit hash (FNV-1a): derived names must not change between releases.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Slot names may hold only lower-case letters, digits and underscores (PostgreSQL's rule);
/// the same is required of publication names so that both can be used unquoted.
fn check_object_name(field: &str, name: &str) -> Result<(), SyncError> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_LEN {
        return Err(SyncError::config(format!(
            "postgres source: {field} must be 1 to {MAX_IDENTIFIER_LEN} characters long"
        )));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(SyncError::config(format!(
            "postgres source: {field} {name:?} may contain only lower-case letters, digits and underscores"
        )));
    }
    Ok(())
}

pub use rtsync_core::text::redact_url;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn minimal_toml_takes_defaults() {
        let cfg: PostgresSourceConfig = toml::from_str(
            r#"
            url = "postgres://u:secret@127.0.0.1:5432/shop"
            table = "orders"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.schema, "public");
        assert_eq!(cfg.snapshot, SnapshotMode::Initial);
        assert_eq!(cfg.snapshot_chunk_rows, DEFAULT_SNAPSHOT_CHUNK_ROWS);
        let conn = cfg.connection().unwrap();
        assert_eq!(
            (conn.host.as_str(), conn.port, conn.user.as_str(), conn.database.as_str()),
            ("127.0.0.1", 5432, "u", "shop")
        );
        assert_eq!(conn.password, "secret");
        assert!(
            toml::from_str::<PostgresSourceConfig>("url = \"postgres://h/db\"\ntable = \"t\"\ntabel = \"x\"").is_err()
        );
    }

    #[test]
    fn user_and_password_override_the_url_and_never_print() {
        let mut cfg = PostgresSourceConfig::new("postgres://u:secret@db:6543/shop", "public", "t");
        cfg.user = Some("other".into());
        cfg.password = Some("hunter2".into());
        let conn = cfg.connection().unwrap();
        assert_eq!((conn.user.as_str(), conn.password.as_str(), conn.port), ("other", "hunter2", 6543));
        let printed = format!("{cfg:?} {conn:?}");
        assert!(!printed.contains("secret") && !printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("postgres://u:***@db:6543/shop"), "{printed}");
    }

    #[test]
    fn validate_names_the_field() {
        let base = PostgresSourceConfig::new("postgres://u@h/db", "public", "t");
        let mut c = base.clone();
        c.table = String::new();
        assert!(c.validate().unwrap_err().to_string().contains("table"));
        let mut c = base.clone();
        c.slot_name = Some("Bad-Name".into());
        assert!(c.validate().unwrap_err().to_string().contains("slot_name"));
        let mut c = base.clone();
        c.snapshot_chunk_rows = 0;
        assert!(c.validate().unwrap_err().to_string().contains("snapshot_chunk_rows"));
        let mut c = base.clone();
        c.url = "mysql://x".into();
        assert!(c.validate().unwrap_err().to_string().contains("url"));
        let mut c = base;
        c.url = "postgres://u@h/db?sslmode=sometimes".into();
        assert!(c.validate().unwrap_err().to_string().contains("sslmode"));
        c.url = "postgres://u@h/db?sslmode=verify-full&sslrootcert=/no/such/ca.pem".into();
        assert!(c.validate().unwrap_err().to_string().contains("sslrootcert"));
    }

    #[test]
    fn derived_names_are_safe_and_distinct() {
        assert_eq!(derived_name("pg_orders"), "rtsync_pg_orders");
        let a = derived_name("a-b");
        let b = derived_name("a_b");
        assert_ne!(a, b);
        assert!(a.starts_with("rtsync_a_b_"));
        let long = derived_name(&"X".repeat(200));
        assert_eq!(long.len(), MAX_IDENTIFIER_LEN);
        assert!(long.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_eq!(derived_name("Täsk 1"), derived_name("Täsk 1"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:p@h:1/db?x=y"), "postgres://u:***@h:1/db?x=y");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("host=h password=p user=u"), "host=h password=*** user=u");
    }
}
