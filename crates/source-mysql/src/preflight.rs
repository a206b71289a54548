//! Pre-flight checks: named functions that each verify one thing streaming needs and say how
//! to fix it. `ServerInfo::read` detects the flavour and reads the relevant variables once.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use rtsync_core::{SyncError, SyncResult};

use crate::config::MySqlSourceConfig;
use crate::error::{my_err, server_code};
use crate::schema::{Charset, ColumnKind, TableSchema};

/// MySQL or MariaDB, and which version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flavor {
    pub mariadb: bool,
    pub version: (u32, u32, u32),
    /// `SELECT VERSION()` as the server says it (`10.11.6-MariaDB-0+deb12u1`, `8.0.36`).
    pub version_string: String,
}

impl Flavor {
    pub fn parse(version: &str) -> Flavor {
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        // MariaDB 10.x behind old proxies reports "5.5.5-10.11.6-MariaDB".
        let v = version.strip_prefix("5.5.5-").filter(|_| mariadb).unwrap_or(version);
        let mut nums =
            v.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse::<u32>().unwrap_or(0));
        let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0), nums.next().unwrap_or(0));
        Flavor { mariadb, version, version_string: v.to_owned() }
    }

    /// The statement that shows the current binlog file and position: MySQL 8.2 renamed
    /// `SHOW MASTER STATUS` (removed in 8.4) to `SHOW BINARY LOG STATUS`.
    pub fn binlog_status_sql(&self) -> &'static str {
        if !self.mariadb && self.version >= (8, 2, 0) { "SHOW BINARY LOG STATUS" } else { "SHOW MASTER STATUS" }
    }

    pub fn name(&self) -> &'static str {
        if self.mariadb { "MariaDB" } else { "MySQL" }
    }
}

/// The server's flavour and the global variables the checks look at.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub flavor: Flavor,
    pub vars: HashMap<String, String>,
}

const VARIABLES: &[&str] = &[
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "binlog_row_value_options",
    "binlog_checksum",
    "server_id",
    "gtid_mode",
    "lower_case_table_names",
    "log_bin_compress",
    "binlog_transaction_compression",
];

impl ServerInfo {
    pub(crate) async fn read(conn: &mut Conn) -> SyncResult<ServerInfo> {
        let version: Option<String> =
            conn.query_first("SELECT VERSION()").await.map_err(|e| my_err("reading the server version", e))?;
        let flavor = Flavor::parse(&version.unwrap_or_default());
        let list = VARIABLES.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(",");
        let rows: Vec<(String, Option<String>)> = conn
            .query(format!("SHOW GLOBAL VARIABLES WHERE Variable_name IN ({list})"))
            .await
            .map_err(|e| my_err("reading the server's binlog settings", e))?;
        let vars = rows.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v.unwrap_or_default())).collect();
        Ok(ServerInfo { flavor, vars })
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    fn var_is(&self, name: &str, want: &[&str]) -> bool {
        self.var(name).is_some_and(|v| want.iter().any(|w| v.eq_ignore_ascii_case(w)))
    }

    /// Table names compare case-insensitively when the server lower-cases them.
    pub fn case_insensitive_names(&self) -> bool {
        self.var("lower_case_table_names").is_some_and(|v| v != "0")
    }

    /// The server logs GTIDs we can resume from: always on MariaDB, `gtid_mode=ON` on MySQL.
    pub fn gtid_enabled(&self) -> bool {
        self.flavor.mariadb || self.var_is("gtid_mode", &["ON"])
    }

    /// `binlog_row_metadata=FULL` puts column names (and enum members) into each TABLE_MAP.
    pub fn full_row_metadata(&self) -> bool {
        self.var_is("binlog_row_metadata", &["FULL"])
    }
}

pub fn ensure_log_bin_on(info: &ServerInfo) -> SyncResult<()> {
    if info.var_is("log_bin", &["ON", "1"]) {
        return Ok(());
    }
    Err(SyncError::source_err(format!(
        "the {} server does not write a binary log (log_bin={}); start it with log_bin (and binlog_format=ROW, binlog_row_image=FULL). \
         On RDS/Aurora enable automated backups / binlog retention",
        info.flavor.name(),
        info.var("log_bin").unwrap_or("unknown")
    )))
}

pub fn ensure_row_binlog_format(info: &ServerInfo) -> SyncResult<()> {
    if info.var_is("binlog_format", &["ROW"]) {
        return Ok(());
    }
    Err(SyncError::source_err(format!(
        "binlog_format is {} but change data capture needs ROW; run SET GLOBAL binlog_format = 'ROW' (and set it in the server config / parameter group)",
        info.var("binlog_format").unwrap_or("unknown")
    )))
}

pub fn ensure_full_row_image(info: &ServerInfo) -> SyncResult<()> {
    // Servers older than MySQL 5.6 have no binlog_row_image: they always log full rows.
    if info.var("binlog_row_image").is_none() || info.var_is("binlog_row_image", &["FULL"]) {
        if info.var("binlog_row_value_options").is_some_and(|v| v.to_ascii_uppercase().contains("PARTIAL_JSON")) {
            return Err(SyncError::source_err(
                "binlog_row_value_options=PARTIAL_JSON logs JSON updates as diffs that cannot be mirrored; run SET GLOBAL binlog_row_value_options = ''",
            ));
        }
        return Ok(());
    }
    Err(SyncError::source_err(format!(
        "binlog_row_image is {} but rtsync needs whole rows; run SET GLOBAL binlog_row_image = 'FULL'",
        info.var("binlog_row_image").unwrap_or("unknown")
    )))
}

/// SELECT on the table, permission to read the binlog position (REPLICATION CLIENT; MariaDB
/// 10.5+: BINLOG MONITOR) and to stream it (REPLICATION SLAVE).
pub async fn ensure_replication_privileges(
    conn: &mut Conn,
    info: &ServerInfo,
    cfg: &MySqlSourceConfig,
) -> SyncResult<()> {
    ensure_binlog_position_readable(conn, info).await?;
    let table = format!("{}.{}", crate::schema::quote_ident(&cfg.schema), crate::schema::quote_ident(&cfg.table));
    if let Err(e) = conn.query_drop(format!("SELECT 1 FROM {table} LIMIT 0")).await {
        return Err(match server_code(&e) {
            Some(1142 | 1143 | 1044) => SyncError::with_source(
                rtsync_core::ErrorKind::Source,
                format!(
                    "the user may not read {}.{}; GRANT SELECT ON {table} TO the rtsync user",
                    cfg.schema, cfg.table
                ),
                e,
            ),
            _ => my_err(format!("reading {}.{}", cfg.schema, cfg.table), e),
        });
    }
    ensure_binlog_stream_grant(conn, info).await
}

/// The binlog privileges without a table: reading the position and streaming.
pub async fn ensure_binlog_privileges(conn: &mut Conn, info: &ServerInfo) -> SyncResult<()> {
    ensure_binlog_position_readable(conn, info).await?;
    ensure_binlog_stream_grant(conn, info).await
}

fn monitor_privilege(info: &ServerInfo) -> &'static str {
    if info.flavor.mariadb && info.flavor.version >= (10, 5, 2) { "BINLOG MONITOR" } else { "REPLICATION CLIENT" }
}

async fn ensure_binlog_position_readable(conn: &mut Conn, info: &ServerInfo) -> SyncResult<()> {
    let monitor = monitor_privilege(info);
    if let Err(e) = conn.query_drop(info.flavor.binlog_status_sql()).await {
        return Err(match server_code(&e) {
            Some(1227 | 1044 | 1045) => SyncError::with_source(
                rtsync_core::ErrorKind::Source,
                format!("the user may not read the binlog position; GRANT {monitor} ON *.* TO the rtsync user"),
                e,
            ),
            _ => my_err("reading the binlog position", e),
        });
    }
    Ok(())
}

async fn ensure_binlog_stream_grant(conn: &mut Conn, info: &ServerInfo) -> SyncResult<()> {
    let monitor = monitor_privilege(info);
    let grants: Vec<Row> = conn.query("SHOW GRANTS").await.map_err(|e| my_err("reading the user's grants", e))?;
    let grants: Vec<String> = grants
        .into_iter()
        .filter_map(|r| r.get_opt::<Option<String>, usize>(0).and_then(Result::ok).flatten())
        .map(|g| g.to_ascii_uppercase())
        .collect();
    match replication_grant(&grants) {
        Grant::Yes => Ok(()),
        Grant::MaybeViaRole => {
            tracing::warn!("could not see REPLICATION SLAVE among the user's direct grants; assuming a role grants it");
            Ok(())
        }
        Grant::No => Err(SyncError::source_err(format!(
            "the user may not stream the binlog; GRANT REPLICATION SLAVE, {monitor} ON *.* TO the rtsync user"
        ))),
    }
}

#[derive(Debug, PartialEq)]
enum Grant {
    Yes,
    No,
    MaybeViaRole,
}

fn replication_grant(grants: &[String]) -> Grant {
    let global = |g: &&String| g.contains(" ON *.* ");
    if grants
        .iter()
        .filter(global)
        .any(|g| g.contains("ALL PRIVILEGES") || g.contains("REPLICATION SLAVE") || g.contains("REPLICATION REPLICA"))
    {
        return Grant::Yes;
    }
    // `GRANT `role` TO user` lines have no ON clause.
    if grants.iter().any(|g| g.starts_with("GRANT ") && !g.contains(" ON ")) {
        return Grant::MaybeViaRole;
    }
    Grant::No
}

pub fn ensure_table_exists<'a>(table: Option<&'a TableSchema>, cfg: &MySqlSourceConfig) -> SyncResult<&'a TableSchema> {
    table.ok_or_else(|| {
        SyncError::source_err(format!(
            "table {}.{} does not exist (or the user cannot see it); check source.schema and source.table",
            cfg.schema, cfg.table
        ))
    })
}

pub fn ensure_primary_key(table: &TableSchema, cfg: &MySqlSourceConfig) -> SyncResult<()> {
    if table.primary_key.is_empty() {
        return Err(SyncError::source_err(format!(
            "table {}.{} has no primary key; rtsync mirrors rows by key: ALTER TABLE {}.{} ADD PRIMARY KEY (…)",
            cfg.schema, cfg.table, cfg.schema, cfg.table
        )));
    }
    Ok(())
}

/// The binlog carries text in the column's own character set: only those we can convert.
pub fn ensure_decodable_charsets(table: &TableSchema, cfg: &MySqlSourceConfig) -> SyncResult<()> {
    for c in &table.columns {
        if let ColumnKind::Text { charset: Charset::Other(name) } = &c.kind {
            return Err(SyncError::source_err(format!(
                "column {:?} of {}.{} uses character set {name}, which rtsync cannot decode from the binlog \
                 (supported: utf8mb4, utf8mb3, ascii, latin1, binary); ALTER the column to utf8mb4",
                c.name, cfg.schema, cfg.table
            )));
        }
    }
    Ok(())
}

/// A replica whose server id equals the server's own is refused by the server.
pub fn ensure_server_id_differs(info: &ServerInfo, server_id: u32) -> SyncResult<()> {
    if info.var("server_id").and_then(|v| v.parse::<u32>().ok()) == Some(server_id) {
        return Err(SyncError::config(format!(
            "source.server_id: {server_id} is the server's own server_id; pick another id (or a server_id_range that excludes it)"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flavours_and_versions() {
        let m = Flavor::parse("10.11.6-MariaDB-0+deb12u1-log");
        assert!(m.mariadb);
        assert_eq!(m.version, (10, 11, 6));
        assert_eq!(m.binlog_status_sql(), "SHOW MASTER STATUS");
        let old_proxy = Flavor::parse("5.5.5-10.6.12-MariaDB");
        assert_eq!(old_proxy.version, (10, 6, 12));
        let my = Flavor::parse("8.4.0");
        assert!(!my.mariadb);
        assert_eq!(my.binlog_status_sql(), "SHOW BINARY LOG STATUS");
        assert_eq!(Flavor::parse("8.0.36-28.1-aurora").binlog_status_sql(), "SHOW MASTER STATUS");
    }

    fn info(vars: &[(&str, &str)]) -> ServerInfo {
        ServerInfo {
            flavor: Flavor::parse("8.0.36"),
            vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn binlog_settings_are_checked_with_the_fix_named() {
        let good =
            info(&[("log_bin", "ON"), ("binlog_format", "ROW"), ("binlog_row_image", "FULL"), ("server_id", "1")]);
        ensure_log_bin_on(&good).unwrap();
        ensure_row_binlog_format(&good).unwrap();
        ensure_full_row_image(&good).unwrap();
        assert!(ensure_server_id_differs(&good, 1).is_err());
        ensure_server_id_differs(&good, 2).unwrap();
        let bad = info(&[("log_bin", "OFF"), ("binlog_format", "MIXED"), ("binlog_row_image", "MINIMAL")]);
        assert!(ensure_log_bin_on(&bad).unwrap_err().to_string().contains("log_bin"));
        assert!(ensure_row_binlog_format(&bad).unwrap_err().to_string().contains("SET GLOBAL binlog_format = 'ROW'"));
        assert!(ensure_full_row_image(&bad).unwrap_err().to_string().contains("FULL"));
        let partial = info(&[("binlog_row_image", "FULL"), ("binlog_row_value_options", "PARTIAL_JSON")]);
        assert!(ensure_full_row_image(&partial).is_err());
    }

    #[test]
    fn replication_grants_are_recognised() {
        let g = |lines: &[&str]| replication_grant(&lines.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(g(&["GRANT ALL PRIVILEGES ON *.* TO `rtsync`@`%` WITH GRANT OPTION"]), Grant::Yes);
        assert_eq!(g(&["GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `u`@`%`"]), Grant::Yes);
        assert_eq!(g(&["GRANT ALL PRIVILEGES ON `shop`.* TO `u`@`%`"]), Grant::No);
        assert_eq!(g(&["GRANT USAGE ON *.* TO `u`@`%`", "GRANT `cdc` TO `u`@`%`"]), Grant::MaybeViaRole);
    }
}
