//! Browsing a database without a replication slot: its schemas, their tables, one table's
//! columns with the types they become in the target, and a sample of rows read exactly as the
//! snapshot reads them. Used by `meta` and `task preview`; nothing is created on the server.

use rtsync_core::arrow::array::RecordBatch;
pub use rtsync_core::{ColumnSummary, SchemaSummary};
use rtsync_core::{SyncError, SyncResult};

use crate::catalog::{self, quoted_table};
use crate::config::PostgresSourceConfig;
use crate::error::pg_error;
use crate::position::Lsn;
use crate::rows::RowsBuilder;
use crate::snapshot::SnapshotReader;

/// Schemas the system does not own: `pg_catalog`, `information_schema`, `pg_toast` and the
/// temporary ones are left out.
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

#[derive(Debug, Clone, PartialEq)]
pub struct TableSummary {
    pub name: String,
    /// `table` or `partitioned table`.
    pub kind: String,
    /// `pg_class.reltuples`: the planner's estimate, None before the first ANALYZE.
    pub estimated_rows: Option<i64>,
    pub primary_key: Vec<String>,
    /// `default`, `full`, `index` or `nothing`.
    pub replica_identity: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableDetail {
    pub columns: Vec<ColumnSummary>,
    /// The primary key, or the replica identity index's columns; empty when neither.
    pub key: Vec<String>,
    pub has_primary_key: bool,
    pub replica_identity: String,
    pub estimated_rows: Option<i64>,
}

fn identity_name(c: char) -> &'static str {
    match c {
        'd' => "default",
        'f' => "full",
        'i' => "index",
        'n' => "nothing",
        _ => "unknown",
    }
}

async fn connect(cfg: &PostgresSourceConfig) -> SyncResult<tokio_postgres::Client> {
    catalog::connect(&cfg.connection()?).await
}

/// Checks what streaming needs of the server, without a table: the connection and
/// credentials, `wal_level = logical` and the replication privilege. Returns the server's
/// version. A table's check (the source's `check`) adds the table, its key or replica
/// identity, and the replication slot.
pub async fn check_server(cfg: &PostgresSourceConfig) -> SyncResult<String> {
    let client = connect(cfg).await?;
    catalog::ensure_wal_level_logical(&client).await?;
    catalog::ensure_replication_privilege(&client).await?;
    let row = client.query_one("SELECT version()", &[]).await.map_err(|e| pg_error(e, "reading the version"))?;
    let version: String = row.get(0);
    Ok(version.split(" on ").next().unwrap_or(&version).to_string())
}

/// The database's user schemas with how many tables each holds.
pub async fn list_schemas(cfg: &PostgresSourceConfig) -> SyncResult<Vec<SchemaSummary>> {
    let client = connect(cfg).await?;
    let sql = format!(
        "SELECT n.nspname::text, count(c.oid) FILTER (WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition) \
         FROM pg_namespace n LEFT JOIN pg_class c ON c.relnamespace = n.oid \
         WHERE {USER_SCHEMAS} GROUP BY n.nspname ORDER BY n.nspname"
    );
    let rows = client.query(sql.as_str(), &[]).await.map_err(|e| pg_error(e, "listing schemas"))?;
    Ok(rows.iter().map(|r| SchemaSummary { name: r.get(0), tables: r.get(1) }).collect())
}

/// The tables of `schema` (partitions are left out: their parent is the table to sync).
pub async fn list_tables(cfg: &PostgresSourceConfig, schema: &str) -> SyncResult<Vec<TableSummary>> {
    let client = connect(cfg).await?;
    let doing = format!("listing the tables of schema {schema}");
    let exists = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .map_err(|e| pg_error(e, &doing))?;
    if exists.is_none() {
        return Err(SyncError::source_err(format!(
            "schema {schema:?} does not exist in this database (names are case-sensitive)"
        )));
    }
    let rows = client
        .query(
            "SELECT c.relname::text, c.relkind::text, c.reltuples::float8, c.relreplident::text, \
                    coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord) \
                              FROM pg_index i \
                              CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                              WHERE i.indrelid = c.oid AND i.indisprimary), '{}') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
             ORDER BY c.relname",
            &[&schema],
        )
        .await
        .map_err(|e| pg_error(e, &doing))?;
    Ok(rows
        .iter()
        .map(|r| {
            let kind: String = r.get(1);
            let tuples: f64 = r.get(2);
            let ident: String = r.get(3);
            TableSummary {
                name: r.get(0),
                kind: if kind == "p" { "partitioned table" } else { "table" }.to_string(),
                estimated_rows: (tuples >= 0.0).then_some(tuples as i64),
                primary_key: r.get(4),
                replica_identity: identity_name(ident.chars().next().unwrap_or(' ')).to_string(),
            }
        })
        .collect())
}

/// One table's columns, key and replica identity, as the connector will read them.
pub async fn table_detail(cfg: &PostgresSourceConfig, schema: &str, table: &str) -> SyncResult<TableDetail> {
    let client = connect(cfg).await?;
    let info = catalog::describe_table(&client, schema, table).await?;
    let doing = format!("reading the columns of {schema}.{table}");
    let meta = client
        .query_one(
            "SELECT reltuples::float8, \
                    (SELECT array_agg(attname::text) FROM pg_attribute \
                     WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attnotnull) \
             FROM pg_class WHERE oid = $1",
            &[&info.oid],
        )
        .await
        .map_err(|e| pg_error(e, &doing))?;
    let tuples: f64 = meta.get(0);
    let not_null: Option<Vec<String>> = meta.get(1);
    let not_null = not_null.unwrap_or_default();
    let columns = info
        .columns
        .iter()
        .map(|c| ColumnSummary {
            name: c.name.clone(),
            source_type: c.type_name.clone(),
            target_type: c.kind.arrow_type(),
            nullable: !not_null.contains(&c.name),
        })
        .collect();
    Ok(TableDetail {
        columns,
        key: info.key.clone(),
        has_primary_key: info.has_primary_key,
        replica_identity: identity_name(info.replica_identity).to_string(),
        estimated_rows: (tuples >= 0.0).then_some(tuples as i64),
    })
}

/// Up to `limit` rows of the table in key order, decoded exactly as the snapshot decodes them
/// (same query, same text parsing, same Arrow types), with the `__op` column. Reads in a
/// plain transaction: no slot, no publication, nothing written.
pub async fn sample_rows(cfg: &PostgresSourceConfig, limit: usize) -> SyncResult<RecordBatch> {
    let limit = limit.max(1);
    let client = connect(cfg).await?;
    let info = catalog::describe_table(&client, &cfg.schema, &cfg.table).await?;
    let mut rows = RowsBuilder::new(info.columns.clone(), limit);
    let mut reader = SnapshotReader::new(&rows, &info.key, &cfg.schema, &cfg.table, limit, Lsn(0))?;
    reader
        .read(&client, &mut rows, limit)
        .await
        .map_err(|e| e.context_prefix(format!("reading a sample of {}", quoted_table(&cfg.schema, &cfg.table))))?;
    let (batch, _, _) = rows.finish()?;
    let take = batch.num_rows().min(limit);
    Ok(batch.slice(0, take))
}
