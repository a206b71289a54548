//! Helpers for the integration tests against the MySQL-family servers of `scripts/services.sh`
//! (MariaDB and Oracle MySQL, [`MySqlServer`]): a database per test, SQL, and a mirror that
//! applies change batches the way an upsert sink does.
#![allow(dead_code)]

/// The servers and `per_mysql_server!`, shared with the workspace's end-to-end tests.
#[path = "../../../../tests/common/mysql.rs"]
pub mod servers;
pub use servers::MySqlServer;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::datatypes::{DataType, TimestampMicrosecondType};
use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::arrow::temporal_conversions::timestamp_us_to_datetime;
use rtsync_core::arrow::util::display::array_value_to_string;
use rtsync_core::{ChangeBatch, OP_COLUMN, Source};
use rtsync_source_mysql::{MySqlPosition, MySqlSource, MySqlSourceConfig};

/// A connection to `server` with the session settings the tests rely on: a recursive CTE may
/// count to a million on MySQL (its default stops at 1000) for [`TestDb::seq`].
pub async fn conn(server: MySqlServer) -> Conn {
    let mut conn = server.connect().await;
    if !server.is_mariadb() {
        conn.query_drop("SET SESSION cte_max_recursion_depth = 1000000").await.unwrap();
    }
    conn
}

/// A database of its own for one test.
pub struct TestDb {
    pub server: MySqlServer,
    pub name: String,
    pub conn: Conn,
}

impl TestDb {
    pub async fn new(server: MySqlServer, test: &str) -> TestDb {
        let name = format!("rt_{test}_{}", std::process::id());
        let mut conn = conn(server).await;
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await.unwrap();
        conn.query_drop(format!("CREATE DATABASE `{name}`")).await.unwrap();
        conn.query_drop(format!("USE `{name}`")).await.unwrap();
        TestDb { server, name, conn }
    }

    /// A second connection to the same database (another writer).
    pub async fn other(&self) -> TestDb {
        let mut other = TestDb { server: self.server, name: self.name.clone(), conn: conn(self.server).await };
        other.exec(&format!("USE `{}`", self.name)).await;
        other
    }

    /// A table expression with one column `seq` counting 1..=n: MariaDB's sequence engine, a
    /// recursive CTE on MySQL.
    pub fn seq(&self, n: u64) -> String {
        if self.server.is_mariadb() {
            format!("seq_1_to_{n}")
        } else {
            format!(
                "(WITH RECURSIVE s (seq) AS (SELECT 1 UNION ALL SELECT seq + 1 FROM s WHERE seq < {n}) SELECT seq FROM s) AS seq_1_to_{n}"
            )
        }
    }

    pub async fn exec(&mut self, sql: &str) {
        self.conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn query_strings(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let rows: Vec<mysql_async::Row> = self.conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter()
            .map(|r| {
                (0..r.len()).map(|i| r.get_opt::<Option<String>, usize>(i).and_then(Result::ok).flatten()).collect()
            })
            .collect()
    }

    pub fn config(&self, table: &str) -> MySqlSourceConfig {
        let mut cfg = MySqlSourceConfig::new(self.server.url(), &self.name, table);
        cfg.linger_ms = 50;
        cfg.heartbeat_secs = 1;
        cfg.idle_position_secs = 2;
        cfg
    }

    pub async fn drop_db(mut self) {
        let _ = self.conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name)).await;
        let _ = self.conn.disconnect().await;
    }
}

pub async fn open(task: &str, cfg: MySqlSourceConfig, resume: Option<MySqlPosition>) -> MySqlSource {
    let mut src = MySqlSource::new(task, cfg).unwrap();
    src.check().await.unwrap_or_else(|e| panic!("check: {}", e.report()));
    src.open(resume).await.unwrap_or_else(|e| panic!("open: {}", e.report()));
    src
}

/// One row as text: column name → Arrow display value ("" for NULL shown as "NULL").
pub fn row_strings(batch: &RecordBatch, row: usize) -> BTreeMap<String, String> {
    batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let col = batch.column(i);
            let v = if col.is_null(row) {
                "NULL".to_owned()
            } else if let DataType::Timestamp(_, Some(_)) = f.data_type() {
                // Arrow can only print named zones with chrono-tz; the values are UTC.
                let micros = col.as_primitive::<TimestampMicrosecondType>().value(row);
                let dt = timestamp_us_to_datetime(micros).unwrap();
                format!("{}Z", dt.format("%Y-%m-%dT%H:%M:%S%.f"))
            } else {
                array_value_to_string(col, row).unwrap()
            };
            (f.name().clone(), v)
        })
        .collect()
}

pub fn op(batch: &RecordBatch, row: usize) -> String {
    batch.column_by_name(OP_COLUMN).expect("__op column").as_string::<i32>().value(row).to_owned()
}

/// Reads batches until `done(rows so far)` or the deadline; panics on a source error.
pub async fn read_until(
    src: &mut MySqlSource,
    timeout: Duration,
    mut done: impl FnMut(&[ChangeBatch<MySqlPosition>]) -> bool,
) -> Vec<ChangeBatch<MySqlPosition>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !done(&out) {
        if Instant::now() > deadline {
            let rows: usize = out.iter().map(|b: &ChangeBatch<MySqlPosition>| b.rows.num_rows()).sum();
            panic!("timed out after {timeout:?} with {} batches / {rows} rows", out.len());
        }
        match src.next_batch(Duration::from_millis(200)).await {
            Ok(Some(b)) => out.push(b),
            Ok(None) => {}
            Err(e) => panic!("source error: {}", e.report()),
        }
    }
    out
}

/// Whatever arrives within `window` (no panic on silence).
pub async fn drain(src: &mut MySqlSource, window: Duration) -> Vec<ChangeBatch<MySqlPosition>> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        match src.next_batch(Duration::from_millis(100)).await {
            Ok(Some(b)) => out.push(b),
            Ok(None) => {}
            Err(e) => panic!("source error: {}", e.report()),
        }
    }
    out
}

/// Every (op, row) of the batches in order.
pub fn flatten(batches: &[ChangeBatch<MySqlPosition>]) -> Vec<(String, BTreeMap<String, String>)> {
    batches
        .iter()
        .flat_map(|b| (0..b.rows.num_rows()).map(move |r| (op(&b.rows, r), row_strings(&b.rows, r))))
        .map(|(o, mut r)| {
            r.remove(OP_COLUMN);
            (o, r)
        })
        .collect()
}

pub fn count_rows(batches: &[ChangeBatch<MySqlPosition>]) -> usize {
    batches.iter().map(|b| b.rows.num_rows()).sum()
}

/// The target table an upsert sink would hold: key → row.
#[derive(Default, Debug)]
pub struct Mirror {
    pub rows: BTreeMap<String, BTreeMap<String, String>>,
}

impl Mirror {
    pub fn apply(&mut self, batches: &[ChangeBatch<MySqlPosition>], key: &str) {
        for (o, row) in flatten(batches) {
            let k = row[key].clone();
            if o == "d" {
                self.rows.remove(&k);
            } else {
                self.rows.insert(k, row);
            }
        }
    }

    /// (key, value) pairs of two columns, sorted by key as numbers.
    pub fn pairs(&self, key: &str, value: &str) -> Vec<(i64, String)> {
        let mut v: Vec<(i64, String)> =
            self.rows.values().map(|r| (r[key].parse().unwrap(), r[value].clone())).collect();
        v.sort();
        v
    }
}

/// `SELECT key, value … ORDER BY key` as the same pairs.
pub async fn source_pairs(db: &mut TestDb, table: &str, key: &str, value: &str) -> Vec<(i64, String)> {
    db.query_strings(&format!("SELECT `{key}`, `{value}` FROM `{table}` ORDER BY `{key}`"))
        .await
        .into_iter()
        .map(|r| (r[0].as_deref().unwrap().parse().unwrap(), r[1].clone().unwrap_or_else(|| "NULL".into())))
        .collect()
}
