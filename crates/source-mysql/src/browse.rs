//! Browsing a server without touching the binlog: its databases, their tables, one table's
//! columns with the types they become in the target, and a sample of rows read exactly as the
//! snapshot reads them. Used by `meta` and `task preview`; nothing is written on the server.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};
use rtsync_core::arrow::array::RecordBatch;
pub use rtsync_core::{ColumnSummary, SchemaSummary};
use rtsync_core::{SyncError, SyncResult};

use crate::config::MySqlSourceConfig;
use crate::error::my_err;
use crate::preflight::ServerInfo;
use crate::schema::{self, ColumnSpec};
use crate::snapshot::{self, ChunkReader};

/// Checks what streaming needs of the server, without a table: the connection and
/// credentials, the binlog settings (on, ROW, FULL row image) and the binlog privileges.
/// Returns the server's version text. A table's check (the source's `check`) adds the table,
/// its key, its character sets and SELECT on it.
pub async fn check_server(cfg: &MySqlSourceConfig) -> SyncResult<String> {
    let opts = cfg.opts()?;
    let mut conn = snapshot::connect(&opts, cfg).await?;
    let info = ServerInfo::read(&mut conn).await?;
    crate::preflight::ensure_log_bin_on(&info)?;
    crate::preflight::ensure_row_binlog_format(&info)?;
    crate::preflight::ensure_full_row_image(&info)?;
    crate::preflight::ensure_binlog_privileges(&mut conn, &info).await?;
    let _ = conn.disconnect().await;
    Ok(format!("{} {}", info.flavor.name(), info.flavor.version_string))
}

/// Databases the server owns.
const SYSTEM_SCHEMAS: [&str; 4] = ["information_schema", "mysql", "performance_schema", "sys"];

#[derive(Debug, Clone, PartialEq)]
pub struct TableSummary {
    pub name: String,
    /// The storage engine (`InnoDB`, …).
    pub engine: Option<String>,
    /// information_schema.TABLES.TABLE_ROWS: an estimate for InnoDB.
    pub estimated_rows: Option<i64>,
    pub primary_key: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableDetail {
    pub columns: Vec<ColumnSummary>,
    pub primary_key: Vec<String>,
    pub engine: Option<String>,
    pub estimated_rows: Option<i64>,
}

async fn connect(cfg: &MySqlSourceConfig) -> SyncResult<Conn> {
    let opts = cfg.opts()?;
    let mut conn = snapshot::connect(&opts, cfg).await?;
    snapshot::prepare_session(&mut conn).await?;
    Ok(conn)
}

fn text(row: &Row, i: usize) -> Option<String> {
    row.get_opt::<Option<String>, usize>(i).and_then(Result::ok).flatten()
}

fn number(row: &Row, i: usize) -> Option<i64> {
    row.get_opt::<Option<i64>, usize>(i).and_then(Result::ok).flatten()
}

/// The server's user databases with how many base tables each holds.
pub async fn list_schemas(cfg: &MySqlSourceConfig) -> SyncResult<Vec<SchemaSummary>> {
    let mut conn = connect(cfg).await?;
    let rows: Vec<Row> = conn
        .query(
            "SELECT s.SCHEMA_NAME, COUNT(t.TABLE_NAME) FROM information_schema.SCHEMATA s \
             LEFT JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = s.SCHEMA_NAME AND t.TABLE_TYPE = 'BASE TABLE' \
             GROUP BY s.SCHEMA_NAME ORDER BY s.SCHEMA_NAME",
        )
        .await
        .map_err(|e| my_err("listing databases", e))?;
    let _ = conn.disconnect().await;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name = text(r, 0)?;
            (!SYSTEM_SCHEMAS.contains(&name.to_ascii_lowercase().as_str()))
                .then(|| SchemaSummary { name, tables: number(r, 1).unwrap_or(0) })
        })
        .collect())
}

/// The base tables of `database` with their primary keys.
pub async fn list_tables(cfg: &MySqlSourceConfig, database: &str) -> SyncResult<Vec<TableSummary>> {
    let mut conn = connect(cfg).await?;
    let doing = || format!("listing the tables of database {database}");
    let exists: Option<Row> = conn
        .exec_first("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", (database,))
        .await
        .map_err(|e| my_err(doing(), e))?;
    if exists.is_none() {
        let _ = conn.disconnect().await;
        return Err(SyncError::source_err(format!(
            "database {database:?} does not exist on this server, or the user may not see it"
        )));
    }
    let tables: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, ENGINE, TABLE_ROWS FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
            (database,),
        )
        .await
        .map_err(|e| my_err(doing(), e))?;
    let keys: Vec<Row> = conn
        .exec(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        .await
        .map_err(|e| my_err(doing(), e))?;
    let _ = conn.disconnect().await;
    Ok(tables
        .iter()
        .filter_map(|r| {
            let name = text(r, 0)?;
            let primary_key = keys
                .iter()
                .filter(|k| text(k, 0).as_deref() == Some(name.as_str()))
                .filter_map(|k| text(k, 1))
                .collect();
            Some(TableSummary { engine: text(r, 1), estimated_rows: number(r, 2), primary_key, name })
        })
        .collect())
}

/// One table's columns and primary key, as the connector will read them.
pub async fn table_detail(cfg: &MySqlSourceConfig, database: &str, table: &str) -> SyncResult<TableDetail> {
    let mut conn = connect(cfg).await?;
    let info = ServerInfo::read(&mut conn).await?;
    let described = schema::read_table(&mut conn, database, table, info.flavor.mariadb).await?;
    let Some(described) = described else {
        let _ = conn.disconnect().await;
        return Err(missing_table(database, table));
    };
    let doing = || format!("reading the columns of {database}.{table}");
    let columns: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (database, table),
        )
        .await
        .map_err(|e| my_err(doing(), e))?;
    let about: Option<Row> = conn
        .exec_first(
            "SELECT ENGINE, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (database, table),
        )
        .await
        .map_err(|e| my_err(doing(), e))?;
    let _ = conn.disconnect().await;
    let columns = described
        .columns
        .iter()
        .map(|c| {
            let row = columns.iter().find(|r| text(r, 0).as_deref() == Some(c.name.as_str()));
            ColumnSummary {
                name: c.name.clone(),
                source_type: row.and_then(|r| text(r, 1)).unwrap_or_default(),
                target_type: c.kind.arrow_type(),
                nullable: row.and_then(|r| text(r, 2)).is_none_or(|n| n.eq_ignore_ascii_case("YES")),
            }
        })
        .collect();
    Ok(TableDetail {
        columns,
        primary_key: described.primary_key,
        engine: about.as_ref().and_then(|r| text(r, 0)),
        estimated_rows: about.as_ref().and_then(|r| number(r, 1)),
    })
}

fn missing_table(database: &str, table: &str) -> SyncError {
    SyncError::source_err(format!(
        "table {database}.{table} does not exist, or the user may not see it; check the database (schema) and table names"
    ))
}

/// Up to `limit` rows of the configured table in primary-key order, decoded exactly as the
/// snapshot decodes them (same query, same Arrow types), with the `__op` column.
pub async fn sample_rows(cfg: &MySqlSourceConfig, limit: usize) -> SyncResult<RecordBatch> {
    let limit = limit.max(1);
    let mut conn = connect(cfg).await?;
    let info = ServerInfo::read(&mut conn).await?;
    let Some(table) = schema::read_table(&mut conn, &cfg.schema, &cfg.table, info.flavor.mariadb).await? else {
        let _ = conn.disconnect().await;
        return Err(missing_table(&cfg.schema, &cfg.table));
    };
    if let Err(e) = crate::preflight::ensure_primary_key(&table, cfg) {
        let _ = conn.disconnect().await;
        return Err(e);
    }
    let key_idx = table.key_indexes()?;
    let columns: Arc<[ColumnSpec]> = table.columns.into();
    let mut chunk_cfg = cfg.clone();
    chunk_cfg.snapshot_chunk_rows = limit;
    let mut reader = ChunkReader::new(conn, &chunk_cfg, columns, key_idx).await?;
    let (mut rows, _) = reader.next_chunk(None, limit).await?;
    let (batch, _, _) = rows.finish()?;
    reader.finish().await?;
    Ok(batch)
}
