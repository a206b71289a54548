//! The initial copy: a snapshot transaction tied to a binlog position, read in primary-key
//! chunks.

use std::sync::Arc;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Statement, Value};
use rtsync_core::{Op, SyncError, SyncResult};

use crate::config::{MySqlSourceConfig, SnapshotLocking};
use crate::decode::RowsBuilder;
use crate::error::{my_err, server_code};
use crate::gtid::{Gtids, MariaGtidList, MySqlGtidSet};
use crate::position::{KeyValue, MySqlPosition};
use crate::preflight::{Flavor, ServerInfo};
use crate::schema::{ColumnSpec, quote_ident};

/// Session settings every connection that reads rows uses: UTF-8 results whatever the
/// column's charset, TIMESTAMP values in UTC, repeatable-read snapshots.
pub(crate) async fn prepare_session(conn: &mut Conn) -> SyncResult<()> {
    conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00'")
        .await
        .map_err(|e| my_err("preparing the session (SET NAMES, time_zone)", e))?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(|e| my_err("preparing the session (isolation level)", e))
}

pub(crate) async fn connect(opts: &Opts, cfg: &MySqlSourceConfig) -> SyncResult<Conn> {
    Conn::new(opts.clone()).await.map_err(|e| my_err(format!("connecting to {}", cfg.endpoint()), e))
}

/// The server's current binlog file, offset and GTIDs.
pub(crate) async fn current_position(
    conn: &mut Conn,
    flavor: &Flavor,
    info: Option<&ServerInfo>,
) -> SyncResult<MySqlPosition> {
    let row: Option<Row> = conn
        .query_first(flavor.binlog_status_sql())
        .await
        .map_err(|e| my_err(format!("reading the binlog position ({})", flavor.binlog_status_sql()), e))?;
    let row = row.ok_or_else(|| {
        SyncError::source_err("the server reports no binlog position: binary logging is off; enable log_bin")
    })?;
    let file: String = row
        .get_opt::<String, &str>("File")
        .and_then(Result::ok)
        .ok_or_else(|| SyncError::source_err("the binlog status has no File column"))?;
    let pos: u64 = row
        .get_opt::<u64, &str>("Position")
        .and_then(Result::ok)
        .ok_or_else(|| SyncError::source_err("the binlog status has no Position column"))?;
    let gtids = if flavor.mariadb {
        mariadb_gtids_at(conn, &file, pos).await?
    } else {
        let executed: Option<String> =
            row.get_opt::<Option<String>, &str>("Executed_Gtid_Set").and_then(Result::ok).flatten();
        let enabled = info.is_none_or(ServerInfo::gtid_enabled);
        match executed.filter(|s| enabled && !s.trim().is_empty()) {
            Some(s) => Gtids::MySql(s.parse::<MySqlGtidSet>()?),
            None => Gtids::None,
        }
    };
    Ok(MySqlPosition::new(file, pos, gtids))
}

/// MariaDB's GTID position at a binlog coordinate (`BINLOG_GTID_POS`).
async fn mariadb_gtids_at(conn: &mut Conn, file: &str, pos: u64) -> SyncResult<Gtids> {
    let text: Option<Option<String>> = conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file, pos))
        .await
        .map_err(|e| my_err("reading the GTID position of the snapshot (BINLOG_GTID_POS)", e))?;
    match text.flatten().filter(|s| !s.trim().is_empty()) {
        Some(s) => Ok(Gtids::MariaDb(s.parse::<MariaGtidList>()?)),
        None => Ok(Gtids::None),
    }
}

const START_SNAPSHOT: &str = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";

/// Opens a snapshot transaction on a new connection and returns it with the binlog position
/// it is consistent with (see [`SnapshotLocking`] and the crate docs for each method).
pub(crate) async fn begin(
    cfg: &MySqlSourceConfig,
    opts: &Opts,
    info: &ServerInfo,
) -> SyncResult<(Conn, MySqlPosition)> {
    let flavor = &info.flavor;
    let method = match cfg.snapshot_locking {
        SnapshotLocking::Auto if flavor.mariadb => SnapshotLocking::ConsistentSnapshot,
        SnapshotLocking::Auto => SnapshotLocking::LockTable,
        m => m,
    };
    let mut conn = connect(opts, cfg).await?;
    prepare_session(&mut conn).await?;
    let start = |e| my_err("starting the snapshot transaction", e);
    match method {
        SnapshotLocking::ConsistentSnapshot => {
            if !flavor.mariadb {
                return Err(SyncError::config(
                    "source.snapshot_locking: consistent_snapshot needs MariaDB (binlog_snapshot_file); use lock_table or none for MySQL",
                ));
            }
            conn.query_drop(START_SNAPSHOT).await.map_err(start)?;
            let rows: Vec<(String, String)> = conn
                .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
                .await
                .map_err(|e| my_err("reading binlog_snapshot_file/position", e))?;
            let get = |name: &str| rows.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
            let file = get("binlog_snapshot_file").filter(|f| !f.is_empty());
            let pos = get("binlog_snapshot_position").and_then(|p| p.parse::<u64>().ok());
            let (Some(file), Some(pos)) = (file, pos) else {
                return Err(SyncError::source_err(
                    "the server reports no binlog_snapshot_file/position: binary logging is off; enable log_bin",
                ));
            };
            let gtids = mariadb_gtids_at(&mut conn, &file, pos).await?;
            tracing::info!(file = %file, pos, gtids = %gtids, "snapshot consistent with the binlog (MariaDB consistent snapshot, no lock)");
            Ok((conn, MySqlPosition::new(file, pos, gtids)))
        }
        SnapshotLocking::LockTable => {
            let mut locker = connect(opts, cfg).await?;
            let table = format!("{}.{}", quote_ident(&cfg.schema), quote_ident(&cfg.table));
            match locker.query_drop(format!("LOCK TABLES {table} READ")).await {
                Ok(()) => {}
                Err(e)
                    if cfg.snapshot_locking == SnapshotLocking::Auto
                        && matches!(server_code(&e), Some(1044 | 1045 | 1142 | 1227)) =>
                {
                    tracing::warn!(
                        error = %e,
                        "the user may not LOCK TABLES; snapshotting without a lock (streaming replays what the copy already holds)"
                    );
                    drop(locker);
                    return begin_unlocked(conn, info).await;
                }
                Err(e) => return Err(my_err(format!("locking {table} for the start of the snapshot"), e)),
            }
            // Writes to the table wait from here until UNLOCK: the snapshot and the position
            // below see exactly the same changes of this table.
            let started = async {
                conn.query_drop(START_SNAPSHOT).await.map_err(start)?;
                current_position(&mut conn, flavor, Some(info)).await
            }
            .await;
            let unlocked = locker.query_drop("UNLOCK TABLES").await.map_err(|e| my_err("unlocking the table", e));
            let _ = locker.disconnect().await;
            let pos = started?;
            unlocked?;
            tracing::info!(position = %pos, "snapshot consistent with the binlog (table locked while it started)");
            Ok((conn, pos))
        }
        SnapshotLocking::None | SnapshotLocking::Auto => begin_unlocked(conn, info).await,
    }
}

/// Position first, snapshot second: every change the copy holds that is not before the
/// position is replayed by streaming, which converges under upserts.
async fn begin_unlocked(mut conn: Conn, info: &ServerInfo) -> SyncResult<(Conn, MySqlPosition)> {
    let pos = current_position(&mut conn, &info.flavor, Some(info)).await?;
    conn.query_drop(START_SNAPSHOT).await.map_err(|e| my_err("starting the snapshot transaction", e))?;
    tracing::info!(position = %pos, "snapshot started after reading the binlog position (no lock; streaming reconciles)");
    Ok((conn, pos))
}

/// Reads the table in primary-key order, one bounded chunk at a time.
pub(crate) struct ChunkReader {
    conn: Conn,
    columns: Arc<[ColumnSpec]>,
    key_idx: Vec<usize>,
    first: Statement,
    next: Statement,
    /// For each `?` of `next`, which key column it binds.
    params: Vec<usize>,
}

impl ChunkReader {
    pub(crate) async fn new(
        mut conn: Conn,
        cfg: &MySqlSourceConfig,
        columns: Arc<[ColumnSpec]>,
        key_idx: Vec<usize>,
    ) -> SyncResult<Self> {
        let (first_sql, next_sql, params) =
            chunk_sql(&cfg.schema, &cfg.table, &columns, &key_idx, cfg.snapshot_chunk_rows);
        let first = conn.prep(first_sql).await.map_err(|e| my_err("preparing the snapshot query", e))?;
        let next = conn.prep(next_sql).await.map_err(|e| my_err("preparing the snapshot query", e))?;
        Ok(Self { conn, columns, key_idx, first, next, params })
    }

    /// The rows after `after` (None: from the start), at most one chunk, into a builder.
    /// Returns the rows and the key of the last one (None when the table is exhausted).
    pub(crate) async fn next_chunk(
        &mut self,
        after: Option<&[KeyValue]>,
        capacity: usize,
    ) -> SyncResult<(RowsBuilder, Option<Vec<KeyValue>>)> {
        let mut rows = RowsBuilder::new(self.columns.clone(), capacity)?;
        let params: Vec<Value> = match after {
            None => Vec::new(),
            Some(key) => self
                .params
                .iter()
                .map(|&i| {
                    key.get(i)
                        .ok_or_else(|| SyncError::config("snapshot key: fewer values than primary-key columns"))
                        .and_then(KeyValue::to_value)
                })
                .collect::<SyncResult<_>>()?,
        };
        let stmt = if after.is_some() { &self.next } else { &self.first };
        let doing = || "reading a snapshot chunk".to_owned();
        let mut result = self.conn.exec_iter(stmt, params).await.map_err(|e| my_err(doing(), e))?;
        let mut last: Option<Vec<KeyValue>> = None;
        while let Some(row) = result.next().await.map_err(|e| my_err(doing(), e))? {
            let values: Vec<Value> = row.unwrap();
            last = Some(self.key_idx.iter().map(|&i| KeyValue::from(values.get(i).unwrap_or(&Value::NULL))).collect());
            rows.push_values(values, Op::Read)?;
        }
        Ok((rows, last))
    }

    pub(crate) async fn finish(self) -> SyncResult<()> {
        let mut conn = self.conn;
        conn.query_drop("COMMIT").await.map_err(|e| my_err("ending the snapshot transaction", e))?;
        let _ = conn.disconnect().await;
        Ok(())
    }
}

/// The optimizer's estimate of the table's rows (`EXPLAIN`'s `rows`, from the engine's
/// statistics), for a snapshot's progress. None when it gives none. The plan is a table with
/// a `rows` column (MariaDB, MySQL's traditional format) or one line of text (MySQL's tree
/// format, the default where `explain_format` says so: `-> Table scan on t  (cost=301 rows=3000)`).
pub(crate) async fn estimated_rows(conn: &mut Conn, schema: &str, table: &str) -> SyncResult<Option<u64>> {
    let sql = format!("EXPLAIN SELECT * FROM {}.{}", quote_ident(schema), quote_ident(table));
    let rows: Vec<Row> = conn.query(sql).await.map_err(|e| my_err("estimating the table's rows", e))?;
    let Some(first) = rows.first() else { return Ok(None) };
    if let Some(Ok(n)) = first.get_opt::<Option<u64>, _>("rows") {
        return Ok(n);
    }
    Ok(first.get_opt::<String, _>(0).and_then(Result::ok).as_deref().and_then(tree_plan_rows))
}

/// The first `rows=N` of a tree plan (`N` may be written `1.2e+06`).
fn tree_plan_rows(plan: &str) -> Option<u64> {
    let after = &plan[plan.find("rows=")? + "rows=".len()..];
    let end = after.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))).unwrap_or(after.len());
    let n: f64 = after[..end].parse().ok()?;
    (n.is_finite() && n >= 0.0).then(|| n.round() as u64)
}

/// `SELECT cols FROM t ORDER BY k LIMIT n`, and the keyset form
/// `… WHERE k1 > ? OR (k1 = ? AND k2 > ?) …` (which both optimizers turn into a PK range
/// scan, unlike a row-constructor comparison on older MariaDB).
pub(crate) fn chunk_sql(
    schema: &str,
    table: &str,
    columns: &[ColumnSpec],
    key_idx: &[usize],
    limit: usize,
) -> (String, String, Vec<usize>) {
    let cols = columns.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
    let from = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let keys: Vec<String> = key_idx.iter().map(|&i| quote_ident(&columns[i].name)).collect();
    let order = keys.join(", ");
    let mut ors = Vec::new();
    let mut params = Vec::new();
    for n in 0..keys.len() {
        let mut ands = Vec::new();
        for (j, key) in keys.iter().enumerate().take(n) {
            ands.push(format!("{key} = ?"));
            params.push(j);
        }
        ands.push(format!("{} > ?", keys[n]));
        params.push(n);
        ors.push(format!("({})", ands.join(" AND ")));
    }
    let first = format!("SELECT {cols} FROM {from} ORDER BY {order} LIMIT {limit}");
    let next = format!("SELECT {cols} FROM {from} WHERE {} ORDER BY {order} LIMIT {limit}", ors.join(" OR "));
    (first, next, params)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn rows_of_a_tree_plan() {
        assert_eq!(super::tree_plan_rows("-> Table scan on t  (cost=301 rows=3000)"), Some(3000));
        assert_eq!(super::tree_plan_rows("-> Table scan on t  (cost=1e+06 rows=1.2e+06)"), Some(1_200_000));
        assert_eq!(super::tree_plan_rows("-> Rows fetched before execution"), None);
    }

    use super::*;
    use crate::schema::ColumnKind;

    #[test]
    fn keyset_sql_for_composite_keys() {
        let cols: Vec<ColumnSpec> = ["a", "b", "v"]
            .iter()
            .map(|n| ColumnSpec { name: n.to_string(), kind: ColumnKind::Int { bytes: 4, unsigned: false } })
            .collect();
        let (first, next, params) = chunk_sql("db", "t", &cols, &[0, 1], 100);
        assert_eq!(first, "SELECT `a`, `b`, `v` FROM `db`.`t` ORDER BY `a`, `b` LIMIT 100");
        assert_eq!(
            next,
            "SELECT `a`, `b`, `v` FROM `db`.`t` WHERE (`a` > ?) OR (`a` = ? AND `b` > ?) ORDER BY `a`, `b` LIMIT 100"
        );
        assert_eq!(params, vec![0, 0, 1]);
    }
}
