//! Throughput of the PostgreSQL source against a real server (RTSYNC_PG_URL): snapshot rows/s
//! of a 10-column table, and streaming changes/s compared, on the same WAL, with
//! `pg_recvlogical` draining an equivalent pgoutput slot (the server's own sender rate).
//!
//! ```text
//! scripts/services.sh start postgres && eval "$(scripts/services.sh env)"
//! cargo bench -p rtsync-source-postgres --bench throughput
//! ```
//!
//! RTSYNC_BENCH_ROWS (default 1000000) and RTSYNC_BENCH_CHANGES (default 500000) size it.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rtsync_core::Source;
use rtsync_source_postgres::{PgPosition, PostgresSource, PostgresSourceConfig, SnapshotMode};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

const DDL: &str = "CREATE TABLE {t} (id bigint PRIMARY KEY, a int, b bigint, c text, d numeric(12,2), e float8, \
                   f timestamptz, g bool, h varchar(32), i date)";
const ROWS: &str = "SELECT n, n % 1000, n * 7, 'customer-' || n, (n % 100000) / 100.0, n / 3.0, \
                    timestamptz '2024-01-01' + n * interval '1 second', n % 2 = 0, md5(n::text), date '2024-01-01' + (n % 365)";

async fn drain(source: &mut PostgresSource, until: impl Fn(u64, &PgPosition) -> bool) -> u64 {
    let mut rows = 0u64;
    loop {
        if let Some(b) = source.next_batch(Duration::from_millis(200)).await.unwrap() {
            rows += b.num_rows() as u64;
            source.ack(&b.end).await.unwrap();
            if until(rows, &b.end) {
                return rows;
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("RTSYNC_PG_URL").expect("RTSYNC_PG_URL is not set: eval \"$(scripts/services.sh env)\"");
    let n_rows = env_usize("RTSYNC_BENCH_ROWS", 1_000_000);
    let n_changes = env_usize("RTSYNC_BENCH_CHANGES", 500_000);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let table = format!("bench_{}", std::process::id());
    let t = format!("public.{table}");
    client.batch_execute(&DDL.replace("{t}", &t)).await.unwrap();

    // Snapshot.
    client.batch_execute(&format!("INSERT INTO {t} {ROWS} FROM generate_series(1, {n_rows}) n")).await.unwrap();
    client.batch_execute(&format!("VACUUM ANALYZE {t}")).await.unwrap();
    let config = PostgresSourceConfig::new(&url, "public", &table);
    let mut source = PostgresSource::new(format!("{table}_snap"), config.clone()).unwrap();
    let started = Instant::now();
    source.open(None).await.unwrap();
    let copied = drain(&mut source, |_, end| matches!(end, PgPosition::Streaming { .. })).await;
    let snap_secs = started.elapsed().as_secs_f64();
    assert_eq!(copied as usize, n_rows);
    source.close().await.unwrap();
    rtsync_source_postgres::drop_replication_objects(&config, &format!("{table}_snap")).await.unwrap();
    println!(
        "snapshot: {n_rows} rows x 10 columns in {snap_secs:.2}s = {:.0} rows/s (peak RSS {:.0} MiB)",
        n_rows as f64 / snap_secs,
        rss_peak_mib()
    );

    // Streaming: two slots at the same point, the same changes, drained by rtsync and by
    // pg_recvlogical.
    client.batch_execute(&format!("TRUNCATE {t}")).await.unwrap();
    let mut stream_config = config.clone();
    stream_config.snapshot = SnapshotMode::Never;
    let task = format!("{table}_stream");
    let mut source = PostgresSource::new(&task, stream_config.clone()).unwrap();
    source.open(None).await.unwrap();
    let start = source.start_position().unwrap();
    let publication = source.publication_name().to_string();
    source.close().await.unwrap();
    let other_slot = format!("{table}_recvlogical");
    client.query_one("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&other_slot]).await.unwrap();
    let batch = 10_000;
    let mut done = 0;
    while done < n_changes {
        let k = batch.min(n_changes - done);
        client
            .batch_execute(&format!("INSERT INTO {t} {} FROM generate_series({}, {}) n", ROWS, done + 1, done + k))
            .await
            .unwrap();
        done += k;
    }
    let end: String = client.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);

    let started = Instant::now();
    let status = tokio::process::Command::new("pg_recvlogical")
        .args(["-d", &url, "--slot", &other_slot, "--start", "--no-loop", "--endpos", &end, "-f", "/dev/null"])
        .args(["-o", "proto_version=1", "-o", &format!("publication_names={publication}")])
        .status()
        .await
        .expect("running pg_recvlogical (postgresql-client)");
    let recv_secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "pg_recvlogical failed");

    let mut source = PostgresSource::new(&task, stream_config.clone()).unwrap();
    let started = Instant::now();
    source.open(Some(start)).await.unwrap();
    let streamed = drain(&mut source, |rows, _| rows as usize >= n_changes).await;
    let ours_secs = started.elapsed().as_secs_f64();
    source.close().await.unwrap();
    println!(
        "streaming: {streamed} inserts in {} transactions: rtsync {ours_secs:.2}s = {:.0} changes/s; pg_recvlogical {recv_secs:.2}s = {:.0} changes/s; ratio {:.0}% (peak RSS {:.0} MiB)",
        n_changes.div_ceil(batch),
        streamed as f64 / ours_secs,
        n_changes as f64 / recv_secs,
        100.0 * recv_secs / ours_secs,
        rss_peak_mib()
    );

    client.query_one("SELECT pg_drop_replication_slot($1)", &[&other_slot]).await.unwrap();
    rtsync_source_postgres::drop_replication_objects(&stream_config, &task).await.unwrap();
    client.batch_execute(&format!("DROP TABLE {t}")).await.unwrap();
}
