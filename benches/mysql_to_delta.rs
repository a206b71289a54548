//! End-to-end throughput of a MySQL / MariaDB table → Delta through the real task (consistent
//! snapshot, then ROW binlog → upsert MERGE), against the MariaDB of `scripts/services.sh`.
//!
//! Not a test: it prints figures.
//!
//! ```text
//! eval "$(scripts/services.sh env)"
//! cargo bench --bench mysql_to_delta -- [--rows N] [--changes M] [--updates PCT] [--deletes PCT]
//!                                       [--txn-rows K] [--no-catch-up]
//! ```
//!
//! Phase 1 (snapshot): a 10-column table of N rows (default 1,000,000) is synced by one task
//! started in this process; rows/s from the task's start to the Delta commit holding the last
//! row. Phase 2 (live streaming): with the task running and idle, M rows (default 500,000) are
//! inserted in transactions of K (default 1,000), each also updating PCT% (default 20) and
//! deleting PCT% (default 10) as many existing rows spread over the table; changes/s from the
//! first change to the Delta commit holding the last one. In the same run
//! `mariadb-binlog --read-from-remote-server` reads the binlog range those changes were logged
//! in, to /dev/null, once decoding the rows (`--base64-output=decode-rows --verbose`) and once
//! printing them as base64 `BINLOG` statements (its default): the server's sender plus a
//! client's decode, the ceiling to compare with. Phase 3 (catch-up): the task is stopped, the
//! same mix written again, and the restarted task's drain of that backlog timed, the
//! like-for-like comparison with `mariadb-binlog`, which also reads a backlog. After each
//! phase the Delta table must equal the source (count and a checksum over every column). Peak
//! RSS is per phase (VmHWM, reset between phases); commit latency is the engine's time for
//! each Delta commit (MERGE or append plus the log write).
//! The Delta log of each phase tells what was written: files, bytes, and for MERGEs the
//! unchanged rows rewritten alongside the changed ones (delta-rs's own metrics).
//!
//! The binlog range is the server's, so it also holds whatever else was written to the server
//! meanwhile; both readers read it all. The bench's database is dropped at the end, also when
//! it fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row};
use rtsync::{SourceSpec, TaskSpec};
use rtsync_sink_lakehouse::LakehouseSinkConfig;

const TABLE: &str = "pipe";
const DDL: &str = "CREATE TABLE {t} (id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(40), d DECIMAL(12,2), e DOUBLE, \
                   f TIMESTAMP(6) NULL, g TINYINT(1), h VARCHAR(32), i DATE)";
/// The rows of keys `from..=to` (MariaDB's SEQUENCE engine).
const ROWS: &str = "SELECT seq, seq % 1000, seq * 7, CONCAT('customer-', seq), (seq % 100000) / 100, seq / 3, \
                    TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq % 2, MD5(seq), \
                    DATE '2024-01-01' + INTERVAL (seq % 365) DAY FROM seq_{from}_to_{to}";
const UPDATE: &str = "UPDATE {t} SET a = a + 1, c = CONCAT('upd-', id), d = d + 1, h = LEFT(h, 16), \
                      f = f + INTERVAL 1 HOUR WHERE id IN ";
/// [`common::DELTA_CHECKSUM`] in MariaDB's dialect.
const CHECKSUM: &str = "SELECT CAST(count(*) AS SIGNED), CAST(sum(id) AS SIGNED), CAST(sum(a) AS SIGNED), \
     CAST(sum(b) AS SIGNED), CAST(sum(d) * 100 AS SIGNED), CAST(sum(char_length(c)) AS SIGNED), \
     CAST(sum(char_length(h)) AS SIGNED), CAST(sum(g) AS SIGNED), CAST(sum(datediff(i, '1970-01-01')) AS SIGNED), \
     CAST(sum(floor(unix_timestamp(f))) AS SIGNED), CAST(sum(floor(e)) AS SIGNED) FROM {t}";

async fn connect(url: &str) -> Conn {
    let opts = Opts::from_url(url).expect("RTSYNC_MARIADB_URL is a mysql:// URL");
    Conn::new(OptsBuilder::from_opts(opts).prefer_socket(false)).await.expect("connecting to RTSYNC_MARIADB_URL")
}

async fn checksum(conn: &mut Conn, table: &str) -> Vec<i64> {
    let row: Row = conn.query_first(CHECKSUM.replace("{t}", table)).await.unwrap().unwrap();
    (0..row.len()).map(|i| row.get::<Option<i64>, _>(i).flatten().unwrap_or(0)).collect()
}

async fn binlog_position(conn: &mut Conn) -> (String, u64) {
    let row: Row = conn.query_first("SHOW MASTER STATUS").await.unwrap().expect("log_bin is on");
    (row.get(0).unwrap(), row.get(1).unwrap())
}

fn id_list(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("({})", list.join(","))
}

/// Runs `sql` and returns the rows it changed.
async fn exec(conn: &mut Conn, sql: String) -> u64 {
    conn.query_drop(sql).await.unwrap();
    conn.affected_rows()
}

/// Writes one streaming phase of the plan as fast as one connection can.
async fn write_changes(conn: &mut Conn, table: &str, plan: &mut ChangePlan, sizes: &Sizes) -> Applied {
    let mut applied = Applied::default();
    let started = Instant::now();
    let mut left = sizes.changes;
    while left > 0 {
        let k = left.min(sizes.txn_rows);
        let txn = plan.next(k);
        conn.query_drop("BEGIN").await.unwrap();
        let rows = ROWS.replace("{from}", &txn.insert.0.to_string()).replace("{to}", &txn.insert.1.to_string());
        applied.inserts += exec(conn, format!("INSERT INTO {table} {rows}")).await;
        if !txn.update.is_empty() {
            applied.updates += exec(conn, format!("{}{}", UPDATE.replace("{t}", table), id_list(&txn.update))).await;
        }
        if !txn.delete.is_empty() {
            applied.deletes += exec(conn, format!("DELETE FROM {table} WHERE id IN {}", id_list(&txn.delete))).await;
        }
        conn.query_drop("COMMIT").await.unwrap();
        applied.transactions += 1;
        left -= k;
    }
    applied.elapsed = started.elapsed();
    applied
}

/// `mariadb-binlog --read-from-remote-server` over `from ..= to`, to /dev/null.
async fn mariadb_binlog(
    url: &str,
    from: &(String, u64),
    to: &(String, u64),
    decode_rows: bool,
) -> Result<Duration, String> {
    let opts = Opts::from_url(url).map_err(|e| e.to_string())?;
    let mut args = vec![
        "--read-from-remote-server".to_string(),
        format!("--host={}", opts.ip_or_hostname()),
        format!("--port={}", opts.tcp_port()),
        format!("--user={}", opts.user().unwrap_or("root")),
        format!("--password={}", opts.pass().unwrap_or("")),
        format!("--start-position={}", from.1),
        format!("--stop-position={}", to.1),
    ];
    if decode_rows {
        args.extend(["--base64-output=decode-rows".to_string(), "--verbose".to_string()]);
    }
    args.push(from.0.clone());
    if to.0 != from.0 {
        args.push("--to-last-log".to_string());
    }
    time_command("mariadb-binlog", &args).await
}

fn spec(url: &str, db: &str, root: &str) -> TaskSpec {
    TaskSpec::from_toml(&format!(
        "name = \"{db}\"\n[source]\ntype = \"mysql\"\nurl = \"{url}\"\nschema = \"{db}\"\ntable = \"{TABLE}\"\n\
         [sink]\nroot = \"{root}\"\nschema = \"bench\"\ntable = \"{db}\"\n"
    ))
    .expect("bench spec")
}

async fn bench(url: String, db: String, root: String, sizes: Sizes) {
    let mut conn = connect(&url).await;
    let t = format!("{db}.{TABLE}");
    let version: String = conn.query_first("SELECT VERSION()").await.unwrap().unwrap();
    conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    conn.query_drop(DDL.replace("{t}", &t)).await.unwrap();
    eprintln!("loading {} rows …", sizes.rows);
    let mut from = 1;
    while from <= sizes.rows {
        let to = (from + 99_999).min(sizes.rows);
        let rows = ROWS.replace("{from}", &from.to_string()).replace("{to}", &to.to_string());
        conn.query_drop(format!("INSERT INTO {t} {rows}")).await.unwrap();
        from = to + 1;
    }
    let spec = spec(&url, &db, &root);
    let SourceSpec::Mysql(source) = &spec.source else { unreachable!() };
    let target = LakehouseSinkConfig::new(&root, "bench", &db);
    let timeout = Duration::from_secs(600 + sizes.rows.max(sizes.changes) / 500);
    println!(
        "mysql_to_delta: MariaDB {version}, 10-column table, commit_interval {:?}, snapshot_chunk_rows {}, max_batch_rows {}",
        spec.commit_interval, source.snapshot_chunk_rows, source.max_batch_rows
    );

    // Phase 1: snapshot.
    let v0 = delta_version(&target);
    reset_peak_rss();
    let started = Instant::now();
    let mut running = Running::start(&spec);
    let mark = running.mark();
    let done = running.wait_rows(sizes.rows, timeout).await;
    let elapsed = done - started;
    let commits = running.commits_since(&mark);
    let rss = peak_rss_mib();
    assert_converged("snapshot", &checksum(&mut conn, &t).await, &delta_checksum(&target).await);
    println!(
        "snapshot: {} rows x 10 columns into Delta in {:.2}s = {:.0} rows/s; {commits}; peak RSS {rss:.0} MiB; Delta = source",
        sizes.rows,
        elapsed.as_secs_f64(),
        rate(sizes.rows, elapsed),
    );
    println!("  {}", log_since(&target, v0));

    // Phase 2: live streaming, and mariadb-binlog over the same binlog range.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut plan = ChangePlan::new(&sizes);
    let start_pos = binlog_position(&mut conn).await;
    let base = running.rows_out();
    let mark = running.mark();
    let v0 = delta_version(&target);
    reset_peak_rss();
    let started = Instant::now();
    let applied = write_changes(&mut conn, &t, &mut plan, &sizes).await;
    let end_pos = binlog_position(&mut conn).await;
    let done = running.wait_rows(base + applied.changes(), timeout).await;
    let elapsed = done - started;
    let commits = running.commits_since(&mark);
    let rss = peak_rss_mib();
    let freshness = running.metrics.freshness();
    assert_converged("live streaming", &checksum(&mut conn, &t).await, &delta_checksum(&target).await);
    let n = applied.changes();
    let range = if start_pos.0 == end_pos.0 {
        format!("{} bytes of binlog ({}:{}..{})", end_pos.1 - start_pos.1, start_pos.0, start_pos.1, end_pos.1)
    } else {
        format!("binlog {}:{} .. {}:{}", start_pos.0, start_pos.1, end_pos.0, end_pos.1)
    };
    println!("streaming (live): {}, {range}", applied.describe(sizes.txn_rows));
    println!(
        "  source writer:   {n} changes committed in {:.2}s = {:.0} changes/s (one connection)",
        applied.elapsed.as_secs_f64(),
        rate(n, applied.elapsed)
    );
    println!(
        "  rtsync → Delta:  first change → Delta converged in {:.2}s = {:.0} changes/s, {:.2}s after the last source commit; Delta = source",
        elapsed.as_secs_f64(),
        rate(n, elapsed),
        (elapsed.saturating_sub(applied.elapsed)).as_secs_f64()
    );
    println!(
        "                   {commits}; source commit → Delta commit p50 {} ms, p99 {} ms (binlog times: 1 s resolution); peak RSS {rss:.0} MiB",
        freshness.quantile(0.5),
        freshness.quantile(0.99)
    );
    println!("                   {}", log_since(&target, v0));
    let mut ceiling = None;
    for decode_rows in [true, false] {
        let how = if decode_rows { "-v (rows decoded)" } else { "(rows as base64)" };
        match mariadb_binlog(&url, &start_pos, &end_pos, decode_rows).await {
            Ok(d) => {
                println!(
                    "  mariadb-binlog --read-from-remote-server {how}: same range to /dev/null in {:.2}s = {:.0} changes/s; rtsync live = {:.0}% of it",
                    d.as_secs_f64(),
                    rate(n, d),
                    100.0 * rate(n, elapsed) / rate(n, d)
                );
                if decode_rows {
                    ceiling = Some(rate(n, d));
                }
            }
            Err(e) => println!("  mariadb-binlog {how} could not run: {e}"),
        }
    }

    // Phase 3: catch-up on a backlog of the same mix.
    if sizes.catch_up {
        running.stop().await;
        let applied = write_changes(&mut conn, &t, &mut plan, &sizes).await;
        let v0 = delta_version(&target);
        reset_peak_rss();
        let started = Instant::now();
        let mut running = Running::start(&spec);
        let mark = running.mark();
        let done = running.wait_rows(applied.changes(), timeout).await;
        let elapsed = done - started;
        let commits = running.commits_since(&mark);
        let rss = peak_rss_mib();
        running.stop().await;
        assert_converged("catch-up", &checksum(&mut conn, &t).await, &delta_checksum(&target).await);
        let n = applied.changes();
        let versus = ceiling
            .map(|r| format!(" = {:.0}% of mariadb-binlog -v's rate", 100.0 * rate(n, elapsed) / r))
            .unwrap_or_default();
        println!("catch-up: task stopped while {} were written, then restarted", applied.describe(sizes.txn_rows));
        println!(
            "  rtsync → Delta:  backlog drained in {:.2}s (start included) = {:.0} changes/s{versus}; Delta = source",
            elapsed.as_secs_f64(),
            rate(n, elapsed)
        );
        println!("                   {commits}; peak RSS {rss:.0} MiB");
        println!("                   {}", log_since(&target, v0));
    } else {
        running.stop().await;
    }
}

#[tokio::main]
async fn main() {
    log_from_env();
    let url = std::env::var("RTSYNC_MARIADB_URL")
        .expect("RTSYNC_MARIADB_URL is not set: eval \"$(scripts/services.sh env)\"");
    let sizes = Sizes::from_args();
    let db = format!("bench_mysql_delta_{}", std::process::id());
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8 path").to_string();
    let outcome = tokio::spawn(bench(url.clone(), db.clone(), root, sizes)).await;
    // The task stopped when its handle was dropped (also on a panic); the binlog connection
    // goes with it.
    let _ = connect(&url).await.query_drop(format!("DROP DATABASE IF EXISTS {db}")).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
