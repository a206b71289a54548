//! Workers and task leases on a shared PostgreSQL catalog.
//!
//! Every `rtsync serve` with `--catalog postgres://…` is a **worker**: it registers in the
//! `workers` table and heartbeats there, serves the API for every task, and runs the deployed
//! tasks of its vcluster that it holds a **lease** on (`task_leases`: one row per task, with
//! its holder, a fencing epoch and an expiry).
//!
//! **The database decides.** Expiry is `now()` of the catalog's PostgreSQL plus the TTL, so
//! the workers' clocks never have to agree. A claim takes unheld or expired leases with
//! `FOR UPDATE SKIP LOCKED` (two workers never wait on, or take, the same row) and increments
//! the lease's epoch, so a holder's renewal after someone else's claim finds its epoch gone.
//!
//! **The holder's own clock stops it.** The keeper renews every lease at a third of the TTL.
//! A task runs only while its last successful renewal (the local instant *before* the
//! renewal was sent) plus the TTL less a margin lies ahead: past that, the watchdog aborts it
//! without a commit, whether or not the catalog answers, so that it has stopped before anyone
//! else can claim it. A paused worker (SIGSTOP) that wakes past its lease finds on its next
//! renewal that the lease moved and drops the task; if it commits before that, the Delta
//! commit is the last fence (the table's `txn` version), and a fenced commit makes the
//! supervisor ask the catalog whether the lease is still its own: no → the task is dropped
//! quietly; yes → it is re-opened from the table.
//!
//! **Fair share.** Each round a worker counts the live workers of its vcluster and the
//! running tasks in it, and aims at `ceil(tasks / workers)` leases: it claims up to that,
//! and gives away what it holds beyond it (the task commits, the lease is released and
//! another worker claims it at its next round).
//!
//! **Lifecycle across workers.** The catalog holds what each task should do (`tasks.state`,
//! the deployed version and incarnation); the holder reconciles at each round: a task no
//! longer running is stopped and its lease released; a task redeployed is restarted on the
//! new version. A graceful shutdown (SIGTERM) marks the worker stopping, commits every task,
//! releases every lease and leaves the registry: the others take the tasks over at their next
//! round, without waiting for the TTL. A killed worker's leases expire after the TTL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::model::Worker;
use crate::params;
use crate::scheduler::StopReason;
use crate::service::Control;

/// The default lease TTL: a killed worker's tasks run elsewhere within about this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(20);
/// The shortest TTL accepted (a renewal every third of it must fit a catalog round trip).
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(3);
/// How often the watchdog compares the leases' local deadlines with the clock.
const WATCHDOG_TICK: Duration = Duration::from_millis(200);
/// How long a stop on another worker is waited for (its next round plus the task's commit).
pub const REMOTE_STOP_TIMEOUT: Duration = Duration::from_secs(150);
/// Workers without a heartbeat for this long leave the registry.
const FORGET_DEAD_AFTER_SECS: i64 = 3600;

/// `now() + ttl`, the TTL in milliseconds as `$n`.
fn expiry(n: usize) -> String {
    format!("now() + (${n}::bigint * interval '1 millisecond')")
}

const UTC_TEXT: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

/// What this worker is and how long its leases last.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub id: String,
    pub address: String,
    pub vcluster: String,
    pub ttl: Duration,
}

impl WorkerOptions {
    /// `<host name>-<pid>`: unique on a machine and in a cluster of pods.
    pub fn default_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "worker".to_string());
        format!("{host}-{}", std::process::id())
    }

    pub fn validate(&self) -> Result<()> {
        if self.ttl < MIN_LEASE_TTL {
            return Err(Error::bad_request(format!(
                "--lease-ttl {}: use at least {}s",
                crate::duration::format(self.ttl),
                MIN_LEASE_TTL.as_secs()
            )));
        }
        if self.id.trim().is_empty() {
            return Err(Error::bad_request("--worker-id must not be empty"));
        }
        Ok(())
    }
}

/// A lease held here: the claim's epoch and the local instant it must be given up by.
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    deadline: Instant,
}

/// This worker's membership and leases.
pub struct Cluster {
    /// Connections of its own: renewals never queue behind API calls.
    db: Db,
    pub opts: WorkerOptions,
    held: Mutex<HashMap<i64, Held>>,
    wake: Notify,
    /// Registered, and the last round reached the catalog.
    ready: AtomicBool,
    stopping: AtomicBool,
}

/// Who holds a task's lease.
#[derive(Debug, Clone)]
pub struct Holder {
    pub worker: String,
    pub epoch: i64,
    pub address: Option<String>,
}

impl Cluster {
    pub fn new(db: Db, opts: WorkerOptions) -> Arc<Self> {
        Arc::new(Self {
            db,
            opts,
            held: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        })
    }

    fn ttl_ms(&self) -> i64 {
        self.opts.ttl.as_millis() as i64
    }

    /// Renewals every third of the TTL.
    pub fn renew_every(&self) -> Duration {
        self.opts.ttl / 3
    }

    /// The safety margin under the TTL by which the holder stops on its own clock.
    fn margin(&self) -> Duration {
        self.opts.ttl / 4
    }

    /// Registered, reaching the catalog, and not shutting down (`/ready`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.stopping.load(Ordering::Relaxed)
    }

    /// Asks the keeper for a round now (a deploy or start on this worker).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn hold(&self, task_id: i64, epoch: i64, renewed_at: Instant) {
        let deadline = renewed_at + self.opts.ttl - self.margin();
        if let Ok(mut h) = self.held.lock() {
            h.insert(task_id, Held { epoch, deadline });
        }
    }

    fn unhold(&self, task_id: i64) -> Option<Held> {
        self.held.lock().ok().and_then(|mut h| h.remove(&task_id))
    }

    fn held(&self) -> HashMap<i64, Held> {
        self.held.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// The epoch of the lease this worker holds on `task_id`.
    pub fn epoch_of(&self, task_id: i64) -> Option<i64> {
        self.held.lock().ok().and_then(|h| h.get(&task_id).map(|l| l.epoch))
    }

    // ---- registry ----

    /// Joins the registry (again, after a restart with the same id: leases of the previous
    /// life are released, their tasks claimed anew with a higher epoch).
    pub async fn register(&self) -> Result<()> {
        let o = &self.opts;
        let sql = format!(
            "INSERT INTO workers (id, address, vcluster, version, started_at, heartbeat_at, expires_at, stopping)
             VALUES ($1, $2, $3, $4, now(), now(), {}, false)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, vcluster = excluded.vcluster, version = excluded.version,
               started_at = now(), heartbeat_at = now(), expires_at = excluded.expires_at, stopping = false",
            expiry(5)
        );
        let mut tx = self.db.begin().await?;
        tx.execute(
            &sql,
            params![o.id.as_str(), o.address.as_str(), o.vcluster.as_str(), env!("CARGO_PKG_VERSION"), self.ttl_ms()],
        )
        .await?;
        tx.execute(
            "UPDATE task_leases SET worker_id = NULL, expires_at = now() WHERE worker_id = $1",
            params![o.id.as_str()],
        )
        .await?;
        tx.execute(
            "DELETE FROM workers WHERE expires_at < now() - ($1::bigint * interval '1 second')",
            params![FORGET_DEAD_AFTER_SECS],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(worker = %o.id, address = %o.address, vcluster = %o.vcluster, ttl_ms = self.ttl_ms(), "worker registered in the catalog");
        Ok(())
    }

    async fn heartbeat(&self) -> Result<()> {
        let sql = format!("UPDATE workers SET heartbeat_at = now(), expires_at = {} WHERE id = $1", expiry(2));
        if self.db.execute(&sql, params![self.opts.id.as_str(), self.ttl_ms()]).await? == 0 {
            // Forgotten (the catalog was reset, or this worker was deemed dead long ago).
            self.register().await?;
        }
        Ok(())
    }

    /// Every worker of the catalog with the tasks it holds.
    pub async fn workers(db: &Db) -> Result<Vec<Worker>> {
        let sql = format!(
            "SELECT w.id, w.address, w.vcluster, w.version,
                    to_char(w.started_at AT TIME ZONE 'UTC', {UTC_TEXT}), to_char(w.heartbeat_at AT TIME ZONE 'UTC', {UTC_TEXT}),
                    (extract(epoch FROM now() - w.heartbeat_at) * 1000)::bigint,
                    CASE WHEN w.expires_at <= now() THEN 'dead' WHEN w.stopping THEN 'stopping' ELSE 'alive' END,
                    (SELECT string_agg(t.name, ',' ORDER BY t.name) FROM task_leases l JOIN tasks t ON t.id = l.task_id
                      WHERE l.worker_id = w.id AND l.expires_at > now())
             FROM workers w ORDER BY w.vcluster, w.id"
        );
        db.query(&sql, &[])
            .await?
            .iter()
            .map(|r| {
                Ok(Worker {
                    id: r.text(0)?,
                    address: r.text(1)?,
                    vcluster: r.text(2)?,
                    version: r.text(3)?,
                    started_at: r.text(4)?,
                    last_heartbeat: r.text(5)?,
                    heartbeat_age_ms: r.i64(6)?,
                    state: r.text(7)?,
                    tasks: r.opt_text(8)?.map(|t| t.split(',').map(str::to_string).collect()).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Live workers (heartbeat within the TTL, not stopping) of `vcluster`.
    pub async fn live_workers(db: &Db, vcluster: &str) -> Result<i64> {
        db.query_one(
            "SELECT count(*) FROM workers WHERE vcluster = $1 AND expires_at > now() AND NOT stopping",
            params![vcluster],
        )
        .await?
        .i64(0)
    }

    // ---- leases ----

    /// Who holds `task_id`'s lease now (an expired lease is held by no one).
    pub async fn holder(db: &Db, task_id: i64) -> Result<Option<Holder>> {
        let row = db
            .query_opt(
                "SELECT l.worker_id, l.epoch, w.address FROM task_leases l LEFT JOIN workers w ON w.id = l.worker_id
                 WHERE l.task_id = $1 AND l.worker_id IS NOT NULL AND l.expires_at > now()",
                params![task_id],
            )
            .await?;
        row.map(|r| Ok(Holder { worker: r.text(0)?, epoch: r.i64(1)?, address: r.opt_text(2)? })).transpose()
    }

    /// Whether this worker still holds `task_id` with `epoch` (asked after a fenced commit).
    pub async fn still_holds(&self, task_id: i64, epoch: i64) -> Result<bool> {
        let row = self
            .db
            .query_opt(
                "SELECT 1 FROM task_leases WHERE task_id = $1 AND worker_id = $2 AND epoch = $3 AND expires_at > now()",
                params![task_id, self.opts.id.as_str(), epoch],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Renews every lease held by this worker; returns (task, epoch) of those it still holds.
    async fn renew(&self) -> Result<HashMap<i64, i64>> {
        let sql =
            format!("UPDATE task_leases SET expires_at = {} WHERE worker_id = $1 RETURNING task_id, epoch", expiry(2));
        self.db
            .query(&sql, params![self.opts.id.as_str(), self.ttl_ms()])
            .await?
            .iter()
            .map(|r| Ok((r.i64(0)?, r.i64(1)?)))
            .collect()
    }

    /// The fair share of this worker in its vcluster: ceil(running tasks / live workers).
    async fn fair_share(&self) -> Result<(i64, i64, i64)> {
        let r = self
            .db
            .query_one(
                "SELECT (SELECT count(*) FROM workers WHERE vcluster = $1 AND expires_at > now() AND NOT stopping),
                        (SELECT count(*) FROM tasks WHERE vcluster = $1 AND state = 'running')",
                params![self.opts.vcluster.as_str()],
            )
            .await?;
        let (workers, tasks) = (r.i64(0)?.max(1), r.i64(1)?);
        Ok(((tasks + workers - 1) / workers, workers, tasks))
    }

    /// Claims up to `n` unheld or expired leases of running tasks of this vcluster; returns
    /// (task, new epoch) of each.
    async fn claim(&self, n: i64) -> Result<Vec<(i64, i64)>> {
        if n <= 0 {
            return Ok(Vec::new());
        }
        // Every running task has a lease row (in id order: concurrent inserts never deadlock).
        self.db
            .execute(
                "INSERT INTO task_leases (task_id) SELECT id FROM tasks WHERE state = 'running' AND vcluster = $1 ORDER BY id ON CONFLICT (task_id) DO NOTHING",
                params![self.opts.vcluster.as_str()],
            )
            .await?;
        let sql = format!(
            "WITH picked AS (
               SELECT l.task_id FROM task_leases l JOIN tasks t ON t.id = l.task_id
               WHERE t.state = 'running' AND t.vcluster = $3 AND (l.worker_id IS NULL OR l.expires_at <= now())
               ORDER BY l.task_id LIMIT $4
               FOR UPDATE OF l SKIP LOCKED)
             UPDATE task_leases SET worker_id = $1, epoch = task_leases.epoch + 1, expires_at = {}, acquired_at = now()
             FROM picked WHERE task_leases.task_id = picked.task_id
             RETURNING task_leases.task_id, task_leases.epoch",
            expiry(2)
        );
        self.db
            .query(&sql, params![self.opts.id.as_str(), self.ttl_ms(), self.opts.vcluster.as_str(), n])
            .await?
            .iter()
            .map(|r| Ok((r.i64(0)?, r.i64(1)?)))
            .collect()
    }

    /// Gives a lease up (the task has committed and stopped here).
    ///
    /// A lease the catalog still gives this worker though it no longer holds it here is given
    /// up too: the watchdog stopped the task while the catalog did not answer, and the first
    /// renewal after the catalog came back extended it. Left alone, it would keep the task
    /// from every other claim (and from this worker's own) while nobody runs it.
    pub async fn release(&self, task_id: i64) -> Result<()> {
        match self.unhold(task_id) {
            Some(held) => {
                self.db
                    .execute(
                        "UPDATE task_leases SET worker_id = NULL, expires_at = now() WHERE task_id = $1 AND worker_id = $2 AND epoch = $3",
                        params![task_id, self.opts.id.as_str(), held.epoch],
                    )
                    .await?;
            }
            None => {
                let released = self
                    .db
                    .execute(
                        "UPDATE task_leases SET worker_id = NULL, expires_at = now() WHERE task_id = $1 AND worker_id = $2",
                        params![task_id, self.opts.id.as_str()],
                    )
                    .await?;
                if released > 0 {
                    tracing::info!(task_id, worker = %self.opts.id, "released a lease this worker no longer runs (its task was stopped here when the lease could not be renewed)");
                }
            }
        }
        Ok(())
    }

    /// Waits until no worker holds `task_id` (its holder stopped it), up to `timeout`.
    pub async fn wait_released(db: &Db, task_id: i64, timeout: Duration) -> Result<bool> {
        let until = Instant::now() + timeout;
        loop {
            if Self::holder(db, task_id).await?.is_none() {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ends the attempts a previous holder left open on the task's open run.
    async fn mark_lost_attempts(&self, task_id: i64) -> Result<u64> {
        self.db
            .execute(
                "UPDATE attempts SET status = 'lost', ended_at = $2,
                   error = coalesce(error, 'the worker running this attempt stopped renewing its lease (killed, paused or cut off); another worker took the task over from the table''s checkpoint')
                 WHERE ended_at IS NULL AND run_id IN (SELECT id FROM runs WHERE task_id = $1)",
                params![task_id, crate::catalog::now()],
            )
            .await
    }

    // ---- the keeper ----

    /// One round: heartbeat, renewals, reconciliation with the catalog, fair share.
    async fn round(self: &Arc<Self>, control: &Control) -> Result<()> {
        let started = Instant::now();
        self.heartbeat().await?;
        let renewed = self.renew().await?;
        // Leases that moved (or vanished) are dropped quietly: the new holder runs the task.
        for (task_id, held) in self.held() {
            match renewed.get(&task_id) {
                Some(epoch) if *epoch == held.epoch => self.hold(task_id, held.epoch, started),
                _ => {
                    self.unhold(task_id);
                    tracing::warn!(task_id, worker = %self.opts.id, "the lease on this task moved to another worker: dropping it here without a commit");
                    control.scheduler.abort(task_id, "the task's lease moved to another worker").await;
                }
            }
        }
        // What the catalog says each held task should do.
        for (task_id, want) in control.leased_tasks_want(&self.opts.id).await? {
            match want {
                Want::Keep => {}
                Want::Stop(reason) => {
                    control.scheduler.stop(task_id, reason).await;
                    self.release(task_id).await?;
                }
            }
        }
        if self.stopping.load(Ordering::Relaxed) {
            return Ok(());
        }
        let (share, workers, tasks) = self.fair_share().await?;
        let held = self.held();
        let mine = held.len() as i64;
        if mine > share {
            // Cooperative give-away: the newest surplus first; each commits, then is released.
            let mut ids: Vec<i64> = held.keys().copied().collect();
            ids.sort_unstable();
            for task_id in ids.into_iter().rev().take((mine - share) as usize) {
                tracing::info!(task_id, worker = %self.opts.id, share, workers, tasks, "giving a task away: this worker holds more than its fair share");
                control
                    .scheduler
                    .stop(task_id, StopReason::Moved(format!("handed over: worker {} holds more than its fair share ({share} of {tasks} tasks on {workers} workers)", self.opts.id)))
                    .await;
                self.release(task_id).await?;
            }
        } else if mine < share {
            let renewed_at = Instant::now();
            for (task_id, epoch) in self.claim(share - mine).await? {
                self.hold(task_id, epoch, renewed_at);
                let lost = self.mark_lost_attempts(task_id).await?;
                tracing::info!(task_id, epoch, worker = %self.opts.id, lost_attempts = lost, "lease claimed");
                if let Err(e) = control.start_leased(self, task_id, epoch).await {
                    tracing::error!(task_id, error = %e, "the claimed task could not start here; releasing its lease");
                    self.release(task_id).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs rounds every third of the TTL (and when woken) until `shutdown`, with a watchdog
    /// that aborts a task whose lease's local deadline passed.
    pub async fn keep(self: Arc<Self>, control: Arc<Control>, mut shutdown: watch::Receiver<bool>) {
        let watchdog = tokio::spawn(self.clone().watchdog(control.clone()));
        loop {
            let round = tokio::time::timeout(self.renew_every(), self.round(&control)).await;
            let ok = matches!(round, Ok(Ok(())));
            match round {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(worker = %self.opts.id, error = %e, "lease round failed: leases are kept until their local deadline")
                }
                Err(_) => {
                    tracing::warn!(worker = %self.opts.id, "lease round did not finish within a third of the TTL")
                }
            }
            if self.ready.swap(ok, Ordering::Relaxed) != ok {
                tracing::info!(worker = %self.opts.id, ready = ok, "worker readiness changed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.renew_every()) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
        }
        watchdog.abort();
    }

    async fn watchdog(self: Arc<Self>, control: Arc<Control>) {
        loop {
            tokio::time::sleep(WATCHDOG_TICK).await;
            let now = Instant::now();
            for (task_id, held) in self.held() {
                if now >= held.deadline {
                    self.unhold(task_id);
                    tracing::error!(task_id, worker = %self.opts.id, ttl_ms = self.ttl_ms(), "no lease renewal for the TTL less its margin (the catalog did not answer): stopping the task here without a commit so that another worker can take it");
                    control
                        .scheduler
                        .abort(task_id, "the lease could not be renewed in time (catalog unreachable): stopped so that another worker can take the task")
                        .await;
                }
            }
        }
    }

    /// Graceful shutdown: marked stopping (others stop counting this worker), every task
    /// commits and stops, every lease is released, the worker leaves the registry.
    pub async fn leave(&self, control: &Control) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Err(e) =
            self.db.execute("UPDATE workers SET stopping = true WHERE id = $1", params![self.opts.id.as_str()]).await
        {
            tracing::warn!(error = %e, "marking the worker stopping failed");
        }
        control.scheduler.shutdown().await;
        for task_id in self.held().into_keys() {
            if let Err(e) = self.release(task_id).await {
                tracing::warn!(task_id, error = %e, "releasing a lease failed: it expires after the TTL");
            }
        }
        if let Err(e) = self.db.execute("DELETE FROM workers WHERE id = $1", params![self.opts.id.as_str()]).await {
            tracing::warn!(error = %e, "leaving the registry failed: the worker shows as dead after its TTL");
        }
        tracing::info!(worker = %self.opts.id, "worker left the cluster: its tasks were committed and their leases released");
    }
}

/// What the catalog wants of a task this worker holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Want {
    Keep,
    Stop(StopReason),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::model::{TaskConfig, TaskState};

    async fn catalog_with_tasks(n: usize) -> (Catalog, Vec<i64>, tempfile::TempDir) {
        let url = crate::db::test_database("scale_lease").await;
        let dir = tempfile::tempdir().unwrap();
        let (cat, _) = Catalog::open(Some(&url), dir.path()).await.unwrap();
        let folder = cat.insert_folder("f").await.unwrap();
        cat.insert_vcluster("default", "SYNC", 100).await.unwrap();
        cat.insert_vcluster("other", "SYNC", 100).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..n {
            let t = cat.insert_task(&format!("t{i}"), 14, folder.id, "default").await.unwrap();
            cat.publish(t.id, &TaskConfig::default(), 1).await.unwrap();
            cat.set_state(t.id, TaskState::Running).await.unwrap();
            ids.push(t.id);
        }
        (cat, ids, dir)
    }

    async fn worker(cat: &Catalog, id: &str, ttl_ms: u64) -> Arc<Cluster> {
        let c = Cluster::new(
            cat.separate().await.unwrap().db().clone(),
            WorkerOptions {
                id: id.into(),
                address: format!("http://{id}"),
                vcluster: "default".into(),
                ttl: Duration::from_millis(ttl_ms),
            },
        );
        c.register().await.unwrap();
        c
    }

    fn tasks(claimed: &[(i64, i64)]) -> Vec<i64> {
        let mut t: Vec<i64> = claimed.iter().map(|(t, _)| *t).collect();
        t.sort_unstable();
        t
    }

    #[tokio::test]
    async fn claims_renewals_expiry_and_epochs() {
        let (cat, ids, _dir) = catalog_with_tasks(5).await;
        let a = worker(&cat, "a", 1_500).await;
        let b = worker(&cat, "b", 60_000).await;

        // Two live workers, five running tasks: a share of three each at most.
        assert_eq!(a.fair_share().await.unwrap(), (3, 2, 5));
        let got_a = a.claim(3).await.unwrap();
        assert_eq!(tasks(&got_a), ids[..3]);
        assert!(got_a.iter().all(|(_, e)| *e == 1), "a first claim has epoch 1: {got_a:?}");
        // b gets only what nobody holds.
        let got_b = b.claim(10).await.unwrap();
        assert_eq!(tasks(&got_b), ids[3..]);
        assert!(a.claim(1).await.unwrap().is_empty(), "every lease is held");
        for (t, e) in &got_a {
            a.hold(*t, *e, Instant::now());
        }
        let renewed = a.renew().await.unwrap();
        assert_eq!(renewed.len(), 3);
        let holder = Cluster::holder(cat.db(), ids[0]).await.unwrap().unwrap();
        assert_eq!((holder.worker.as_str(), holder.epoch, holder.address.as_deref()), ("a", 1, Some("http://a")));

        // a stops renewing: after its TTL (the catalog's clock) b takes its tasks, each with
        // the next epoch; a's renewal then holds nothing and its epoch no longer counts.
        tokio::time::sleep(Duration::from_millis(1_700)).await;
        assert!(Cluster::holder(cat.db(), ids[0]).await.unwrap().is_none(), "an expired lease has no holder");
        assert_eq!(b.fair_share().await.unwrap(), (5, 1, 5), "a's heartbeat expired too");
        let taken = b.claim(10).await.unwrap();
        assert_eq!(tasks(&taken), ids[..3]);
        assert!(taken.iter().all(|(_, e)| *e == 2), "{taken:?}");
        assert!(a.renew().await.unwrap().is_empty());
        assert!(!a.still_holds(ids[0], 1).await.unwrap());
        assert!(b.still_holds(ids[0], 2).await.unwrap());

        // A release hands the task on at once, with the next epoch for the next holder.
        b.hold(ids[0], 2, Instant::now());
        b.release(ids[0]).await.unwrap();
        assert!(Cluster::holder(cat.db(), ids[0]).await.unwrap().is_none());
        a.heartbeat().await.unwrap();
        let again = a.claim(1).await.unwrap();
        assert_eq!(again, vec![(ids[0], 3)]);

        // Only running tasks of the worker's vcluster are claimed.
        cat.set_state(ids[1], TaskState::Stopped).await.unwrap();
        let folder = cat.folder("f").await.unwrap().unwrap();
        let elsewhere = cat.insert_task("on_other", 14, folder.id, "other").await.unwrap();
        cat.set_state(elsewhere.id, TaskState::Running).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_700)).await;
        let c = worker(&cat, "c", 60_000).await;
        let got_c = c.claim(10).await.unwrap();
        assert!(!tasks(&got_c).contains(&ids[1]), "a stopped task is not claimed");
        assert!(!tasks(&got_c).contains(&elsewhere.id), "another vcluster's task is not claimed");
    }

    #[tokio::test]
    async fn concurrent_claims_never_share_a_task() {
        let (cat, ids, _dir) = catalog_with_tasks(30).await;
        let mut workers = Vec::new();
        for w in 0..3 {
            workers.push(worker(&cat, &format!("w{w}"), 60_000).await);
        }
        // Each tries to take everything at the same moment.
        let mut all = Vec::new();
        for _ in 0..3 {
            let claims = workers.iter().map(|w| {
                let w = w.clone();
                tokio::spawn(async move { w.claim(30).await.unwrap() })
            });
            for h in claims.collect::<Vec<_>>() {
                all.extend(h.await.unwrap());
            }
        }
        let mut claimed = tasks(&all);
        let n = claimed.len();
        claimed.dedup();
        assert_eq!(claimed.len(), n, "a task was claimed twice");
        assert_eq!(claimed, ids);
        assert!(all.iter().all(|(_, e)| *e == 1));
        // Fair share: 30 tasks on 3 live workers is 10 each.
        assert_eq!(workers[0].fair_share().await.unwrap(), (10, 3, 30));
        // A worker marked stopping no longer counts.
        workers[2].db.execute("UPDATE workers SET stopping = true WHERE id = $1", params!["w2"]).await.unwrap();
        assert_eq!(workers[0].fair_share().await.unwrap(), (15, 2, 30));
        let listed = Cluster::workers(cat.db()).await.unwrap();
        let states: Vec<(&str, &str)> = listed.iter().map(|w| (w.id.as_str(), w.state.as_str())).collect();
        assert_eq!(states, [("w0", "alive"), ("w1", "alive"), ("w2", "stopping")]);
        let held: usize = listed.iter().map(|w| w.tasks.len()).sum();
        assert_eq!(held, 30);
    }
}
