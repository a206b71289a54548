//! The scheduler: runs every deployed task on the engine, one supervisor per run.
//!
//! A **run** lasts from deploy/start to stop. Its supervisor runs **attempts**: each is one
//! [`run_task`] call without internal retries, inside the [`logs::ATTEMPT_SPAN`] span so that
//! everything the task logs lands in that attempt's log. A transient failure ends the attempt
//! and, after a doubling backoff (reset when the failed attempt had committed something),
//! starts the next attempt of the same run; a definite failure ends the run as `failed` and
//! the task stays stopped until the user starts it. A stop request commits what the task
//! holds (the engine's shutdown path) and ends the run; a daemon shutdown ends the attempt as
//! `interrupted` but leaves the run open, and the next daemon start continues it with a new
//! attempt. Positions are never stored here: every attempt resumes from the checkpoint in the
//! Delta table.
//!
//! Each task keeps one [`TaskMetrics`] for the daemon's life (so `/metrics` counters only
//! grow); a flusher saves the last position, epoch and row counts to the catalog every
//! [`FLUSH_INTERVAL`] for `task show` after a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtsync_core::ErrorKind;
use rtsync_engine::{Backoff, TaskMetrics};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::catalog::Catalog;

/// How often a catalog write of a run's record is tried, and the first pause between tries.
const CATALOG_TRIES: u32 = 3;
const CATALOG_RETRY_DELAY: Duration = Duration::from_millis(50);
use crate::logs::{self, Route};
use crate::model::TaskState;
use crate::{RunOptions, TaskSpec, run_task};

pub const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// How long a stop waits for the task to commit and close before abandoning it (safe: an
/// uncommitted batch is read again by the next run).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);
const RATE_WINDOW: usize = 6;

/// Why a run is asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    User,
    Undeploy,
    Redeploy(i64),
    Shutdown,
    /// Its lease goes to another worker (fair share, vcluster change); the run goes on there.
    Moved(String),
    /// The catalog says it should not run (stopped or undeployed through another worker,
    /// which ends the run).
    Released(String),
}

impl StopReason {
    fn run_end(&self) -> Option<(&'static str, String)> {
        match self {
            StopReason::User => Some(("stopped", "stopped by the user".to_string())),
            StopReason::Undeploy => Some(("undeployed", "undeployed by the user".to_string())),
            StopReason::Redeploy(v) => Some(("superseded", format!("replaced by version {v}"))),
            StopReason::Shutdown | StopReason::Moved(_) | StopReason::Released(_) => None,
        }
    }

    /// How the attempt that this stop ends is recorded: status and text.
    fn attempt_end(&self) -> (&'static str, String) {
        match self {
            StopReason::Shutdown => (
                "interrupted",
                "the daemon is shutting down: committed what the task held; the run goes on when the daemon starts again (or on another worker)".to_string(),
            ),
            StopReason::Moved(why) => ("moved", format!("{why}: committed what the task held; the run goes on on another worker")),
            StopReason::Released(why) => ("stopped", format!("{why}: committed what the task held")),
            other => ("stopped", other.run_end().map(|(_, t)| t).unwrap_or_default()),
        }
    }
}

/// The lease a run holds on a shared catalog: asked after a fenced commit whether the task
/// is still this worker's.
#[derive(Clone)]
pub struct Lease {
    pub cluster: Arc<crate::cluster::Cluster>,
    pub epoch: i64,
}

/// What a task is doing right now, as far as the scheduler knows.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// running (an attempt is active), retrying (waiting out a backoff); None when no run is active.
    pub phase: Option<&'static str>,
    pub run_id: Option<i64>,
    pub attempt: Option<i64>,
    pub retry_at: Option<Instant>,
    samples: VecDeque<(Instant, u64)>,
}

impl Live {
    pub fn rows_per_sec(&self) -> f64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, r0)), Some((t1, r1))) if t1 > t0 => (r1.saturating_sub(*r0)) as f64 / (*t1 - *t0).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// One task's live state; kept for the daemon's life.
pub struct TaskSlot {
    pub metrics: Arc<TaskMetrics>,
    pub name: Mutex<String>,
    live: Mutex<Live>,
    active: Mutex<Option<ActiveRun>>,
    /// rows_out already added to the catalog's counters, and the run they count for (held
    /// across the catalog write, so two flushes never add the same rows).
    flushed_rows: tokio::sync::Mutex<(u64, Option<i64>)>,
}

struct ActiveRun {
    run_id: i64,
    version: i64,
    incarnation: i64,
    app_id: String,
    stop: watch::Sender<bool>,
    reason: Arc<Mutex<Option<StopReason>>>,
    done: JoinHandle<()>,
}

impl TaskSlot {
    pub fn live(&self) -> Live {
        self.live.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn set_live(&self, f: impl FnOnce(&mut Live)) {
        if let Ok(mut l) = self.live.lock() {
            f(&mut l);
        }
    }
}

/// What a new run needs.
pub struct RunRequest {
    pub task_id: i64,
    pub task_name: String,
    pub version: i64,
    pub incarnation: i64,
    pub run_id: i64,
    pub spec: TaskSpec,
    /// Why the first attempt starts: deploy, start, daemon restart, lease claimed.
    pub reason: String,
    /// Held on a shared catalog.
    pub lease: Option<Lease>,
}

pub struct Scheduler {
    catalog: Catalog,
    slots: Mutex<HashMap<i64, Arc<TaskSlot>>>,
    /// This worker's id (recorded with each attempt) and API address.
    worker_id: String,
    address: String,
    started_at: String,
}

impl Scheduler {
    pub fn new(catalog: Catalog, worker_id: String, address: String) -> Arc<Self> {
        let s = Arc::new(Self {
            catalog,
            slots: Mutex::new(HashMap::new()),
            worker_id,
            address,
            started_at: crate::catalog::now(),
        });
        let weak = Arc::downgrade(&s);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_INTERVAL);
            loop {
                tick.tick().await;
                let Some(s) = weak.upgrade() else { return };
                s.flush_all().await;
            }
        });
        s
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn started_at(&self) -> &str {
        &self.started_at
    }

    /// The version and incarnation of the task's active run here.
    pub fn running(&self, task_id: i64) -> Option<(i64, i64)> {
        let slot = self.slot(task_id)?;
        let active = slot.active.lock().ok()?;
        active.as_ref().map(|a| (a.version, a.incarnation))
    }

    /// Ends the task's run here at once, without a commit (its lease is gone or about to
    /// be): what it had not committed is read again by the next holder. The attempt is
    /// recorded as lost; the run stays open for the next holder.
    pub async fn abort(&self, task_id: i64, why: &str) {
        let Some(slot) = self.slot(task_id) else { return };
        let Some(active) = slot.active.lock().ok().and_then(|mut a| a.take()) else { return };
        active.done.abort();
        let live = slot.live();
        if let (Some(run), Some(attempt)) = (live.run_id, live.attempt) {
            logs::unregister(&active.app_id, Route { run_id: run, attempt });
            if let Err(e) = self.catalog.end_attempt(run, attempt, "lost", Some(why), None).await {
                tracing::warn!(task_id, error = %e, "recording the aborted attempt failed");
            }
        }
        slot.set_live(|l| {
            l.phase = None;
            l.retry_at = None;
        });
        tracing::warn!(task_id, run = active.run_id, "task stopped here without a commit: {why}");
    }

    pub fn slot(&self, task_id: i64) -> Option<Arc<TaskSlot>> {
        self.slots.lock().ok().and_then(|m| m.get(&task_id).cloned())
    }

    fn slot_or_new(&self, task_id: i64, name: &str) -> Arc<TaskSlot> {
        let mut map = match self.slots.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.entry(task_id)
            .or_insert_with(|| {
                Arc::new(TaskSlot {
                    metrics: Arc::new(TaskMetrics::default()),
                    name: Mutex::new(name.to_string()),
                    live: Mutex::new(Live::default()),
                    active: Mutex::new(None),
                    flushed_rows: tokio::sync::Mutex::new((0, None)),
                })
            })
            .clone()
    }

    /// Every task the scheduler has seen, with its metrics (for `/metrics`).
    pub fn slots(&self) -> Vec<(i64, Arc<TaskSlot>)> {
        self.slots.lock().map(|m| m.iter().map(|(k, v)| (*k, v.clone())).collect()).unwrap_or_default()
    }

    pub fn forget(&self, task_id: i64) {
        if let Ok(mut m) = self.slots.lock() {
            m.remove(&task_id);
        }
    }

    pub fn is_active(&self, task_id: i64) -> bool {
        self.slot(task_id).is_some_and(|s| s.active.lock().map(|a| a.is_some()).unwrap_or(false))
    }

    /// Starts the run's supervisor.
    pub async fn start(self: &Arc<Self>, req: RunRequest) {
        let slot = self.slot_or_new(req.task_id, &req.task_name);
        if let Ok(mut n) = slot.name.lock() {
            n.clone_from(&req.task_name);
        }
        *slot.flushed_rows.lock().await = (slot.metrics.rows_out.load(Ordering::Relaxed), Some(req.run_id));
        let (stop, stop_rx) = watch::channel(false);
        let reason = Arc::new(Mutex::new(None));
        let run_id = req.run_id;
        let (version, incarnation, app_id) = (req.version, req.incarnation, req.spec.name.clone());
        let me = self.clone();
        let sup = Supervisor { sched: me, slot: slot.clone(), req, stop_rx, reason: reason.clone() };
        let done = tokio::spawn(sup.run());
        if let Ok(mut a) = slot.active.lock() {
            *a = Some(ActiveRun { run_id, version, incarnation, app_id, stop, reason, done });
        }
    }

    /// Asks the task's run to stop, waits for it to commit and end. Returns the run id, or
    /// None when no run was active.
    pub async fn stop(&self, task_id: i64, why: StopReason) -> Option<i64> {
        let slot = self.slot(task_id)?;
        let active = slot.active.lock().ok()?.take()?;
        if let Ok(mut r) = active.reason.lock() {
            *r = Some(why);
        }
        let _ = active.stop.send(true);
        let mut done = active.done;
        if tokio::time::timeout(STOP_TIMEOUT, &mut done).await.is_err() {
            tracing::warn!(
                task_id,
                run = active.run_id,
                "the task did not stop in time; abandoning it (what it had not committed is read again by the next run)"
            );
            done.abort();
        }
        self.flush(task_id, &slot).await;
        Some(active.run_id)
    }

    /// Daemon shutdown: every run commits and ends its attempt; runs stay open.
    pub async fn shutdown(&self) {
        let slots = self.slots();
        let mut waiting = Vec::new();
        for (id, slot) in &slots {
            let Some(active) = slot.active.lock().ok().and_then(|mut a| a.take()) else { continue };
            if let Ok(mut r) = active.reason.lock() {
                *r = Some(StopReason::Shutdown);
            }
            let _ = active.stop.send(true);
            waiting.push((*id, slot.clone(), active.done));
        }
        for (id, slot, mut done) in waiting {
            if tokio::time::timeout(STOP_TIMEOUT, &mut done).await.is_err() {
                done.abort();
            }
            self.flush(id, &slot).await;
        }
    }

    async fn flush_all(&self) {
        for (id, slot) in self.slots() {
            slot.set_live(|l| {
                l.samples.push_back((Instant::now(), slot.metrics.rows_out.load(Ordering::Relaxed)));
                while l.samples.len() > RATE_WINDOW {
                    l.samples.pop_front();
                }
            });
            self.flush(id, &slot).await;
        }
    }

    /// Saves the task's last position and row counts to the catalog.
    async fn flush(&self, task_id: i64, slot: &TaskSlot) {
        let mut flushed = slot.flushed_rows.lock().await;
        let s = slot.metrics.snapshot();
        let delta = s.rows_out.saturating_sub(flushed.0) as i64;
        if delta == 0 && s.position.is_empty() {
            return;
        }
        let last_commit = (s.last_commit_unix_ms > 0)
            .then(|| chrono::DateTime::from_timestamp_millis(s.last_commit_unix_ms as i64))
            .flatten()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let position = (!s.position.is_empty()).then_some(s.position.as_str());
        let epoch = (s.epoch > 0).then_some(s.epoch as i64);
        if let Err(e) = self.catalog.save_status(task_id, position, epoch, delta, last_commit.as_deref()).await {
            tracing::warn!(task_id, error = %e, "saving the task status failed");
            return;
        }
        if let Some(run) = flushed.1
            && delta > 0
            && let Err(e) = self.catalog.add_run_rows(run, delta).await
        {
            tracing::warn!(task_id, error = %e, "saving the run's row count failed");
        }
        flushed.0 = s.rows_out;
    }
}

/// What a user should check for each kind of failure (the seed's troubleshooting table).
pub fn troubleshooting(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Transient => {
            "the source or the storage could not be reached: check the data source's connection info and network reachability (`rtsync datasource test`)"
        }
        ErrorKind::Source => {
            "source problem: check the data source's connection info, credentials and permissions, the topic/table name and the consumer offsets (`rtsync datasource test DS --object TOPIC`)"
        }
        ErrorKind::Config => {
            "the task's configuration is invalid: fix it with `rtsync task configure` and deploy again"
        }
        ErrorKind::Data => {
            "a message could not be parsed or cast: check the JSONPath expressions and that the messages are valid JSON (`rtsync task preview`), or use --error-policy dead_letter"
        }
        ErrorKind::Sink => {
            "the target table could not be written: check that it exists or can be created, that its column types are compatible with the mapping, and the storage permissions"
        }
        ErrorKind::Fenced => "another copy of this task is writing to the same table: stop the other copy",
        ErrorKind::Internal => "an internal error of rtsync: please report it with this log",
    }
}

/// A catalog write the task's record depends on (attempts, run ends, state, last error):
/// retried a few times, since the catalog may be busy or unreachable for a moment, then logged
/// as an error that names what the catalog now misses. The task itself goes on either way.
/// `record!(supervisor, "what", |catalog| catalog.call(…))` gives `Option<T>`.
macro_rules! record {
    ($sup:expr, $what:expr, |$c:ident| $call:expr) => {{
        let mut delay = CATALOG_RETRY_DELAY;
        let mut out = None;
        for attempt in 1..=CATALOG_TRIES {
            let $c = &$sup.sched.catalog;
            match $call.await {
                Ok(v) => {
                    out = Some(v);
                    break;
                }
                Err(e) if attempt < CATALOG_TRIES => {
                    tracing::warn!(task = %$sup.req.spec.name, run = $sup.req.run_id, error = %e, "recording {} in the catalog failed, retrying", $what);
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                Err(e) => {
                    tracing::error!(task = %$sup.req.spec.name, run = $sup.req.run_id, error = %e, "recording {} in the catalog failed {CATALOG_TRIES} times: `rtsync runs show {}` and `task show` miss it", $what, $sup.req.run_id);
                }
            }
        }
        out
    }};
}

struct Supervisor {
    sched: Arc<Scheduler>,
    slot: Arc<TaskSlot>,
    req: RunRequest,
    stop_rx: watch::Receiver<bool>,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Supervisor {
    fn requested(&self) -> Option<StopReason> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    async fn end_run(&self, why: Option<StopReason>) {
        // A daemon shutdown (no run end) leaves the run open: it goes on at the next start.
        if let Some((status, text)) = why.as_ref().and_then(StopReason::run_end) {
            record!(self, "the run's end", |c| c.end_run(self.req.run_id, status, &text));
        }
    }

    /// A catalog write the task's record depends on (attempts, run ends, state, last error):
    /// retried a few times, since SQLite may be busy for a moment, then logged as an error
    /// that names what the catalog now misses. The task itself goes on either way.
    async fn run(mut self) {
        let app_id = self.req.spec.name.clone();
        let run_id = self.req.run_id;
        let mut backoff = Backoff::default();
        let mut why = self.req.reason.clone();
        loop {
            let Some(attempt) =
                record!(self, "a new attempt", |c| c.insert_attempt(run_id, &why, &self.sched.worker_id))
            else {
                tracing::error!(task = %app_id, run = run_id, "the attempt could not be recorded in the catalog; the run stops");
                record!(self, "the run's end", |c| {
                    c.end_run(run_id, "failed", "the catalog could not record an attempt")
                });
                record!(self, "the task's state", |c| c.set_state(self.req.task_id, TaskState::Failed));
                break;
            };
            let route = Route { run_id, attempt };
            logs::register(&app_id, route);
            self.slot.set_live(|l| {
                l.phase = Some("running");
                l.run_id = Some(run_id);
                l.attempt = Some(attempt);
                l.retry_at = None;
            });
            let span = tracing::info_span!(logs::ATTEMPT_SPAN, task = %app_id, run = run_id, attempt);
            span.in_scope(|| {
                tracing::info!(
                    task = %app_id,
                    version = self.req.version,
                    reason = %why,
                    target = %self.req.spec.sink.table_location(),
                    "attempt {attempt} of run {run_id} started"
                )
            });
            let metrics = self.slot.metrics.clone();
            let commits_before = metrics.commits.load(Ordering::Relaxed);
            let opts = RunOptions { metrics: metrics.clone(), shutdown: self.stop_rx.clone(), retry: false };
            let result = run_task(&self.req.spec, opts).instrument(span.clone()).await;
            // Later lines of this attempt are written inside its span.
            logs::unregister(&app_id, route);
            let requested = self.requested();
            match result {
                Ok(()) => {
                    let (status, text) = match &requested {
                        Some(r) => r.attempt_end(),
                        None => ("stopped", "stopped".to_string()),
                    };
                    let pos = metrics.snapshot().position;
                    span.in_scope(
                        || tracing::info!(task = %app_id, position = %pos, "attempt {attempt} ended: {text}"),
                    );
                    record!(self, "the attempt's end", |c| c.end_attempt(run_id, attempt, status, None, None));
                    self.end_run(requested).await;
                    break;
                }
                Err(err) => {
                    let report = err.report();
                    let kind = err.kind();
                    record!(self, "the attempt's failure", |c| {
                        c.end_attempt(run_id, attempt, "failed", Some(&report), Some(kind.as_str()))
                    });
                    if requested.is_some() {
                        span.in_scope(|| tracing::warn!(task = %app_id, error = %report, "attempt {attempt} failed while stopping"));
                        self.end_run(requested).await;
                        break;
                    }
                    let hint = troubleshooting(kind);
                    let mut retry = kind.is_transient();
                    if kind == ErrorKind::Fenced
                        && let Some(lease) = &self.req.lease
                    {
                        match lease.cluster.still_holds(self.req.task_id, lease.epoch).await {
                            Ok(true) => {
                                span.in_scope(|| tracing::warn!(task = %app_id, epoch = lease.epoch, "the commit was fenced while this worker still holds the task's lease: re-opening the task from its table"));
                                retry = true;
                            }
                            held => {
                                let why = match held {
                                    Ok(_) => "the lease is another worker's now".to_string(),
                                    Err(e) => {
                                        format!("the catalog cannot say whether the lease is still this worker's ({e})")
                                    }
                                };
                                span.in_scope(|| tracing::warn!(task = %app_id, epoch = lease.epoch, "the commit was fenced and {why}: dropping the task here without a retry (its holder runs it)"));
                                break;
                            }
                        }
                    }
                    if retry {
                        if metrics.commits.load(Ordering::Relaxed) > commits_before {
                            backoff.reset();
                        }
                        let delay = backoff.next_delay();
                        let text = format!(
                            "attempt {attempt} of run {run_id} failed ({kind}): {report}; retrying in {}s. Check: {hint}",
                            delay.as_secs()
                        );
                        span.in_scope(|| tracing::warn!(task = %app_id, error_kind = %kind, retry_in_ms = delay.as_millis() as u64, "{text}"));
                        record!(self, "the task's last error", |c| c.set_last_error(self.req.task_id, Some(&text)));
                        self.slot.set_live(|l| {
                            l.phase = Some("retrying");
                            l.retry_at = Some(Instant::now() + delay);
                        });
                        let stopped = tokio::select! {
                            _ = tokio::time::sleep(delay) => false,
                            _ = self.stop_rx.changed() => true,
                        };
                        if stopped || *self.stop_rx.borrow() {
                            self.end_run(self.requested()).await;
                            break;
                        }
                        why = "retry after a transient error".to_string();
                        continue;
                    }
                    let text = format!("run {run_id} failed ({kind}) in attempt {attempt}: {report}. Check: {hint}");
                    span.in_scope(|| tracing::error!(task = %app_id, error_kind = %kind, "{text}; the task is stopped until `rtsync task start`"));
                    record!(self, "the run's failure", |c| c.end_run(run_id, "failed", &report));
                    record!(self, "the task's state", |c| c.set_state(self.req.task_id, TaskState::Failed));
                    record!(self, "the task's last error", |c| c.set_last_error(self.req.task_id, Some(&text)));
                    break;
                }
            }
        }
        self.slot.set_live(|l| {
            l.phase = None;
            l.retry_at = None;
        });
        // The run is over for this supervisor: let `stop` find nothing active.
        if let Ok(mut a) = self.slot.active.lock()
            && a.as_ref().is_some_and(|r| r.run_id == run_id)
        {
            *a = None;
        }
        self.sched.flush(self.req.task_id, &self.slot).await;
    }
}
