//! What the connector asks of SQL Server, as one trait ([`CdcServer`]): the real server over
//! TDS ([`TdsServer`], tiberius) and the CDC simulator ([`crate::sim`]) implement it, so the
//! whole source (snapshot handover, change ordering, update pairs, retention, capture
//! instances) runs the same code against both.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use rtsync_core::{SyncError, SyncResult};
use tiberius::{Client, ColumnData, Query, Row};
use tokio::net::TcpStream;

use crate::config::SqlServerSourceConfig;
use crate::position::Lsn;
use crate::rows::ChangeRow;
use crate::sql::{self, SqlColumn};
use crate::types::SqlType;

/// A column of a table or change table, as the catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogColumn {
    pub column: SqlColumn,
    pub nullable: bool,
    /// The declared type as the server spells it (`nvarchar(max)`, `decimal(12,2)`).
    pub source_type: String,
}

/// A CDC capture instance of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureInstance {
    pub name: String,
    /// Changes from this LSN on are in its change table.
    pub start_lsn: Lsn,
    /// Whether its change table has `__$command_id` (SQL Server 2012 and later).
    pub has_command_id: bool,
    /// The captured columns with their update-mask ordinals, in ordinal order.
    pub columns: Vec<(CatalogColumn, usize)>,
    /// The columns CDC identifies rows by (`cdc.index_columns`).
    pub index_columns: Vec<String>,
}

/// What [`CdcServer::lsn_bounds`] reads in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsnBounds {
    pub min: Lsn,
    pub max: Lsn,
    /// How many capture instances the table has (a new one appears when a DBA captures a new
    /// shape of the table).
    pub capture_instances: usize,
}

/// What the pre-flight check reads in one round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Preflight {
    pub database: String,
    pub database_id: i32,
    pub is_cdc_enabled: bool,
    /// `sys.databases.snapshot_isolation_state`: 1 = ON.
    pub snapshot_isolation_state: u8,
    pub can_select_table: bool,
    pub can_select_cdc: bool,
    pub can_view_database_state: bool,
    /// `max text repl size (B)`; -1 = unlimited.
    pub max_text_repl_size: i64,
    /// When the capture job last finished a log scan (None: never, or not visible).
    pub last_capture_scan: Option<String>,
}

/// The queries the source runs. Calls never overlap; a snapshot transaction spans
/// [`CdcServer::begin_snapshot`] … [`CdcServer::end_snapshot`] on one connection.
#[async_trait]
pub trait CdcServer: Send {
    async fn preflight(&mut self, schema: &str, table: &str) -> SyncResult<Preflight>;

    /// The table's columns in column order; empty when it does not exist.
    async fn table_columns(&mut self, schema: &str, table: &str) -> SyncResult<Vec<CatalogColumn>>;

    async fn primary_key(&mut self, schema: &str, table: &str) -> SyncResult<Vec<String>>;

    /// The table's capture instances, oldest first.
    async fn capture_instances(&mut self, schema: &str, table: &str) -> SyncResult<Vec<CaptureInstance>>;

    /// `sys.fn_cdc_get_min_lsn(ci)` (all zeroes when unknown), `sys.fn_cdc_get_max_lsn()`, and
    /// the number of capture instances of `schema.table`.
    async fn lsn_bounds(&mut self, ci: &str, schema: &str, table: &str) -> SyncResult<LsnBounds>;

    /// The server's count of the table's rows from its partition metadata (no scan), for
    /// the snapshot's progress; None when it has none.
    async fn estimated_rows(&mut self, schema: &str, table: &str) -> SyncResult<Option<u64>>;

    /// Starts a SNAPSHOT-isolation transaction and returns the max LSN read in it.
    async fn begin_snapshot(&mut self) -> SyncResult<Lsn>;

    /// Up to `limit` rows after `after` (the key's text values) in key order, each with its
    /// key's text values.
    async fn snapshot_chunk(
        &mut self,
        schema: &str,
        table: &str,
        columns: &[SqlColumn],
        key: &[SqlColumn],
        after: Option<&[String]>,
        limit: usize,
    ) -> SyncResult<Vec<(Vec<ColumnData<'static>>, Vec<String>)>>;

    async fn end_snapshot(&mut self) -> SyncResult<()>;

    /// Change rows of `ci` with `from` (< or ≤, see [`sql::changes`]) `__$start_lsn` ≤ `to`,
    /// in the documented order, skipping the first `skip`, at most `limit`.
    #[allow(clippy::too_many_arguments)]
    async fn changes(
        &mut self,
        ci: &CaptureInstance,
        columns: &[SqlColumn],
        from: Lsn,
        inclusive_from: bool,
        skip: u64,
        to: Lsn,
        limit: usize,
    ) -> SyncResult<Vec<ChangeRow>>;
}

/// tokio's TCP stream as the futures-io stream tiberius reads and writes (instead of
/// tokio-util's compat feature, whose addition would rebuild the workspace's HTTP stack).
pub struct TcpCompat(TcpStream);

impl futures_util::io::AsyncRead for TcpCompat {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut read = tokio::io::ReadBuf::new(buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, &mut read) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures_util::io::AsyncWrite for TcpCompat {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.0), cx)
    }
}

impl TcpCompat {
    /// A logged-in tiberius client for `config` (used by [`TdsServer`], and by tests to set
    /// up tables on a real server).
    pub async fn connect(config: &SqlServerSourceConfig, application: &str) -> SyncResult<Client<TcpCompat>> {
        let cfg = config.tiberius_config(application)?;
        let addr = cfg.get_addr();
        let tcp = TcpStream::connect(&addr).await.map_err(|e| {
            SyncError::with_source(rtsync_core::ErrorKind::Transient, format!("connecting to SQL Server at {addr}"), e)
        })?;
        tcp.set_nodelay(true).ok();
        Client::connect(cfg, TcpCompat(tcp))
            .await
            .map_err(|e| tds_error(e, &format!("logging in to SQL Server at {addr}")))
    }
}

/// SQL Server over TDS.
pub struct TdsServer {
    client: Client<TcpCompat>,
}

/// Maps a tiberius error: server errors that name a missing object or permission are definite,
/// the rest (I/O, TLS, timeouts) transient.
pub fn tds_error(err: tiberius::error::Error, doing: &str) -> SyncError {
    use tiberius::error::Error as E;
    let kind = match &err {
        E::Server(e) => match e.code() {
            // login failed, permission denied, invalid object/column, database unavailable to the user
            18456 | 229 | 230 | 208 | 207 | 4060 | 916 | 22985 | 313 | 3960 => rtsync_core::ErrorKind::Source,
            _ => rtsync_core::ErrorKind::Transient,
        },
        E::Io { .. } | E::Tls(_) | E::Routing { .. } => rtsync_core::ErrorKind::Transient,
        _ => rtsync_core::ErrorKind::Source,
    };
    SyncError::with_source(kind, doing.to_string(), err)
}

impl TdsServer {
    pub async fn connect(config: &SqlServerSourceConfig, application: &str) -> SyncResult<TdsServer> {
        Ok(TdsServer { client: TcpCompat::connect(config, application).await? })
    }

    pub(crate) async fn rows(&mut self, query: Query<'_>, doing: &str) -> SyncResult<Vec<Row>> {
        let stream = query.query(&mut self.client).await.map_err(|e| tds_error(e, doing))?;
        stream.into_first_result().await.map_err(|e| tds_error(e, doing))
    }

    async fn exec(&mut self, sql: &str, doing: &str) -> SyncResult<Vec<Row>> {
        let stream = self.client.simple_query(sql).await.map_err(|e| tds_error(e, doing))?;
        let results = stream.into_results().await.map_err(|e| tds_error(e, doing))?;
        Ok(results.into_iter().flatten().collect())
    }
}

pub(crate) fn cell_str(row: &Row, i: usize) -> Option<String> {
    row.try_get::<&str, _>(i).ok().flatten().map(str::to_string)
}

fn cell_lsn(row: &Row, i: usize) -> Lsn {
    row.try_get::<&[u8], _>(i).ok().flatten().and_then(Lsn::from_bytes).unwrap_or(Lsn::ZERO)
}

pub(crate) fn cell_i64(row: &Row, i: usize) -> Option<i64> {
    match row.cells().nth(i).map(|(_, v)| v) {
        Some(ColumnData::U8(Some(v))) => Some(i64::from(*v)),
        Some(ColumnData::I16(Some(v))) => Some(i64::from(*v)),
        Some(ColumnData::I32(Some(v))) => Some(i64::from(*v)),
        Some(ColumnData::I64(Some(v))) => Some(*v),
        Some(ColumnData::Bit(Some(v))) => Some(i64::from(*v)),
        _ => None,
    }
}

/// The declared type's text from `sys.types` name, max_length, precision and scale.
pub fn type_decl(name: &str, max_length: i16, precision: u8, scale: u8) -> String {
    let n = name.to_ascii_lowercase();
    match n.as_str() {
        "varchar" | "char" | "varbinary" | "binary" if max_length == -1 => format!("{n}(max)"),
        "varchar" | "char" | "varbinary" | "binary" => format!("{n}({max_length})"),
        "nvarchar" | "nchar" if max_length == -1 => format!("{n}(max)"),
        "nvarchar" | "nchar" => format!("{n}({})", max_length / 2),
        "decimal" | "numeric" => format!("{n}({precision},{scale})"),
        "time" | "datetime2" | "datetimeoffset" => format!("{n}({scale})"),
        _ => n,
    }
}

async fn catalog_columns(server: &mut TdsServer, object: &str) -> SyncResult<Vec<CatalogColumn>> {
    let mut q = Query::new(sql::table_columns());
    q.bind(object.to_string());
    let rows = server.rows(q, &format!("reading the columns of {object}")).await?;
    let mut out = Vec::new();
    for r in &rows {
        let name = cell_str(r, 0).unwrap_or_default();
        if name.starts_with("__$") {
            continue;
        }
        let type_name = cell_str(r, 1).unwrap_or_default();
        let max_length = cell_i64(r, 2).unwrap_or(0) as i16;
        let precision = cell_i64(r, 3).unwrap_or(0) as u8;
        let scale = cell_i64(r, 4).unwrap_or(0) as u8;
        let ty = SqlType::parse(&name, &type_name, max_length, precision, scale)?;
        let decl = type_decl(&type_name, max_length, precision, scale);
        out.push(CatalogColumn {
            column: SqlColumn { name, ty, decl: decl.clone() },
            nullable: cell_i64(r, 5).unwrap_or(1) != 0,
            source_type: decl,
        });
    }
    Ok(out)
}

#[async_trait]
impl CdcServer for TdsServer {
    async fn preflight(&mut self, schema: &str, table: &str) -> SyncResult<Preflight> {
        let mut q = Query::new(sql::preflight());
        q.bind(sql::qualified(schema, table));
        let rows = self.rows(q, "reading the database's CDC settings").await?;
        let r =
            rows.first().ok_or_else(|| SyncError::source_err("sys.databases has no row for the current database"))?;
        let mut p = Preflight {
            database: cell_str(r, 0).unwrap_or_default(),
            database_id: cell_i64(r, 1).unwrap_or(0) as i32,
            is_cdc_enabled: cell_i64(r, 2) == Some(1),
            snapshot_isolation_state: cell_i64(r, 3).unwrap_or(0) as u8,
            can_select_table: cell_i64(r, 4) == Some(1),
            can_select_cdc: cell_i64(r, 5) == Some(1),
            can_view_database_state: cell_i64(r, 6) == Some(1),
            max_text_repl_size: cell_i64(r, 7).unwrap_or(65_536),
            last_capture_scan: None,
        };
        if p.can_view_database_state {
            let rows = self.exec(sql::last_capture_scan(), "reading the capture job's last log scan").await?;
            p.last_capture_scan = rows.first().and_then(|r| cell_str(r, 0));
        }
        Ok(p)
    }

    async fn table_columns(&mut self, schema: &str, table: &str) -> SyncResult<Vec<CatalogColumn>> {
        catalog_columns(self, &sql::qualified(schema, table)).await
    }

    async fn primary_key(&mut self, schema: &str, table: &str) -> SyncResult<Vec<String>> {
        let mut q = Query::new(sql::primary_key());
        q.bind(sql::qualified(schema, table));
        let rows = self.rows(q, "reading the primary key").await?;
        Ok(rows.iter().filter_map(|r| cell_str(r, 0)).collect())
    }

    async fn estimated_rows(&mut self, schema: &str, table: &str) -> SyncResult<Option<u64>> {
        let mut q = Query::new(sql::estimated_rows());
        q.bind(sql::qualified(schema, table));
        let rows = self.rows(q, "estimating the table's rows (sys.partitions)").await?;
        Ok(rows.first().and_then(|r| cell_i64(r, 0)).and_then(|n| u64::try_from(n).ok()))
    }

    async fn capture_instances(&mut self, schema: &str, table: &str) -> SyncResult<Vec<CaptureInstance>> {
        let mut q = Query::new(sql::capture_instances());
        q.bind(sql::qualified(schema, table));
        let rows = self.rows(q, "reading the table's capture instances (cdc.change_tables)").await?;
        let mut out = Vec::new();
        for r in &rows {
            let name = cell_str(r, 0).unwrap_or_default();
            let start_lsn = cell_lsn(r, 1);
            let has_command_id = cell_i64(r, 3) == Some(1);
            let ct = catalog_columns(self, &sql::qualified("cdc", &format!("{name}_CT"))).await?;
            let mut q = Query::new(sql::captured_columns());
            q.bind(name.clone());
            let ords = self.rows(q, "reading the captured columns").await?;
            let mut columns = Vec::new();
            for o in &ords {
                let col = cell_str(o, 0).unwrap_or_default();
                let ordinal = cell_i64(o, 1).unwrap_or(0) as usize;
                if let Some(c) = ct.iter().find(|c| c.column.name == col) {
                    columns.push((c.clone(), ordinal));
                }
            }
            let mut q = Query::new(sql::capture_index_columns());
            q.bind(name.clone());
            let idx = self.rows(q, "reading the capture instance's index columns").await?;
            out.push(CaptureInstance {
                name,
                start_lsn,
                has_command_id,
                columns,
                index_columns: idx.iter().filter_map(|r| cell_str(r, 0)).collect(),
            });
        }
        Ok(out)
    }

    async fn lsn_bounds(&mut self, ci: &str, schema: &str, table: &str) -> SyncResult<LsnBounds> {
        let mut q = Query::new(sql::lsn_bounds());
        q.bind(ci.to_string());
        q.bind(sql::qualified(schema, table));
        let rows = self.rows(q, "reading the CDC LSN range").await?;
        let r = rows.first().ok_or_else(|| SyncError::internal("no row for the CDC LSN range"))?;
        Ok(LsnBounds {
            min: cell_lsn(r, 0),
            max: cell_lsn(r, 1),
            capture_instances: cell_i64(r, 2).unwrap_or(0) as usize,
        })
    }

    async fn begin_snapshot(&mut self) -> SyncResult<Lsn> {
        let rows = self.exec(sql::snapshot_begin(), "starting the snapshot transaction (SNAPSHOT isolation)").await?;
        Ok(rows.first().map(|r| cell_lsn(r, 0)).unwrap_or(Lsn::ZERO))
    }

    async fn snapshot_chunk(
        &mut self,
        schema: &str,
        table: &str,
        columns: &[SqlColumn],
        key: &[SqlColumn],
        after: Option<&[String]>,
        limit: usize,
    ) -> SyncResult<Vec<(Vec<ColumnData<'static>>, Vec<String>)>> {
        let text = sql::snapshot_chunk(schema, table, columns, key, after.is_some(), limit);
        let mut q = Query::new(text);
        for v in after.unwrap_or(&[]) {
            q.bind(Cow::<str>::Owned(v.clone()));
        }
        let rows = self.rows(q, &format!("copying {}", sql::qualified(schema, table))).await?;
        let n = columns.len();
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut values: Vec<ColumnData<'static>> = r.into_iter().collect();
                let keys = values
                    .split_off(n)
                    .into_iter()
                    .map(|v| match v {
                        ColumnData::String(Some(s)) => s.into_owned(),
                        _ => String::new(),
                    })
                    .collect();
                (values, keys)
            })
            .collect())
    }

    async fn end_snapshot(&mut self) -> SyncResult<()> {
        self.exec(sql::snapshot_commit(), "ending the snapshot transaction").await.map(|_| ())
    }

    async fn changes(
        &mut self,
        ci: &CaptureInstance,
        columns: &[SqlColumn],
        from: Lsn,
        inclusive_from: bool,
        skip: u64,
        to: Lsn,
        limit: usize,
    ) -> SyncResult<Vec<ChangeRow>> {
        let mut q = Query::new(sql::changes(&ci.name, columns, ci.has_command_id, inclusive_from));
        q.bind(Cow::<[u8]>::Owned(from.0.to_vec()));
        q.bind(Cow::<[u8]>::Owned(to.0.to_vec()));
        q.bind(skip as i64);
        q.bind(limit as i64);
        let rows = self.rows(q, &format!("reading changes of capture instance {}", ci.name)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut cells = r.into_iter();
            let mut lsn = || match cells.next() {
                Some(ColumnData::Binary(Some(b))) => Lsn::from_bytes(&b).unwrap_or(Lsn::ZERO),
                _ => Lsn::ZERO,
            };
            let start_lsn = lsn();
            let seqval = lsn();
            let operation = match cells.next() {
                Some(ColumnData::I32(Some(v))) => v as u8,
                Some(ColumnData::U8(Some(v))) => v,
                _ => 0,
            };
            let update_mask = match cells.next() {
                Some(ColumnData::Binary(Some(b))) => b.into_owned(),
                _ => Vec::new(),
            };
            out.push(ChangeRow { start_lsn, seqval, operation, update_mask, values: cells.collect() });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types() {
        assert_eq!(type_decl("nvarchar", 80, 0, 0), "nvarchar(40)");
        assert_eq!(type_decl("nvarchar", -1, 0, 0), "nvarchar(max)");
        assert_eq!(type_decl("varbinary", 16, 0, 0), "varbinary(16)");
        assert_eq!(type_decl("decimal", 9, 12, 2), "decimal(12,2)");
        assert_eq!(type_decl("datetime2", 8, 27, 7), "datetime2(7)");
        assert_eq!(type_decl("int", 4, 10, 0), "int");
    }
}
