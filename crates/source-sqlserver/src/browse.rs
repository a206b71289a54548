//! Browsing a SQL Server database for `meta` and `preview`: schemas, tables (with whether CDC
//! captures them), a table's columns with the Arrow types rtsync emits, and sample rows decoded
//! exactly as the snapshot decodes them.

use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::{ColumnSummary, SchemaSummary, SyncError, SyncResult};
use tiberius::Query;

use crate::config::SqlServerSourceConfig;
use crate::rows::{RowColumn, RowsBuilder};
use crate::server::{CdcServer, TdsServer, cell_i64, cell_str};
use crate::sql;

/// A table when listing a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSummary {
    pub name: String,
    pub primary_key: Vec<String>,
    pub estimated_rows: Option<i64>,
    /// Whether a CDC capture instance tracks it.
    pub cdc: bool,
}

/// A table's columns and key.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDetail {
    pub columns: Vec<ColumnSummary>,
    pub primary_key: Vec<String>,
    pub cdc: bool,
}

/// The schemas with their table counts (public so the TDS simulator can recognise it).
pub const LIST_SCHEMAS: &str = "SELECT s.name, COUNT(t.object_id) AS tables FROM sys.schemas s \
     LEFT JOIN sys.tables t ON t.schema_id = s.schema_id AND t.is_ms_shipped = 0 \
     WHERE s.name NOT IN (N'sys', N'INFORMATION_SCHEMA', N'cdc', N'guest') AND s.principal_id < 16384 \
     GROUP BY s.name ORDER BY s.name";

/// The tables of schema `@P1`.
pub const LIST_TABLES: &str = "SELECT t.name, CAST(t.is_tracked_by_cdc AS int) AS cdc, \
     (SELECT SUM(p.rows) FROM sys.partitions p WHERE p.object_id = t.object_id AND p.index_id IN (0, 1)) AS estimated_rows \
     FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id \
     WHERE s.name = @P1 AND t.is_ms_shipped = 0 ORDER BY t.name";

async fn connect(cfg: &SqlServerSourceConfig) -> SyncResult<TdsServer> {
    cfg.connection()?;
    TdsServer::connect(cfg, "rtsync browse").await
}

pub async fn list_schemas(cfg: &SqlServerSourceConfig) -> SyncResult<Vec<SchemaSummary>> {
    let mut s = connect(cfg).await?;
    let rows = s.rows(Query::new(LIST_SCHEMAS), "listing schemas").await?;
    Ok(rows
        .iter()
        .map(|r| SchemaSummary { name: cell_str(r, 0).unwrap_or_default(), tables: cell_i64(r, 1).unwrap_or(0) })
        .collect())
}

pub async fn list_tables(cfg: &SqlServerSourceConfig, schema: &str) -> SyncResult<Vec<TableSummary>> {
    let mut s = connect(cfg).await?;
    let mut q = Query::new(LIST_TABLES);
    q.bind(schema.to_string());
    let rows = s.rows(q, &format!("listing the tables of schema {schema}")).await?;
    let mut out = Vec::new();
    for r in &rows {
        let name = cell_str(r, 0).unwrap_or_default();
        let primary_key = s.primary_key(schema, &name).await?;
        out.push(TableSummary { primary_key, cdc: cell_i64(r, 1) == Some(1), estimated_rows: cell_i64(r, 2), name });
    }
    Ok(out)
}

pub async fn table_detail(cfg: &SqlServerSourceConfig, schema: &str, table: &str) -> SyncResult<TableDetail> {
    let mut s = connect(cfg).await?;
    let columns = s.table_columns(schema, table).await?;
    if columns.is_empty() {
        return Err(SyncError::source_err(format!(
            "table [{schema}].[{table}] does not exist, or the user may not see it; check the schema and table names"
        )));
    }
    let primary_key = s.primary_key(schema, table).await?;
    let cdc = !s.capture_instances(schema, table).await?.is_empty();
    Ok(TableDetail {
        columns: columns
            .into_iter()
            .map(|c| ColumnSummary {
                target_type: c.column.ty.arrow_type(),
                source_type: c.source_type,
                nullable: c.nullable,
                name: c.column.name,
            })
            .collect(),
        primary_key,
        cdc,
    })
}

/// Up to `limit` rows of the configured table in key order, decoded as the snapshot decodes
/// them, with the `__op` column.
pub async fn sample_rows(cfg: &SqlServerSourceConfig, limit: usize) -> SyncResult<RecordBatch> {
    let mut s = connect(cfg).await?;
    let columns = s.table_columns(&cfg.schema, &cfg.table).await?;
    if columns.is_empty() {
        return Err(SyncError::source_err(format!(
            "table [{}].[{}] does not exist, or the user may not see it",
            cfg.schema, cfg.table
        )));
    }
    let pk = s.primary_key(&cfg.schema, &cfg.table).await?;
    let cols: Vec<sql::SqlColumn> = columns.iter().map(|c| c.column.clone()).collect();
    let key: Vec<sql::SqlColumn> = pk.iter().filter_map(|k| cols.iter().find(|c| &c.name == k).cloned()).collect();
    let chunk = s.snapshot_chunk(&cfg.schema, &cfg.table, &cols, &key, None, limit.max(1)).await?;
    let row_columns =
        columns.into_iter().enumerate().map(|(i, c)| RowColumn { column: c.column, ordinal: i + 1 }).collect();
    let mut rows = RowsBuilder::new(row_columns, &[])?;
    for (values, _) in chunk {
        rows.push_read(&values)?;
    }
    Ok(rows.finish()?.0)
}
