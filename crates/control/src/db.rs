//! The catalog's database: one small interface over SQLite (rusqlite; the single-node default,
//! a file in the data directory) and PostgreSQL (tokio-postgres; the catalog several workers
//! share), so that the catalog's queries are written once.
//!
//! **Why not sqlx.** sqlx's SQLite driver links another `libsqlite3-sys` than rusqlite and the
//! two cannot be in one build; moving to it would replace the SQLite layer and compile a new
//! database stack, while tokio-postgres is already in the workspace (the PostgreSQL source)
//! and the catalog needs little of a driver: parameters and columns of three types (64-bit
//! integer, text, NULL), transactions, and migrations per dialect.
//!
//! **The dialect.** Statements are written in the common subset of both, with PostgreSQL's
//! `$1` placeholders (turned into SQLite's `?1` here), `RETURNING` instead of
//! `last_insert_rowid()`, `ON CONFLICT … DO UPDATE` for upserts, every integer column a 64-bit
//! one (`INTEGER` in SQLite, `BIGINT` in PostgreSQL) and every time a text column holding an
//! RFC 3339 instant written by rtsync. What only one of them has (SQLite's pragmas,
//! PostgreSQL's row locks and clock) is asked for with [`Db::dialect`]; the migrations are
//! the one place with a statement list per dialect.
//!
//! **Connections.** SQLite: one connection behind a mutex; calls are short and run inline.
//! PostgreSQL: a few connections, each reconnected on its next use after it broke; a
//! transaction holds one connection until it is committed or dropped (a dropped one is rolled
//! back before the connection is used again).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rusqlite::types::ValueRef;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::error::{Code, Error, Result};

/// How many connections a PostgreSQL catalog keeps per process.
const PG_CONNECTIONS: usize = 4;
/// How long connecting to the PostgreSQL catalog may take.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which database a catalog is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v.into())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// `params![a, b, …]`: the parameters of a statement, `$1` first.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => { &[$($crate::db::Value::from($v)),*][..] };
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0.get(i).ok_or_else(|| Error::internal(format!("catalog: the row has no column {i}")))
    }

    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Text(t) => Err(Error::internal(format!("catalog: column {i} holds text {t:?}, not an integer"))),
        }
    }

    pub fn i64(&self, i: usize) -> Result<i64> {
        self.opt_i64(i)?.ok_or_else(|| Error::internal(format!("catalog: column {i} is NULL")))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            Value::Int(v) => Ok(Some(v.to_string())),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| Error::internal(format!("catalog: column {i} is NULL")))
    }
}

fn sqlite_err(err: rusqlite::Error) -> Error {
    Error::from(err)
}

fn pg_err(err: tokio_postgres::Error) -> Error {
    if let Some(db) = err.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            || db.code() == &tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION
            || db.code() == &tokio_postgres::error::SqlState::CHECK_VIOLATION
        {
            return Error::conflict(format!("the catalog refused the change: {}", db.message()));
        }
        return Error::internal(format!("catalog: {}", db.message()));
    }
    Error::new(Code::Unavailable, format!("the PostgreSQL catalog cannot be reached: {err}"))
}

/// `$1` → `?1` for SQLite (no statement of the catalog has a `$` elsewhere).
fn sqlite_sql(sql: &str) -> String {
    sql.replace('$', "?")
}

/// A PostgreSQL connection, made on first use and made again after it broke.
pub struct PgConn {
    url: String,
    client: Option<tokio_postgres::Client>,
    /// A transaction's guard was dropped without a commit: roll back before the next use.
    needs_rollback: bool,
}

impl PgConn {
    async fn client(&mut self) -> Result<&tokio_postgres::Client> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.needs_rollback = false;
            let client = tokio::time::timeout(PG_CONNECT_TIMEOUT, pg_connect(&self.url)).await.map_err(|_| {
                Error::new(
                    Code::Unavailable,
                    format!("the PostgreSQL catalog did not answer within {}s", PG_CONNECT_TIMEOUT.as_secs()),
                )
            })??;
            self.client = Some(client);
        }
        if self.needs_rollback {
            let rollback = match &self.client {
                Some(c) => c.batch_execute("ROLLBACK").await.map_err(pg_err),
                None => Ok(()),
            };
            if rollback.is_err() {
                self.client = None;
                rollback?;
            }
            self.needs_rollback = false;
        }
        self.client.as_ref().ok_or_else(|| Error::internal("catalog: no connection"))
    }

    /// Forgets a connection that failed, so the next use connects again.
    fn check(&mut self, err: &Error) {
        if err.code == Code::Unavailable {
            self.client = None;
        }
    }
}

async fn pg_connect(url: &str) -> Result<tokio_postgres::Client> {
    let params = rtsync_source_postgres::PostgresSourceConfig::new(url, "public", "catalog")
        .connection()
        .map_err(|e| Error::bad_request(e.context_prefix("--catalog").report()))?;
    rtsync_source_postgres::catalog::connect(&params)
        .await
        .map_err(|e| Error::new(Code::Unavailable, e.context_prefix("the PostgreSQL catalog").report()))
}

fn pg_row(row: &tokio_postgres::Row) -> Result<Row> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i).map(Value::from)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i).map(|v| Value::from(v.map(i64::from)))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i).map(|v| Value::from(v.map(i64::from)))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i).map(Value::from)
        } else {
            row.try_get::<_, Option<String>>(i).map(Value::from)
        };
        out.push(v.map_err(|e| Error::internal(format!("catalog: reading column {}: {e}", col.name())))?);
    }
    Ok(Row(out))
}

fn sqlite_row(row: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Real(v) => Value::Int(v as i64),
            ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        });
    }
    Ok(Row(out))
}

fn sqlite_params(params: &[Value]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|v| match v {
            Value::Null => rusqlite::types::Value::Null,
            Value::Int(i) => rusqlite::types::Value::Integer(*i),
            Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
        })
        .collect()
}

/// A connection taken for one statement or one transaction.
pub enum Conn {
    Sqlite(OwnedMutexGuard<rusqlite::Connection>),
    Postgres(OwnedMutexGuard<PgConn>),
}

impl Conn {
    /// Runs a statement; the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(&sqlite_sql(sql)).map_err(sqlite_err)?;
                let n = stmt.execute(rusqlite::params_from_iter(sqlite_params(params))).map_err(sqlite_err)?;
                Ok(n as u64)
            }
            Conn::Postgres(c) => {
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let result = c.client().await?.execute(sql, &refs).await.map_err(pg_err);
                if let Err(e) = &result {
                    c.check(e);
                }
                result
            }
        }
    }

    /// Runs a query; its rows.
    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(&sqlite_sql(sql)).map_err(sqlite_err)?;
                let n = stmt.column_count();
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(sqlite_params(params)), |r| sqlite_row(r, n))
                    .map_err(sqlite_err)?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_err)?;
                Ok(rows)
            }
            Conn::Postgres(c) => {
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let result = c.client().await?.query(sql, &refs).await.map_err(pg_err);
                match result {
                    Ok(rows) => rows.iter().map(pg_row).collect(),
                    Err(e) => {
                        c.check(&e);
                        Err(e)
                    }
                }
            }
        }
    }

    pub async fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub async fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row> {
        self.query_opt(sql, params).await?.ok_or_else(|| Error::internal("catalog: a query returned no row"))
    }

    /// Runs statements without parameters, separated by `;` (migrations).
    pub async fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(sqlite_err),
            Conn::Postgres(c) => {
                let result = c.client().await?.batch_execute(sql).await.map_err(pg_err);
                if let Err(e) = &result {
                    c.check(e);
                }
                result
            }
        }
    }
}

/// A transaction; rolled back unless [`Tx::commit`] is called.
pub struct Tx {
    conn: Conn,
    done: bool,
}

impl Tx {
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        self.conn.execute(sql, params).await
    }

    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        self.conn.query(sql, params).await
    }

    pub async fn query_one(&mut self, sql: &str, params: &[Value]) -> Result<Row> {
        self.conn.query_one(sql, params).await
    }

    pub async fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        self.conn.query_opt(sql, params).await
    }

    pub async fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn.batch(sql).await
    }

    pub async fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.batch("COMMIT").await
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // SQLite rolls back at once; a PostgreSQL connection does it before its next use.
        match &mut self.conn {
            Conn::Sqlite(c) => {
                if !c.is_autocommit() {
                    let _ = c.execute_batch("ROLLBACK");
                }
            }
            Conn::Postgres(c) => c.needs_rollback = true,
        }
    }
}

enum Backend {
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres { conns: Vec<Arc<Mutex<PgConn>>>, next: AtomicUsize },
}

/// A catalog database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    backend: Arc<Backend>,
    /// Where it is, for messages (a file path, or the URL without its password).
    location: Arc<str>,
}

impl Db {
    /// Opens the SQLite file at `path` with the settings every catalog connection uses.
    pub fn sqlite(path: &Path) -> Result<Self> {
        let conn = sqlite_connect(path)?;
        Ok(Self {
            backend: Arc::new(Backend::Sqlite(Arc::new(Mutex::new(conn)))),
            location: path.display().to_string().into(),
        })
    }

    /// A PostgreSQL catalog at `url` with up to `connections` connections (made on first use).
    pub async fn postgres(url: &str, connections: usize) -> Result<Self> {
        let conns = (0..connections.max(1))
            .map(|_| Arc::new(Mutex::new(PgConn { url: url.to_string(), client: None, needs_rollback: false })))
            .collect();
        let db = Self {
            backend: Arc::new(Backend::Postgres { conns, next: AtomicUsize::new(0) }),
            location: redact_url(url).into(),
        };
        // Fail at start when the catalog cannot be reached at all.
        db.conn().await?.batch("SELECT 1").await?;
        Ok(db)
    }

    /// Opens `url` (`postgres://…`), or the SQLite file `path`.
    pub async fn open(url: Option<&str>, path: &Path) -> Result<Self> {
        match url {
            Some(u) => Self::postgres(u, PG_CONNECTIONS).await,
            None => Self::sqlite(path),
        }
    }

    /// Another handle on the same database with connections of its own (the log writer's,
    /// the lease keeper's), so that its writes never wait behind API calls.
    pub async fn separate(&self) -> Result<Self> {
        match &*self.backend {
            Backend::Sqlite(_) => Self::sqlite(Path::new(&*self.location)),
            Backend::Postgres { conns, .. } => {
                let url = conns[0].lock().await.url.clone();
                Self::postgres(&url, 1).await
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        match &*self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres { .. } => Dialect::Postgres,
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        (self.dialect() == Dialect::Sqlite).then(|| PathBuf::from(&*self.location))
    }

    /// A connection: the SQLite one, or a free PostgreSQL one (else the next in turn).
    pub async fn conn(&self) -> Result<Conn> {
        match &*self.backend {
            Backend::Sqlite(c) => Ok(Conn::Sqlite(c.clone().lock_owned().await)),
            Backend::Postgres { conns, next } => {
                for c in conns {
                    if let Ok(g) = c.clone().try_lock_owned() {
                        return Ok(Conn::Postgres(g));
                    }
                }
                let i = next.fetch_add(1, Ordering::Relaxed) % conns.len();
                Ok(Conn::Postgres(conns[i].clone().lock_owned().await))
            }
        }
    }

    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        self.conn().await?.execute(sql, params).await
    }

    pub async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        self.conn().await?.query(sql, params).await
    }

    pub async fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        self.conn().await?.query_opt(sql, params).await
    }

    pub async fn query_one(&self, sql: &str, params: &[Value]) -> Result<Row> {
        self.conn().await?.query_one(sql, params).await
    }

    /// Begins a transaction (SQLite: `BEGIN IMMEDIATE`, so that it never fails on upgrade
    /// from reader to writer).
    pub async fn begin(&self) -> Result<Tx> {
        let mut conn = self.conn().await?;
        let begin = match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        };
        conn.batch(begin).await?;
        Ok(Tx { conn, done: false })
    }
}

/// Opens a SQLite connection with the settings every catalog connection uses.
pub fn sqlite_connect(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)
        .map_err(|e| Error::internal(format!("opening the catalog {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A replaced value (a secret re-encrypted, a data source deleted) is overwritten with
    // zeros, not left in a free page of the file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(conn)
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(a catalog URL that does not parse)".to_string(),
    }
}

/// A new, empty database on the test PostgreSQL (`RTSYNC_PG_URL`, started by
/// `scripts/services.sh`); its URL.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) async fn test_database(prefix: &str) -> String {
    let base = std::env::var("RTSYNC_PG_URL")
        .unwrap_or_else(|_| panic!("RTSYNC_PG_URL is not set: run `eval \"$(scripts/services.sh env)\"` first"));
    let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("{prefix}_{}_{nanos}", std::process::id());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_redaction() {
        assert_eq!(sqlite_sql("SELECT a FROM t WHERE b = $1 AND c = $12"), "SELECT a FROM t WHERE b = ?1 AND c = ?12");
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[tokio::test]
    async fn sqlite_rows_transactions_and_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::sqlite(&dir.path().join("t.db")).unwrap();
        db.conn().await.unwrap().batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)").await.unwrap();
        let id = db
            .query_one("INSERT INTO t (name, n) VALUES ($1, $2) RETURNING id", params!["a", None::<i64>])
            .await
            .unwrap();
        assert_eq!(id.i64(0).unwrap(), 1);
        {
            let mut tx = db.begin().await.unwrap();
            tx.execute("UPDATE t SET n = $1 WHERE id = $2", params![7, 1]).await.unwrap();
            // dropped: rolled back
        }
        let r = db.query_one("SELECT name, n FROM t WHERE id = $1", params![1]).await.unwrap();
        assert_eq!((r.text(0).unwrap(), r.opt_i64(1).unwrap()), ("a".to_string(), None));
        let mut tx = db.begin().await.unwrap();
        tx.execute("UPDATE t SET n = $1 WHERE id = $2", params![7, 1]).await.unwrap();
        tx.commit().await.unwrap();
        let r = db.query_one("SELECT n FROM t WHERE id = $1", params![1]).await.unwrap();
        assert_eq!(r.i64(0).unwrap(), 7);
    }

    #[tokio::test]
    async fn postgres_rows_transactions_and_reconnects() {
        let db = Db::postgres(&test_database("scale_db").await, 2).await.unwrap();
        db.conn()
            .await
            .unwrap()
            .batch("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, name TEXT, n BIGINT, b BOOLEAN, i INTEGER)")
            .await
            .unwrap();
        let id = db
            .query_one(
                "INSERT INTO t (name, n, b, i) VALUES ($1, $2, $3, $4) RETURNING id",
                params!["a", None::<i64>, true, 5],
            )
            .await
            .unwrap();
        assert_eq!(id.i64(0).unwrap(), 1);
        {
            let mut tx = db.begin().await.unwrap();
            tx.execute("UPDATE t SET n = $1 WHERE id = $2", params![7, 1]).await.unwrap();
        }
        // The dropped transaction was rolled back before its connection served again.
        for _ in 0..3 {
            let r = db.query_one("SELECT name, n, b, i FROM t WHERE id = $1", params![1]).await.unwrap();
            assert_eq!(
                (r.text(0).unwrap(), r.opt_i64(1).unwrap(), r.i64(2).unwrap(), r.i64(3).unwrap()),
                ("a".into(), None, 1, 5)
            );
        }
        let dup = db.execute("INSERT INTO t (id, name) VALUES ($1, $2)", params![1, "again"]).await.unwrap_err();
        assert_eq!(dup.code, Code::Conflict, "{dup}");
        // A connection the server ended is made again on its next use.
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()", &[])
            .await
            .unwrap();
        let mut answered = 0;
        for _ in 0..4 {
            if db.query_one("SELECT count(*) FROM t", &[]).await.is_ok() {
                answered += 1;
            }
        }
        assert!(answered >= 3, "connections came back ({answered} of 4 calls answered)");
    }
}
