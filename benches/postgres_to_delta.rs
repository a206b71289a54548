//! End-to-end throughput of a PostgreSQL table → Delta through the real task (logical
//! replication, pgoutput → upsert MERGE), against the server of `scripts/services.sh`.
//!
//! Not a test: it prints figures.
//!
//! ```text
//! eval "$(scripts/services.sh env)"
//! cargo bench --bench postgres_to_delta -- [--rows N] [--changes M] [--updates PCT] [--deletes PCT]
//!                                          [--txn-rows K] [--no-catch-up]
//! ```
//!
//! Phase 1 (snapshot): a 10-column table of N rows (default 1,000,000) is synced by one task
//! started in this process; rows/s from the task's start to the Delta commit holding the last
//! row. Phase 2 (live streaming): with the task running and idle, M rows (default 500,000) are
//! inserted in transactions of K (default 1,000), each also updating PCT% (default 20) and
//! deleting PCT% (default 10) as many existing rows spread over the table; changes/s from the
//! first change to the Delta commit holding the last one. In the same run `pg_recvlogical`
//! drains a pgoutput slot created right before the first change up to the WAL position after
//! the last, so the report sets rtsync's rate against the server's own sender. Phase 3
//! (catch-up): the task is stopped, the same mix written again, and the restarted task's drain
//! of that backlog timed: the like-for-like comparison with `pg_recvlogical`, which also
//! reads a backlog. After each phase the Delta table must equal the source (count and a
//! checksum over every column). Peak RSS is per phase (VmHWM, reset between phases); commit
//! latency is the engine's time for each Delta commit (MERGE or append plus the log write).
//! The Delta log of each phase tells what was written: files, bytes, and for MERGEs the
//! unchanged rows rewritten alongside the changed ones (delta-rs's own metrics).
//!
//! With `--steady-updates R` the phases after the snapshot are replaced by a steady stream of
//! random single-row updates (the freshness test of merge-on-read): the task is restarted (its
//! key index catches up on the whole table), then R updates a second of rows picked at random
//! over the whole table, `--txn-updates K` (default 50) per transaction, for `--seconds S`
//! (default 60). Reported: source commit → Delta commit freshness p50/p99/max, how long after
//! the last source commit the table converged, peak RSS, and the bytes the commits wrote per
//! changed row (new data files plus deletion vectors). `--apply copy_on_write` runs the same on
//! a copy-on-write table for comparison.
//!
//! The bench's slots, publication and table are dropped at the end, also when it fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use rtsync::{SourceSpec, TaskSpec};
use rtsync_sink_lakehouse::LakehouseSinkConfig;
use tokio_postgres::{Client, NoTls};

const DDL: &str = "CREATE TABLE {t} (id bigint PRIMARY KEY, a int, b bigint, c text, d numeric(12,2), e float8, \
                   f timestamptz, g bool, h varchar(32), i date)";
/// The row of key `n`, as a SELECT list over `generate_series(…) n`.
const ROWS: &str = "SELECT n, n % 1000, n * 7, 'customer-' || n, (n % 100000) / 100.0, n / 3.0, \
                    timestamptz '2024-01-01' + n * interval '1 second', n % 2 = 0, md5(n::text), date '2024-01-01' + (n % 365)";
const UPDATE: &str = "UPDATE {t} SET a = a + 1, c = 'upd-' || id, d = d + 1, h = left(h, 16), \
                      f = f + interval '1 hour' WHERE id = ANY($1)";
/// [`common::DELTA_CHECKSUM`] in PostgreSQL's dialect.
const CHECKSUM: &str = "SELECT count(*)::bigint, sum(id)::bigint, sum(a)::bigint, sum(b)::bigint, (sum(d) * 100)::bigint, \
     sum(length(c))::bigint, sum(length(h))::bigint, sum(g::int)::bigint, sum(i - date '1970-01-01')::bigint, \
     sum(floor(extract(epoch FROM f)))::bigint, sum(floor(e))::bigint FROM {t}";

#[derive(Clone)]
struct Names {
    table: String,
    task: String,
    /// The slot `pg_recvlogical` drains.
    recv_slot: String,
}

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connecting to RTSYNC_PG_URL");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

async fn checksum(client: &Client, table: &str) -> Vec<i64> {
    let row = client.query_one(&CHECKSUM.replace("{t}", table), &[]).await.unwrap();
    (0..row.len()).map(|i| row.get::<_, Option<i64>>(i).unwrap_or(0)).collect()
}

async fn lsn(client: &Client) -> String {
    client.query_one("SELECT pg_current_wal_lsn()::text", &[]).await.unwrap().get(0)
}

/// Writes one streaming phase of the plan as fast as one connection can.
async fn write_changes(client: &Client, table: &str, plan: &mut ChangePlan, sizes: &Sizes) -> Applied {
    let insert = format!("INSERT INTO {table} {ROWS} FROM generate_series($1::int, $2::int) n");
    let insert = client.prepare(&insert).await.unwrap();
    let update = client.prepare(&UPDATE.replace("{t}", table)).await.unwrap();
    let delete = client.prepare(&format!("DELETE FROM {table} WHERE id = ANY($1)")).await.unwrap();
    let mut applied = Applied::default();
    let started = Instant::now();
    let mut left = sizes.changes;
    while left > 0 {
        let k = left.min(sizes.txn_rows);
        let txn = plan.next(k);
        client.batch_execute("BEGIN").await.unwrap();
        applied.inserts += client.execute(&insert, &[&(txn.insert.0 as i32), &(txn.insert.1 as i32)]).await.unwrap();
        if !txn.update.is_empty() {
            applied.updates += client.execute(&update, &[&txn.update]).await.unwrap();
        }
        if !txn.delete.is_empty() {
            applied.deletes += client.execute(&delete, &[&txn.delete]).await.unwrap();
        }
        client.batch_execute("COMMIT").await.unwrap();
        applied.transactions += 1;
        left -= k;
    }
    applied.elapsed = started.elapsed();
    applied
}

/// `pg_recvlogical` of the newest PostgreSQL under /usr/lib/postgresql (Debian), else on PATH.
fn pg_recvlogical() -> String {
    let mut found: Vec<(u32, String)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin/pg_recvlogical");
            bin.exists().then(|| (version, bin.to_string_lossy().into_owned()))
        })
        .collect();
    found.sort();
    found.pop().map_or_else(|| "pg_recvlogical".to_string(), |(_, bin)| bin)
}

fn spec(url: &str, names: &Names, root: &str) -> TaskSpec {
    let apply: String = arg("--apply", "merge_on_read".to_string());
    TaskSpec::from_toml(&format!(
        "name = \"{}\"\n[source]\ntype = \"postgresql\"\nurl = \"{url}\"\nschema = \"public\"\ntable = \"{}\"\n\
         [sink]\nroot = \"{root}\"\nschema = \"bench\"\ntable = \"{}\"\napply = \"{apply}\"\n",
        names.task, names.table, names.table
    ))
    .expect("bench spec")
}

async fn bench(url: String, names: Names, root: String, sizes: Sizes) {
    let client = connect(&url).await;
    let t = format!("public.{}", names.table);
    let version: String = client.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    client.batch_execute(&DDL.replace("{t}", &t)).await.unwrap();
    eprintln!("loading {} rows …", sizes.rows);
    let mut from = 1;
    while from <= sizes.rows {
        let to = (from + 199_999).min(sizes.rows);
        client.batch_execute(&format!("INSERT INTO {t} {ROWS} FROM generate_series({from}, {to}) n")).await.unwrap();
        from = to + 1;
    }
    client.batch_execute(&format!("VACUUM ANALYZE {t}")).await.unwrap();
    let spec = spec(&url, &names, &root);
    let SourceSpec::Postgresql(source) = &spec.source else { unreachable!() };
    let publication = source.publication_name(&names.task);
    let target = LakehouseSinkConfig::new(&root, "bench", &names.table);
    let timeout = Duration::from_secs(600 + sizes.rows.max(sizes.changes) / 500);
    println!(
        "postgres_to_delta: PostgreSQL {version}, 10-column table, commit_interval {:?}, snapshot_chunk_rows {}",
        spec.commit_interval, source.snapshot_chunk_rows
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
    assert_converged("snapshot", &checksum(&client, &t).await, &delta_checksum(&target).await);
    println!(
        "snapshot: {} rows x 10 columns into Delta in {:.2}s = {:.0} rows/s; {commits}; peak RSS {rss:.0} MiB; Delta = source",
        sizes.rows,
        elapsed.as_secs_f64(),
        rate(sizes.rows, elapsed),
    );
    println!("  {}", log_since(&target, v0));

    let steady: u64 = arg("--steady-updates", 0u64);
    if steady > 0 {
        running.stop().await;
        steady_updates(&client, &t, &spec, &target, sizes.rows, steady).await;
        return;
    }

    // Phase 2: live streaming, and pg_recvlogical over the same WAL.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut plan = ChangePlan::new(&sizes);
    client.query_one("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", &[&names.recv_slot]).await.unwrap();
    let start_lsn = lsn(&client).await;
    let base = running.rows_out();
    let mark = running.mark();
    let v0 = delta_version(&target);
    reset_peak_rss();
    let started = Instant::now();
    let applied = write_changes(&client, &t, &mut plan, &sizes).await;
    let end_lsn = lsn(&client).await;
    let done = running.wait_rows(base + applied.changes(), timeout).await;
    let elapsed = done - started;
    let commits = running.commits_since(&mark);
    let rss = peak_rss_mib();
    let freshness = running.metrics.freshness();
    assert_converged("live streaming", &checksum(&client, &t).await, &delta_checksum(&target).await);
    let wal_bytes: f64 = client
        .query_one("SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8", &[&end_lsn, &start_lsn])
        .await
        .unwrap()
        .get(0);
    let recvlogical = pg_recvlogical();
    let recv = time_command(
        &recvlogical,
        &[
            "-d".into(),
            url.clone(),
            "--slot".into(),
            names.recv_slot.clone(),
            "--start".into(),
            "--no-loop".into(),
            "--endpos".into(),
            end_lsn.clone(),
            "-f".into(),
            "/dev/null".into(),
            "-o".into(),
            "proto_version=1".into(),
            "-o".into(),
            format!("publication_names={publication}"),
        ],
    )
    .await;
    client.query_one("SELECT pg_drop_replication_slot($1)", &[&names.recv_slot]).await.unwrap();
    let n = applied.changes();
    println!("streaming (live): {}, {:.0} MB of WAL", applied.describe(sizes.txn_rows), wal_bytes / 1e6);
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
        "                   {commits}; source commit → Delta commit p50 {} ms, p99 {} ms; peak RSS {rss:.0} MiB",
        freshness.quantile(0.5),
        freshness.quantile(0.99)
    );
    println!("                   {}", log_since(&target, v0));
    let recv_rate = match &recv {
        Ok(d) => {
            println!(
                "  pg_recvlogical:  same WAL range, pgoutput to /dev/null, in {:.2}s = {:.0} changes/s (the server's sender ceiling); rtsync live = {:.0}% of it",
                d.as_secs_f64(),
                rate(n, *d),
                100.0 * rate(n, elapsed) / rate(n, *d)
            );
            Some(rate(n, *d))
        }
        Err(e) => {
            println!("  pg_recvlogical could not run: {e}");
            None
        }
    };

    // Phase 3: catch-up on a backlog of the same mix.
    if sizes.catch_up {
        running.stop().await;
        let applied = write_changes(&client, &t, &mut plan, &sizes).await;
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
        assert_converged("catch-up", &checksum(&client, &t).await, &delta_checksum(&target).await);
        let n = applied.changes();
        let versus = recv_rate
            .map(|r| format!(" = {:.0}% of pg_recvlogical's rate", 100.0 * rate(n, elapsed) / r))
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

/// A small deterministic generator for the random keys (xorshift64*).
struct Keys(u64);

impl Keys {
    /// A key in `1..=rows`.
    fn next(&mut self, rows: u64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % rows + 1) as i64
    }
}

/// `--steady-updates`: random single-row updates over the whole table at a steady rate.
async fn steady_updates(
    client: &Client,
    t: &str,
    spec: &TaskSpec,
    target: &LakehouseSinkConfig,
    rows: u64,
    per_sec: u64,
) {
    let per_txn: u64 = arg("--txn-updates", 50u64).max(1);
    let seconds: u64 = arg("--seconds", 60u64).max(1);
    let update = client.prepare(&UPDATE.replace("{t}", t)).await.unwrap();
    let mut keys = Keys(0x9E37_79B9_7F4A_7C15);

    // The restart: the task opens the table and catches its key index up on every file, then
    // one probe update shows it streams.
    reset_peak_rss();
    let started = Instant::now();
    let mut running = Running::start(spec);
    client.execute(&update, &[&vec![keys.next(rows)]]).await.unwrap();
    running.wait_rows(1, Duration::from_secs(3600)).await;
    println!(
        "restart: task started, key index caught up on {rows} rows and the first change committed in {:.2}s; peak RSS {:.0} MiB",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = running.rows_out();
    let mark = running.mark();
    let v0 = delta_version(target);
    let fresh_before = running.metrics.freshness();
    reset_peak_rss();
    let txns = per_sec * seconds / per_txn;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(per_txn as f64 / per_sec as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut updated = 0u64;
    for _ in 0..txns {
        tick.tick().await;
        let ids: Vec<i64> = (0..per_txn).map(|_| keys.next(rows)).collect();
        updated += client.execute(&update, &[&ids]).await.unwrap();
    }
    let wrote = started.elapsed();
    let done = running.wait_rows(base + updated, Duration::from_secs(600)).await;
    let commits = running.commits_since(&mark);
    let rss = peak_rss_mib();
    let fresh = running.metrics.freshness().since(&fresh_before);
    running.stop().await;
    assert_converged("steady updates", &checksum(client, t).await, &delta_checksum(target).await);
    let log = log_since(target, v0);
    println!(
        "steady updates: {updated} random single-row updates over {rows} rows, {per_sec}/s in transactions of {per_txn}, for {:.1}s (apply = {})",
        wrote.as_secs_f64(),
        arg("--apply", "merge_on_read".to_string())
    );
    println!(
        "  source commit → Delta commit: p50 {} ms, p99 {} ms, max {} ms; Delta converged {:.2}s after the last source commit; Delta = source",
        fresh.quantile(0.5),
        fresh.quantile(0.99),
        fresh.quantile(1.0),
        (done - started).saturating_sub(wrote).as_secs_f64()
    );
    println!("  {commits}; peak RSS {rss:.0} MiB");
    println!("  {log}");
    println!(
        "  bytes written by the task's commits per changed row: {:.0} (new data files {:.1} MB + deletion vectors {:.1} kB, over {updated} rows)",
        (log.bytes_added + log.dv_bytes) as f64 / updated.max(1) as f64,
        log.bytes_added as f64 / 1e6,
        log.dv_bytes as f64 / 1e3
    );
}

/// Drops what the bench created on the server; objects already gone are fine.
async fn clean_up(url: &str, names: &Names, root: &str) {
    let spec = spec(url, names, root);
    let SourceSpec::Postgresql(source) = &spec.source else { unreachable!() };
    if let Err(e) = rtsync_source_postgres::drop_replication_objects(source, &names.task).await {
        eprintln!("dropping the task's slot and publication: {}", e.report());
    }
    let client = connect(url).await;
    let _ = client
        .execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
            &[&names.recv_slot],
        )
        .await;
    let _ = client.batch_execute(&format!("DROP TABLE IF EXISTS public.{}", names.table)).await;
}

#[tokio::main]
async fn main() {
    log_from_env();
    let url = std::env::var("RTSYNC_PG_URL").expect("RTSYNC_PG_URL is not set: eval \"$(scripts/services.sh env)\"");
    let sizes = Sizes::from_args();
    let stamp = std::process::id();
    let names = Names {
        table: format!("bench_pipe_{stamp}"),
        task: format!("bench_pg_delta_{stamp}"),
        recv_slot: format!("bench_recvlogical_{stamp}"),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf8 path").to_string();
    let outcome = tokio::spawn(bench(url.clone(), names.clone(), root.clone(), sizes)).await;
    clean_up(&url, &names, &root).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
