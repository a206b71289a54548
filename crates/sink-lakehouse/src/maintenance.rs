//! Table maintenance: the one component that rewrites a table's files.
//!
//! **What it does.** For every table a task writes (its `__dlq` table too), a background
//! [`Maintainer`] started by [`crate::DeltaSink`] at open:
//! - **compacts**: when the table has [`LakehouseSinkConfig::compact_min_files`] small files
//!   (under half of `target_file_size`), or every `compact_interval` while it has two or more,
//!   small files are bin-packed into files near `target_file_size` by the delta crate's
//!   OPTIMIZE, in a commit of its own whose actions carry `dataChange = false`: streaming and
//!   change-data readers do not see the rows twice, and a reader at any version sees each row
//!   once.
//! - **vacuums**: files that left the table more than `vacuum_retention` ago (default 7 days,
//!   Delta's own default) are deleted ("lite" vacuum: only files the log says were removed, so a
//!   data file written for a commit still in flight is never touched).
//! - **log checkpoints and log cleanup** are the delta crate's post-commit hook: a checkpoint
//!   every `delta.checkpointInterval` commits (100 in tables rtsync creates) and, after it, the
//!   removal of JSON commits older than `delta.logRetentionDuration` (30 days unless the task's
//!   `log_retention` says otherwise). Maintenance commits count towards the interval.
//!
//! **The resume position survives log cleanup.** Every maintenance commit carries the task's
//! last committed checkpoint in its commit info, under the same key as the task's own commits.
//! The sink looks up the position of the `txn` version the table holds, newest commit first, so
//! after the JSON commit of that epoch is cleaned up, a later maintenance commit still names it.
//!
//! **Never in the way of the task.** Maintenance runs concurrently with the task's commits on
//! its own table handle. The task's appends are blind and never conflict with a compaction;
//! when a compaction commits first and removes files a MERGE or an overwrite of the task read,
//! the task's commit is tried again on the new snapshot (the rows are the same). A compaction
//! that loses to the task's commit is dropped and tried at the next round. A crash in the middle
//! leaves only unreferenced files (vacuumed later): nothing is lost or duplicated.
//!
//! **Extension.** Every rewrite of a table's files belongs here: the merge-on-read work adds a
//! purge of rows hidden by deletion vectors as another step of `round`, under the same policy,
//! metrics and conflict handling, so two components never rewrite files of one table.
//!
//! **Library functions** for the CLI, the API and MCP: [`table_info`], [`optimize`] and
//! [`vacuum`] (dry run or not) work on any table root and storage options.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use deltalake::kernel::transaction::{CommitConflictError, CommitProperties, TransactionError};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use rtsync_core::{SyncError, SyncResult};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::mor::ActiveFile;
use crate::read::load_table;
use crate::{COMMIT_INFO_KEY, LakehouseSinkConfig, StoredCheckpoint, classify};

/// The commit-info key marking rtsync's maintenance commits (value: the task).
pub const MAINTENANCE_INFO_KEY: &str = "rtsync_maintenance";
/// How often the background loop looks at the table when no commit wakes it.
const IDLE_POLL: Duration = Duration::from_secs(60);
/// Vacuum runs at most this often (and at least every `vacuum_retention`).
const VACUUM_EVERY: Duration = Duration::from_secs(3600);
/// History scanned by [`table_info`] for the last compaction and vacuum.
const INFO_HISTORY: usize = 1000;

/// Maintenance counters of one table, readable while the task runs.
#[derive(Debug, Default)]
pub struct TableMetrics {
    pub active_files: AtomicU64,
    pub table_bytes: AtomicU64,
    pub small_files: AtomicU64,
    pub table_version: AtomicU64,
    pub compactions: AtomicU64,
    pub compaction_ms_total: AtomicU64,
    pub last_compaction_ms: AtomicU64,
    pub files_compacted: AtomicU64,
    /// Files rewritten without the rows their deletion vector hid (merge-on-read tables).
    pub files_purged: AtomicU64,
    /// Compactions dropped because the task committed first (tried again later).
    pub compaction_conflicts: AtomicU64,
    pub vacuums: AtomicU64,
    pub vacuum_ms_total: AtomicU64,
    pub last_vacuum_ms: AtomicU64,
    pub files_vacuumed: AtomicU64,
    pub errors: AtomicU64,
}

/// A point-in-time copy of [`TableMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableMetricsSnapshot {
    pub active_files: u64,
    pub table_bytes: u64,
    pub small_files: u64,
    pub table_version: u64,
    pub compactions: u64,
    pub compaction_ms_total: u64,
    pub last_compaction_ms: u64,
    pub files_compacted: u64,
    pub files_purged: u64,
    pub compaction_conflicts: u64,
    pub vacuums: u64,
    pub vacuum_ms_total: u64,
    pub last_vacuum_ms: u64,
    pub files_vacuumed: u64,
    pub errors: u64,
}

impl TableMetrics {
    pub fn snapshot(&self) -> TableMetricsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TableMetricsSnapshot {
            active_files: l(&self.active_files),
            table_bytes: l(&self.table_bytes),
            small_files: l(&self.small_files),
            table_version: l(&self.table_version),
            compactions: l(&self.compactions),
            compaction_ms_total: l(&self.compaction_ms_total),
            last_compaction_ms: l(&self.last_compaction_ms),
            files_compacted: l(&self.files_compacted),
            files_purged: l(&self.files_purged),
            compaction_conflicts: l(&self.compaction_conflicts),
            vacuums: l(&self.vacuums),
            vacuum_ms_total: l(&self.vacuum_ms_total),
            last_vacuum_ms: l(&self.last_vacuum_ms),
            files_vacuumed: l(&self.files_vacuumed),
            errors: l(&self.errors),
        }
    }

    fn set_stats(&self, stats: &FileStats, version: Option<u64>) {
        self.active_files.store(stats.files, Ordering::Relaxed);
        self.table_bytes.store(stats.bytes, Ordering::Relaxed);
        self.small_files.store(stats.small_files, Ordering::Relaxed);
        self.table_version.store(version.unwrap_or_default(), Ordering::Relaxed);
    }
}

/// Metrics of every table maintained in this process, by table location (URI without
/// credentials): what `/metrics` and `task show` report.
static REGISTRY: LazyLock<Mutex<BTreeMap<String, Weak<TableMetrics>>>> = LazyLock::new(Default::default);

/// The maintenance metrics of every table a running task maintains, by table location.
pub fn table_metrics() -> Vec<(String, TableMetricsSnapshot)> {
    let Ok(mut registry) = REGISTRY.lock() else {
        return Vec::new();
    };
    registry.retain(|_, m| m.strong_count() > 0);
    registry.iter().filter_map(|(k, m)| m.upgrade().map(|m| (k.clone(), m.snapshot()))).collect()
}

/// The background maintenance of one table; dropping it stops the loop (a compaction cut
/// short leaves only unreferenced files).
pub struct Maintainer {
    checkpoint: watch::Sender<Option<StoredCheckpoint>>,
    metrics: Arc<TableMetrics>,
    handle: JoinHandle<()>,
}

impl Maintainer {
    /// Starts the loop for the table of `config`, written by `task`, whose last committed
    /// checkpoint is `checkpoint`. Must be called inside a tokio runtime.
    pub(crate) fn start(config: LakehouseSinkConfig, task: String, checkpoint: Option<StoredCheckpoint>) -> Self {
        let metrics = Arc::new(TableMetrics::default());
        if let Ok(mut registry) = REGISTRY.lock() {
            registry.insert(config.table_location(), Arc::downgrade(&metrics));
        }
        let (tx, rx) = watch::channel(checkpoint);
        let handle = tokio::spawn(run(config, task, rx, metrics.clone()));
        Self { checkpoint: tx, metrics, handle }
    }

    /// The task committed `checkpoint`: later maintenance commits carry it, and the policy is
    /// looked at again.
    pub(crate) fn committed(&self, checkpoint: StoredCheckpoint) {
        self.checkpoint.send_replace(Some(checkpoint));
    }

    pub fn metrics(&self) -> Arc<TableMetrics> {
        self.metrics.clone()
    }
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

async fn run(
    config: LakehouseSinkConfig,
    task: String,
    mut checkpoint: watch::Receiver<Option<StoredCheckpoint>>,
    metrics: Arc<TableMetrics>,
) {
    let mut state = LoopState { table: None, last_compaction: Instant::now(), last_vacuum: None };
    let mut tick = tokio::time::interval(config.compact_interval.min(IDLE_POLL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // Each commit adds a file or more: the table is looked at every half policy's worth of
    // commits, not after each one (a refresh is a LIST on object storage).
    let every = (config.compact_min_files / 2).max(1);
    let mut commits = 0;
    loop {
        tokio::select! {
            changed = checkpoint.changed() => {
                if changed.is_err() {
                    return;
                }
                commits += 1;
                if commits < every {
                    continue;
                }
            }
            _ = tick.tick() => {}
        }
        commits = 0;
        let current = checkpoint.borrow_and_update().clone();
        if let Err(err) = round(&config, &task, current.as_ref(), &metrics, &mut state).await {
            metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(task = %task, table = %config.table_location(), error = %err, "table maintenance failed; tried again later");
            // A fresh handle next time (the error may have been the handle's state).
            state.table = None;
        }
    }
}

struct LoopState {
    table: Option<DeltaTable>,
    last_compaction: Instant,
    last_vacuum: Option<Instant>,
}

/// One look at the table: stats, then whatever the policy says is due.
async fn round(
    config: &LakehouseSinkConfig,
    task: &str,
    checkpoint: Option<&StoredCheckpoint>,
    metrics: &TableMetrics,
    state: &mut LoopState,
) -> SyncResult<()> {
    let location = config.table_location();
    let mut table = match state.table.take() {
        Some(t) => t,
        None => load_table(config, None).await?,
    };
    table.update_incremental(None).await.map_err(|e| classify(e, &format!("refreshing table {location}")))?;
    let stats = file_stats(&table, config.target_file_size)?;
    metrics.set_stats(&stats, table.version());
    let properties = commit_properties(task, checkpoint)?;

    let due = stats.small_files >= config.compact_min_files as u64
        || (stats.small_files >= 2 && state.last_compaction.elapsed() >= config.compact_interval);
    if due {
        let started = Instant::now();
        match compact(table.clone(), config.target_file_size, properties.clone()).await? {
            Ok((compacted, report)) => {
                table = compacted;
                state.last_compaction = Instant::now();
                if report.files_removed > 0 {
                    let ms = started.elapsed().as_millis() as u64;
                    metrics.compactions.fetch_add(1, Ordering::Relaxed);
                    metrics.compaction_ms_total.fetch_add(ms, Ordering::Relaxed);
                    metrics.last_compaction_ms.store(ms, Ordering::Relaxed);
                    metrics.files_compacted.fetch_add(report.files_removed, Ordering::Relaxed);
                    tracing::info!(task, table = %location, files_removed = report.files_removed, files_added = report.files_added, ms, "compacted");
                    metrics.set_stats(&file_stats(&table, config.target_file_size)?, table.version());
                }
            }
            Err(e) if is_conflict(&e) => {
                metrics.compaction_conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(task, table = %location, error = %e, "compaction lost to a commit of the task; next round");
                table
                    .update_incremental(None)
                    .await
                    .map_err(|e| classify(e, &format!("refreshing table {location}")))?;
            }
            Err(e) => return Err(classify(e, &format!("compacting table {location}"))),
        }
    }

    if crate::supports_deletion_vectors(&table) {
        match rewrite(&table, Rewrite::Purge(config.purge_threshold), properties.clone()).await? {
            Ok(CompactionReport { files_removed: 0, .. }) => {}
            Ok(CompactionReport { files_removed: files, .. }) => {
                metrics.files_purged.fetch_add(files, Ordering::Relaxed);
                tracing::info!(task, table = %location, files, "purged rows hidden by deletion vectors");
            }
            Err(e) if is_conflict(&e) => {
                metrics.compaction_conflicts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(task, table = %location, error = %e, "purge lost to a commit of the task; next round");
            }
            Err(e) => return Err(classify(e, &format!("purging table {location}"))),
        }
        table.update_incremental(None).await.map_err(|e| classify(e, &format!("refreshing table {location}")))?;
    }

    let vacuum_every = config.vacuum_retention.min(VACUUM_EVERY).max(config.compact_interval);
    if state.last_vacuum.is_none_or(|at| at.elapsed() >= vacuum_every) {
        let started = Instant::now();
        let (vacuumed, deleted) = vacuum_table(table, config.vacuum_retention, false, properties).await?;
        table = vacuumed;
        state.last_vacuum = Some(Instant::now());
        if !deleted.is_empty() {
            let ms = started.elapsed().as_millis() as u64;
            metrics.vacuums.fetch_add(1, Ordering::Relaxed);
            metrics.vacuum_ms_total.fetch_add(ms, Ordering::Relaxed);
            metrics.last_vacuum_ms.store(ms, Ordering::Relaxed);
            metrics.files_vacuumed.fetch_add(deleted.len() as u64, Ordering::Relaxed);
            tracing::info!(task, table = %location, files = deleted.len(), ms, "vacuumed");
        }
    }
    state.table = Some(table);
    Ok(())
}

/// Commit properties of a maintenance commit: the task's last committed checkpoint (so the
/// position stays findable after log cleanup) and a marker naming the task.
fn commit_properties(task: &str, checkpoint: Option<&StoredCheckpoint>) -> SyncResult<CommitProperties> {
    let mut metadata = vec![(MAINTENANCE_INFO_KEY.to_string(), serde_json::Value::String(task.to_string()))];
    if let Some(c) = checkpoint {
        let value = serde_json::to_value(c)
            .map_err(|e| SyncError::with_source(rtsync_core::ErrorKind::Internal, "serializing the checkpoint", e))?;
        metadata.push((COMMIT_INFO_KEY.to_string(), value));
    }
    Ok(CommitProperties::default().with_metadata(metadata))
}

/// Did a commit lose to another commit on the same files (and may be tried again)?
fn is_conflict(err: &DeltaTableError) -> bool {
    matches!(
        err,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_)
        }
    )
}

/// Did a commit of the task lose to a maintenance commit (not to a twin of the task)?
pub(crate) fn lost_to_maintenance(err: &DeltaTableError) -> bool {
    is_conflict(err)
        && !matches!(
            err,
            DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(CommitConflictError::ConcurrentTransaction)
            }
        )
}

/// Files and bytes of a table's current version.
#[derive(Debug, Clone, Copy, Default)]
struct FileStats {
    files: u64,
    bytes: u64,
    small_files: u64,
}

/// A file under half the target size is small: compaction packs such files together.
fn is_small(size: i64, target_file_size: u64) -> bool {
    (size.max(0) as u64) < target_file_size / 2
}

fn file_stats(table: &DeltaTable, target_file_size: u64) -> SyncResult<FileStats> {
    let Ok(snapshot) = table.snapshot() else {
        return Ok(FileStats::default());
    };
    let mut stats = FileStats::default();
    for file in snapshot.log_data().iter() {
        stats.files += 1;
        stats.bytes += file.size().max(0) as u64;
        if is_small(file.size(), target_file_size) {
            stats.small_files += 1;
        }
    }
    Ok(stats)
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactionReport {
    /// The table version after the compaction (unchanged when there was nothing to do).
    pub version: Option<u64>,
    pub files_removed: u64,
    pub files_added: u64,
    pub bytes_removed: u64,
    pub bytes_added: u64,
}

/// One rewrite of a table's files at a time in this process, per table location.
///
/// The delta crate's conflict checker ignores `dataChange = false` removes of a winning
/// commit, so two rewrites planned on the same snapshot (the background compaction and an
/// `rtsync table optimize`, or a compaction and a purge) would both commit and the rows of the
/// files both rewrote would be in the table twice. Each rewrite holds this lock and plans on
/// the table as it is once it holds it. (Rewrites from another process are not covered: run
/// `rtsync table optimize` through the daemon that runs the task, or set `maintenance = false`.)
async fn rewrite_lock(table: &DeltaTable) -> tokio::sync::OwnedMutexGuard<()> {
    static LOCKS: LazyLock<Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);
    let lock = match LOCKS.lock() {
        Ok(mut locks) => locks.entry(table.table_url().to_string()).or_default().clone(),
        Err(poisoned) => poisoned.into_inner().entry(table.table_url().to_string()).or_default().clone(),
    };
    lock.lock_owned().await
}

/// Bin-packs small files into files near `target_file_size` (`dataChange = false`). On a
/// merge-on-read table deltalake's `optimize` is not used (it would rewrite every file under the
/// target size, the ones the task keeps adding deletion vectors to, and lose to the task's next
/// commit): only [`small_files_to_pack`] are rewritten, by [`rewrite`].
async fn compact(
    mut table: DeltaTable,
    target_file_size: u64,
    properties: CommitProperties,
) -> SyncResult<Result<(DeltaTable, CompactionReport), DeltaTableError>> {
    if crate::supports_deletion_vectors(&table) {
        let report = match rewrite(&table, Rewrite::Pack(target_file_size), properties).await? {
            Ok(report) => report,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = table.update_incremental(None).await {
            return Ok(Err(e));
        }
        return Ok(Ok((table, report)));
    }
    let _rewriting = rewrite_lock(&table).await;
    if let Err(e) = table.update_incremental(None).await {
        return Ok(Err(e));
    }
    let target = NonZeroU64::new(target_file_size).unwrap_or(NonZeroU64::MIN);
    let optimized = table.optimize().with_target_size(target).with_commit_properties(properties).await;
    Ok(optimized.map(|(table, m)| {
        let report = CompactionReport {
            version: table.version(),
            files_removed: m.num_files_removed,
            files_added: m.num_files_added,
            bytes_removed: m.files_removed.total_size.max(0) as u64,
            bytes_added: m.files_added.total_size.max(0) as u64,
        };
        (table, report)
    }))
}

/// The files a purge rewrites: their deletion vector hides more than `threshold` of their rows.
fn files_to_purge(active: &HashMap<String, ActiveFile>, threshold: f64) -> Vec<&ActiveFile> {
    active
        .values()
        .filter(|f| match (&f.dv, f.num_records) {
            (Some(dv), Some(n)) if n > 0 => dv.cardinality as f64 > threshold * n as f64,
            _ => false,
        })
        .collect()
}

/// What [`rewrite`] rewrites.
#[derive(Debug, Clone, Copy)]
enum Rewrite {
    /// [`files_to_purge`] at this threshold.
    Purge(f64),
    /// [`small_files_to_pack`] for this target file size.
    Pack(u64),
}

/// The files of a merge-on-read table compaction bin-packs: under half the target size and
/// without a deletion vector, smallest first, at most one target file's worth per round (so a
/// round is short and seldom loses to the task's commits). Files with deletion vectors are the
/// ones the task's commits keep changing; purge rewrites them once enough of their rows are
/// deleted.
fn small_files_to_pack(active: &HashMap<String, ActiveFile>, target_file_size: u64) -> Vec<&ActiveFile> {
    let mut small: Vec<&ActiveFile> =
        active.values().filter(|f| f.dv.is_none() && is_small(f.size, target_file_size)).collect();
    small.sort_by(|a, b| a.size.cmp(&b.size).then_with(|| a.path.cmp(&b.path)));
    let mut total = 0u64;
    let picked: Vec<&ActiveFile> = small
        .into_iter()
        .take_while(|f| {
            total += f.size.max(0) as u64;
            total <= target_file_size
        })
        .collect();
    if picked.len() < 2 { Vec::new() } else { picked }
}

/// Rewrites the files `what` picks from the table's files (once this process's rewrite lock
/// is held), without the rows their deletion vectors hide, in one `dataChange = false` commit:
/// the purge (files whose deletion vector hides more than `purge_threshold` of their rows) and
/// the compaction of a merge-on-read table. The commit is not rebased: when the task committed
/// in between (it may have changed the same files' DVs), it fails as a conflict and the rewrite
/// waits for the next round. The key index of the task catches up through the new files.
async fn rewrite(
    table: &DeltaTable,
    what: Rewrite,
    properties: CommitProperties,
) -> SyncResult<Result<CompactionReport, DeltaTableError>> {
    use deltalake::arrow::array::BooleanArray;
    use deltalake::arrow::compute::filter_record_batch;
    use deltalake::kernel::Action;
    use deltalake::kernel::transaction::CommitBuilder;
    use deltalake::writer::DeltaWriter;

    let location = table.table_url().to_string();
    let _rewriting = rewrite_lock(table).await;
    let mut table = table.clone();
    table.update_incremental(None).await.map_err(|e| classify(e, &format!("refreshing table {location}")))?;
    let table = &table;
    let active =
        crate::mor::active_files(table).map_err(|e| classify(e, &format!("listing the files of {location}")))?;
    let (due, doing) = match what {
        Rewrite::Purge(threshold) => (files_to_purge(&active, threshold), "purging rows hidden by deletion vectors"),
        Rewrite::Pack(target) => (small_files_to_pack(&active, target), "compacting small files"),
    };
    if due.is_empty() {
        return Ok(Ok(CompactionReport { version: table.version(), ..CompactionReport::default() }));
    }
    tracing::info!(table = %location, files = due.len(), "{doing}");
    let snapshot = table.snapshot().map_err(|e| classify(e, &format!("reading the snapshot of {location}")))?;
    let fields: Vec<_> = snapshot.snapshot().arrow_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let store = table.log_store().object_store(None);
    let mut dvs = crate::mor::DvCache::default();
    let mut writer = deltalake::writer::RecordBatchWriter::for_table(table)
        .map_err(|e| classify(e, &format!("preparing a writer for {location}")))?;
    let now = chrono::Utc::now().timestamp_millis();
    let mut actions = Vec::new();
    for file in &due {
        let rows = crate::mor::read_columns(&store, file, &fields, None).await?;
        let live = match dvs.get(&store, file).await? {
            Some(deleted) => {
                let keep: BooleanArray = (0..rows.num_rows() as u64).map(|i| Some(!deleted.contains(i))).collect();
                filter_record_batch(&rows, &keep)?
            }
            None => rows,
        };
        if live.num_rows() > 0 {
            writer.write(live).await.map_err(|e| classify(e, &format!("writing data files of {location}")))?;
        }
        let mut remove = file.remove(now);
        remove.data_change = false;
        actions.push(Action::Remove(remove));
    }
    let adds = writer.flush().await.map_err(|e| classify(e, &format!("writing data files of {location}")))?;
    let mut report = CompactionReport {
        version: None,
        files_removed: due.len() as u64,
        files_added: adds.len() as u64,
        bytes_removed: due.iter().map(|f| f.size.max(0) as u64).sum(),
        bytes_added: adds.iter().map(|a| a.size.max(0) as u64).sum(),
    };
    actions.extend(adds.into_iter().map(|mut a| {
        a.data_change = false;
        Action::Add(a)
    }));
    let operation = deltalake::protocol::DeltaOperation::Optimize { predicate: None, target_size: 0 };
    let committed = CommitBuilder::from(properties)
        .with_max_retries(0)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await;
    Ok(committed.map(|done| {
        report.version = Some(done.version() as u64);
        report
    }))
}

async fn vacuum_table(
    table: DeltaTable,
    retention: Duration,
    dry_run: bool,
    properties: CommitProperties,
) -> SyncResult<(DeltaTable, Vec<String>)> {
    let location = table.table_url().to_string();
    let retention = chrono::Duration::from_std(retention)
        .map_err(|_| SyncError::config(format!("vacuum retention {retention:?} is too long")))?;
    let (table, m) = table
        .vacuum()
        .with_mode(VacuumMode::Lite)
        .with_retention_period(retention)
        // The task's own `vacuum_retention` is the user's decision, even below Delta's 7 days.
        .with_enforce_retention_duration(false)
        .with_dry_run(dry_run)
        .with_commit_properties(properties)
        .await
        .map_err(|e| classify(e, &format!("vacuuming table {location}")))?;
    Ok((table, m.files_deleted))
}

/// What `rtsync table info` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    pub location: String,
    pub version: u64,
    pub active_files: u64,
    pub bytes: u64,
    /// Files under half of `target_file_size`.
    pub small_files: u64,
    /// Commit time (epoch ms) of the last compaction (OPTIMIZE) in the recent history.
    pub last_compaction_ms: Option<i64>,
    /// Commit time (epoch ms) of the last vacuum in the recent history.
    pub last_vacuum_ms: Option<i64>,
    /// Version of the last log checkpoint.
    pub last_checkpoint_version: Option<i64>,
    /// The table has the `deletionVectors` feature: CDC tasks apply changes merge-on-read,
    /// and only readers that apply deletion vectors read it right.
    pub deletion_vectors: bool,
    /// Active files with a deletion vector, and the rows those hide (purged by maintenance).
    pub files_with_deletion_vectors: u64,
    pub rows_hidden: u64,
}

/// Version, files, size, small files, and the last compaction, vacuum and log checkpoint of
/// the table at `config` (its `root`, `storage_options`, `schema` and `table`).
pub async fn table_info(config: &LakehouseSinkConfig) -> SyncResult<TableInfo> {
    let location = config.table_location();
    let table = load_table(config, None).await?;
    let stats = file_stats(&table, config.target_file_size)?;
    let mut info = TableInfo {
        location: location.clone(),
        version: table.version().unwrap_or_default(),
        active_files: stats.files,
        bytes: stats.bytes,
        small_files: stats.small_files,
        deletion_vectors: crate::supports_deletion_vectors(&table),
        ..TableInfo::default()
    };
    if info.deletion_vectors
        && let Ok(snapshot) = table.snapshot()
    {
        for dv in snapshot.log_data().iter().filter_map(|f| f.deletion_vector_descriptor()) {
            info.files_with_deletion_vectors += 1;
            info.rows_hidden += dv.cardinality.max(0) as u64;
        }
    }
    let mut history = table.history(Some(INFO_HISTORY));
    while let Some(commit) =
        history.try_next().await.map_err(|e| classify(e, &format!("reading the history of {location}")))?
    {
        let op = commit.operation.as_deref().unwrap_or_default();
        if op == "OPTIMIZE" && info.last_compaction_ms.is_none() {
            info.last_compaction_ms = commit.timestamp;
        }
        if op.starts_with("VACUUM") && info.last_vacuum_ms.is_none() {
            info.last_vacuum_ms = commit.timestamp;
        }
        if info.last_compaction_ms.is_some() && info.last_vacuum_ms.is_some() {
            break;
        }
    }
    drop(history);
    info.last_checkpoint_version = last_checkpoint_version(&table).await?;
    Ok(info)
}

/// Enables deletion vectors on the table at `config` (protocol reader 3 / writer 7 with the
/// `deletionVectors` feature): CDC tasks writing it apply changes merge-on-read from their
/// next start. Readers without deletion-vector support can no longer read the table. Returns
/// false when the table had them already.
pub async fn enable_deletion_vectors(config: &LakehouseSinkConfig) -> SyncResult<bool> {
    let location = config.table_location();
    let table = load_table(config, None).await?;
    if crate::supports_deletion_vectors(&table) {
        return Ok(false);
    }
    table
        .add_feature()
        .with_feature(deltalake::kernel::TableFeatures::DeletionVectors)
        .with_allow_protocol_versions_increase(true)
        .await
        .map_err(|e| classify(e, &format!("enabling deletion vectors on {location}")))?;
    tracing::info!(table = %location, "deletion vectors enabled");
    Ok(true)
}

async fn last_checkpoint_version(table: &DeltaTable) -> SyncResult<Option<i64>> {
    #[derive(Deserialize)]
    struct LastCheckpoint {
        version: i64,
    }
    let store = table.log_store().object_store(None);
    let path = deltalake::Path::from("_delta_log/_last_checkpoint");
    let bytes = match store.get(&path).await {
        Ok(got) => got.bytes().await,
        Err(deltalake::ObjectStoreError::NotFound { .. }) => return Ok(None),
        Err(e) => Err(e),
    }
    .map_err(|e| classify(e.into(), "reading _delta_log/_last_checkpoint"))?;
    Ok(serde_json::from_slice::<LastCheckpoint>(&bytes).ok().map(|c| c.version))
}

/// The newest rtsync checkpoint in the table's recent history: maintenance commits made
/// outside a task carry it forward, so it stays findable after log cleanup.
async fn latest_checkpoint(table: &DeltaTable) -> SyncResult<Option<StoredCheckpoint>> {
    let mut history = table.history(Some(INFO_HISTORY));
    while let Some(commit) =
        history.try_next().await.map_err(|e| classify(e, &format!("reading the history of {}", table.table_url())))?
    {
        if let Some(stored) = commit.info.get(COMMIT_INFO_KEY)
            && let Ok(stored) = serde_json::from_value::<StoredCheckpoint>(stored.clone())
        {
            return Ok(Some(stored));
        }
    }
    Ok(None)
}

/// Compacts the table at `config` now (bin-packing small files into files near
/// `target_file_size`, `dataChange = false`). Safe while a task writes the table: a conflict
/// with its commits is retried a few times.
pub async fn optimize(config: &LakehouseSinkConfig) -> SyncResult<CompactionReport> {
    let location = config.table_location();
    let mut attempt = 0;
    loop {
        let table = load_table(config, None).await?;
        let properties = commit_properties("rtsync table optimize", latest_checkpoint(&table).await?.as_ref())?;
        match compact(table, config.target_file_size, properties).await? {
            Ok((_, report)) => return Ok(report),
            Err(e) if is_conflict(&e) && attempt < 5 => attempt += 1,
            Err(e) => return Err(classify(e, &format!("compacting table {location}"))),
        }
    }
}

/// Deletes the data files that left the table at `config` more than `retention` ago
/// (default: the task option `vacuum_retention`); `dry_run` only lists them.
pub async fn vacuum(
    config: &LakehouseSinkConfig,
    retention: Option<Duration>,
    dry_run: bool,
) -> SyncResult<Vec<String>> {
    let table = load_table(config, None).await?;
    let properties = commit_properties("rtsync table vacuum", latest_checkpoint(&table).await?.as_ref())?;
    let (_, files) = vacuum_table(table, retention.unwrap_or(config.vacuum_retention), dry_run, properties).await?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_means_under_half_the_target() {
        assert!(is_small(0, 1024));
        assert!(is_small(511, 1024));
        assert!(!is_small(512, 1024));
        assert!(!is_small(4096, 1024));
    }
}
