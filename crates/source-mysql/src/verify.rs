//! `task verify` on MySQL / MariaDB: range checksums computed by the server, in SQL, over the
//! canonical text of every row ([`rtsync_core::verify`]), read in one
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` (InnoDB); no row leaves the server unless its
//! range disagrees with the target.
//!
//! Each column gets an expression yielding the canonical text of the value the target holds
//! (see the type table in [`crate::schema`]): decimal text for integers (`year` as a number),
//! full-scale decimals, `TIMESTAMPDIFF(MICROSECOND, epoch, x)` for `datetime`/`timestamp` (the
//! session is in UTC; zero dates NULL as in the target), signed microseconds for `time`,
//! `LOWER(HEX(x))` for binary strings and `bit(n)` (padded to ⌈n/8⌉ bytes), the UTF-8 text of
//! everything else. Every part is cast to `BINARY` before hashing, so the row's bytes do not
//! depend on collations. `float`/`double` are not compared: SQL cannot show a double's exact
//! bits, and its decimal text is not the target's value. A row's hash is
//! `CONV(SUBSTRING(MD5(row), 1, 16), 16, 10)`; `SUM` over it is an exact DECIMAL. Servers without
//! `MD5()` (Oracle MySQL 9.7 has none) send each row's canonical texts instead, hashed here
//! exactly as the target's rows are ([`rtsync_core::verify::hash_values`]): the same ranges and
//! sums, at the cost of the table crossing the network once per pass.
//!
//! Rows are read through an explicit column list, never `t.*`, which leaves out INVISIBLE columns.
//!
//! The position is the binlog file, offset and GTIDs after the snapshot started; a task has
//! reached it once its committed GTIDs contain those (or, without GTIDs, its binlog
//! file/offset is at or past it).

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use rtsync_core::verify::{CanonRow, RangeChecksum, TableVerifier, VerifyColumn, hash_values, sum_mod_2_64};
use rtsync_core::{SyncError, SyncResult};

use crate::config::MySqlSourceConfig;
use crate::error::{my_err, server_code};
use crate::position::MySqlPosition;
use crate::preflight::ServerInfo;
use crate::schema::{self, ColumnKind, ColumnSpec, quote_ident};
use crate::snapshot;

pub struct MySqlVerifier {
    conn: Conn,
    info: ServerInfo,
    table: String,
    columns: Vec<VerifyColumn>,
    key: Vec<String>,
    values: Vec<String>,
    keys: Vec<String>,
    order: String,
    /// Every column of the table, quoted (INVISIBLE ones included).
    all_columns: String,
    /// The server computes row hashes (`MD5()` exists); otherwise they are computed here.
    server_hash: bool,
}

/// Error 1305: the function does not exist.
const ER_SP_DOES_NOT_EXIST: u16 = 1305;

/// Whether the server has `MD5()` (MySQL 9.7 removed it).
async fn server_has_md5(conn: &mut Conn) -> SyncResult<bool> {
    match conn.query_drop("SELECT MD5('')").await {
        Ok(()) => Ok(true),
        Err(e) if server_code(&e) == Some(ER_SP_DOES_NOT_EXIST) || server_code(&e) == Some(1046) => Ok(false),
        Err(e) => Err(my_err("checking for MD5()", e)),
    }
}

/// Opens a verifier on the task's table (one ordinary connection; no binlog client).
pub async fn verifier(cfg: &MySqlSourceConfig) -> SyncResult<MySqlVerifier> {
    let opts = cfg.opts()?;
    let mut conn = snapshot::connect(&opts, cfg).await?;
    snapshot::prepare_session(&mut conn).await?;
    let info = ServerInfo::read(&mut conn).await?;
    let table = format!("{}.{}", quote_ident(&cfg.schema), quote_ident(&cfg.table));
    let Some(schema) = schema::read_table(&mut conn, &cfg.schema, &cfg.table, info.flavor.mariadb).await? else {
        return Err(SyncError::source_err(format!("table {table} does not exist, or the user may not see it")));
    };
    crate::preflight::ensure_primary_key(&schema, cfg)?;
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for c in &schema.columns {
        match canonical_expr(c) {
            Ok(e) => {
                columns.push(VerifyColumn::compared(&c.name));
                values.push(e);
            }
            Err(why) => columns.push(VerifyColumn::skipped(&c.name, why)),
        }
    }
    let mut keys = Vec::new();
    let mut order = Vec::new();
    for k in &schema.primary_key {
        let c = schema
            .column(k)
            .ok_or_else(|| SyncError::internal(format!("key column {k:?} is not among the columns of {table}")))?;
        let expr = canonical_expr(c)
            .map_err(|why| SyncError::source_err(format!("key column {k:?} of {table} cannot be verified: {why}")))?;
        order.push(match &c.kind {
            ColumnKind::Text { .. } | ColumnKind::Enum { .. } | ColumnKind::Set { .. } | ColumnKind::Json => {
                format!("CAST({expr} AS BINARY)")
            }
            _ => quote_ident(&c.name),
        });
        keys.push(expr);
    }
    let all_columns = schema.columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
    let server_hash = server_has_md5(&mut conn).await?;
    if !server_hash {
        tracing::info!(table = %table, "the server has no MD5(): verify hashes the rows' canonical texts on the client");
    }
    Ok(MySqlVerifier {
        conn,
        info,
        table,
        columns,
        key: schema.primary_key.clone(),
        values,
        keys,
        order: order.join(", "),
        all_columns,
        server_hash,
    })
}

/// The expression yielding the canonical text of column `c` (NULL for NULL), or why it has none.
fn canonical_expr(c: &ColumnSpec) -> Result<String, String> {
    let x = quote_ident(&c.name);
    let zero_date = format!("{x} IS NULL OR MONTH({x}) = 0 OR DAY({x}) = 0");
    Ok(match &c.kind {
        ColumnKind::Int { .. } | ColumnKind::Decimal { .. } => format!("CAST({x} AS CHAR)"),
        ColumnKind::Year => format!("CAST({x} + 0 AS CHAR)"),
        ColumnKind::Float | ColumnKind::Double => {
            return Err("float/double: SQL cannot show the exact bits the target holds".to_string());
        }
        ColumnKind::Bit { bits: 1 } => format!("CASE WHEN {x} IS NULL THEN NULL WHEN {x} <> 0 THEN '1' ELSE '0' END"),
        ColumnKind::Bit { bits } => format!("LPAD(LOWER(HEX({x})), {}, '0')", 2 * bits.div_ceil(8)),
        ColumnKind::Date => format!("CASE WHEN {zero_date} THEN NULL ELSE DATE_FORMAT({x}, '%Y-%m-%d') END"),
        ColumnKind::Time => format!(
            "CAST(IF({x} < 0, -1, 1) * ((HOUR({x}) * 3600 + MINUTE({x}) * 60 + SECOND({x})) * 1000000 + MICROSECOND({x})) AS CHAR)"
        ),
        ColumnKind::DateTime | ColumnKind::Timestamp => format!(
            "CASE WHEN {zero_date} THEN NULL ELSE CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {x}) AS CHAR) END"
        ),
        ColumnKind::Text { .. } => format!("CONVERT({x} USING utf8mb4)"),
        ColumnKind::Enum { .. } | ColumnKind::Set { .. } | ColumnKind::Json => {
            format!("CONVERT(CAST({x} AS CHAR) USING utf8mb4)")
        }
        ColumnKind::Binary { .. } | ColumnKind::Geometry => format!("LOWER(HEX({x}))"),
    })
}

fn text(row: &Row, i: usize) -> SyncResult<Option<String>> {
    match row.as_ref(i) {
        None | Some(Value::NULL) => Ok(None),
        Some(Value::Bytes(b)) => String::from_utf8(b.clone())
            .map(Some)
            .map_err(|_| SyncError::internal("a canonical text is not UTF-8".to_string())),
        Some(v) => Ok(Some(v.as_sql(true).trim_matches('\'').to_string())),
    }
}

impl MySqlVerifier {
    fn hash_expr(&self) -> String {
        let parts: Vec<String> = self
            .values
            .iter()
            .map(|t| format!("IFNULL(CONCAT(LENGTH(CAST({t} AS BINARY)), ':', CAST({t} AS BINARY)), 'N')"))
            .collect();
        let row = if parts.is_empty() { "''".to_string() } else { format!("CONCAT({})", parts.join(", ")) };
        format!("CAST(CONV(SUBSTRING(MD5({row}), 1, 16), 16, 10) AS UNSIGNED)")
    }

    fn canon_rows(&self, rows: &[Row]) -> SyncResult<Vec<CanonRow>> {
        let nk = self.keys.len();
        rows.iter()
            .map(|r| {
                let key = (0..nk)
                    .map(|i| text(r, i)?.ok_or_else(|| SyncError::data(format!("a key of {} is NULL", self.table))))
                    .collect::<SyncResult<Vec<_>>>()?;
                let values = (0..self.values.len()).map(|i| text(r, nk + i)).collect::<SyncResult<Vec<_>>>()?;
                Ok(CanonRow { key, values })
            })
            .collect()
    }

    /// [`TableVerifier::checksums`] for servers without `MD5()`: every row's canonical texts, in
    /// key order, hashed and summed per range here.
    async fn client_checksums(&mut self, rows_per_range: u64) -> SyncResult<Vec<RangeChecksum>> {
        let step = rows_per_range.max(1);
        let sql = format!(
            "SELECT {keys}{vals} FROM {table} ORDER BY {order}",
            keys = self.keys.join(", "),
            vals = self.values.iter().map(|v| format!(", {v}")).collect::<String>(),
            table = self.table,
            order = self.order,
        );
        let doing = || format!("reading the rows of {} to checksum them", self.table);
        let nk = self.keys.len();
        let mut result = self.conn.query_iter(sql).await.map_err(|e| my_err(doing(), e))?;
        let mut out: Vec<RangeChecksum> = Vec::new();
        let mut n = 0u64;
        let mut values: Vec<Option<String>> = Vec::with_capacity(self.values.len());
        while let Some(row) = result.next().await.map_err(|e| my_err(doing(), e))? {
            if n.is_multiple_of(step) {
                let first_key = (0..nk).map(|i| Ok(text(&row, i)?.unwrap_or_default())).collect::<SyncResult<_>>()?;
                out.push(RangeChecksum { rows: 0, sum: 0, first_key });
            }
            values.clear();
            for i in nk..row.len() {
                values.push(text(&row, i)?);
            }
            if let Some(range) = out.last_mut() {
                range.rows += 1;
                range.sum = range.sum.wrapping_add(hash_values(&values));
            }
            n += 1;
        }
        Ok(out)
    }

    async fn current(&mut self) -> SyncResult<serde_json::Value> {
        let p = snapshot::current_position(&mut self.conn, &self.info.flavor, Some(&self.info)).await?;
        serde_json::to_value(p).map_err(|e| SyncError::internal(format!("serializing a position: {e}")))
    }
}

#[async_trait]
impl TableVerifier for MySqlVerifier {
    fn columns(&self) -> &[VerifyColumn] {
        &self.columns
    }

    fn key(&self) -> &[String] {
        &self.key
    }

    async fn begin_snapshot(&mut self) -> SyncResult<serde_json::Value> {
        self.conn
            .query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            .await
            .map_err(|e| my_err("opening a snapshot to verify", e))?;
        self.current().await
    }

    async fn count(&mut self) -> SyncResult<u64> {
        let n: Option<u64> = self
            .conn
            .query_first(format!("SELECT COUNT(*) FROM {}", self.table))
            .await
            .map_err(|e| my_err(format!("counting the rows of {}", self.table), e))?;
        Ok(n.unwrap_or(0))
    }

    async fn bounds(&mut self, rows_per_range: u64) -> SyncResult<Vec<Vec<String>>> {
        let step = rows_per_range.max(1);
        let names: Vec<String> = (0..self.keys.len()).map(|i| format!("k{i}")).collect();
        let keys: String = self.keys.iter().enumerate().map(|(i, k)| format!(", {k} AS k{i}")).collect();
        let sql = format!(
            "SELECT {names} FROM (SELECT ROW_NUMBER() OVER (ORDER BY {order}) - 1 AS rn{keys} FROM {table}) s \
             WHERE rn % {step} = 0 ORDER BY rn",
            names = names.join(", "),
            order = self.order,
            table = self.table,
        );
        let rows: Vec<Row> =
            self.conn.query(sql).await.map_err(|e| my_err(format!("reading the range bounds of {}", self.table), e))?;
        rows.iter().map(|r| (0..self.keys.len()).map(|i| Ok(text(r, i)?.unwrap_or_default())).collect()).collect()
    }

    async fn checksums(&mut self, rows_per_range: u64) -> SyncResult<Vec<RangeChecksum>> {
        if !self.server_hash {
            return self.client_checksums(rows_per_range).await;
        }
        let step = rows_per_range.max(1);
        let firsts: String =
            (0..self.keys.len()).map(|i| format!(", MAX(CASE WHEN rn % {step} = 0 THEN k{i} END)")).collect();
        let keys: String = self.keys.iter().enumerate().map(|(i, k)| format!(", {k} AS k{i}")).collect();
        let sql = format!(
            "SELECT COUNT(*), CAST(SUM(h) AS CHAR){firsts} FROM (SELECT ROW_NUMBER() OVER (ORDER BY {order}) - 1 AS rn, {hash} AS h{keys} FROM {table}) s \
             GROUP BY rn DIV {step} ORDER BY rn DIV {step}",
            order = self.order,
            hash = self.hash_expr(),
            table = self.table,
        );
        let rows: Vec<Row> = self
            .conn
            .query(sql)
            .await
            .map_err(|e| my_err(format!("computing the range checksums of {}", self.table), e))?;
        rows.iter()
            .map(|r| {
                let count = text(r, 0)?.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
                let sum = text(r, 1)?.unwrap_or_default();
                let first_key =
                    (0..self.keys.len()).map(|i| Ok(text(r, 2 + i)?.unwrap_or_default())).collect::<SyncResult<_>>()?;
                Ok(RangeChecksum {
                    rows: count,
                    sum: sum_mod_2_64(&sum)
                        .ok_or_else(|| SyncError::internal(format!("checksum {sum:?} is not a number")))?,
                    first_key,
                })
            })
            .collect()
    }

    async fn rows_in_ranges(
        &mut self,
        rows_per_range: u64,
        _bounds: &[Vec<String>],
        ranges: &[u64],
    ) -> SyncResult<Vec<CanonRow>> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let step = rows_per_range.max(1);
        let list = ranges.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {keys}{vals} FROM (SELECT ROW_NUMBER() OVER (ORDER BY {order}) - 1 AS __rtsync_rn, {all} FROM {table}) s \
             WHERE __rtsync_rn DIV {step} IN ({list})",
            keys = self.keys.join(", "),
            vals = self.values.iter().map(|v| format!(", {v}")).collect::<String>(),
            order = self.order,
            all = self.all_columns,
            table = self.table,
        );
        let rows: Vec<Row> = self
            .conn
            .query(sql)
            .await
            .map_err(|e| my_err(format!("reading the rows of differing ranges of {}", self.table), e))?;
        self.canon_rows(&rows)
    }

    async fn end_snapshot(&mut self) -> SyncResult<()> {
        self.conn.query_drop("COMMIT").await.map_err(|e| my_err("closing the verify snapshot", e))
    }

    async fn position(&mut self) -> SyncResult<serde_json::Value> {
        self.current().await
    }

    async fn rows_by_key(&mut self, keys: &[Vec<String>]) -> SyncResult<Vec<CanonRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let tuple = format!("({})", vec!["?"; self.keys.len()].join(", "));
        let list = vec![tuple.as_str(); keys.len()].join(", ");
        let lhs = self.keys.iter().map(|k| format!("CAST({k} AS BINARY)")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {keys}{vals} FROM {table} WHERE ({lhs}) IN ({list})",
            keys = self.keys.join(", "),
            vals = self.values.iter().map(|v| format!(", {v}")).collect::<String>(),
            table = self.table,
        );
        let params: Vec<Value> =
            keys.iter().flat_map(|k| k.iter().map(|v| Value::Bytes(v.as_bytes().to_vec()))).collect();
        let rows: Vec<Row> = self
            .conn
            .exec(sql, params)
            .await
            .map_err(|e| my_err(format!("re-reading differing rows of {}", self.table), e))?;
        self.canon_rows(&rows)
    }

    async fn reached(
        &mut self,
        committed: Option<&serde_json::Value>,
        target: &serde_json::Value,
    ) -> SyncResult<Option<bool>> {
        Ok(reached(committed, target))
    }

    fn describe_position(&self, position: &serde_json::Value) -> String {
        match serde_json::from_value::<MySqlPosition>(position.clone()) {
            Ok(p) => p.to_string(),
            Err(_) => position.to_string(),
        }
    }
}

fn reached(committed: Option<&serde_json::Value>, target: &serde_json::Value) -> Option<bool> {
    let target: MySqlPosition = serde_json::from_value(target.clone()).ok()?;
    let Some(committed) = committed.and_then(|c| serde_json::from_value::<MySqlPosition>(c.clone()).ok()) else {
        return Some(false);
    };
    if committed.snapshot.is_some() {
        return Some(false);
    }
    if !target.gtids.is_empty() {
        return committed.gtids.contains(&target.gtids);
    }
    Some((committed.file.as_str(), committed.pos) >= (target.file.as_str(), target.pos))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn col(name: &str, kind: ColumnKind) -> ColumnSpec {
        ColumnSpec { name: name.into(), kind }
    }

    #[test]
    fn expressions_render_the_target_text() {
        assert_eq!(canonical_expr(&col("y", ColumnKind::Year)).unwrap(), "CAST(`y` + 0 AS CHAR)");
        assert_eq!(canonical_expr(&col("b", ColumnKind::Bit { bits: 12 })).unwrap(), "LPAD(LOWER(HEX(`b`)), 4, '0')");
        assert!(canonical_expr(&col("d", ColumnKind::Double)).is_err());
        let e = canonical_expr(&col("ts", ColumnKind::Timestamp)).unwrap();
        assert!(e.contains("TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', `ts`)"), "{e}");
    }
}
