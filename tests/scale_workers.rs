//! `rtsync serve` workers on one machine sharing a PostgreSQL catalog, with Kafka and
//! PostgreSQL tasks writing while workers are killed (SIGKILL), stopped gracefully (SIGTERM),
//! paused past their lease (SIGSTOP, then SIGCONT), restarted one by one (a rolling restart)
//! and cut off from their catalog (its PostgreSQL stopped for longer than the TTL): every
//! task has one holder at a time, the tasks of a lost worker run elsewhere, and every target
//! table ends with each source row exactly once.
//!
//! The lease TTL is 6 s here (20 s by default) so that the test takes minutes, not tens of
//! them. The failover, rebalance and hand-off times and the catalog's load it prints are
//! figures, not assertions; the waits have generous bounds only so that a hang fails instead
//! of blocking.
//!
//! **How many tasks.** 30 tasks on three workers (24 Kafka, 6 PostgreSQL; 10 per worker), each
//! a live pipeline with its own writer (a producer thread or an inserting connection) and a
//! 1 s commit interval, so that three workers and 30 writers fit on the two cores of the test
//! machine beside the Kafka and PostgreSQL servers. PostgreSQL tasks are fewer because each
//! holds a replication slot and a WAL sender of the shared test server (20 of each, shared by
//! every suite). The lease SQL itself is checked with 30 tasks and three concurrent claimers in
//! `crates/control/src/cluster.rs`.
//!
//! The two tests run one after the other (`SERIAL`): together they would overload the machine.

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
const KAFKA_TASKS: usize = 24;
const PG_TASKS: usize = 6;
/// The tests of this file take turns: each alone keeps the machine busy.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// A bound for waits that should take about a TTL (failover) or less.
const PATIENCE: Duration = Duration::from_secs(TTL_SECS * 6);

struct Pool {
    workers: Vec<Option<Daemon>>,
    dir: std::path::PathBuf,
    catalog: String,
    lake: String,
    /// The vcluster the workers serve.
    vcluster: &'static str,
}

impl Pool {
    fn start(dir: &Path, catalog: &str, workers: usize, vcluster: &'static str) -> Self {
        let lake = dir.join("shared-lake").to_str().unwrap().to_string();
        let mut pool =
            Pool { workers: Vec::new(), dir: dir.to_path_buf(), catalog: catalog.to_string(), lake, vcluster };
        for i in 0..workers {
            let d = pool.spawn(i);
            pool.workers.push(Some(d));
        }
        pool
    }

    fn spawn(&self, i: usize) -> Daemon {
        let id = format!("w{i}");
        let args = [
            "--catalog",
            &self.catalog,
            "--lakehouse-root",
            &self.lake,
            "--lease-ttl",
            TTL,
            "--worker-id",
            &id,
            "--vcluster",
            self.vcluster,
        ];
        Daemon::start_with(&self.dir.join(&id), Daemon::free_port(), &args, &[])
    }

    fn worker(&self, i: usize) -> &Daemon {
        self.workers[i].as_ref().unwrap()
    }

    /// A running worker other than `not`, to ask.
    fn any(&self, not: Option<usize>) -> &Daemon {
        (0..self.workers.len()).filter(|i| Some(*i) != not).find_map(|i| self.workers[i].as_ref()).unwrap()
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

/// Creates and configures a task reading `topic` (JSON rows `{"id": n}`) from the `kafka`
/// data source into the table `name`, on `vcluster`; returns its name.
fn kafka_task(d: &Daemon, name: &str, topic: &str, vcluster: &str) -> String {
    d.ok(&["task", "create", name, "--type", "REALTIME"]);
    d.ok(&[
        "task",
        "configure",
        name,
        "--source",
        "kafka",
        "--source-table",
        topic,
        "--sink-table",
        name,
        "--start-offset",
        "earliest",
        "--column",
        "id=$.id:bigint",
        "--commit-interval",
        "1s",
        "--vcluster",
        vcluster,
    ]);
    name.to_string()
}

/// Checks that every table holds each written id exactly once (after the writers stopped).
async fn assert_exactly_once(pool: &Pool, tasks: &[String], written: &[i64]) {
    for (t, n) in tasks.iter().zip(written) {
        let table = LakehouseSinkConfig::new(&pool.lake, "public", t);
        let got = wait_rows(&table, *n as u64, PATIENCE * 2).await;
        let mut ids = ids(&table).await;
        ids.sort_unstable();
        let len = ids.len();
        ids.dedup();
        assert_eq!(len, ids.len(), "task {t}: {} duplicated rows", len - ids.len());
        assert_eq!(got, *n as u64, "task {t}: {got} rows for {n} written\n{}", pool.logs());
        assert_eq!(ids, (0..*n).collect::<Vec<i64>>(), "task {t}: every id once");
    }
}

/// Watches the catalog's leases every 100 ms and records, per running task, the longest
/// time no worker held a live lease on it.
struct LeaseWatch {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<(Duration, String)>,
}

impl LeaseWatch {
    async fn start(catalog: &str) -> Self {
        let (client, conn) = tokio_postgres::connect(catalog, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let mut unowned_since: BTreeMap<String, Instant> = BTreeMap::new();
            let (mut longest, mut which) = (Duration::ZERO, String::new());
            while !flag.load(Ordering::Relaxed) {
                let rows = client
                    .query(
                        "SELECT t.name, coalesce(l.worker_id IS NOT NULL AND l.expires_at > now(), false)
                         FROM tasks t LEFT JOIN task_leases l ON l.task_id = t.id WHERE t.state = 'running'",
                        &[],
                    )
                    .await
                    .unwrap();
                let now = Instant::now();
                for r in rows {
                    let (name, owned): (String, bool) = (r.get(0), r.get(1));
                    if owned {
                        if let Some(since) = unowned_since.remove(&name)
                            && now - since > longest
                        {
                            (longest, which) = (now - since, name);
                        }
                    } else {
                        unowned_since.entry(name).or_insert(now);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // A task still unowned at the end counts up to now.
            let now = Instant::now();
            for (name, since) in unowned_since {
                if now - since > longest {
                    (longest, which) = (now - since, name);
                }
            }
            (longest, which)
        });
        LeaseWatch { stop, handle }
    }

    /// The longest gap seen and its task.
    async fn finish(self) -> (Duration, String) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.unwrap()
    }
}

/// Transactions committed in `database` so far (`pg_stat_database.xact_commit`).
async fn xact_commits(client: &tokio_postgres::Client, database: &str) -> i64 {
    client.query_one("SELECT xact_commit FROM pg_stat_database WHERE datname = $1", &[&database]).await.unwrap().get(0)
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
    let _serial = SERIAL.lock().await;
    // 30 tasks need more than the 8 slots of the `default` vcluster: these workers serve `big`.
    let mut pool = Pool::start(dir.path(), &catalog, WORKERS, "big");

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
    w0.ok(&["vcluster", "create", "big", "--slots", "40"]);
    let mut tasks = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        tasks.push(kafka_task(w0, &format!("k{i}"), topic, "big"));
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
            "1s",
            "--vcluster",
            "big",
        ]);
        tasks.push(name);
    }
    let writers = Writers::start(&servers, &topics, &pg_tables);
    for t in &tasks {
        let out = w0.ok(&["task", "deploy", t, "-y"]);
        assert!(out.contains("deployed as version 1"), "{out}");
    }

    // Every task has exactly one holder, and each worker its fair share (10 of 30).
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

    // The catalog's load in a steady state: transactions committed in the catalog database
    // over 10 s while nothing but the workers uses it.
    let catalog_db = catalog.rsplit_once('/').unwrap().1.to_string();
    let before = xact_commits(&pg, &catalog_db).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let commits = xact_commits(&pg, &catalog_db).await - before;
    println!(
        "catalog load with {} running tasks on {WORKERS} workers: {:.1} transactions/s in all, {:.1} per worker",
        tasks.len(),
        commits as f64 / 10.0,
        commits as f64 / 10.0 / WORKERS as f64
    );

    // A rolling restart under load: each worker in turn stops gracefully (SIGTERM); the
    // others take its tasks over; it comes back (as a replaced pod would) and takes its share
    // again; then the next one. No task is left without a live lease for long (the longest
    // gap is printed; the bound is generous: a hand-off takes about a round, a third of the
    // TTL).
    let watch = LeaseWatch::start(&catalog).await;
    let rolling = Instant::now();
    for i in 0..WORKERS {
        let id = format!("w{i}");
        let mut d = pool.workers[i].take().unwrap();
        let signalled = Instant::now();
        assert!(d.terminate().success(), "{}", tail(&d.log_text()));
        let exited = signalled.elapsed();
        let (_, moved) = wait_holders(&pool, Some(i), "hand-off in a rolling restart", |h| {
            h.len() == all.len() && h.values().all(|w| *w != id)
        });
        pool.restart(i);
        let (_, back) = wait_holders(&pool, None, "rebalance in a rolling restart", fair);
        println!(
            "rolling restart, {id}: exited {exited:?} after SIGTERM, its tasks held elsewhere {moved:?} later, even spread {back:?} after its restart"
        );
    }
    let (gap, gap_task) = watch.finish().await;
    println!(
        "rolling restart of {WORKERS} workers under load: {:?}; longest time a task had no live lease: {gap:?} ({gap_task}; TTL {TTL})",
        rolling.elapsed()
    );
    assert!(gap < Duration::from_secs(TTL_SECS * 3), "task {gap_task} had no holder for {gap:?}\n{}", pool.logs());

    // Exactly once: stop writing, let every task catch up, and compare each table with what
    // was written.
    let written = writers.finish().await;
    assert_exactly_once(&pool, &tasks, &written).await;
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

/// A PostgreSQL cluster of this test's own (initdb in a temporary directory, a free loopback
/// port), so that stopping it disturbs no other test. PostgreSQL refuses to run as root: then
/// it runs as the `postgres` OS user (as `scripts/services.sh` does), in a directory it owns.
struct PrivatePg {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    log: std::path::PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePg {
    fn is_root() -> bool {
        let out = std::process::Command::new("id").arg("-u").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    }

    /// Runs a PostgreSQL program (as `postgres` when this process is root).
    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let exe = self.bin.join(program);
        let mut cmd = if Self::is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        cmd.args(args).current_dir("/").output().unwrap()
    }

    fn init() -> Self {
        let mut bins: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's programs in /usr/lib/postgresql/*/bin (scripts/services.sh install postgres)")
            .map(|e| e.unwrap().path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        bins.sort_by_key(|b| b.parent().unwrap().file_name().unwrap().to_str().unwrap().parse::<u32>().unwrap_or(0));
        let bin = bins.pop().expect("initdb in /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pg");
        std::fs::create_dir(&root).unwrap();
        if Self::is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let st = std::process::Command::new("chown").args(["postgres:", root.to_str().unwrap()]).status().unwrap();
            assert!(st.success(), "chown postgres: {root:?}");
        }
        let pg =
            PrivatePg { bin, data: root.join("data"), log: root.join("log"), port: Daemon::free_port(), _dir: dir };
        let out = pg.run(
            "initdb",
            &["-D", pg.data.to_str().unwrap(), "-U", "rtsync", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
        );
        assert!(
            out.status.success(),
            "initdb: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nfsync = off\nmax_connections = 60\n",
            pg.port
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(pg.data.join("postgresql.conf")).unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        pg
    }

    fn url(&self) -> String {
        format!("postgres://rtsync@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let out = self.run(
            "pg_ctl",
            &["-D", self.data.to_str().unwrap(), "-l", self.log.to_str().unwrap(), "-w", "-t", "60", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// A fast shutdown: every connection is ended at once.
    fn stop(&self) {
        let out = self.run("pg_ctl", &["-D", self.data.to_str().unwrap(), "-m", "fast", "-w", "-t", "60", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let _ = self.run("pg_ctl", &["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
        }
    }
}

fn occurrences(pool: &Pool, needle: &str) -> usize {
    pool.workers.iter().flatten().map(|d| d.log_text().matches(needle).count()).sum()
}

/// Workers cut off from their catalog (its PostgreSQL stopped for twice the TTL) stop their
/// tasks by their own clock, without a commit; when the catalog is back they claim the tasks
/// again and every table ends exactly-once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_cut_off_from_the_catalog_stop_and_resume() {
    const CUT_WORKERS: usize = 2;
    const CUT_TASKS: usize = 4;
    let _serial = SERIAL.lock().await;
    let servers = bootstrap();
    let catalog_pg = PrivatePg::init();
    catalog_pg.start();
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::start(dir.path(), &catalog_pg.url(), CUT_WORKERS, "default");
    let topics: Vec<String> = (0..CUT_TASKS).map(|_| unique("cut_topic")).collect();
    for t in &topics {
        create_topic(&servers, t, 1).await;
    }
    let w0 = pool.worker(0);
    w0.ok(&["datasource", "create", "kafka", "--type", "kafka", "--set", &format!("bootstrap.servers={servers}")]);
    let tasks: Vec<String> =
        topics.iter().enumerate().map(|(i, t)| kafka_task(w0, &format!("c{i}"), t, "default")).collect();
    let writers = Writers::start(&servers, &topics, &[]);
    for t in &tasks {
        assert!(w0.ok(&["task", "deploy", t, "-y"]).contains("deployed as version 1"));
    }
    let all: BTreeSet<String> = tasks.iter().cloned().collect();
    let share = CUT_TASKS / CUT_WORKERS;
    let fair = |h: &BTreeMap<String, String>| {
        h.keys().cloned().collect::<BTreeSet<_>>() == all
            && (0..CUT_WORKERS).all(|i| held_by(h, &format!("w{i}")).len() == share)
    };
    wait_holders(&pool, None, "an even spread", fair);
    let table = |name: &str| LakehouseSinkConfig::new(&pool.lake, "public", name);
    for t in &tasks {
        assert!(wait_rows(&table(t), 1, PATIENCE).await >= 1, "task {t} writes\n{}", pool.logs());
    }

    // The catalog goes away. Each worker's watchdog stops its tasks once its last renewal
    // plus the TTL less the margin has passed: no more commits while the writers go on.
    let cut = "no lease renewal for the TTL less its margin";
    let seen_before = occurrences(&pool, cut);
    let cut_at = Instant::now();
    catalog_pg.stop();
    while occurrences(&pool, cut) < seen_before + CUT_TASKS {
        assert!(
            cut_at.elapsed() < PATIENCE,
            "the workers did not stop their tasks without the catalog\n{}",
            pool.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("catalog stopped: every task stopped by its worker's own clock after {:?} (TTL {TTL})", cut_at.elapsed());
    let mut frozen = Vec::new();
    for t in &tasks {
        frozen.push(count_rows(&table(t)).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (t, n) in tasks.iter().zip(&frozen) {
        assert_eq!(count_rows(&table(t)).await, *n, "task {t} still commits without its lease\n{}", pool.logs());
    }
    // Down for twice the TTL in all, then back.
    let down_for = Duration::from_secs(TTL_SECS * 2);
    if let Some(rest) = down_for.checked_sub(cut_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    catalog_pg.start();
    let back_at = Instant::now();
    println!("catalog back after {:?}", cut_at.elapsed());

    // The workers reach it again, claim the tasks anew and the tables grow again.
    let (h, took) = wait_holders(&pool, None, "claims after the catalog came back", fair);
    println!("every task held again {took:?} after the catalog came back: {h:?}");
    for (t, n) in tasks.iter().zip(&frozen) {
        assert!(wait_rows(&table(t), n + 1, PATIENCE).await > *n, "task {t} writes again\n{}", pool.logs());
    }
    println!("every table grows again {:?} after the catalog came back", back_at.elapsed());
    // The task's runs say why its attempt ended.
    for t in &tasks {
        let run = w0.json(&["runs", "list", "--task", t])[0]["id"].as_i64().unwrap().to_string();
        let detail = w0.json(&["runs", "detail", &run]);
        let attempts = detail["attempts"].as_array().unwrap();
        assert!(
            attempts.iter().any(|a| a["status"] == "lost" && a["error"].as_str().is_some_and(|e| e.contains("lease"))),
            "an attempt of {t} ended as lost for want of its lease: {detail:#}"
        );
    }

    let written = writers.finish().await;
    assert_exactly_once(&pool, &tasks, &written).await;
    let mut pool = pool;
    for d in pool.workers.iter_mut() {
        let mut d = d.take().unwrap();
        assert!(d.terminate().success(), "{}", tail(&d.log_text()));
    }
}

/// Figures at 100 deployed tasks (idle Kafka tasks, all reading one empty topic): the
/// catalog's load per worker (`pg_stat_database.xact_commit` of the catalog database over
/// 15 s with nothing else using it) with two workers and then three, and the time until the
/// tasks are spread evenly again after the third worker joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn catalog_load_at_100_tasks() {
    const TASKS: usize = 100;
    let _serial = SERIAL.lock().await;
    let servers = bootstrap();
    let catalog = pg_database("scale_load").await;
    let catalog_db = catalog.rsplit_once('/').unwrap().1.to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut pool = Pool::start(dir.path(), &catalog, 2, "load");
    let topic = unique("load_topic");
    create_topic(&servers, &topic, 1).await;
    let w0 = pool.worker(0);
    w0.ok(&["datasource", "create", "kafka", "--type", "kafka", "--set", &format!("bootstrap.servers={servers}")]);
    w0.ok(&["vcluster", "create", "load", "--slots", "100"]);
    let deploying = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let name = kafka_task(w0, &format!("l{i}"), &topic, "load");
        assert!(w0.ok(&["task", "deploy", &name, "-y"]).contains("deployed as version 1"));
        tasks.push(name);
    }
    let all: BTreeSet<String> = tasks.iter().cloned().collect();
    let spread = |workers: usize| {
        let all = all.clone();
        move |h: &BTreeMap<String, String>| {
            h.keys().cloned().collect::<BTreeSet<_>>() == all
                && (0..workers).all(|i| held_by(h, &format!("w{i}")).len() <= TASKS.div_ceil(workers))
        }
    };
    let (_, took) = wait_holders(&pool, None, "100 tasks held by two workers", spread(2));
    println!(
        "{TASKS} tasks deployed and held by 2 workers {:?} after the first deploy ({took:?} after the last)",
        deploying.elapsed()
    );

    let pg = pg_connect().await;
    let load = |workers: usize| {
        let (pg, catalog_db) = (&pg, &catalog_db);
        async move {
            // Let the starts settle, then count.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let before = xact_commits(pg, catalog_db).await;
            tokio::time::sleep(Duration::from_secs(15)).await;
            let per_s = (xact_commits(pg, catalog_db).await - before) as f64 / 15.0;
            println!(
                "catalog load with {TASKS} running tasks on {workers} workers: {per_s:.1} transactions/s in all, {:.1} per worker",
                per_s / workers as f64
            );
            assert!(per_s > 0.0, "the workers renew their leases in the catalog");
        }
    };
    load(2).await;

    let joined = Instant::now();
    pool.workers.push(Some(pool.spawn(2)));
    let (h, took) = wait_holders(&pool, None, "rebalance after a third worker joined", spread(3));
    let counts: Vec<usize> = (0..3).map(|i| held_by(&h, &format!("w{i}")).len()).collect();
    println!(
        "rebalance of {TASKS} tasks after a third worker joined: {took:?} ({:?} after its start); tasks per worker {counts:?}",
        joined.elapsed()
    );
    load(3).await;

    for d in pool.workers.iter_mut() {
        let mut d = d.take().unwrap();
        assert!(d.terminate().success(), "{}", tail(&d.log_text()));
    }
}
