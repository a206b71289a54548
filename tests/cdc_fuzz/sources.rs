//! The sources the fuzzer drives: their fuzzed table, how each operation is written in their
//! SQL, and how the table is read back as canonical text per cell, through the plain database
//! clients (tokio-postgres, mysql_async), never through rtsync's code. SQL Server is the CDC
//! simulator behind its TDS endpoint (`SqlServerSim`): operations go into the simulator's
//! transactions and the table is read from its state.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio_postgres::{Client, NoTls};

use crate::workload::{Column, Kind, Op, Txn, Value, date_text, hex, local_text, offset_text, year_start_micros};

/// Rows by key text, then cells by column: canonical text or NULL.
pub type Rows = BTreeMap<String, BTreeMap<String, Option<String>>>;

const DAY_US: i64 = 86_400_000_000;

/// The fuzzed PostgreSQL table: every interesting type, `big` out of line and uncompressed.
pub fn postgres_columns() -> Vec<Column> {
    let (min, max) = (year_start_micros(2), year_start_micros(9999) - 1);
    vec![
        Column { name: "id", sql_type: "bigint PRIMARY KEY", kind: Kind::Int32 },
        Column { name: "big", sql_type: "text", kind: Kind::Big },
        Column { name: "by", sql_type: "bytea", kind: Kind::Bytes },
        Column { name: "jb", sql_type: "jsonb", kind: Kind::Json },
        Column { name: "js", sql_type: "json", kind: Kind::Json },
        Column { name: "n38", sql_type: "numeric(38,10)", kind: Kind::Decimal { int: 28, scale: 10 } },
        Column { name: "n12", sql_type: "numeric(12,0)", kind: Kind::Decimal { int: 12, scale: 0 } },
        Column { name: "n50", sql_type: "numeric(50,20)", kind: Kind::Decimal { int: 30, scale: 20 } },
        Column { name: "f8", sql_type: "float8", kind: Kind::Float64 { special: true } },
        Column { name: "f4", sql_type: "float4", kind: Kind::Float32 { special: true } },
        Column { name: "tstz", sql_type: "timestamptz", kind: Kind::Instant { min, max } },
        Column { name: "ts", sql_type: "timestamp", kind: Kind::Local { min, max } },
        Column { name: "d", sql_type: "date", kind: Kind::Date { min: min / DAY_US, max: max / DAY_US } },
        Column { name: "t", sql_type: "text", kind: Kind::Text },
        Column { name: "num", sql_type: "int4", kind: Kind::Int32 },
        Column { name: "b", sql_type: "bool", kind: Kind::Bool },
        // added by the workload while the task runs
        Column { name: "extra", sql_type: "text", kind: Kind::Text },
    ]
}

/// The fuzzed MariaDB/Oracle MySQL table, within the ranges its types hold.
pub fn mysql_columns() -> Vec<Column> {
    let (min, max) = (year_start_micros(1000), year_start_micros(9999) - 1);
    // TIMESTAMP holds 1970-01-01 00:00:01 … 2038-01-19 03:14:07 UTC
    let (ts_min, ts_max) = (DAY_US, 2_147_400_000 * 1_000_000);
    vec![
        Column { name: "id", sql_type: "BIGINT PRIMARY KEY", kind: Kind::Int32 },
        Column { name: "big", sql_type: "LONGTEXT", kind: Kind::Big },
        Column { name: "bl", sql_type: "LONGBLOB", kind: Kind::Bytes },
        Column { name: "js", sql_type: "JSON", kind: Kind::Json },
        Column { name: "d38", sql_type: "DECIMAL(38,10)", kind: Kind::Decimal { int: 28, scale: 10 } },
        Column { name: "d12", sql_type: "DECIMAL(12,0)", kind: Kind::Decimal { int: 12, scale: 0 } },
        Column { name: "d65", sql_type: "DECIMAL(65,30)", kind: Kind::Decimal { int: 35, scale: 30 } },
        Column { name: "dbl", sql_type: "DOUBLE", kind: Kind::Float64 { special: false } },
        Column { name: "f", sql_type: "FLOAT", kind: Kind::Float32 { special: false } },
        Column {
            name: "ts6",
            sql_type: "TIMESTAMP(6) NULL DEFAULT NULL",
            kind: Kind::Instant { min: ts_min, max: ts_max },
        },
        Column { name: "dt6", sql_type: "DATETIME(6)", kind: Kind::Local { min, max } },
        Column { name: "d", sql_type: "DATE", kind: Kind::Date { min: min / DAY_US, max: max / DAY_US } },
        Column { name: "t", sql_type: "VARCHAR(300)", kind: Kind::Text },
        Column { name: "num", sql_type: "INT", kind: Kind::Int32 },
        Column { name: "b", sql_type: "BOOL", kind: Kind::Bool },
        Column { name: "extra", sql_type: "VARCHAR(300)", kind: Kind::Text },
    ]
}

/// Columns present when the table is created (the rest are added by the workload).
pub const INITIAL_COLUMNS: usize = 16;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A connection to one of the sources, with the SQL dialect that goes with it.
pub enum Db {
    Postgres(Client),
    /// With the session time zone the workload writes TIMESTAMP values in.
    Mysql {
        conn: Conn,
        offset_min: i64,
    },
    SqlServer(SqlServerSim),
}

impl Db {
    pub async fn postgres(url: &str) -> Db {
        let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect to RTSYNC_PG_URL");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Db::Postgres(client)
    }

    /// `offset_min`: the writer's session time zone, so TIMESTAMP literals are local to it;
    /// `compress`: Oracle MySQL writes the session's transactions zstd-compressed.
    pub async fn mysql(url: &str, offset_min: i64, compress: bool) -> Db {
        let opts = OptsBuilder::from_opts(Opts::from_url(url).expect("mysql:// URL")).prefer_socket(false);
        let mut conn = Conn::new(opts).await.expect("connect to the MySQL-family server");
        let mut settings = vec![
            "SET NAMES utf8mb4".to_string(),
            "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')".to_string(),
            format!("SET SESSION time_zone = '{}'", offset_text(offset_min)),
        ];
        if compress {
            settings.push("SET SESSION binlog_transaction_compression = ON".to_string());
        }
        for sql in settings {
            conn.query_drop(sql).await.expect("session settings");
        }
        Db::Mysql { conn, offset_min }
    }

    /// Runs statements outside a transaction (setup, cleanup).
    pub async fn batch(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Db::Postgres(c) => c.batch_execute(sql).await.map_err(|e| format!("{e:?}")),
            Db::Mysql { conn, .. } => conn.query_drop(sql).await.map_err(|e| format!("{e:?}")),
            Db::SqlServer(_) => Err(format!("the SQL Server simulator runs no SQL: {sql}")),
        }
    }

    fn literal(&self, v: &Value) -> String {
        let float = |f: f64| {
            if f.is_nan() {
                "'NaN'".to_string()
            } else if f.is_infinite() {
                if f > 0.0 { "'Infinity'".into() } else { "'-Infinity'".into() }
            } else {
                format!("'{f:?}'")
            }
        };
        match (self, v) {
            (Db::SqlServer(_), _) => unreachable!("the SQL Server simulator takes values, not SQL literals"),
            (_, Value::Null) => "NULL".into(),
            (_, Value::Text(s) | Value::Json(s)) => quote(s),
            (Db::Postgres(_), Value::Bytes(b)) => format!("'\\x{}'::bytea", hex(b)),
            (Db::Mysql { .. }, Value::Bytes(b)) if b.is_empty() => "''".into(),
            (Db::Mysql { .. }, Value::Bytes(b)) => format!("X'{}'", hex(b)),
            (_, Value::Decimal(d)) => d.clone(),
            (Db::Postgres(_), Value::Float64(f)) => format!("{}::float8", float(*f)),
            (Db::Postgres(_), Value::Float32(f)) if f.is_finite() => format!("'{f:?}'::float4"),
            (Db::Postgres(_), Value::Float32(f)) => format!("{}::float4", float(f64::from(*f))),
            (Db::Mysql { .. }, Value::Float64(f)) => format!("{f:e}"),
            // the exact double of the float: a shorter text can parse as a double above FLT_MAX
            (Db::Mysql { .. }, Value::Float32(f)) => format!("{:e}", f64::from(*f)),
            (Db::Postgres(_), Value::Instant { micros, offset_min }) => {
                format!("'{}{}'::timestamptz", local_text(micros + offset_min * 60_000_000), offset_text(*offset_min))
            }
            (Db::Mysql { offset_min, .. }, Value::Instant { micros, .. }) => {
                quote(&local_text(micros + offset_min * 60_000_000))
            }
            (_, Value::Local(us)) => quote(&local_text(*us)),
            (_, Value::Date(d)) => quote(&date_text(*d)),
            (_, Value::Int(i)) => i.to_string(),
            (_, Value::Bool(b)) => b.to_string(),
        }
    }

    fn statement(&self, table: &str, columns: &[Column], op: &Op) -> String {
        let set = |set: &[(usize, Value)]| {
            set.iter().map(|(c, v)| format!("{} = {}", columns[*c].name, self.literal(v))).collect::<Vec<_>>()
        };
        match op {
            Op::Insert { key, row } => {
                let names: Vec<&str> = row.iter().map(|(c, _)| columns[*c].name).collect();
                let values: Vec<String> = row.iter().map(|(_, v)| self.literal(v)).collect();
                format!("INSERT INTO {table} (id, {}) VALUES ({key}, {})", names.join(", "), values.join(", "))
            }
            Op::Update { key, set: cells, .. } => {
                format!("UPDATE {table} SET {} WHERE id = {key}", set(cells).join(", "))
            }
            Op::ChangeKey { from, to, set: cells } => {
                let mut assignments = vec![format!("id = {to}")];
                assignments.extend(set(cells));
                format!("UPDATE {table} SET {} WHERE id = {from}", assignments.join(", "))
            }
            Op::Delete { key } => format!("DELETE FROM {table} WHERE id = {key}"),
            Op::Truncate => format!("TRUNCATE {table}"),
            Op::AddColumn { index } => {
                format!("ALTER TABLE {table} ADD COLUMN {} {}", columns[*index].name, columns[*index].sql_type)
            }
        }
    }

    /// `CREATE TABLE` with the first `active` columns.
    pub async fn create_table(&mut self, table: &str, columns: &[Column]) -> Result<(), String> {
        let defs: Vec<String> = columns.iter().map(|c| format!("{} {}", c.name, c.sql_type)).collect();
        let sql = match self {
            // out of line and uncompressed: a big value over ~2 kB is a TOAST pointer
            Db::Postgres(_) => format!(
                "CREATE TABLE {table} ({}); ALTER TABLE {table} ALTER COLUMN big SET STORAGE EXTERNAL;",
                defs.join(", ")
            ),
            Db::Mysql { .. } => format!("CREATE TABLE {table} ({}) CHARACTER SET utf8mb4", defs.join(", ")),
            // created with the simulator
            Db::SqlServer(_) => return Ok(()),
        };
        self.batch(&sql).await
    }

    /// Commits `txn` as one source transaction (a lone TRUNCATE/ALTER as itself on MySQL).
    pub async fn apply(&mut self, table: &str, columns: &[Column], txn: &Txn) -> Result<(), String> {
        if let Db::SqlServer(sim) = self {
            return sim.apply(columns, txn);
        }
        let statements: Vec<String> = txn.ops.iter().map(|op| self.statement(table, columns, op)).collect();
        match self {
            Db::Postgres(c) => {
                let sql = format!("BEGIN;\n{};\nCOMMIT;", statements.join(";\n"));
                let result = c.batch_execute(&sql).await.map_err(|e| format!("{e:?}"));
                if result.is_err() {
                    let _ = c.batch_execute("ROLLBACK").await;
                }
                result
            }
            Db::Mysql { conn, .. } => {
                if let [Op::Truncate | Op::AddColumn { .. }] = txn.ops.as_slice() {
                    return conn.query_drop(&statements[0]).await.map_err(|e| format!("{e:?}"));
                }
                let mut tx = conn.start_transaction(Default::default()).await.map_err(|e| format!("{e:?}"))?;
                for s in &statements {
                    tx.query_drop(s).await.map_err(|e| format!("{e:?}: {}", &s[..s.len().min(300)]))?;
                }
                tx.commit().await.map_err(|e| format!("{e:?}"))
            }
            Db::SqlServer(_) => unreachable!("applied above"),
        }
    }

    /// Inserts or updates the sentinel row `id = 0` with `num = mark`.
    pub async fn mark(&mut self, table: &str, mark: i64) -> Result<(), String> {
        let sql = match self {
            Db::SqlServer(sim) => {
                sim.mark(mark);
                return Ok(());
            }
            Db::Postgres(_) => format!(
                "INSERT INTO {table} (id, num, t) VALUES (0, {mark}, 'sentinel') ON CONFLICT (id) DO UPDATE SET num = EXCLUDED.num"
            ),
            Db::Mysql { .. } => format!(
                "INSERT INTO {table} (id, num, t) VALUES (0, {mark}, 'sentinel') ON DUPLICATE KEY UPDATE num = VALUES(num)"
            ),
        };
        self.batch(&sql).await
    }

    /// Every row of the table, each cell as canonical text (see `compare`).
    pub async fn read(&mut self, table: &str, columns: &[Column]) -> Result<Rows, String> {
        if let Db::SqlServer(sim) = self {
            return sim.read(columns);
        }
        let pg = matches!(self, Db::Postgres(_));
        let exprs: Vec<String> = columns
            .iter()
            .map(|c| {
                let n = c.name;
                match (pg, c.kind) {
                    (true, Kind::Bytes) => format!("encode({n}, 'hex')"),
                    (true, Kind::Float64 { .. } | Kind::Float32 { .. }) => format!("{n}::float8::text"),
                    (true, Kind::Instant { .. }) => {
                        format!("to_char({n} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')")
                    }
                    (true, Kind::Local { .. }) => format!("to_char({n}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"),
                    (true, Kind::Date { .. }) => format!("to_char({n}, 'YYYY-MM-DD')"),
                    (true, _) => format!("{n}::text"),
                    (false, Kind::Bytes) => format!("LOWER(HEX({n}))"),
                    (false, Kind::Float64 { .. } | Kind::Float32 { .. }) => n.to_string(),
                    (false, Kind::Instant { .. }) => format!("DATE_FORMAT({n}, '%Y-%m-%dT%H:%i:%s.%f+00:00')"),
                    (false, Kind::Local { .. }) => format!("DATE_FORMAT({n}, '%Y-%m-%dT%H:%i:%s.%f')"),
                    (false, Kind::Date { .. }) => format!("DATE_FORMAT({n}, '%Y-%m-%d')"),
                    (false, _) => format!("CAST({n} AS CHAR)"),
                }
            })
            .collect();
        let sql = format!("SELECT {} FROM {table}", exprs.join(", "));
        let mut rows = Rows::new();
        match self {
            Db::Postgres(c) => {
                for r in c.query(&sql, &[]).await.map_err(|e| format!("{e:?}"))? {
                    let cells: Vec<Option<String>> = (0..columns.len()).map(|i| r.get(i)).collect();
                    insert_row(&mut rows, columns, cells)?;
                }
            }
            Db::Mysql { conn, offset_min } => {
                conn.query_drop("SET SESSION time_zone = '+00:00'").await.map_err(|e| format!("{e:?}"))?;
                // the binary protocol, so doubles and floats arrive as their exact bits
                let result: Result<Vec<mysql_async::Row>, _> = conn.exec(sql.as_str(), ()).await;
                conn.query_drop(format!("SET SESSION time_zone = '{}'", offset_text(*offset_min)))
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                for r in result.map_err(|e| format!("{e:?}"))? {
                    let cells = r.unwrap().into_iter().map(mysql_cell).collect::<Result<Vec<_>, _>>()?;
                    insert_row(&mut rows, columns, cells)?;
                }
            }
            Db::SqlServer(_) => unreachable!("read above"),
        }
        Ok(rows)
    }
}

fn mysql_cell(v: mysql_async::Value) -> Result<Option<String>, String> {
    use mysql_async::Value as V;
    Ok(match v {
        V::NULL => None,
        V::Bytes(b) => Some(String::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?),
        V::Int(i) => Some(i.to_string()),
        V::UInt(u) => Some(u.to_string()),
        V::Double(f) => Some(crate::compare::float_text(f)),
        V::Float(f) => Some(crate::compare::float_text(f64::from(f))),
        other => return Err(format!("unexpected value {other:?}")),
    })
}

fn insert_row(rows: &mut Rows, columns: &[Column], cells: Vec<Option<String>>) -> Result<(), String> {
    let row: BTreeMap<String, Option<String>> = columns
        .iter()
        .zip(cells)
        .map(|(c, v)| (c.name.to_string(), v.map(|v| crate::compare::canonical(c.kind, &v))))
        .collect();
    let key = row.get("id").cloned().flatten().ok_or("a row without a key")?;
    if rows.insert(key.clone(), row).is_some() {
        return Err(format!("key {key} twice in the source"));
    }
    Ok(())
}

/// The fuzzed SQL Server table, in the CDC simulator behind its TDS endpoint
/// (`rtsync-mssql-sim`): no SQL Server runs here.
pub fn sqlserver_columns() -> Vec<Column> {
    let (min, max) = (year_start_micros(2), year_start_micros(9999) - 1);
    vec![
        Column { name: "id", sql_type: "bigint", kind: Kind::Int32 },
        Column { name: "big", sql_type: "nvarchar(max)", kind: Kind::Big },
        Column { name: "vb", sql_type: "varbinary(max)", kind: Kind::Bytes },
        Column { name: "js", sql_type: "nvarchar(max)", kind: Kind::Json },
        Column { name: "d38", sql_type: "decimal(38,10)", kind: Kind::Decimal { int: 28, scale: 10 } },
        Column { name: "d12", sql_type: "decimal(12,0)", kind: Kind::Decimal { int: 12, scale: 0 } },
        Column { name: "d20", sql_type: "decimal(20,5)", kind: Kind::Decimal { int: 15, scale: 5 } },
        Column { name: "dbl", sql_type: "float", kind: Kind::Float64 { special: false } },
        Column { name: "f", sql_type: "real", kind: Kind::Float32 { special: false } },
        Column { name: "dto", sql_type: "datetimeoffset(6)", kind: Kind::Instant { min, max } },
        Column { name: "dt2", sql_type: "datetime2(6)", kind: Kind::Local { min, max } },
        Column { name: "d", sql_type: "date", kind: Kind::Date { min: min / DAY_US, max: max / DAY_US } },
        Column { name: "t", sql_type: "nvarchar(1000)", kind: Kind::Text },
        Column { name: "num", sql_type: "int", kind: Kind::Int32 },
        Column { name: "b", sql_type: "bit", kind: Kind::Bool },
        Column { name: "t2", sql_type: "nvarchar(1000)", kind: Kind::Text },
        Column { name: "extra", sql_type: "nvarchar(1000)", kind: Kind::Text },
    ]
}

/// The simulated SQL Server: the database, its TDS endpoint and its capture job.
pub struct SqlServerSim {
    pub db: rtsync_source_sqlserver::sim::SimHandle,
    pub endpoint: rtsync_mssql_sim::TdsSim,
    capture_job: tokio::task::JoinHandle<()>,
    instances: usize,
}

impl Drop for SqlServerSim {
    fn drop(&mut self) {
        self.capture_job.abort();
    }
}

/// Days from 0001-01-01 (SQL Server's `date` epoch) to 1970-01-01.
const DAYS_0001_TO_1970: i64 = 719_162;

/// `nvarchar(max)`, `decimal(38,10)`, `int` as the catalog describes it.
fn mssql_catalog(c: &Column) -> rtsync_source_sqlserver::CatalogColumn {
    let (ty, args) = match c.sql_type.split_once('(') {
        Some((t, a)) => (t, a.trim_end_matches(')')),
        None => (c.sql_type, ""),
    };
    let num = |s: &str| s.trim().parse::<i16>().unwrap_or(0);
    let (len, precision, scale) = match (ty, args) {
        (_, "max") => (-1, 0, 0),
        ("nvarchar", n) => (num(n) * 2, 0, 0),
        ("decimal", ps) => {
            let (p, s) = ps.split_once(',').unwrap_or((ps, "0"));
            (17, num(p) as u8, num(s) as u8)
        }
        (_, s) if !s.is_empty() => (8, 0, num(s) as u8),
        _ => (8, 0, 0),
    };
    rtsync_source_sqlserver::sim::column(c.name, ty, len, precision, scale)
}

fn mssql_datetime2(micros: i64) -> tiberius::time::DateTime2 {
    use tiberius::time::{Date, DateTime2, Time};
    let days = micros.div_euclid(DAY_US) + DAYS_0001_TO_1970;
    DateTime2::new(Date::new(days as u32), Time::new(micros.rem_euclid(DAY_US) as u64, 6))
}

fn mssql_micros(dt: &tiberius::time::DateTime2) -> i64 {
    let days = i64::from(dt.date().days()) - DAYS_0001_TO_1970;
    let t = dt.time();
    days * DAY_US + t.increments() as i64 * 1_000_000 / 10i64.pow(u32::from(t.scale()))
}

/// A workload value as the simulator holds it for a column of `c`'s type.
fn mssql_value(c: &Column, v: &Value) -> tiberius::ColumnData<'static> {
    use std::borrow::Cow;
    use tiberius::ColumnData as D;
    match v {
        Value::Null => D::String(None),
        Value::Text(s) | Value::Json(s) => D::String(Some(Cow::Owned(s.clone()))),
        Value::Bytes(b) => D::Binary(Some(Cow::Owned(b.clone()))),
        Value::Decimal(text) => {
            let scale = text.split_once('.').map_or(0, |(_, f)| f.len()) as u8;
            let digits: i128 = text.replace('.', "").parse().expect("decimal text");
            D::Numeric(Some(tiberius::numeric::Numeric::new_with_scale(digits, scale)))
        }
        Value::Float64(f) => D::F64(Some(*f)),
        Value::Float32(f) => D::F32(Some(*f)),
        Value::Instant { micros, offset_min } => {
            D::DateTimeOffset(Some(tiberius::time::DateTimeOffset::new(mssql_datetime2(*micros), *offset_min as i16)))
        }
        Value::Local(us) => D::DateTime2(Some(mssql_datetime2(*us))),
        Value::Date(d) => D::Date(Some(tiberius::time::Date::new((d + DAYS_0001_TO_1970) as u32))),
        Value::Int(i) if c.sql_type == "bigint" => D::I64(Some(*i)),
        Value::Int(i) => D::I32(Some(*i as i32)),
        Value::Bool(b) => D::Bit(Some(*b)),
    }
}

/// A simulator value as canonical text (None: NULL), at the scale `c` declares.
fn mssql_text(c: &Column, v: &tiberius::ColumnData<'static>) -> Result<Option<String>, String> {
    use tiberius::ColumnData as D;
    Ok(match v {
        D::I64(x) => x.map(|x| x.to_string()),
        D::I32(x) => x.map(|x| x.to_string()),
        D::Bit(x) => x.map(|x| x.to_string()),
        D::String(x) => x.as_ref().map(|s| s.to_string()),
        D::Binary(x) => x.as_ref().map(|b| hex(b)),
        D::Numeric(x) => x.map(|n| {
            let Kind::Decimal { scale, .. } = c.kind else { return format!("(a decimal in {})", c.name) };
            let v = n.value() * 10i128.pow(scale.saturating_sub(u32::from(n.scale())));
            let (sign, abs) = (if v < 0 { "-" } else { "" }, v.unsigned_abs());
            let f = 10u128.pow(scale);
            if scale == 0 {
                format!("{sign}{abs}")
            } else {
                format!("{sign}{}.{:0w$}", abs / f, abs % f, w = scale as usize)
            }
        }),
        D::F64(x) => x.map(crate::compare::float_text),
        D::F32(x) => x.map(|f| crate::compare::float_text(f64::from(f))),
        D::DateTimeOffset(x) => {
            x.map(|d| format!("{}+00:00", local_text(mssql_micros(&d.datetime2())).replacen(' ', "T", 1)))
        }
        D::DateTime2(x) => x.map(|d| local_text(mssql_micros(&d)).replacen(' ', "T", 1)),
        D::Date(x) => x.map(|d| date_text(i64::from(d.days()) - DAYS_0001_TO_1970)),
        other => return Err(format!("column {}: unexpected simulator value {other:?}", c.name)),
    })
}

impl SqlServerSim {
    /// The table `dbo.fuzz` with `columns`, its TDS endpoint, and a capture job that harvests
    /// committed transactions every 50 ms (so `fn_cdc_get_max_lsn` lags the commits).
    pub async fn start(columns: &[Column]) -> SqlServerSim {
        let db =
            rtsync_source_sqlserver::sim::SimDb::create("dbo", "fuzz", columns.iter().map(mssql_catalog).collect());
        let endpoint = rtsync_mssql_sim::TdsSim::start(db.clone(), Default::default(), 0).await.expect("TDS endpoint");
        let job_db = db.clone();
        let capture_job = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                job_db.lock().capture();
            }
        });
        SqlServerSim { db, endpoint, capture_job, instances: 1 }
    }

    /// Commits `txn` as one transaction. A lone ADD COLUMN adds the column and, as a DBA does
    /// for a new table shape, a second capture instance. SQL Server refuses TRUNCATE TABLE on a
    /// table CDC captures (error 4711), so the workload's TRUNCATE deletes every row instead.
    pub fn apply(&mut self, columns: &[Column], txn: &Txn) -> Result<(), String> {
        use rtsync_source_sqlserver::sim::Values;
        if let [Op::AddColumn { index }] = txn.ops.as_slice() {
            let mut d = self.db.lock();
            d.add_column(mssql_catalog(&columns[*index]));
            self.instances += 1;
            d.enable_capture_instance(&format!("dbo_fuzz_v{}", self.instances));
            return Ok(());
        }
        let values = |set: &[(usize, Value)]| -> Values {
            set.iter().map(|(i, v)| (columns[*i].name.to_string(), mssql_value(&columns[*i], v))).collect()
        };
        let key = |k: i64| tiberius::ColumnData::I64(Some(k));
        let mut d = self.db.lock();
        let mut refused = None;
        d.transaction(|tx| {
            for op in &txn.ops {
                match op {
                    Op::Insert { key: k, row } if !tx.contains(*k) => {
                        let mut v = values(row);
                        v.insert("id".into(), key(*k));
                        tx.insert(v);
                    }
                    Op::Update { key: k, set, .. } => tx.update(*k, values(set)),
                    Op::ChangeKey { from, to, set } if !tx.contains(*to) => {
                        let mut v = values(set);
                        v.insert("id".into(), key(*to));
                        tx.update(*from, v);
                    }
                    Op::Delete { key: k } => tx.delete(*k),
                    Op::Truncate => {
                        for k in tx.keys() {
                            tx.delete(k);
                        }
                    }
                    other => refused = Some(format!("the simulator refused {}", other.describe(columns))),
                }
            }
        });
        refused.map_or(Ok(()), Err)
    }

    /// Upserts the sentinel row `id = 0` with `num = mark`.
    pub fn mark(&mut self, mark: i64) {
        use tiberius::ColumnData as D;
        let mut d = self.db.lock();
        d.transaction(|tx| {
            let mut v = rtsync_source_sqlserver::sim::Values::new();
            v.insert("num".into(), D::I32(Some(mark as i32)));
            if tx.contains(0) {
                tx.update(0, v);
            } else {
                v.insert("id".into(), D::I64(Some(0)));
                v.insert("t".into(), D::String(Some("sentinel".into())));
                tx.insert(v);
            }
        });
    }

    /// The simulated table as canonical text per cell.
    pub fn read(&self, columns: &[Column]) -> Result<Rows, String> {
        let d = self.db.lock();
        let mut rows = Rows::new();
        for values in d.table().values() {
            let cells = columns
                .iter()
                .map(|c| values.get(c.name).map_or(Ok(None), |v| mssql_text(c, v)))
                .collect::<Result<Vec<_>, _>>()?;
            insert_row(&mut rows, columns, cells)?;
        }
        Ok(rows)
    }
}
