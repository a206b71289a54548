//! Configuration of a MySQL / MariaDB source.

use std::fmt;

use mysql_async::{Opts, OptsBuilder};
use rtsync_core::{ErrorKind, SyncError, SyncResult};
use serde::{Deserialize, Serialize};

/// Rows per snapshot chunk (one `SELECT … LIMIT` each).
pub const DEFAULT_SNAPSHOT_CHUNK_ROWS: usize = 10_000;
/// Rows per streamed batch, at the first transaction boundary past it.
pub const DEFAULT_MAX_BATCH_ROWS: usize = 20_000;
/// How long streamed rows may wait for more before a batch is handed over.
pub const DEFAULT_LINGER_MS: u64 = 200;
/// The server sends a heartbeat after this much idle time; silence for 3× this means the
/// connection is dead.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 5;
/// How long a lost binlog connection is retried in place before the attempt fails.
pub const DEFAULT_RECONNECT_TIMEOUT_SECS: u64 = 60;
/// An idle task still reports its advancing position this often, so its checkpoint does not
/// fall behind into binlog files the server may purge.
pub const DEFAULT_IDLE_POSITION_SECS: u64 = 30;
/// Server ids derived for tasks when no `server_id` is set: `[start, end]`.
pub const DEFAULT_SERVER_ID_RANGE: (u32, u32) = (5_400_000, 5_499_999);

/// A MySQL-family source: MySQL 5.7/8.x, Aurora MySQL, PolarDB MySQL, MariaDB 10.3+.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MySqlSourceConfig {
    /// `mysql://user:password@host:3306[/db][?ssl-mode=VERIFY_IDENTITY&ssl-ca=/path/ca.pem]`:
    /// TLS as the MySQL client's `--ssl-mode` (`DISABLED`, the default; `REQUIRED`: encrypted,
    /// certificate not checked; `VERIFY_CA`; `VERIFY_IDENTITY`: chain and host name) with
    /// `--ssl-ca` (PEM; default: the built-in Mozilla roots). Other mysql_async URL options
    /// pass through.
    pub url: String,
    /// Overrides the URL's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Overrides the URL's password. Never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The database (MySQL "schema") holding the table.
    pub schema: String,
    pub table: String,
    /// The replica server id this task registers with. Must be unique among everything that
    /// replicates from the server. Default: derived from the task name within
    /// `server_id_range`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u32>,
    /// `[first, last]` server ids tasks may use; each task picks one by hashing its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id_range: Option<(u32, u32)>,
    #[serde(default)]
    pub snapshot_mode: SnapshotMode,
    /// How the snapshot is made consistent with the binlog position.
    #[serde(default)]
    pub snapshot_locking: SnapshotLocking,
    #[serde(default = "default_chunk")]
    pub snapshot_chunk_rows: usize,
    #[serde(default = "default_batch")]
    pub max_batch_rows: usize,
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    #[serde(default = "default_reconnect")]
    pub reconnect_timeout_secs: u64,
    #[serde(default = "default_idle")]
    pub idle_position_secs: u64,
    /// How the binlog stream is resumed.
    #[serde(default)]
    pub resume_by: ResumeBy,
    /// What to do when the binlog the task needs was purged by the server.
    #[serde(default)]
    pub on_purged_binlog: OnPurgedBinlog,
}

fn default_chunk() -> usize {
    DEFAULT_SNAPSHOT_CHUNK_ROWS
}
fn default_batch() -> usize {
    DEFAULT_MAX_BATCH_ROWS
}
fn default_linger() -> u64 {
    DEFAULT_LINGER_MS
}
fn default_heartbeat() -> u64 {
    DEFAULT_HEARTBEAT_SECS
}
fn default_reconnect() -> u64 {
    DEFAULT_RECONNECT_TIMEOUT_SECS
}
fn default_idle() -> u64 {
    DEFAULT_IDLE_POSITION_SECS
}

/// What a task does on its first start (no checkpoint yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Copy the table, then stream from the binlog position the copy is consistent with.
    #[default]
    Initial,
    /// No copy: stream changes from the server's current binlog position.
    Never,
}

/// How the snapshot is tied to a binlog position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotLocking {
    /// MariaDB: `consistent_snapshot`. MySQL: `lock_table`, falling back to `none` when the
    /// user may not lock tables.
    #[default]
    Auto,
    /// MariaDB only: `START TRANSACTION WITH CONSISTENT SNAPSHOT` and the
    /// `binlog_snapshot_file/position` status of that very snapshot. No lock at all.
    ConsistentSnapshot,
    /// `LOCK TABLES t READ` on a second connection for the few milliseconds it takes to start
    /// the snapshot transaction and read the binlog position: writes to THIS table wait, no
    /// other table is affected, no global lock (works on Aurora/RDS, where FTWRL is refused).
    LockTable,
    /// No lock: read the binlog position first, then start the snapshot. The copy may already
    /// hold changes logged after that position; streaming replays them and, with upserts
    /// downstream, the table converges (see the crate docs).
    None,
}

/// How the stream is resumed from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumeBy {
    /// GTIDs when the checkpoint has them, else file and offset.
    #[default]
    Auto,
    /// Always file and offset (the same server only).
    FilePosition,
    /// Always GTIDs (MySQL gtid_mode=ON, or MariaDB); survives a fail-over to a replica.
    Gtid,
}

/// What to do when the binlog the checkpoint points into was purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnPurgedBinlog {
    /// Stop with an error naming the purged position (default): nothing is silently lost.
    #[default]
    Fail,
    /// Copy the table again (after a truncate row, `__op = 't'`, so the target is rebuilt) and
    /// stream from the new copy's position.
    Resnapshot,
}

impl fmt::Debug for MySqlSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MySqlSourceConfig")
            .field("url", &redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("server_id", &self.server_id)
            .field("server_id_range", &self.server_id_range)
            .field("snapshot_mode", &self.snapshot_mode)
            .field("snapshot_locking", &self.snapshot_locking)
            .field("snapshot_chunk_rows", &self.snapshot_chunk_rows)
            .field("max_batch_rows", &self.max_batch_rows)
            .field("linger_ms", &self.linger_ms)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("reconnect_timeout_secs", &self.reconnect_timeout_secs)
            .field("idle_position_secs", &self.idle_position_secs)
            .field("resume_by", &self.resume_by)
            .field("on_purged_binlog", &self.on_purged_binlog)
            .finish()
    }
}

pub use rtsync_core::text::redact_url;

impl MySqlSourceConfig {
    /// A config with every optional field at its default.
    pub fn new(url: impl Into<String>, schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: None,
            password: None,
            schema: schema.into(),
            table: table.into(),
            server_id: None,
            server_id_range: None,
            snapshot_mode: SnapshotMode::default(),
            snapshot_locking: SnapshotLocking::default(),
            snapshot_chunk_rows: DEFAULT_SNAPSHOT_CHUNK_ROWS,
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            linger_ms: DEFAULT_LINGER_MS,
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
            reconnect_timeout_secs: DEFAULT_RECONNECT_TIMEOUT_SECS,
            idle_position_secs: DEFAULT_IDLE_POSITION_SECS,
            resume_by: ResumeBy::default(),
            on_purged_binlog: OnPurgedBinlog::default(),
        }
    }

    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> SyncResult<()> {
        let url = url::Url::parse(&self.url).map_err(|e| {
            SyncError::with_source(ErrorKind::Config, format!("source.url: {} is not a URL", redact_url(&self.url)), e)
        })?;
        if url.scheme() != "mysql" {
            return Err(SyncError::config(format!(
                "source.url: scheme {:?} is not supported; use mysql://user:password@host:3306 (also for MariaDB, Aurora and PolarDB)",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(SyncError::config("source.url: no host; use mysql://user:password@host:3306"));
        }
        if self.schema.trim().is_empty() {
            return Err(SyncError::config("source.schema: empty; name the MySQL database that holds the table"));
        }
        if self.table.trim().is_empty() {
            return Err(SyncError::config("source.table: empty; name the table to sync"));
        }
        if self.server_id == Some(0) {
            return Err(SyncError::config("source.server_id: 0 is not a valid replica server id; use 1..=4294967295"));
        }
        if let Some((a, b)) = self.server_id_range
            && (a == 0 || b < a)
        {
            return Err(SyncError::config(format!("source.server_id_range: [{a}, {b}] is empty or starts at 0")));
        }
        if self.snapshot_chunk_rows == 0 {
            return Err(SyncError::config("source.snapshot_chunk_rows: must be at least 1"));
        }
        if self.max_batch_rows == 0 {
            return Err(SyncError::config("source.max_batch_rows: must be at least 1"));
        }
        if self.heartbeat_secs == 0 || self.heartbeat_secs > 4_294 {
            return Err(SyncError::config("source.heartbeat_secs: must be between 1 and 4294"));
        }
        self.opts()?;
        Ok(())
    }

    /// Connection options: the URL plus user/password overrides; TCP only (a local socket
    /// would bypass the host the user named), the database left unset (we name it in SQL).
    pub(crate) fn opts(&self) -> SyncResult<Opts> {
        let (url, ssl) = split_ssl_options(&self.url)
            .map_err(|why| SyncError::config(format!("source.url {}: {why}", redact_url(&self.url))))?;
        let base = Opts::from_url(&url).map_err(|e| {
            SyncError::with_source(
                ErrorKind::Config,
                format!("source.url: {} is not a valid MySQL URL", redact_url(&self.url)),
                e,
            )
        })?;
        let mut b = OptsBuilder::from_opts(base).prefer_socket(false).db_name(None::<String>);
        if let Some(user) = &self.user {
            b = b.user(Some(user.clone()));
        }
        if let Some(password) = &self.password {
            b = b.pass(Some(password.clone()));
        }
        if let Some(ssl) = ssl {
            // mysql_async's TLS takes rustls's process-wide provider; the build carries two
            // (ring and aws-lc-rs), so one is chosen here. Fails harmlessly once one is set.
            let _ = rustls::crypto::ring::default_provider().install_default();
            b = b.ssl_opts(Some(ssl));
        }
        Ok(b.into())
    }

    /// `host:port` for messages.
    pub(crate) fn endpoint(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(u) => format!("{}:{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(3306)),
            Err(_) => "<bad url>".to_owned(),
        }
    }

    /// The server id for `task`: `server_id` if set, else a stable hash of the task name into
    /// the range (FNV-1a: stable across Rust versions, unlike `DefaultHasher`).
    pub fn server_id_for(&self, task: &str) -> u32 {
        if let Some(id) = self.server_id {
            return id;
        }
        let (start, end) = self.server_id_range.unwrap_or(DEFAULT_SERVER_ID_RANGE);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in task.bytes().chain(self.schema.bytes()).chain(self.table.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let width = u64::from(end - start) + 1;
        start + (h % width) as u32
    }
}

/// The MySQL client's `ssl-mode` / `ssl-ca` taken out of the URL's query (mysql_async would
/// refuse them) and turned into mysql_async's TLS options; returns the rest of the URL.
fn split_ssl_options(url: &str) -> Result<(String, Option<mysql_async::SslOpts>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let (mut mode, mut ca) = (None::<String>, None::<std::path::PathBuf>);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k.replace('_', "-").to_ascii_lowercase().as_str() {
            "ssl-mode" => mode = Some(v.to_ascii_uppercase().replace('-', "_")),
            "ssl-ca" => ca = Some(rtsync_core::text::percent_decode(v).into()),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    if let Some(path) = &ca
        && !path.is_file()
    {
        return Err(format!("ssl-ca {} is not a readable file", path.display()));
    }
    let mode = match (mode.as_deref(), &ca) {
        (Some(m), _) => m.to_string(),
        (None, Some(_)) => "VERIFY_CA".to_string(),
        (None, None) => return Ok((rest, None)),
    };
    let roots = |opts: mysql_async::SslOpts| match &ca {
        Some(path) => opts.with_root_certs(vec![path.clone().into()]).with_disable_built_in_roots(true),
        None => opts,
    };
    let ssl = match mode.as_str() {
        "DISABLED" => None,
        "REQUIRED" => Some(
            mysql_async::SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        "VERIFY_CA" => Some(roots(mysql_async::SslOpts::default().with_danger_skip_domain_validation(true))),
        "VERIFY_IDENTITY" => Some(roots(mysql_async::SslOpts::default())),
        "PREFERRED" => {
            return Err("ssl-mode PREFERRED (fall back to plain text) is not offered: use REQUIRED, VERIFY_CA or VERIFY_IDENTITY, or DISABLED".into());
        }
        other => {
            return Err(format!("ssl-mode {other:?}: use DISABLED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY"));
        }
    };
    Ok((rest, ssl))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ssl_mode_and_ca_come_out_of_the_url() {
        let (rest, ssl) = split_ssl_options("mysql://u:p@h:3306/db?ssl-mode=REQUIRED&prefer_socket=false").unwrap();
        assert_eq!(rest, "mysql://u:p@h:3306/db?prefer_socket=false");
        let ssl = ssl.unwrap();
        assert!(ssl.accept_invalid_certs() && ssl.skip_domain_validation());
        let (rest, ssl) = split_ssl_options("mysql://u@h/db").unwrap();
        assert_eq!((rest.as_str(), ssl.is_none()), ("mysql://u@h/db", true));
        let (_, ssl) = split_ssl_options("mysql://u@h/db?ssl_mode=verify_identity").unwrap();
        let ssl = ssl.unwrap();
        assert!(!ssl.accept_invalid_certs() && !ssl.skip_domain_validation());
        let (_, ssl) = split_ssl_options("mysql://u@h/db?ssl-mode=DISABLED").unwrap();
        assert!(ssl.is_none());
        assert!(split_ssl_options("mysql://u@h/db?ssl-mode=PREFERRED").unwrap_err().contains("REQUIRED"));
        assert!(split_ssl_options("mysql://u@h/db?ssl-mode=sometimes").unwrap_err().contains("ssl-mode"));
        assert!(split_ssl_options("mysql://u@h/db?ssl-ca=/no/such.pem").unwrap_err().contains("/no/such.pem"));
    }

    #[test]
    fn minimal_toml_with_defaults() {
        let cfg: MySqlSourceConfig = toml::from_str(
            r#"
            url = "mysql://user:secret@127.0.0.1:3306"
            schema = "shop"
            table = "orders"
            "#,
        )
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.snapshot_chunk_rows, DEFAULT_SNAPSHOT_CHUNK_ROWS);
        assert_eq!(cfg.snapshot_mode, SnapshotMode::Initial);
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("***"));
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let err = toml::from_str::<MySqlSourceConfig>("url='mysql://h'\nschema='s'\ntable='t'\nbogus=1").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let mut cfg = MySqlSourceConfig::new("postgres://h", "s", "t");
        assert!(cfg.validate().unwrap_err().to_string().starts_with("source.url"));
        cfg.url = "mysql://u:p@h:3306".into();
        cfg.table = " ".into();
        assert!(cfg.validate().unwrap_err().to_string().starts_with("source.table"));
        cfg.table = "t".into();
        cfg.server_id_range = Some((10, 5));
        assert!(cfg.validate().unwrap_err().to_string().starts_with("source.server_id_range"));
        cfg.server_id_range = None;
        cfg.snapshot_chunk_rows = 0;
        assert!(cfg.validate().unwrap_err().to_string().starts_with("source.snapshot_chunk_rows"));
    }

    #[test]
    fn server_ids_are_stable_and_in_range() {
        let mut cfg = MySqlSourceConfig::new("mysql://h", "s", "t");
        cfg.server_id_range = Some((100, 199));
        let a = cfg.server_id_for("task-a");
        assert_eq!(a, cfg.server_id_for("task-a"));
        assert!((100..=199).contains(&a));
        assert_ne!(a, cfg.server_id_for("task-b"));
        cfg.server_id = Some(7);
        assert_eq!(cfg.server_id_for("task-a"), 7);
    }

    #[test]
    fn overrides_reach_the_connection_options() {
        let mut cfg = MySqlSourceConfig::new("mysql://u:p@db.example:3307/x", "s", "t");
        cfg.user = Some("other".into());
        cfg.password = Some("pw".into());
        let opts = cfg.opts().unwrap();
        assert_eq!(opts.user(), Some("other"));
        assert_eq!(opts.pass(), Some("pw"));
        assert_eq!(opts.tcp_port(), 3307);
        assert!(!opts.prefer_socket());
        assert_eq!(cfg.endpoint(), "db.example:3307");
        assert_eq!(redact_url(&cfg.url), "mysql://u:***@db.example:3307/x");
    }
}
