//! What the CDC pipeline benches share: flags, the change mix both databases apply, the
//! in-process task with its commit-latency sampler, the Delta checksum, and peak RSS.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtsync::{RunOptions, TaskSpec, run_task};
use rtsync_core::SyncResult;
use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_engine::TaskMetrics;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The value after `--name` on the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// With `RTSYNC_LOG` set (e.g. `RTSYNC_LOG=rtsync=debug`), the task's log goes to stderr: to see
/// what a slow commit or a maintenance round did during a bench.
pub fn log_from_env() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RTSYNC_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
}

pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// The benches' sizes and change mix, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Rows in the table before the task starts (the snapshot).
    pub rows: u64,
    /// Rows inserted while streaming (per streaming phase).
    pub changes: u64,
    /// Updates, in percent of `changes`.
    pub update_pct: u64,
    /// Deletes, in percent of `changes`.
    pub delete_pct: u64,
    /// Inserts per source transaction (its updates and deletes come in the same transaction).
    pub txn_rows: u64,
    /// Also measure catching up on a backlog (the task stopped while the changes are written).
    pub catch_up: bool,
}

impl Sizes {
    pub fn from_args() -> Self {
        Self {
            rows: arg("--rows", 1_000_000u64).max(10),
            changes: arg("--changes", 500_000u64),
            update_pct: arg("--updates", 20u64),
            delete_pct: arg("--deletes", 10u64),
            txn_rows: arg("--txn-rows", 1_000u64).max(1),
            catch_up: !flag("--no-catch-up"),
        }
    }
}

/// Where each transaction's inserts, updates and deletes go, as one deterministic stream over
/// both streaming phases. Inserts take new keys after the snapshot's `1..=rows`. Updates and
/// deletes hit snapshot rows spread over the whole key range (a permutation by a prime stride),
/// so a commit's MERGE touches files across the table as OLTP traffic does: deletes take keys
/// that are multiples of 10, each once; updates take the other keys (never deleted), so each
/// update changes exactly one existing row.
pub struct ChangePlan {
    rows: u64,
    update_pct: u64,
    delete_pct: u64,
    next_insert: u64,
    inserted: u64,
    updates: u64,
    deletes: u64,
}

/// One source transaction of the plan.
pub struct Txn {
    /// Inclusive range of new keys.
    pub insert: (u64, u64),
    pub update: Vec<i64>,
    pub delete: Vec<i64>,
}

impl ChangePlan {
    pub fn new(sizes: &Sizes) -> Self {
        Self {
            rows: sizes.rows,
            update_pct: sizes.update_pct,
            delete_pct: sizes.delete_pct,
            next_insert: sizes.rows + 1,
            inserted: 0,
            updates: 0,
            deletes: 0,
        }
    }

    /// Keys that may be deleted: the multiples of 10 in `1..=rows`.
    fn delete_class(&self) -> u64 {
        self.rows / 10
    }

    fn update_class(&self) -> u64 {
        self.rows - self.rows / 10
    }

    /// The next transaction, with `inserts` new rows and its share of updates and deletes.
    pub fn next(&mut self, inserts: u64) -> Txn {
        let insert = (self.next_insert, self.next_insert + inserts - 1);
        self.next_insert += inserts;
        self.inserted += inserts;
        let want_updates = self.inserted * self.update_pct / 100;
        let want_deletes = (self.inserted * self.delete_pct / 100).min(self.delete_class());
        let (ru, rd) = (self.update_class(), self.delete_class());
        let update = (self.updates..want_updates)
            .map(|j| {
                let idx = permute(j, ru);
                ((idx / 9) * 10 + idx % 9 + 1) as i64
            })
            .collect();
        let delete = (self.deletes..want_deletes).map(|j| (10 * (permute(j, rd) + 1)) as i64).collect();
        self.updates = want_updates;
        self.deletes = want_deletes;
        Txn { insert, update, delete }
    }
}

/// `j mod n` scattered over `0..n`: a bijection for `j` in `0..n`.
fn permute(j: u64, n: u64) -> u64 {
    const PRIMES: [u64; 3] = [1_000_003, 999_983, 7_919];
    let p = PRIMES.iter().copied().find(|p| !n.is_multiple_of(*p)).unwrap_or(1);
    ((j % n) * (p % n)) % n
}

/// One task running in this process, with a sampler recording each commit's latency.
pub struct Running {
    pub metrics: Arc<TaskMetrics>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<SyncResult<()>>>,
    latencies: Arc<Mutex<Vec<u64>>>,
    sampler: JoinHandle<()>,
}

impl Running {
    pub fn start(spec: &TaskSpec) -> Self {
        let metrics = Arc::new(TaskMetrics::default());
        let (stop, shutdown) = watch::channel(false);
        let task = {
            let spec = spec.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move { run_task(&spec, RunOptions { metrics, shutdown, retry: false }).await })
        };
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let sampler = {
            let (metrics, latencies) = (metrics.clone(), latencies.clone());
            tokio::spawn(async move {
                // The engine stores a commit's epoch after its count and latency: a new epoch
                // means both are readable. Commits closer than the poll (rare: one per commit
                // interval) share their summed latency.
                let (mut epoch, mut commits, mut total) = (0, 0, 0);
                loop {
                    let e = metrics.epoch.load(Ordering::Acquire);
                    if e != epoch {
                        epoch = e;
                        let (c, t) = (
                            metrics.commits.load(Ordering::Acquire),
                            metrics.commit_latency_ms_total.load(Ordering::Acquire),
                        );
                        if c > commits {
                            let each = (t - total) / (c - commits);
                            latencies.lock().unwrap().extend(std::iter::repeat_n(each, (c - commits) as usize));
                        }
                        (commits, total) = (c, t);
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        Self { metrics, stop, task: Some(task), latencies, sampler }
    }

    pub fn rows_out(&self) -> u64 {
        self.metrics.rows_out.load(Ordering::Relaxed)
    }

    /// Waits until `rows` rows were committed in all; the instant the commit holding the last
    /// one returned (±5 ms).
    pub async fn wait_rows(&mut self, rows: u64, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            if self.rows_out() >= rows {
                let at = Instant::now();
                // The engine counts the rows before it records the commit's latency and
                // freshness (synchronously, on its own thread): let it finish.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return at;
            }
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let result = self.task.take().unwrap().await;
                panic!("the task ended early: {result:?}");
            }
            assert!(Instant::now() < deadline, "{} of {rows} rows committed after {timeout:?}", self.rows_out());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A mark for [`Running::commits_since`].
    pub fn mark(&self) -> CommitMark {
        CommitMark {
            commits: self.metrics.commits.load(Ordering::Relaxed),
            latency_total: self.metrics.commit_latency_ms_total.load(Ordering::Relaxed),
            sampled: self.latencies.lock().unwrap().len(),
        }
    }

    /// The commits made since `mark`.
    pub fn commits_since(&self, mark: &CommitMark) -> Commits {
        let commits = self.metrics.commits.load(Ordering::Relaxed) - mark.commits;
        let total = self.metrics.commit_latency_ms_total.load(Ordering::Relaxed) - mark.latency_total;
        let mut sampled: Vec<u64> = self.latencies.lock().unwrap()[mark.sampled..].to_vec();
        sampled.sort_unstable();
        let q = |q: f64| sampled.get(((sampled.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
        Commits {
            count: commits,
            mean_ms: total as f64 / commits.max(1) as f64,
            p50_ms: q(0.5),
            max_ms: sampled.last().copied().unwrap_or(0),
        }
    }

    /// Asks the task to stop (it commits what it holds) and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.await.expect("the task panicked").expect("the task failed");
        }
    }
}

impl Drop for Running {
    /// On a panic in the bench the task still stops, so it releases its slot / binlog
    /// connection before the clean-up drops them.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.sampler.abort();
    }
}

pub struct CommitMark {
    commits: u64,
    latency_total: u64,
    sampled: usize,
}

/// Delta commits of a phase: how many, and how long each took (the sink's MERGE or append plus
/// the commit, as the engine times it).
pub struct Commits {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: u64,
    pub max_ms: u64,
}

impl std::fmt::Display for Commits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} Delta commits, commit latency mean {:.0} ms, p50 {} ms, max {} ms",
            self.count, self.mean_ms, self.p50_ms, self.max_ms
        )
    }
}

/// The checksum of the bench table read back from Delta, in the column order of
/// [`CHECKSUM_COLUMNS`]: every value cast to BIGINT.
pub const DELTA_CHECKSUM: &str = "SELECT CAST(count(*) AS BIGINT), CAST(sum(id) AS BIGINT), CAST(sum(a) AS BIGINT), \
     CAST(sum(b) AS BIGINT), CAST(sum(d) * 100 AS BIGINT), CAST(sum(length(c)) AS BIGINT), \
     CAST(sum(length(h)) AS BIGINT), CAST(sum(CAST(g AS BIGINT)) AS BIGINT), CAST(sum(CAST(i AS INT)) AS BIGINT), \
     CAST(sum(CAST(f AS BIGINT) / 1000000) AS BIGINT), CAST(sum(floor(e)) AS BIGINT) FROM t";

/// What each checksum value sums: the count, then one aggregate per column (decimals in
/// cents, dates in days and time stamps in seconds since the epoch, floats floored).
pub const CHECKSUM_COLUMNS: [&str; 11] =
    ["count", "id", "a", "b", "d*100", "len(c)", "len(h)", "g", "i days", "f secs", "floor(e)"];

pub async fn delta_checksum(table: &LakehouseSinkConfig) -> Vec<i64> {
    let batches = query_table(table, DELTA_CHECKSUM).await.expect("reading the Delta table back");
    let b = &batches[0];
    (0..b.num_columns())
        .map(|i| {
            let c = b.column(i).as_primitive::<Int64Type>();
            if c.is_null(0) { 0 } else { c.value(0) }
        })
        .collect()
}

/// Panics with the differing aggregates unless the target equals the source.
pub fn assert_converged(what: &str, source: &[i64], target: &[i64]) {
    if source != target {
        let diff: Vec<String> = CHECKSUM_COLUMNS
            .iter()
            .zip(source.iter().zip(target))
            .filter(|(_, (s, t))| s != t)
            .map(|(c, (s, t))| format!("{c}: source {s}, Delta {t}"))
            .collect();
        panic!("{what}: the Delta table differs from the source: {}", diff.join("; "));
    }
}

/// What the Delta log records of the commits after a version: the files written and, for
/// MERGEs, delta-rs's own metrics (how many unchanged rows it had to copy into new files).
#[derive(Debug, Default)]
pub struct LogStats {
    pub commits: u64,
    pub files_added: u64,
    pub files_removed: u64,
    /// Bytes of the new data files the task's own commits wrote.
    pub bytes_added: u64,
    /// Rows in those files (their `numRecords` statistics).
    pub rows_added: u64,
    /// Existing files that got a new deletion vector (merge-on-read): re-added, not rewritten.
    pub dv_updates: u64,
    /// The deletion vectors' bytes (what a merge-on-read commit writes beside its new rows).
    pub dv_bytes: u64,
    /// Maintenance commits (`dataChange = false`: compaction, purge) and the bytes they wrote.
    pub maintenance_commits: u64,
    pub maintenance_bytes: u64,
    pub merges: u64,
    /// Rows the MERGEs inserted, updated or deleted.
    pub rows_changed: u64,
    /// Unchanged rows the MERGEs rewrote because their file held a changed one.
    pub rows_copied: u64,
    pub files_scanned: u64,
    pub scan_ms: u64,
    pub rewrite_ms: u64,
}

impl std::fmt::Display for LogStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Delta log: {} files added ({:.0} MB), {} removed",
            self.files_added,
            self.bytes_added as f64 / 1e6,
            self.files_removed
        )?;
        if self.dv_updates > 0 {
            write!(f, "; {} deletion vectors written ({:.1} kB)", self.dv_updates, self.dv_bytes as f64 / 1e3)?;
        }
        if self.maintenance_commits > 0 {
            write!(
                f,
                "; maintenance: {} commits rewrote {:.0} MB",
                self.maintenance_commits,
                self.maintenance_bytes as f64 / 1e6
            )?;
        }
        if self.rows_changed > 0 {
            write!(
                f,
                "; {} MERGEs changed {} rows and copied {} unchanged ones ({:.1} rows written per change), \
                 scanned {} files, scan {} ms + rewrite {} ms per MERGE",
                self.merges,
                self.rows_changed,
                self.rows_copied,
                (self.rows_changed + self.rows_copied) as f64 / self.rows_changed.max(1) as f64,
                self.files_scanned,
                self.scan_ms / self.merges,
                self.rewrite_ms / self.merges
            )?;
        }
        Ok(())
    }
}

fn log_versions(table: &LakehouseSinkConfig) -> Vec<(u64, std::path::PathBuf)> {
    let dir = std::path::Path::new(&table.table_location()).join("_delta_log");
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((name.strip_suffix(".json")?.parse().ok()?, e.path()))
        })
        .collect()
}

/// The table's latest version (-1: none yet).
pub fn delta_version(table: &LakehouseSinkConfig) -> i64 {
    log_versions(table).iter().map(|(v, _)| *v as i64).max().unwrap_or(-1)
}

/// The commits after version `after`, read from the JSON log.
pub fn log_since(table: &LakehouseSinkConfig, after: i64) -> LogStats {
    let mut stats = LogStats::default();
    for (_, path) in log_versions(table).into_iter().filter(|(v, _)| *v as i64 > after) {
        stats.commits += 1;
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let actions: Vec<serde_json::Value> =
            text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).collect();
        let removed: std::collections::HashSet<&str> =
            actions.iter().filter_map(|a| a.get("remove")?.get("path")?.as_str()).collect();
        let maintenance = actions.iter().any(|a| a.get("add").is_some_and(|add| add["dataChange"] == false));
        if maintenance {
            stats.maintenance_commits += 1;
        }
        for action in &actions {
            if let Some(add) = action.get("add") {
                let size = add["size"].as_u64().unwrap_or(0);
                let dv = &add["deletionVector"];
                if add["path"].as_str().is_some_and(|p| removed.contains(p)) && dv.is_object() {
                    // the same file with a new deletion vector: only the vector was written
                    stats.dv_updates += 1;
                    stats.dv_bytes += dv["sizeInBytes"].as_u64().unwrap_or(0);
                } else if maintenance {
                    stats.maintenance_bytes += size;
                } else {
                    stats.files_added += 1;
                    stats.bytes_added += size;
                    stats.rows_added += add["stats"]
                        .as_str()
                        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                        .and_then(|s| s["numRecords"].as_u64())
                        .unwrap_or(0);
                }
            } else if action.get("remove").is_some() {
                stats.files_removed += 1;
            } else if let Some(info) = action.get("commitInfo")
                && info["operation"] == "MERGE"
            {
                let m = &info["operationMetrics"];
                let n = |k: &str| m[k].as_u64().unwrap_or(0);
                stats.merges += 1;
                stats.rows_changed +=
                    n("num_target_rows_inserted") + n("num_target_rows_updated") + n("num_target_rows_deleted");
                stats.rows_copied += n("num_target_rows_copied");
                stats.files_scanned += n("num_target_files_scanned");
                stats.scan_ms += n("scan_time_ms");
                stats.rewrite_ms += n("rewrite_time_ms");
            }
        }
    }
    stats
}

/// Forgets the peak RSS so far: the next [`peak_rss_mib`] covers only what follows.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn peak_rss_mib() -> f64 {
    proc_status_mib("VmHWM:")
}

/// This process's resident memory now, MiB.
pub fn rss_mib() -> f64 {
    proc_status_mib("VmRSS:")
}

/// A kB line of /proc/self/status, in MiB.
fn proc_status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0.0)
        / 1024.0
}

/// `n / d` per second.
pub fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Runs an external program with its stdout to /dev/null; how long it took, or why it could not.
pub async fn time_command(program: &str, args: &[String]) -> Result<Duration, String> {
    let started = Instant::now();
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    let elapsed = started.elapsed();
    if out.status.success() {
        Ok(elapsed)
    } else {
        Err(format!("{program} exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Changes one streaming phase made at the source.
#[derive(Default)]
pub struct Applied {
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    pub transactions: u64,
    /// From the first BEGIN to the last COMMIT's return.
    pub elapsed: Duration,
}

impl Applied {
    pub fn changes(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }

    pub fn describe(&self, txn_rows: u64) -> String {
        format!(
            "{} inserts + {} updates + {} deletes = {} changes in {} transactions of {txn_rows} inserts",
            self.inserts,
            self.updates,
            self.deletes,
            self.changes(),
            self.transactions
        )
    }
}
