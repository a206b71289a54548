//! Throughput of the MySQL source against a real server: snapshot rows/s of a 10-column table,
//! and streaming rows/s decoding the binlog of the same rows, compared in the same run with the
//! server's own binlog client (`mariadb-binlog` / `mysqlbinlog --read-from-remote-server`)
//! decoding the same binlog range (`--base64-output=decode-rows --verbose`, to /dev/null).
//!
//! ```text
//! scripts/services.sh start mariadb && eval "$(scripts/services.sh env)"
//! cargo bench -p rtsync-source-mysql --bench throughput
//! scripts/mysql-decode-bench.sh      # the same against Oracle MySQL 9.7 and its mysqlbinlog
//! ```
//!
//! RTSYNC_BENCH_ROWS (default 1000000) sizes it. RTSYNC_BENCH_SERVER=mysql runs it against
//! Oracle MySQL (RTSYNC_MYSQL_URL) instead of MariaDB (RTSYNC_MARIADB_URL);
//! RTSYNC_BENCH_BINLOG_CMD is the binlog client's command line (default `mariadb-binlog`),
//! split at spaces (the unpacked MySQL's runs through its own loader).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};
use rtsync_core::Source;
use rtsync_source_mysql::{MySqlPosition, MySqlSource, MySqlSourceConfig, SnapshotMode};

fn rss_peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn drain(src: &mut MySqlSource, until: impl Fn(u64, &MySqlPosition) -> bool) -> u64 {
    let mut rows = 0u64;
    loop {
        if let Some(b) = src.next_batch(Duration::from_millis(500)).await.unwrap() {
            rows += b.rows.num_rows() as u64;
            if until(rows, &b.end) {
                return rows;
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mysql = std::env::var("RTSYNC_BENCH_SERVER").is_ok_and(|s| s == "mysql");
    let url_var = if mysql { "RTSYNC_MYSQL_URL" } else { "RTSYNC_MARIADB_URL" };
    let url = std::env::var(url_var)
        .unwrap_or_else(|_| panic!("{url_var}: run scripts/services.sh start mariadb mysql and eval its env"));
    let status_sql = if mysql { "SHOW BINARY LOG STATUS" } else { "SHOW MASTER STATUS" };
    let n: u64 = std::env::var("RTSYNC_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let opts = Opts::from_url(&url).unwrap();
    let mut conn = Conn::new(OptsBuilder::from_opts(opts.clone()).prefer_socket(false)).await.unwrap();
    let db = "rt_bench_mysql";
    conn.query_drop(format!("DROP DATABASE IF EXISTS {db}")).await.unwrap();
    conn.query_drop(format!("CREATE DATABASE {db}")).await.unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {db}.t (id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(40), d DECIMAL(12,2), e DOUBLE, \
         f TIMESTAMP(6) NULL, g TINYINT(1), h VARCHAR(32), i DATE)"
    ))
    .await
    .unwrap();
    let (file, pos): (String, u64) = {
        let row: mysql_async::Row = conn.query_first(status_sql).await.unwrap().unwrap();
        (row.get(0).unwrap(), row.get(1).unwrap())
    };
    let load = Instant::now();
    let step = 100_000u64;
    if mysql {
        conn.query_drop(format!("SET SESSION cte_max_recursion_depth = {}", step + 1)).await.unwrap();
    }
    let mut from = 1;
    while from <= n {
        let to = (from + step - 1).min(n);
        // MariaDB's sequence engine, or a recursive CTE on MySQL.
        let (with, rows) = if mysql {
            (
                format!("WITH RECURSIVE s (seq) AS (SELECT {from} UNION ALL SELECT seq + 1 FROM s WHERE seq < {to}) "),
                "s".to_string(),
            )
        } else {
            (String::new(), format!("seq_{from}_to_{to}"))
        };
        conn.query_drop(format!(
            "INSERT INTO {db}.t {with}SELECT seq, seq % 1000, seq * 7, CONCAT('customer-', seq), (seq % 100000) / 100, seq / 3, \
             TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq % 2, LEFT(SHA2(seq, 256), 32), DATE '2024-01-01' + INTERVAL (seq % 365) DAY \
             FROM {rows}"
        ))
        .await
        .unwrap();
        from = to + 1;
    }
    let (end_file, end_pos): (String, u64) = {
        let row: mysql_async::Row = conn.query_first(status_sql).await.unwrap().unwrap();
        (row.get(0).unwrap(), row.get(1).unwrap())
    };
    println!("loaded {n} rows in {:.1}s; binlog {file}:{pos} .. {end_file}:{end_pos}", load.elapsed().as_secs_f64());

    // Snapshot.
    let mut cfg = MySqlSourceConfig::new(&url, db, "t");
    cfg.snapshot_chunk_rows = 20_000;
    cfg.max_batch_rows = 50_000;
    let mut src = MySqlSource::new("bench-snapshot", cfg.clone()).unwrap();
    src.check().await.unwrap();
    let started = Instant::now();
    src.open(None).await.unwrap();
    let rows = drain(&mut src, |_, end| !end.is_snapshot()).await;
    let secs = started.elapsed().as_secs_f64();
    src.close().await.unwrap();
    println!("snapshot:  {rows} rows in {secs:.2}s = {:.0} rows/s (10 columns)", rows as f64 / secs);

    // Streaming the same rows from the binlog.
    let mut stream_cfg = cfg.clone();
    stream_cfg.snapshot_mode = SnapshotMode::Never;
    stream_cfg.resume_by = rtsync_source_mysql::ResumeBy::FilePosition;
    let mut src = MySqlSource::new("bench-stream", stream_cfg).unwrap();
    src.check().await.unwrap();
    let started = Instant::now();
    src.open(Some(MySqlPosition::new(&file, pos, rtsync_source_mysql::Gtids::None))).await.unwrap();
    let streamed = drain(&mut src, |rows, _| rows >= n).await;
    let secs = started.elapsed().as_secs_f64();
    src.close().await.unwrap();
    println!(
        "streaming: {streamed} rows in {secs:.2}s = {:.0} rows/s (binlog decode into Arrow batches)",
        streamed as f64 / secs
    );

    // The server's own client reading and decoding the same range.
    let u = url::Url::parse(&url).unwrap();
    let tool = std::env::var("RTSYNC_BENCH_BINLOG_CMD").unwrap_or_else(|_| "mariadb-binlog".to_owned());
    let mut tool = tool.split_whitespace();
    let program = tool.next().unwrap_or("mariadb-binlog").to_owned();
    let name = std::iter::once(program.as_str())
        .chain(tool.clone())
        .find(|t| t.ends_with("binlog"))
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or("the binlog client")
        .to_owned();
    let started = Instant::now();
    let status = std::process::Command::new(&program)
        .args(tool)
        .args([
            "--read-from-remote-server",
            &format!("--host={}", u.host_str().unwrap()),
            &format!("--port={}", u.port().unwrap_or(3306)),
            &format!("--user={}", u.username()),
            &format!("--password={}", u.password().unwrap_or("")),
            &format!("--start-position={pos}"),
            &format!("--stop-position={end_pos}"),
            "--base64-output=decode-rows",
            "--verbose",
            &file,
            "--to-last-log",
        ])
        .stdout(std::process::Stdio::null())
        .status();
    let secs = started.elapsed().as_secs_f64();
    match status {
        Ok(s) if s.success() => {
            println!("{name} --read-from-remote-server -v: {n} rows in {secs:.2}s = {:.0} rows/s", n as f64 / secs)
        }
        other => println!("{name} could not run: {other:?}"),
    }
    println!("peak RSS {:.0} MiB", rss_peak_mib());
    conn.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
