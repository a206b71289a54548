//! Three `rtsync serve` workers on one machine sharing a PostgreSQL catalog, with Kafka and
//! PostgreSQL tasks writing while workers are killed (SIGKILL), stopped gracefully (SIGTERM)
//! and paused past their lease (SIGSTOP, then SIGCONT): every task has one holder at a time,
//! the tasks of a lost worker run elsewhere, and every target table ends with each source row
//! exactly once.
//!
//! The lease TTL is 6 s here (20 s by default) so that the test takes minutes, not tens of
//! them. The failover and rebalance times it prints are figures, not assertions; the waits
//! have generous bounds only so that a hang fails instead of blocking.

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use daemon_support::Daemon;
use rtsync_core::arrow::array::AsArray;
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use serde_json::Value;

const TTL: &str = "6s";
const TTL_SECS: u64 = 6;
const WORKERS: usize = 3;
const KAFKA_TASKS: usize = 4;
const PG_TASKS: usize = 2;
/// A bound for waits that should take about a TTL (failover) or less.
const PATIENCE: Duration = Duration::from_secs(TTL_SECS * 6);

struct Pool {
    workers: Vec<Option<Daemon>>,
    dir: std::path::PathBuf,
    catalog: String,
    lake: String,
}

impl Pool {
    fn start(dir: &Path, catalog: &str) -> Self {
        let lake = dir.join("shared-lake").to_str().unwrap().to_string();
        let mut pool = Pool { workers: Vec::new(), dir: dir.to_path_buf(), catalog: catalog.to_string(), lake };
        for i in 0..WORKERS {
            let d = pool.spawn(i);
            pool.workers.push(Some(d));
        }
        pool
    }

    fn spawn(&self, i: usize) -> Daemon {
        let id = format!("w{i}");
        let args = ["--catalog", &self.catalog, "--lakehouse-root", &self.lake, "--lease-ttl", TTL, "--worker-id", &id];
        Daemon::start_with(&self.dir.join(&id), Daemon::free_port(), &args, &[])
    }

    fn worker(&self, i: usize) -> &Daemon {
        self.workers[i].as_ref().unwrap()
    }

    /// A running worker other than `not`, to ask.
    fn any(&self, not: Option<usize>) -> &Daemon {
        (0..WORKERS).filter(|i| Some(*i) != not).find_map(|i| self.workers[i].as_ref()).unwrap()
    }

    fn restart(&mut self, i: usize) {
        assert!(self.workers[i].is_none());
        self.workers[i] = Some(self.spawn(i));
    }

    fn logs(&self) -> String {
        self.workers.iter().flatten().map(|d| format!("---- {}\n{}", d.url, tail(&d.log_text()))).collect()
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// task → holder, from `workers list --format json` (id, address, tasks).
fn holders(d: &Daemon) -> BTreeMap<String, String> {
    let workers = d.json(&["workers", "list"]);
    let mut out = BTreeMap::new();
    for w in workers.as_array().unwrap() {
        assert!(w["address"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{w}");
        if w["state"] != "alive" {
            continue;
        }
        for t in w["tasks"].as_array().unwrap() {
            let previous = out.insert(t.as_str().unwrap().to_string(), w["id"].as_str().unwrap().to_string());
            assert!(previous.is_none(), "task {t} held by two workers: {workers:#}");
        }
    }
    out
}

/// Waits until `cond(holders)`; returns the holders and how long it took.
fn wait_holders(
    pool: &Pool,
    not: Option<usize>,
    what: &str,
    cond: impl Fn(&BTreeMap<String, String>) -> bool,
) -> (BTreeMap<String, String>, Duration) {
    let started = Instant::now();
    loop {
        let h = holders(pool.any(not));
        if cond(&h) {
            return (h, started.elapsed());
        }
        if started.elapsed() > PATIENCE * 2 {
            panic!("{what} did not happen within {:?}; holders {h:?}\n{}", PATIENCE * 2, pool.logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn held_by(h: &BTreeMap<String, String>, worker: &str) -> Vec<String> {
    h.iter().filter(|(_, w)| *w == worker).map(|(t, _)| t.clone()).collect()
}

/// Writes rows into every source until stopped; counts what it wrote.
struct Writers {
    stop: Arc<AtomicBool>,
    written: Vec<Arc<AtomicI64>>,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(servers: &str, topics: &[String], pg_tables: &[String]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut written = Vec::new();
        let mut handles = Vec::new();
        for topic in topics {
            let (stop, n, servers, topic) =
                (stop.clone(), Arc::new(AtomicI64::new(0)), servers.to_string(), topic.clone());
            written.push(n.clone());
            handles.push(tokio::task::spawn_blocking(move || {
                let p = producer(&servers);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..5 {
                        let id = n.fetch_add(1, Ordering::SeqCst);
                        send(&p, &topic, 0, &id.to_string(), Some(format!("{{\"id\":{id}}}").as_bytes()), None);
                    }
                    flush(&p);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }));
        }
        for table in pg_tables {
            let (stop, n, table) = (stop.clone(), Arc::new(AtomicI64::new(0)), table.clone());
            written.push(n.clone());
            handles.push(tokio::spawn(async move {
                let client = pg_connect().await;
                while !stop.load(Ordering::Relaxed) {
                    let from = n.load(Ordering::SeqCst);
                    client
                        .execute(&format!("INSERT INTO {table} SELECT g, 'v' || g FROM generate_series($1::bigint, $1::bigint + 4) g"), &[&from])
                        .await
                        .unwrap();
                    n.store(from + 5, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        Writers { stop, written, handles }
    }

    async fn finish(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        for h in std::mem::take(&mut self.handles) {
            h.await.unwrap();
        }
        self.written.iter().map(|n| n.load(Ordering::SeqCst)).collect()
    }
}

impl Drop for Writers {
    /// A failed assertion still ends the writers, so the test process exits.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn ids(table: &LakehouseSinkConfig) -> Vec<i64> {
    let mut out = Vec::new();
    for b in query_table(table, "SELECT id FROM t").await.unwrap_or_default() {
        let col = b.column(0).as_primitive::<Int64Type>();
        out.extend(col.values().iter().copied());
    }
    out
}

fn p50_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort();
    (s[s.len() / 2], *s.last().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_share_fail_over_and_fence_zombies() {
    let servers = bootstrap();
    let catalog = pg_database("scale_workers").await;
    let dir = tempfile::tempdir().unwrap();
    let mut pool = Pool::start(dir.path(), &catalog);

    // Sources: single-partition topics and PostgreSQL tables with a primary key.
    let topics: Vec<String> = (0..KAFKA_TASKS).map(|_| unique("scale_topic")).collect();
    for t in &topics {
        create_topic(&servers, t, 1).await;
    }
    let schema = unique("scale_src").to_lowercase();
    let pg = pg_connect().await;
    pg.batch_execute(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    let pg_tables: Vec<String> = (0..PG_TASKS).map(|i| format!("{schema}.items{i}")).collect();
    for t in &pg_tables {
        pg.batch_execute(&format!("CREATE TABLE {t} (id bigint PRIMARY KEY, v text NOT NULL)")).await.unwrap();
    }

    // Data sources and tasks, created and deployed through one worker.
    let w0 = pool.worker(0);
    w0.ok(&["datasource", "create", "kafka", "--type", "kafka", "--set", &format!("bootstrap.servers={servers}")]);
    w0.ok(&["datasource", "create", "pg", "--type", "postgresql", "--set", &format!("url={}", pg_url())]);
    w0.ok(&["vcluster", "create", "big", "--slots", "20"]);
    let mut tasks = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        let name = format!("k{i}");
        w0.ok(&["task", "create", &name, "--type", "REALTIME"]);
        w0.ok(&[
            "task",
            "configure",
            &name,
            "--source",
            "kafka",
            "--source-table",
            topic,
            "--sink-table",
            &name,
            "--start-offset",
            "earliest",
            "--column",
            "id=$.id:bigint",
            "--commit-interval",
            "300ms",
        ]);
        tasks.push(name);
    }
    // PostgreSQL tasks name their slot and publication after themselves: unique names, so
    // that runs of this test never meet another's.
    let pg_prefix = unique("p").to_lowercase();
    for i in 0..PG_TASKS {
        let name = format!("{pg_prefix}_{i}");
        w0.ok(&["task", "create", &name, "--type", "REALTIME"]);
        w0.ok(&[
            "task",
            "configure",
            &name,
            "--source",
            "pg",
            "--source-schema",
            &schema,
            "--source-table",
            &format!("items{i}"),
            "--sink-table",
            &name,
            "--commit-interval",
            "300ms",
        ]);
        tasks.push(name);
    }
    let writers = Writers::start(&servers, &topics, &pg_tables);
    for t in &tasks {
        let out = w0.ok(&["task", "deploy", t, "-y"]);
        assert!(out.contains("deployed as version 1"), "{out}");
    }

    // Every task has exactly one holder, and each worker its fair share (2 of 6).
    let share = tasks.len() / WORKERS;
    let all: BTreeSet<String> = tasks.iter().cloned().collect();
    let fair = |h: &BTreeMap<String, String>| {
        h.keys().cloned().collect::<BTreeSet<_>>() == all
            && (0..WORKERS).all(|i| held_by(h, &format!("w{i}")).len() == share)
    };
    let (h, spread_in) = wait_holders(&pool, None, "an even spread", fair);
    println!("spread: {h:?} after {spread_in:?}");
    for t in &tasks {
        let show = pool.worker(2).json(&["task", "show", t]);
        assert_eq!(show["status"]["worker"].as_str(), h.get(t).map(String::as_str), "task show names the holder");
    }
    let lake = pool.lake.clone();
    let table = |name: &str| LakehouseSinkConfig::new(&lake, "public", name);
    for t in &tasks {
        assert!(wait_rows(&table(t), 1, PATIENCE).await >= 1, "task {t} writes\n{}", pool.logs());
    }

    // SIGKILL each worker in turn: its tasks run elsewhere after the TTL; it comes back and
    // takes its share again.
    let mut failovers = Vec::new();
    let mut rebalances = Vec::new();
    for victim in 0..WORKERS {
        let id = format!("w{victim}");
        let before = holders(pool.any(None));
        let lost = held_by(&before, &id);
        pool.workers[victim].take().unwrap().kill();
        let (after, took) = wait_holders(&pool, Some(victim), "failover after SIGKILL", |h| {
            lost.iter().all(|t| h.get(t).is_some_and(|w| *w != id))
        });
        failovers.push(took);
        println!("SIGKILL {id}: its tasks {lost:?} held by {after:?} after {took:?}");
        for t in &lost {
            let w = &after[t];
            let rows_then = count_rows(&table(t)).await;
            assert!(
                wait_rows(&table(t), rows_then + 1, PATIENCE).await > rows_then,
                "task {t} writes again on {w}\n{}",
                pool.logs()
            );
        }
        pool.restart(victim);
        let (_, took) = wait_holders(&pool, None, "rebalance after a restart", fair);
        rebalances.push(took);
    }
    let (p50, max) = p50_max(&failovers);
    println!("failover after SIGKILL (TTL {TTL}): p50 {p50:?}, max {max:?} over {failovers:?}");
    let (p50, max) = p50_max(&rebalances);
    println!("rebalance after a worker joins: p50 {p50:?}, max {max:?} over {rebalances:?}");

    // SIGTERM: the worker commits, releases its leases and leaves; the others take the tasks
    // at their next round, without waiting for the TTL. Its attempts end as interrupted, not
    // lost.
    let victim = 1;
    let before = holders(pool.any(None));
    let moved = held_by(&before, "w1");
    let terminated_at = Instant::now();
    assert!(pool.workers[victim].take().unwrap().terminate().success());
    let (after, took) = wait_holders(&pool, Some(victim), "hand-off after SIGTERM", |h| {
        moved.iter().all(|t| h.get(t).is_some_and(|w| w != "w1"))
    });
    println!(
        "SIGTERM w1: {moved:?} held by {after:?} {took:?} after the exit ({:?} after the signal)",
        terminated_at.elapsed()
    );
    for t in &moved {
        let run = pool.any(Some(victim)).json(&["runs", "list", "--task", t])[0]["id"].as_i64().unwrap().to_string();
        let detail = pool.any(Some(victim)).json(&["runs", "detail", &run]);
        let mine: Vec<&Value> = detail["attempts"].as_array().unwrap().iter().filter(|a| a["worker"] == "w1").collect();
        let last = mine.last().unwrap_or_else(|| panic!("w1 ran {t}: {detail:#}"));
        assert_eq!(last["status"], "interrupted", "a graceful stop hands over, it is not lost: {detail:#}");
        assert_eq!(detail["run"]["status"], "running", "the run goes on on another worker");
    }
    pool.restart(victim);
    wait_holders(&pool, None, "rebalance after SIGTERM", fair);

    // A zombie: paused past its lease, others take its tasks and commit; when it resumes its
    // renewal finds the leases moved and it drops them; any commit it tries is fenced.
    let zombie = 2;
    let before = holders(pool.any(None));
    let taken = held_by(&before, "w2");
    let rows_before: Vec<u64> = {
        let mut v = Vec::new();
        for t in &taken {
            v.push(count_rows(&table(t)).await);
        }
        v
    };
    pool.worker(zombie).signal("STOP");
    let (after, took) = wait_holders(&pool, Some(zombie), "take-over from a paused worker", |h| {
        taken.iter().all(|t| h.get(t).is_some_and(|w| w != "w2"))
    });
    println!("SIGSTOP w2: {taken:?} held by {after:?} after {took:?}");
    // A Kafka task's new holder commits while the zombie sleeps. A PostgreSQL task's cannot:
    // the paused worker still holds the replication slot (until wal_sender_timeout), so its
    // new holder retries until the zombie wakes and drops the task.
    for (t, rows) in taken.iter().zip(&rows_before) {
        if !t.starts_with(&pg_prefix) {
            assert!(wait_rows(&table(t), rows + 1, PATIENCE).await > *rows, "the new holder of {t} commits");
        }
    }
    pool.worker(zombie).signal("CONT");
    for (t, rows) in taken.iter().zip(&rows_before) {
        assert!(
            wait_rows(&table(t), rows + 1, PATIENCE * 2).await > *rows,
            "the new holder of {t} commits\n{}",
            pool.logs()
        );
    }
    // The zombie's next round finds its leases moved: it holds none of those tasks until it
    // claims its share again (with a new epoch), and it logs that it dropped them.
    let started = Instant::now();
    while !pool.worker(zombie).log_text().contains("without a commit") {
        assert!(started.elapsed() < PATIENCE, "the zombie noticed nothing:\n{}", tail(&pool.worker(zombie).log_text()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_holders(&pool, None, "rebalance after the zombie woke", fair);

    // Exactly once: stop writing, let every task catch up, and compare each table with what
    // was written.
    let written = writers.finish().await;
    for (t, n) in tasks.iter().zip(&written) {
        let got = wait_rows(&table(t), *n as u64, PATIENCE * 2).await;
        let mut ids = ids(&table(t)).await;
        ids.sort_unstable();
        let len = ids.len();
        ids.dedup();
        assert_eq!(len, ids.len(), "task {t}: {} duplicated rows", len - ids.len());
        assert_eq!(got, *n as u64, "task {t}: {got} rows for {n} written\n{}", pool.logs());
        assert_eq!(ids, (0..*n).collect::<Vec<i64>>(), "task {t}: every id once");
    }
    // Undeploy drops the PostgreSQL tasks' slots and publications (a stop on another worker
    // waits for the holder to stop the task).
    for t in &tasks[KAFKA_TASKS..] {
        let out = pool.worker(0).ok(&["task", "undeploy", t, "-y"]);
        assert!(out.contains("undeployed"), "{out}");
    }
    for d in pool.workers.iter_mut() {
        let mut d = d.take().unwrap();
        assert!(d.terminate().success(), "{}", tail(&d.log_text()));
    }
    pg.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}
