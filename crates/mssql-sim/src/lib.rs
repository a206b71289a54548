//! A TDS endpoint over the SQL Server CDC simulator ([`rtsync_source_sqlserver::sim`]), for
//! tests only (the `rtsync` binary does not link it).
//!
//! [`TdsSim::start`] listens on `127.0.0.1` and speaks enough TDS 7.4 for tiberius: PRELOGIN
//! (encryption NOT_SUP, so clients connect with `encrypt=off`), LOGIN7 (the user, password and
//! database are checked: a wrong one fails as SQL Server fails, error 18456 or 4060), SQL
//! batches and `sp_executesql` RPCs with parameters, answered with COLMETADATA/ROW/DONE tokens
//! and errors as ERROR tokens. So the real connector path runs against it: tiberius's login,
//! the connector's generated SQL, its parameter binding and tiberius's row decoding of every
//! type the connector reads.
//!
//! It answers exactly the statements the connector sends ([`rtsync_source_sqlserver::sql`]
//! and the browse queries), recognised by regenerating them with the connector's own SQL
//! functions for the simulated table and its capture instances, and serves them from the
//! simulator's state. Any other statement fails loudly with error 50000 naming it, so a new
//! query in the connector fails the tests until the simulator learns it.
//!
//! What it does not prove: that SQL Server accepts the SQL (it is never parsed), the real
//! server's query plans, locking and SNAPSHOT-isolation behaviour, TLS, and the timing of the
//! real capture and cleanup jobs. Those need a live server (`RTSYNC_MSSQL_URL`).

pub mod wire;
pub mod workload;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rtsync_source_sqlserver::server::{CaptureInstance, CatalogColumn, CdcServer};
use rtsync_source_sqlserver::sim::{SimHandle, SimServer};
use rtsync_source_sqlserver::sql::{self, SqlColumn};
use rtsync_source_sqlserver::types::SqlType;
use rtsync_source_sqlserver::{Lsn, browse};
use tiberius::ColumnData;
use tiberius::time::DateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::wire::{ResultSet, Tokens, WireType};

/// The credentials and database the endpoint accepts.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials { user: "rtsync".into(), password: "Sim_Passw0rd".into(), database: "rtsync_sim".into() }
    }
}

/// A running endpoint; dropping it stops listening (open connections end with the process).
pub struct TdsSim {
    addr: SocketAddr,
    credentials: Credentials,
    accept: JoinHandle<()>,
    /// Statements answered since start (all connections).
    pub statements: Arc<AtomicU64>,
}

impl Drop for TdsSim {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl TdsSim {
    /// Listens on `127.0.0.1:port` (0: any free port) for `sim`.
    pub async fn start(sim: SimHandle, credentials: Credentials, port: u16) -> std::io::Result<TdsSim> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let statements = Arc::new(AtomicU64::new(0));
        let (creds, count) = (credentials.clone(), statements.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (sim, creds, count) = (sim.clone(), creds.clone(), count.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, sim, creds, count).await {
                        tracing::debug!(error = %e, "simulated SQL Server connection ended");
                    }
                });
            }
        });
        Ok(TdsSim { addr, credentials, accept, statements })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connector's URL for this endpoint (`encrypt=off`: the endpoint has no TLS).
    pub fn url(&self) -> String {
        let c = &self.credentials;
        format!("mssql://{}:{}@{}/{}?encrypt=off", c.user, c.password, self.addr, c.database)
    }
}

async fn serve(
    mut stream: TcpStream,
    sim: SimHandle,
    creds: Credentials,
    count: Arc<AtomicU64>,
) -> std::io::Result<()> {
    stream.set_nodelay(true).ok();
    let mut session = Session { server: (sim.connect())().await.map_err(std::io::Error::other)?, sim, in_tx: false };
    let mut packet_size = 4096usize;
    while let Some((ty, body)) = wire::read_message(&mut stream).await? {
        let mut t = Tokens::default();
        let mut close = false;
        match ty {
            wire::PKT_PRELOGIN => {
                let reply = match wire::prelogin_encryption(&body) {
                    Ok(_) => wire::prelogin_response(),
                    Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
                };
                wire::write_message(&mut stream, wire::PKT_RESPONSE, &reply, packet_size).await?;
                continue;
            }
            wire::PKT_LOGIN7 => match wire::parse_login7(&body) {
                Ok(login) if login.user != creds.user || login.password != creds.password => {
                    t.error(18456, 14, &format!("Login failed for user '{}'.", login.user));
                    t.done(wire::TOKEN_DONE, wire::DONE_ERROR, 0);
                    close = true;
                }
                Ok(login) if !login.database.is_empty() && login.database != creds.database => {
                    t.error(
                        4060,
                        11,
                        &format!(
                            "Cannot open database \"{}\" requested by the login. The login failed.",
                            login.database
                        ),
                    );
                    t.done(wire::TOKEN_DONE, wire::DONE_ERROR, 0);
                    close = true;
                }
                Ok(login) => {
                    packet_size = (login.packet_size as usize).clamp(512, 32_767);
                    t.env_text(wire::ENV_DATABASE, &creds.database, "master");
                    t.env_bytes(wire::ENV_COLLATION, &wire::COLLATION, &[]);
                    t.login_ack();
                    t.env_text(wire::ENV_PACKET_SIZE, &packet_size.to_string(), &packet_size.to_string());
                    t.done(wire::TOKEN_DONE, wire::DONE_FINAL, 0);
                }
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            },
            wire::PKT_BATCH => {
                count.fetch_add(1, Ordering::Relaxed);
                match wire::parse_batch(&body) {
                    Ok(sql) => session.batch(&sql, &mut t).await,
                    Err(e) => protocol_error(&mut t, &e),
                }
            }
            wire::PKT_RPC => {
                count.fetch_add(1, Ordering::Relaxed);
                match wire::parse_rpc(&body) {
                    Ok((sql, params)) => session.rpc(&sql, &params, &mut t).await,
                    Err(e) => protocol_error(&mut t, &e),
                }
            }
            wire::PKT_ATTENTION => t.done(wire::TOKEN_DONE, wire::DONE_ATTN, 0),
            other => protocol_error(&mut t, &format!("packet type 0x{other:02X} is not one the simulator answers")),
        }
        wire::write_message(&mut stream, wire::PKT_RESPONSE, &t.0, packet_size).await?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

fn protocol_error(t: &mut Tokens, message: &str) {
    tracing::error!(message, "simulated SQL Server: protocol error");
    t.error(50000, 16, &format!("rtsync-mssql-sim: {message}"));
    t.done(wire::TOKEN_DONE, wire::DONE_ERROR, 0);
}

/// An error the endpoint answers with: SQL Server's error number and message.
struct SqlError(u32, String);

impl From<rtsync_core::SyncError> for SqlError {
    fn from(e: rtsync_core::SyncError) -> Self {
        SqlError(50000, e.to_string())
    }
}

fn unknown(sql: &str) -> SqlError {
    tracing::error!(sql, "simulated SQL Server: a statement it does not know");
    SqlError(
        50000,
        format!(
            "rtsync-mssql-sim does not know this statement (did the connector's SQL change? teach crates/mssql-sim): {sql}"
        ),
    )
}

/// One connection: its simulator connection (with its own SNAPSHOT transaction).
struct Session {
    server: SimServer,
    sim: SimHandle,
    in_tx: bool,
}

static TX_IDS: AtomicU64 = AtomicU64::new(1);

fn text(s: impl Into<String>) -> ColumnData<'static> {
    ColumnData::String(Some(Cow::Owned(s.into())))
}

fn lsn(l: Lsn) -> ColumnData<'static> {
    ColumnData::Binary(Some(Cow::Owned(l.0.to_vec())))
}

const NAME: WireType = WireType::NVarChar(Some(128));
const LSN: WireType = WireType::VarBinary(Some(10));

impl Session {
    async fn batch(&mut self, sql: &str, t: &mut Tokens) {
        let result = if sql == sql::snapshot_begin() {
            self.begin(t).await
        } else if sql == sql::snapshot_commit() {
            self.commit(t).await
        } else if sql == sql::last_capture_scan() {
            self.last_capture_scan().await.and_then(|rs| {
                t.result_set(&rs).map_err(|e| SqlError(50000, e))?;
                t.done(wire::TOKEN_DONE, wire::DONE_COUNT, rs.rows.len() as u64);
                Ok(())
            })
        } else {
            Err(unknown(sql))
        };
        if let Err(SqlError(n, m)) = result {
            t.error(n, 16, &m);
            t.done(wire::TOKEN_DONE, wire::DONE_ERROR, 0);
        }
    }

    /// `SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; SELECT max_lsn`.
    async fn begin(&mut self, t: &mut Tokens) -> Result<(), SqlError> {
        if self.in_tx {
            return Err(SqlError(50000, "rtsync-mssql-sim: BEGIN TRANSACTION inside a transaction".into()));
        }
        let max = self.server.begin_snapshot().await?;
        self.in_tx = true;
        t.done(wire::TOKEN_DONE, wire::DONE_MORE, 0);
        let id = TX_IDS.fetch_add(1, Ordering::Relaxed);
        t.env_bytes(wire::ENV_BEGIN_TX, &id.to_le_bytes(), &[]);
        t.done(wire::TOKEN_DONE, wire::DONE_MORE, 0);
        let mut rs = ResultSet::new(&[("max_lsn", LSN)]);
        rs.rows.push(vec![lsn(max)]);
        t.result_set(&rs).map_err(|e| SqlError(50000, e))?;
        t.done(wire::TOKEN_DONE, wire::DONE_COUNT, 1);
        Ok(())
    }

    async fn commit(&mut self, t: &mut Tokens) -> Result<(), SqlError> {
        if !self.in_tx {
            return Err(SqlError(
                3902,
                "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION.".into(),
            ));
        }
        self.server.end_snapshot().await?;
        self.in_tx = false;
        t.env_bytes(wire::ENV_COMMIT_TX, &[], &[0; 8]);
        t.done(wire::TOKEN_DONE, wire::DONE_MORE, 0);
        t.done(wire::TOKEN_DONE, wire::DONE_FINAL, 0);
        Ok(())
    }

    async fn last_capture_scan(&mut self) -> Result<ResultSet, SqlError> {
        let p = self.server.preflight("", "").await?;
        let mut rs = ResultSet::new(&[("end_time", WireType::NVarChar(Some(30))), ("error_count", WireType::Int(4))]);
        if let Some(end) = p.last_capture_scan {
            rs.rows.push(vec![text(end), ColumnData::I32(Some(0))]);
        }
        Ok(rs)
    }

    async fn rpc(&mut self, sql: &str, params: &[ColumnData<'static>], t: &mut Tokens) {
        let answer = match self.answer(sql, params).await {
            Ok(rs) => t.result_set(&rs).map(|_| rs.rows.len()).map_err(|e| SqlError(50000, e)),
            Err(e) => Err(e),
        };
        match answer {
            Ok(n) => {
                t.done(wire::TOKEN_DONEINPROC, wire::DONE_MORE | wire::DONE_COUNT, n as u64);
                t.return_status(0);
                t.done(wire::TOKEN_DONEPROC, wire::DONE_FINAL, 0);
            }
            Err(SqlError(n, m)) => {
                t.error(n, 16, &m);
                t.done(wire::TOKEN_DONEPROC, wire::DONE_ERROR, 0);
            }
        }
    }

    fn table(&self) -> (String, String) {
        let db = self.sim.lock();
        let (s, t) = db.qualified_name();
        (s.to_string(), t.to_string())
    }

    /// The capture instances, when `[schema].[table]` is the simulated table.
    async fn instances_of(&mut self, object: &str) -> Result<Vec<CaptureInstance>, SqlError> {
        let Some((schema, table)) = split_qualified(object) else {
            return Ok(Vec::new());
        };
        if self.server.table_columns(&schema, &table).await?.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.server.capture_instances(&schema, &table).await?)
    }

    async fn instance(&mut self, name: &str) -> Result<Option<CaptureInstance>, SqlError> {
        let (schema, table) = self.table();
        Ok(self.server.capture_instances(&schema, &table).await?.into_iter().find(|i| i.name == name))
    }

    async fn answer(&mut self, sql: &str, p: &[ColumnData<'static>]) -> Result<ResultSet, SqlError> {
        if sql == sql::preflight() {
            let (schema, table) = split_qualified(&param_text(p, 0)?).unwrap_or_default();
            let f = self.server.preflight(&schema, &table).await?;
            let exists = !self.server.table_columns(&schema, &table).await?.is_empty();
            let mut rs = ResultSet::new(&[
                ("db", NAME),
                ("database_id", WireType::Int(4)),
                ("is_cdc_enabled", WireType::Bit),
                ("snapshot_isolation_state", WireType::Int(1)),
                ("can_select", WireType::Int(4)),
                ("can_read_cdc", WireType::Int(4)),
                ("can_view_state", WireType::Int(4)),
                ("max_text_repl_size", WireType::Int(8)),
            ]);
            // HAS_PERMS_BY_NAME is NULL for an object that does not exist.
            let select =
                if exists { ColumnData::I32(Some(i32::from(f.can_select_table))) } else { ColumnData::I32(None) };
            rs.rows.push(vec![
                text(f.database),
                ColumnData::I32(Some(f.database_id)),
                ColumnData::Bit(Some(f.is_cdc_enabled)),
                ColumnData::U8(Some(f.snapshot_isolation_state)),
                select,
                ColumnData::I32(Some(i32::from(f.can_select_cdc))),
                ColumnData::I32(Some(i32::from(f.can_view_database_state))),
                ColumnData::I64(Some(f.max_text_repl_size)),
            ]);
            return Ok(rs);
        }
        if sql == sql::table_columns() {
            return self.table_columns(&param_text(p, 0)?).await;
        }
        if sql == sql::primary_key() {
            let mut rs = ResultSet::new(&[("name", NAME)]);
            if let Some((schema, table)) = split_qualified(&param_text(p, 0)?)
                && !self.server.table_columns(&schema, &table).await?.is_empty()
            {
                for k in self.server.primary_key(&schema, &table).await? {
                    rs.rows.push(vec![text(k)]);
                }
            }
            return Ok(rs);
        }
        if sql == sql::capture_instances() {
            let mut rs = ResultSet::new(&[
                ("capture_instance", NAME),
                ("start_lsn", LSN),
                ("create_date", WireType::DateTime),
                ("has_command_id", WireType::Bit),
            ]);
            for (i, ci) in self.instances_of(&param_text(p, 0)?).await?.into_iter().enumerate() {
                rs.rows.push(vec![
                    text(ci.name),
                    lsn(ci.start_lsn),
                    ColumnData::DateTime(Some(DateTime::new(46_000 + i as i32, 0))),
                    ColumnData::Bit(Some(ci.has_command_id)),
                ]);
            }
            return Ok(rs);
        }
        if sql == sql::captured_columns() {
            let mut rs = ResultSet::new(&[("column_name", NAME), ("column_ordinal", WireType::Int(4))]);
            if let Some(ci) = self.instance(&param_text(p, 0)?).await? {
                for (c, ordinal) in ci.columns {
                    rs.rows.push(vec![text(c.column.name), ColumnData::I32(Some(ordinal as i32))]);
                }
            }
            return Ok(rs);
        }
        if sql == sql::capture_index_columns() {
            let mut rs = ResultSet::new(&[("column_name", NAME)]);
            if let Some(ci) = self.instance(&param_text(p, 0)?).await? {
                rs.rows.extend(ci.index_columns.into_iter().map(|c| vec![text(c)]));
            }
            return Ok(rs);
        }
        if sql == sql::lsn_bounds() {
            let (schema, table) = split_qualified(&param_text(p, 1)?).unwrap_or_default();
            let b = self.server.lsn_bounds(&param_text(p, 0)?, &schema, &table).await?;
            let mut rs = ResultSet::new(&[("min_lsn", LSN), ("max_lsn", LSN), ("capture_instances", WireType::Int(4))]);
            rs.rows.push(vec![lsn(b.min), lsn(b.max), ColumnData::I32(Some(b.capture_instances as i32))]);
            return Ok(rs);
        }
        if sql == browse::LIST_SCHEMAS {
            let (schema, _) = self.table();
            let mut rs = ResultSet::new(&[("name", NAME), ("tables", WireType::Int(4))]);
            rs.rows.push(vec![text(schema), ColumnData::I32(Some(1))]);
            return Ok(rs);
        }
        if sql == browse::LIST_TABLES {
            let (schema, table) = self.table();
            let mut rs =
                ResultSet::new(&[("name", NAME), ("cdc", WireType::Int(4)), ("estimated_rows", WireType::Int(8))]);
            if param_text(p, 0)? == schema {
                let cdc = !self.server.capture_instances(&schema, &table).await?.is_empty();
                let rows = self.sim.lock().table().len() as i64;
                rs.rows.push(vec![text(table), ColumnData::I32(Some(i32::from(cdc))), ColumnData::I64(Some(rows))]);
            }
            return Ok(rs);
        }
        if let Some(rs) = self.snapshot_chunk(sql, p).await? {
            return Ok(rs);
        }
        if let Some(rs) = self.changes(sql, p).await? {
            return Ok(rs);
        }
        Err(unknown(sql))
    }

    /// `sys.columns` of the table, or of a change table `[cdc].[<ci>_CT]` (its `__$` columns,
    /// the captured columns, `__$command_id`).
    async fn table_columns(&mut self, object: &str) -> Result<ResultSet, SqlError> {
        let mut rs = ResultSet::new(&[
            ("name", NAME),
            ("type_name", NAME),
            ("max_length", WireType::Int(2)),
            ("precision", WireType::Int(1)),
            ("scale", WireType::Int(1)),
            ("is_nullable", WireType::Bit),
        ]);
        let Some((schema, table)) = split_qualified(object) else {
            return Ok(rs);
        };
        let change_table = match table.strip_suffix("_CT") {
            Some(ci) if schema == "cdc" => self.instance(ci).await?,
            _ => None,
        };
        let columns: Vec<(String, SysType, bool)> = match change_table {
            Some(ci) => {
                let meta = |n: &str, ty: (&str, i16, u8, u8), null: bool| {
                    (n.to_string(), (ty.0.to_string(), ty.1, ty.2, ty.3), null)
                };
                let mut out = vec![
                    meta("__$start_lsn", ("binary", 10, 0, 0), false),
                    meta("__$end_lsn", ("binary", 10, 0, 0), true),
                    meta("__$seqval", ("binary", 10, 0, 0), false),
                    meta("__$operation", ("int", 4, 10, 0), false),
                    meta("__$update_mask", ("varbinary", 128, 0, 0), true),
                ];
                out.extend(ci.columns.iter().map(|(c, _)| (c.column.name.clone(), sys_type(c), true)));
                if ci.has_command_id {
                    out.push(meta("__$command_id", ("int", 4, 10, 0), true));
                }
                out
            }
            None => self
                .server
                .table_columns(&schema, &table)
                .await?
                .iter()
                .map(|c| (c.column.name.clone(), sys_type(c), c.nullable))
                .collect(),
        };
        for (name, (ty, len, precision, scale), nullable) in columns {
            rs.rows.push(vec![
                text(name),
                text(ty),
                ColumnData::I16(Some(len)),
                ColumnData::U8(Some(precision)),
                ColumnData::U8(Some(scale)),
                ColumnData::Bit(Some(nullable)),
            ]);
        }
        Ok(rs)
    }

    /// The column lists the connector may select from the table: all of them (preview) or a
    /// capture instance's.
    async fn column_lists(&mut self) -> Result<(Vec<Vec<SqlColumn>>, Vec<CaptureInstance>), SqlError> {
        let (schema, table) = self.table();
        let all: Vec<SqlColumn> =
            self.server.table_columns(&schema, &table).await?.into_iter().map(|c| c.column).collect();
        let instances = self.server.capture_instances(&schema, &table).await?;
        let mut lists = vec![all];
        lists.extend(instances.iter().map(|i| i.columns.iter().map(|(c, _)| c.column.clone()).collect()));
        Ok((lists, instances))
    }

    /// A keyset chunk of the snapshot (or of a preview), when `sql` is one.
    async fn snapshot_chunk(&mut self, sql: &str, p: &[ColumnData<'static>]) -> Result<Option<ResultSet>, SqlError> {
        let Some(limit) =
            sql.strip_prefix("SELECT TOP (").and_then(|r| r.split_once(')')).and_then(|(n, _)| n.parse::<usize>().ok())
        else {
            return Ok(None);
        };
        let (schema, table) = self.table();
        let (lists, _) = self.column_lists().await?;
        let pk = self.server.primary_key(&schema, &table).await?;
        for columns in lists {
            let key: Vec<SqlColumn> =
                pk.iter().filter_map(|k| columns.iter().find(|c| &c.name == k).cloned()).collect();
            for after in [false, true] {
                if sql::snapshot_chunk(&schema, &table, &columns, &key, after, limit) != sql {
                    continue;
                }
                let after_key: Option<Vec<String>> = if after {
                    Some((0..key.len()).map(|i| param_text(p, i)).collect::<Result<_, _>>()?)
                } else {
                    None
                };
                // A preview reads outside a transaction: the rows as they are now.
                let own_tx = !self.in_tx;
                if own_tx {
                    self.server.begin_snapshot().await?;
                }
                let chunk =
                    self.server.snapshot_chunk(&schema, &table, &columns, &key, after_key.as_deref(), limit).await;
                if own_tx {
                    self.server.end_snapshot().await?;
                }
                let mut rs = ResultSet {
                    columns: columns.iter().map(|c| (c.name.clone(), wire_type(c))).collect(),
                    rows: Vec::new(),
                };
                rs.columns.extend((0..key.len()).map(|i| (format!("__rtsync_k{i}"), WireType::NVarChar(Some(4000)))));
                for (mut values, keys) in chunk? {
                    values.extend(keys.into_iter().map(text));
                    rs.rows.push(values);
                }
                return Ok(Some(rs));
            }
        }
        Ok(None)
    }

    /// A page of a change table, when `sql` is one.
    async fn changes(&mut self, sql: &str, p: &[ColumnData<'static>]) -> Result<Option<ResultSet>, SqlError> {
        if !sql.starts_with("SELECT [__$start_lsn]") {
            return Ok(None);
        }
        let (_, instances) = self.column_lists().await?;
        for ci in instances {
            let columns: Vec<SqlColumn> = ci.columns.iter().map(|(c, _)| c.column.clone()).collect();
            for inclusive in [false, true] {
                if sql::changes(&ci.name, &columns, ci.has_command_id, inclusive) != sql {
                    continue;
                }
                let from = param_lsn(p, 0)?;
                let to = param_lsn(p, 1)?;
                let skip = param_i64(p, 2)?.max(0) as u64;
                let limit = param_i64(p, 3)?.max(0) as usize;
                let rows = self.server.changes(&ci, &columns, from, inclusive, skip, to, limit).await?;
                let mut rs = ResultSet::new(&[
                    ("__$start_lsn", LSN),
                    ("__$seqval", LSN),
                    ("__$operation", WireType::Int(4)),
                    ("__$update_mask", WireType::VarBinary(Some(128))),
                ]);
                rs.columns.extend(columns.iter().map(|c| (c.name.clone(), wire_type(c))));
                for r in rows {
                    let mut row = vec![
                        lsn(r.start_lsn),
                        lsn(r.seqval),
                        ColumnData::I32(Some(i32::from(r.operation))),
                        ColumnData::Binary(Some(Cow::Owned(r.update_mask))),
                    ];
                    row.extend(r.values);
                    rs.rows.push(row);
                }
                return Ok(Some(rs));
            }
        }
        Ok(None)
    }
}

fn param_text(p: &[ColumnData<'static>], i: usize) -> Result<String, SqlError> {
    match p.get(i) {
        Some(ColumnData::String(Some(s))) => Ok(s.to_string()),
        other => Err(SqlError(8144, format!("parameter @P{} is {other:?}, not text", i + 1))),
    }
}

fn param_lsn(p: &[ColumnData<'static>], i: usize) -> Result<Lsn, SqlError> {
    match p.get(i) {
        Some(ColumnData::Binary(Some(b))) => {
            Lsn::from_bytes(b).ok_or_else(|| SqlError(8144, format!("parameter @P{}: not a 10-byte LSN", i + 1)))
        }
        other => Err(SqlError(8144, format!("parameter @P{} is {other:?}, not binary(10)", i + 1))),
    }
}

fn param_i64(p: &[ColumnData<'static>], i: usize) -> Result<i64, SqlError> {
    match p.get(i) {
        Some(ColumnData::I64(Some(v))) => Ok(*v),
        Some(ColumnData::I32(Some(v))) => Ok(i64::from(*v)),
        other => Err(SqlError(8144, format!("parameter @P{} is {other:?}, not bigint", i + 1))),
    }
}

/// `[schema].[table]` (bracket-quoted, `]]` inside) split into its names.
pub fn split_qualified(s: &str) -> Option<(String, String)> {
    fn ident(s: &str) -> Option<(String, &str)> {
        let mut rest = s.strip_prefix('[')?;
        let mut out = String::new();
        loop {
            let at = rest.find(']')?;
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            match rest.strip_prefix(']') {
                Some(r) => {
                    out.push(']');
                    rest = r;
                }
                None => return Some((out, rest)),
            }
        }
    }
    let (schema, rest) = ident(s)?;
    let (table, rest) = ident(rest.strip_prefix('.')?)?;
    rest.is_empty().then_some((schema, table))
}

/// A type as `sys.columns` describes it: the `sys.types` name, `max_length`, `precision`, `scale`.
pub type SysType = (String, i16, u8, u8);

/// The `sys.types` name, `max_length`, `precision` and `scale` of a declared type
/// (`nvarchar(40)` → `nvarchar`, 80, 0, 0): what `sys.columns` says for it.
pub fn sys_type(c: &CatalogColumn) -> SysType {
    let decl = c.column.decl.as_str();
    let (name, args) = match decl.split_once('(') {
        Some((n, a)) => (n, a.trim_end_matches(')')),
        None => (decl, ""),
    };
    let num = |s: &str| s.trim().parse::<i16>().unwrap_or(0);
    let (len, precision, scale): (i16, u8, u8) = match (name, args) {
        (_, "max") => (-1, 0, 0),
        ("nvarchar" | "nchar", n) => (num(n) * 2, 0, 0),
        ("varchar" | "char" | "varbinary" | "binary", n) => (num(n), 0, 0),
        ("decimal" | "numeric", ps) => {
            let (p, s) = ps.split_once(',').unwrap_or((ps, "0"));
            (17, num(p) as u8, num(s) as u8)
        }
        ("time", s) => (5, 16, num(s) as u8),
        ("datetime2", s) => (8, 27, num(s) as u8),
        ("datetimeoffset", s) => (10, 34, num(s) as u8),
        ("bit" | "tinyint", _) => (1, 3, 0),
        ("smallint", _) => (2, 5, 0),
        ("int", _) => (4, 10, 0),
        ("bigint", _) => (8, 19, 0),
        ("money", _) => (8, 19, 4),
        ("smallmoney", _) => (4, 10, 4),
        ("real", _) => (4, 24, 0),
        ("float", _) => (8, 53, 0),
        ("date", _) => (3, 10, 0),
        ("datetime", _) => (8, 23, 3),
        ("smalldatetime", _) => (4, 16, 0),
        ("uniqueidentifier", _) => (16, 0, 0),
        ("xml" | "geometry" | "geography", _) => (-1, 0, 0),
        ("text" | "ntext" | "image", _) => (16, 0, 0),
        ("sql_variant", _) => (8016, 0, 0),
        ("hierarchyid", _) => (892, 0, 0),
        ("timestamp" | "rowversion", _) => (8, 0, 0),
        _ => (0, 0, 0),
    };
    (name.to_string(), len, precision, scale)
}

/// How a column the connector selects travels: as SQL Server sends the expression it selects
/// (money and smallmoney CAST to decimal, sql_variant to nvarchar(4000), CLR types to
/// varbinary(max)); char/varchar travel as nvarchar here (tiberius decodes both to text).
pub fn wire_type(c: &SqlColumn) -> WireType {
    let length = c.decl.split_once('(').and_then(|(_, a)| a.trim_end_matches(')').parse::<u16>().ok());
    match c.ty {
        SqlType::Bit => WireType::Bit,
        SqlType::TinyInt => WireType::Int(1),
        SqlType::SmallInt => WireType::Int(2),
        SqlType::Int => WireType::Int(4),
        SqlType::BigInt => WireType::Int(8),
        SqlType::Decimal { precision, scale } => WireType::Decimal(precision, scale),
        SqlType::Money => WireType::Decimal(19, 4),
        SqlType::SmallMoney => WireType::Decimal(10, 4),
        SqlType::Real => WireType::Float(4),
        SqlType::Float => WireType::Float(8),
        SqlType::Text { lob: true } => WireType::NVarChar(None),
        SqlType::Text { lob: false } => WireType::NVarChar(Some(length.filter(|n| *n <= 4000).unwrap_or(4000))),
        SqlType::Bytes { lob: true } | SqlType::Clr => WireType::VarBinary(None),
        SqlType::Bytes { lob: false } => WireType::VarBinary(Some(length.unwrap_or(8))),
        SqlType::Date => WireType::Date,
        SqlType::Time { scale } => WireType::Time(scale),
        SqlType::DateTime => WireType::DateTime,
        SqlType::SmallDateTime => WireType::SmallDateTime,
        SqlType::DateTime2 { scale } => WireType::DateTime2(scale),
        SqlType::DateTimeOffset { scale } => WireType::DateTimeOffset(scale),
        SqlType::UniqueIdentifier => WireType::Guid,
        SqlType::Xml => WireType::Xml,
        SqlType::SqlVariant => WireType::NVarChar(Some(4000)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rtsync_source_sqlserver::server::type_decl;

    use super::*;

    #[test]
    fn qualified_names_split_as_sql_server_quotes_them() {
        assert_eq!(split_qualified("[dbo].[orders]"), Some(("dbo".into(), "orders".into())));
        assert_eq!(split_qualified("[a]]b].[c d]"), Some(("a]b".into(), "c d".into())));
        assert_eq!(split_qualified(&sql::qualified("s]]", "t.x")), Some(("s]]".into(), "t.x".into())));
        assert_eq!(split_qualified("dbo.orders"), None);
        assert_eq!(split_qualified("[dbo].[orders]x"), None);
    }

    /// What `sys.columns` says for each declared type reads back, through the connector's own
    /// catalog parsing, as the same type and declaration.
    #[test]
    fn catalog_rows_round_trip_through_the_connectors_parsing() {
        for c in workload::every_type_columns() {
            let (name, len, precision, scale) = sys_type(&c);
            assert_eq!(type_decl(&name, len, precision, scale), c.column.decl, "{c:?}");
            assert_eq!(SqlType::parse(&c.column.name, &name, len, precision, scale).unwrap(), c.column.ty, "{c:?}");
        }
    }
}
