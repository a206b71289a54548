//! `task verify` on PostgreSQL: range checksums computed by the server, in SQL, over the
//! canonical text of every row ([`rtsync_core::verify`]), read in one `REPEATABLE READ`
//! snapshot; no row leaves the server unless its range disagrees with the target.
//!
//! Each column gets a SQL expression that yields exactly the canonical text of the value the
//! target holds for it (see the type table in `src/types.rs`): `encode(float8send(x))` for
//! floats, `extract(epoch …)` microseconds for timestamps (±infinity as the target's
//! `i64::MAX`/`i64::MIN`), full-scale `numeric` text (NaN/±Infinity, NULL in the target, as
//! NULL), `encode(x, 'hex')` for bytea, the type's output text (under the session settings
//! the snapshot pins) for everything stored as text, and `array_to_json` for arrays of
//! numbers, booleans, JSON and strings (how the target renders arrays). A row's hash is
//! `('x' || substr(md5(row text), 1, 16))::bit(64)::bigint`; `sum()` over bigint is exact
//! (numeric), the caller reduces it mod 2^64.
//!
//! The snapshot's position is `pg_current_wal_lsn()` read as its first statement; a task has
//! reached it once its committed position streams from an LSN at least as far, or, when the
//! table had no change since, once its slot's `confirmed_flush_lsn` is (an idle task confirms
//! the WAL end only when everything before it is in the target).

use async_trait::async_trait;
use rtsync_core::verify::{CanonRow, RangeChecksum, TableVerifier, VerifyColumn, sum_mod_2_64};
use rtsync_core::{SyncError, SyncResult};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::catalog::{self, ColumnInfo, quote_ident, quote_literal, quoted_table};
use crate::config::PostgresSourceConfig;
use crate::error::pg_error;
use crate::position::{Lsn, PgPosition};
use crate::types::{ElemKind, ValueKind};

/// text, varchar, name: their cast to text is their output.
const TEXT_OIDS: [u32; 3] = [25, 1043, 19];
/// bpchar: its cast to text strips the padding its output (and the target) keeps.
const BPCHAR_OID: u32 = 1042;

pub struct PgVerifier {
    client: Client,
    table: String,
    /// The task's replication slot.
    slot: String,
    columns: Vec<VerifyColumn>,
    key: Vec<String>,
    /// The canonical-text expression of each compared column, in column order.
    values: Vec<String>,
    /// The canonical-text expression of each key column.
    keys: Vec<String>,
    key_cols: Vec<KeyColumn>,
    /// `ORDER BY` list: native order for numbers, dates, timestamps and bytea; canonical text
    /// in byte order for everything the target stores as text.
    order: String,
}

/// Opens a verifier on the task's table (one ordinary connection; no slot, no publication).
pub async fn verifier(cfg: &PostgresSourceConfig, task: &str) -> SyncResult<PgVerifier> {
    let client = catalog::connect(&cfg.connection()?).await?;
    let info = catalog::describe_table(&client, &cfg.schema, &cfg.table).await?;
    let table = quoted_table(&cfg.schema, &cfg.table);
    if info.key.is_empty() {
        return Err(SyncError::source_err(format!(
            "table {table} has no primary key (nor replica-identity index): verify compares rows by key; its target is a change log"
        )));
    }
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for c in &info.columns {
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
    let mut key_cols = Vec::new();
    for k in &info.key {
        let c = info
            .columns
            .iter()
            .find(|c| &c.name == k)
            .ok_or_else(|| SyncError::internal(format!("key column {k:?} is not among the columns of {table}")))?;
        let expr = canonical_expr(c)
            .map_err(|why| SyncError::source_err(format!("key column {k:?} of {table} cannot be verified: {why}")))?;
        let ident = quote_ident(&c.name);
        order.push(match &c.kind {
            ValueKind::Float32 | ValueKind::Float64 => {
                return Err(SyncError::source_err(format!(
                    "key column {k:?} of {table} is a float: verify cannot split its key space into ranges"
                )));
            }
            ValueKind::Bool
            | ValueKind::Int16
            | ValueKind::Int32
            | ValueKind::Int64
            | ValueKind::Decimal { .. }
            | ValueKind::Binary
            | ValueKind::Date
            | ValueKind::Timestamp
            | ValueKind::TimestampTz => ident,
            ValueKind::Text | ValueKind::Array { .. } => format!("({expr}) COLLATE \"C\""),
        });
        key_cols.push(KeyColumn {
            ident: quote_ident(&c.name),
            kind: c.kind.clone(),
            type_name: c.type_name.clone(),
            by_text: matches!(c.kind, ValueKind::Text | ValueKind::Array { .. }),
        });
        keys.push(expr);
    }
    Ok(PgVerifier {
        client,
        table,
        slot: cfg.slot_name(task),
        columns,
        key: info.key.clone(),
        values,
        keys,
        key_cols,
        order: order.join(", "),
    })
}

/// The SQL expression yielding the canonical text of column `c` (NULL for NULL), or why it has
/// none.
fn canonical_expr(c: &ColumnInfo) -> Result<String, String> {
    let x = quote_ident(&c.name);
    Ok(match &c.kind {
        ValueKind::Bool => format!("CASE {x} WHEN true THEN '1' WHEN false THEN '0' END"),
        ValueKind::Int16 | ValueKind::Int32 | ValueKind::Int64 => format!("{x}::text"),
        ValueKind::Float32 | ValueKind::Float64 => {
            format!("CASE WHEN {x} = 'NaN' THEN '7ff8000000000000' ELSE encode(float8send({x}::float8), 'hex') END")
        }
        ValueKind::Decimal { .. } => {
            format!("CASE WHEN {x} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE {x}::text END")
        }
        ValueKind::Text if TEXT_OIDS.contains(&c.type_oid) => format!("{x}::text"),
        ValueKind::Text if c.type_oid == BPCHAR_OID => format!("CASE WHEN {x} IS NULL THEN NULL ELSE concat({x}) END"),
        // The output function, as COPY and pgoutput render the value.
        ValueKind::Text => format!("CASE WHEN {x} IS NULL THEN NULL ELSE concat({x}) END"),
        ValueKind::Array { elem, .. } => {
            let base = c.type_name.trim_end_matches("[]");
            let textual = base == "text" || base == "name" || base == "uuid" || base.starts_with("character varying");
            match elem {
                ElemKind::Number | ElemKind::Bool | ElemKind::Json => format!("array_to_json({x})::text"),
                ElemKind::String if textual => format!("array_to_json({x})::text"),
                ElemKind::String => {
                    return Err(format!(
                        "{} arrays: the target renders their elements as PostgreSQL's text output, which SQL cannot rebuild per element",
                        c.type_name
                    ));
                }
            }
        }
        ValueKind::Binary => format!("encode({x}, 'hex')"),
        ValueKind::Date => format!(
            "CASE WHEN {x} = 'infinity' THEN '9999-12-31' WHEN {x} = '-infinity' THEN '0001-01-01' \
             WHEN {x} < '0001-01-01' OR {x} > '9999-12-31' THEN NULL ELSE to_char({x}, 'YYYY-MM-DD') END"
        ),
        ValueKind::Timestamp | ValueKind::TimestampTz => format!(
            "CASE WHEN {x} = 'infinity' THEN '9223372036854775807' WHEN {x} = '-infinity' THEN '-9223372036854775808' \
             ELSE (extract(epoch FROM {x}) * 1000000)::bigint::text END"
        ),
    })
}

/// One key column: how it is named, typed and ordered.
struct KeyColumn {
    ident: String,
    kind: ValueKind,
    type_name: String,
    /// Ordered by its canonical text (bytewise), not natively.
    by_text: bool,
}

impl PgVerifier {
    /// A SQL value of key column `i` for its canonical text, to compare with the column itself
    /// (equality) or, for a column ordered by its text, with its canonical text (ranges).
    fn literal(&self, i: usize, text: &str) -> Option<String> {
        let k = self.key_cols.get(i)?;
        let q = quote_literal(text);
        let ty = &k.type_name;
        Some(match &k.kind {
            ValueKind::Bool
            | ValueKind::Int16
            | ValueKind::Int32
            | ValueKind::Int64
            | ValueKind::Decimal { .. }
            | ValueKind::Date
            | ValueKind::Text => format!("{q}::{ty}"),
            ValueKind::Binary => format!("decode({q}, 'hex')"),
            ValueKind::Timestamp | ValueKind::TimestampTz => match text {
                "9223372036854775807" => format!("'infinity'::{ty}"),
                "-9223372036854775808" => format!("'-infinity'::{ty}"),
                _ => format!("('epoch'::{ty} + {q}::bigint * interval '1 microsecond')"),
            },
            ValueKind::Float32 | ValueKind::Float64 | ValueKind::Array { .. } => return None,
        })
    }

    /// `(key) >= (lo) AND (key) < (hi)` per range, OR-ed; None when a key has no literal.
    fn ranges_condition(&self, bounds: &[Vec<String>], ranges: &[u64]) -> Option<String> {
        let lhs: Vec<String> = self
            .key_cols
            .iter()
            .zip(&self.keys)
            .map(|(k, e)| if k.by_text { format!("({e}) COLLATE \"C\"") } else { k.ident.clone() })
            .collect();
        let lhs = format!("({})", lhs.join(", "));
        let rhs = |b: &Vec<String>| -> Option<String> {
            let parts = b
                .iter()
                .enumerate()
                .map(|(i, t)| if self.key_cols.get(i)?.by_text { Some(quote_literal(t)) } else { self.literal(i, t) })
                .collect::<Option<Vec<_>>>()?;
            Some(format!("({})", parts.join(", ")))
        };
        let mut conds = Vec::with_capacity(ranges.len());
        for &r in ranges {
            let r = r as usize;
            let lo = if r == 0 { None } else { Some(rhs(bounds.get(r)?)?) };
            let hi = match bounds.get(r + 1) {
                Some(b) => Some(rhs(b)?),
                None => None,
            };
            conds.push(match (lo, hi) {
                (Some(lo), Some(hi)) => format!("({lhs} >= {lo} AND {lhs} < {hi})"),
                (Some(lo), None) => format!("{lhs} >= {lo}"),
                (None, Some(hi)) => format!("{lhs} < {hi}"),
                (None, None) => "TRUE".to_string(),
            });
        }
        Some(if conds.is_empty() { "FALSE".to_string() } else { conds.join(" OR ") })
    }

    /// `('x' || substr(md5(<row text>), 1, 16))::bit(64)::bigint`.
    fn hash_expr(&self) -> String {
        let parts: Vec<String> =
            self.values.iter().map(|t| format!("COALESCE(octet_length({t})::text || ':' || ({t}), 'N')")).collect();
        let row = if parts.is_empty() { "''".to_string() } else { parts.join(" || ") };
        format!("('x' || substr(md5({row}), 1, 16))::bit(64)::bigint")
    }

    fn key_list(&self) -> String {
        self.keys.iter().enumerate().map(|(i, k)| format!("{k} AS k{i}")).collect::<Vec<_>>().join(", ")
    }

    fn canon_rows(&self, rows: &[tokio_postgres::Row]) -> SyncResult<Vec<CanonRow>> {
        let nk = self.keys.len();
        rows.iter()
            .map(|r| {
                let key = (0..nk)
                    .map(|i| {
                        r.try_get::<_, Option<String>>(i)
                            .map_err(|e| pg_error(e, "reading a key"))?
                            .ok_or_else(|| SyncError::data(format!("a key of {} is NULL", self.table)))
                    })
                    .collect::<SyncResult<Vec<_>>>()?;
                let values = (0..self.values.len())
                    .map(|i| r.try_get::<_, Option<String>>(nk + i).map_err(|e| pg_error(e, "reading a value")))
                    .collect::<SyncResult<Vec<_>>>()?;
                Ok(CanonRow { key, values })
            })
            .collect()
    }

    async fn lsn(&self) -> SyncResult<serde_json::Value> {
        let row = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|e| pg_error(e, "reading the current WAL position"))?;
        let lsn: Lsn = row.get::<_, String>(0).parse()?;
        serde_json::to_value(PgPosition::Streaming { lsn })
            .map_err(|e| SyncError::internal(format!("serializing a position: {e}")))
    }
}

#[async_trait]
impl TableVerifier for PgVerifier {
    fn columns(&self) -> &[VerifyColumn] {
        &self.columns
    }

    fn key(&self) -> &[String] {
        &self.key
    }

    async fn begin_snapshot(&mut self) -> SyncResult<serde_json::Value> {
        self.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL work_mem = '64MB'")
            .await
            .map_err(|e| pg_error(e, "opening a snapshot to verify"))?;
        // The snapshot is taken by the transaction's first query: this one.
        self.lsn().await
    }

    async fn count(&mut self) -> SyncResult<u64> {
        let row = self
            .client
            .query_one(format!("SELECT count(*) FROM {}", self.table).as_str(), &[])
            .await
            .map_err(|e| pg_error(e, &format!("counting the rows of {}", self.table)))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn bounds(&mut self, rows_per_range: u64) -> SyncResult<Vec<Vec<String>>> {
        let step = rows_per_range.max(1);
        let names: Vec<String> = (0..self.keys.len()).map(|i| format!("k{i}")).collect();
        let sql = format!(
            "SELECT {names} FROM (SELECT row_number() OVER (ORDER BY {order}) - 1 AS rn, {keys} FROM {table}) s \
             WHERE rn % {step} = 0 ORDER BY rn",
            names = names.join(", "),
            order = self.order,
            keys = self.key_list(),
            table = self.table,
        );
        let rows = self
            .client
            .query(sql.as_str(), &[])
            .await
            .map_err(|e| pg_error(e, &format!("reading the range bounds of {}", self.table)))?;
        Ok(rows
            .iter()
            .map(|r| (0..self.keys.len()).map(|i| r.get::<_, Option<String>>(i).unwrap_or_default()).collect())
            .collect())
    }

    async fn checksums(&mut self, rows_per_range: u64) -> SyncResult<Vec<RangeChecksum>> {
        let step = rows_per_range.max(1);
        let firsts: String =
            (0..self.keys.len()).map(|i| format!(", max(CASE WHEN rn % {step} = 0 THEN k{i} END)")).collect();
        let sql = format!(
            "SELECT count(*), sum(h)::text{firsts} FROM (SELECT row_number() OVER (ORDER BY {order}) - 1 AS rn, {hash} AS h, {keys} FROM {table}) s \
             GROUP BY rn / {step} ORDER BY rn / {step}",
            order = self.order,
            hash = self.hash_expr(),
            keys = self.key_list(),
            table = self.table,
        );
        let rows = self
            .client
            .query(sql.as_str(), &[])
            .await
            .map_err(|e| pg_error(e, &format!("computing the range checksums of {}", self.table)))?;
        rows.iter()
            .map(|r| {
                let sum: String = r.get(1);
                let first_key =
                    (0..self.keys.len()).map(|i| r.get::<_, Option<String>>(2 + i).unwrap_or_default()).collect();
                Ok(RangeChecksum {
                    rows: r.get::<_, i64>(0).max(0) as u64,
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
        bounds: &[Vec<String>],
        ranges: &[u64],
    ) -> SyncResult<Vec<CanonRow>> {
        if let Some(cond) = self.ranges_condition(bounds, ranges) {
            let sql = format!(
                "SELECT {keys}{vals} FROM {table} WHERE {cond}",
                keys = self.keys.join(", "),
                vals = self.values.iter().map(|v| format!(", {v}")).collect::<String>(),
                table = self.table,
            );
            let rows = self
                .client
                .query(sql.as_str(), &[])
                .await
                .map_err(|e| pg_error(e, &format!("reading the rows of differing ranges of {}", self.table)))?;
            return self.canon_rows(&rows);
        }
        let step = rows_per_range.max(1) as i64;
        let ranges: Vec<i64> = ranges.iter().map(|&r| r as i64).collect();
        let sql = format!(
            "SELECT {keys}{vals} FROM (SELECT row_number() OVER (ORDER BY {order}) - 1 AS __rtsync_rn, * FROM {table}) s \
             WHERE __rtsync_rn / {step} = ANY($1)",
            keys = self.keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", "),
            vals = self.values.iter().map(|v| format!(", {v}")).collect::<String>(),
            order = self.order,
            table = self.table,
        );
        let rows = self
            .client
            .query(sql.as_str(), &[&ranges])
            .await
            .map_err(|e| pg_error(e, &format!("reading the rows of differing ranges of {}", self.table)))?;
        self.canon_rows(&rows)
    }

    async fn end_snapshot(&mut self) -> SyncResult<()> {
        self.client.batch_execute("COMMIT").await.map_err(|e| pg_error(e, "closing the verify snapshot"))
    }

    async fn position(&mut self) -> SyncResult<serde_json::Value> {
        self.lsn().await
    }

    async fn rows_by_key(&mut self, keys: &[Vec<String>]) -> SyncResult<Vec<CanonRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let literals: Option<Vec<String>> = keys
            .iter()
            .map(|k| {
                let parts = k.iter().enumerate().map(|(i, t)| self.literal(i, t)).collect::<Option<Vec<_>>>()?;
                Some(format!("({})", parts.join(", ")))
            })
            .collect();
        if let Some(literals) = literals {
            // Served by the key's index.
            let idents: Vec<String> = self.key_cols.iter().map(|k| k.ident.clone()).collect();
            let sql = format!(
                "SELECT {keys}{vals} FROM {table} WHERE ({idents}) IN ({list})",
                keys = self.keys.join(", "),
                vals = self.values.iter().map(|v| format!(", {v}")).collect::<String>(),
                table = self.table,
                idents = idents.join(", "),
                list = literals.join(", "),
            );
            let rows = self
                .client
                .query(sql.as_str(), &[])
                .await
                .map_err(|e| pg_error(e, &format!("re-reading differing rows of {}", self.table)))?;
            return self.canon_rows(&rows);
        }
        let columns: Vec<Vec<String>> = (0..self.keys.len())
            .map(|i| keys.iter().map(|k| k.get(i).cloned().unwrap_or_default()).collect())
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        let unnest = (1..=self.keys.len()).map(|i| format!("${i}::text[]")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT {keys}{vals} FROM {table} WHERE ({keys}) IN (SELECT * FROM unnest({unnest}))",
            keys = self.keys.join(", "),
            vals = self.values.iter().map(|v| format!(", {v}")).collect::<String>(),
            table = self.table,
        );
        let rows = self
            .client
            .query(sql.as_str(), &params)
            .await
            .map_err(|e| pg_error(e, &format!("re-reading differing rows of {}", self.table)))?;
        self.canon_rows(&rows)
    }

    async fn reached(
        &mut self,
        committed: Option<&serde_json::Value>,
        target: &serde_json::Value,
    ) -> SyncResult<Option<bool>> {
        let Ok(target) = serde_json::from_value::<PgPosition>(target.clone()) else {
            return Ok(None);
        };
        let Some(committed) = committed.and_then(|c| serde_json::from_value::<PgPosition>(c.clone()).ok()) else {
            return Ok(Some(false));
        };
        if committed.is_snapshot() {
            return Ok(Some(false));
        }
        if committed.lsn() >= target.lsn() {
            return Ok(Some(true));
        }
        // No change to the table since: an idle task confirms the WAL end to its slot once
        // everything before it is committed to the target.
        let row = self
            .client
            .query_opt("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", &[&self.slot])
            .await
            .map_err(|e| pg_error(e, "reading the task's slot"))?;
        let flushed = row.and_then(|r| r.get::<_, Option<String>>(0)).and_then(|t| t.parse::<Lsn>().ok());
        Ok(Some(flushed.is_some_and(|l| l >= target.lsn())))
    }

    fn describe_position(&self, position: &serde_json::Value) -> String {
        match serde_json::from_value::<PgPosition>(position.clone()) {
            Ok(p) => p.to_string(),
            Err(_) => position.to_string(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn col(name: &str, oid: u32, type_name: &str, kind: ValueKind) -> ColumnInfo {
        ColumnInfo { name: name.into(), type_oid: oid, typmod: -1, type_name: type_name.into(), kind }
    }

    #[test]
    fn expressions_keep_nulls_and_render_the_target_text() {
        let e = canonical_expr(&col("b", 16, "boolean", ValueKind::Bool)).unwrap();
        assert_eq!(e, r#"CASE "b" WHEN true THEN '1' WHEN false THEN '0' END"#);
        let e = canonical_expr(&col("t", 1184, "timestamp with time zone", ValueKind::TimestampTz)).unwrap();
        assert!(e.contains("extract(epoch FROM \"t\") * 1000000"), "{e}");
        let e = canonical_expr(&col("c", 1042, "character(4)", ValueKind::Text)).unwrap();
        assert!(e.contains("concat(\"c\")"), "{e}");
        let ts = ValueKind::Array { elem: ElemKind::String, delim: b',' };
        assert!(canonical_expr(&col("a", 1115, "timestamp without time zone[]", ts.clone())).is_err());
        assert!(canonical_expr(&col("a", 1009, "text[]", ts)).unwrap().starts_with("array_to_json"));
    }
}
