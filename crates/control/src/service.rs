//! The daemon's operations, one method per API call: data sources, vclusters, folders,
//! metadata, and the task lifecycle (create, configure, preview, deploy, stop, start,
//! undeploy, delete) with runs and attempts.
//!
//! **Lifecycle.** `draft` → deploy → `running` ⇄ stop/start (`stopped`); a definite error
//! makes it `failed` (start tries again); undeploy goes back to `draft`. Deploy publishes the
//! draft as a new version (unless it equals the deployed one) and starts a run; deploying a
//! running task with a changed draft restarts it on the new version, keeping its position;
//! deploying it unchanged is refused.
//!
//! **Positions and incarnations.** A task's position lives only in its Delta table, under the
//! task's application id: `<name>` for incarnation 1, `<name>.<n>` after. Stop/start and daemon
//! restarts keep the incarnation, so the next attempt resumes from the table. Undeploy bumps
//! it: the next deploy has a new application id, finds no checkpoint, and starts from the
//! configured start offset (the rows already in the table stay). A deploy whose source
//! (data source, schema or topic) differs from the deployed version's bumps it too, since
//! the old position means nothing to the new source.
//!
//! Lifecycle calls are serialized by one lock; reads are not.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rtsync_core::SyncError;
use rtsync_mapping::ColumnSpec;

use crate::TaskSpec;
use crate::catalog::Catalog;
use crate::cluster::{Cluster, Want};
use crate::connectors;
use crate::datasource;
use crate::error::{Error, Result};
use crate::meta;
use crate::model::*;
use crate::preview;
use crate::scheduler::{Lease, RunRequest, Scheduler, StopReason};
use crate::secrets::{self, Secrets};

/// No commit for this long while messages wait: the task is falling behind.
const BEHIND_AFTER: Duration = Duration::from_secs(15);
/// The longest vacuum retention taken: 100 years.
const MAX_VACUUM_RETENTION: Duration = Duration::from_secs(36_500 * 86_400);
/// Freshness above this is called out.
const SLOW_FRESHNESS_MS: u64 = 30_000;

pub struct Control {
    pub catalog: Catalog,
    pub scheduler: Arc<Scheduler>,
    /// The key and the operator's rules for secret references.
    pub secrets: Secrets,
    /// This worker's membership and leases, with a shared (PostgreSQL) catalog; None: the
    /// single daemon of an SQLite catalog, which runs every deployed task itself.
    pub cluster: Option<Arc<Cluster>>,
    /// Where merge-on-read tasks keep their key indexes (this worker's data directory);
    /// None: the sink's default under the system's temporary directory.
    pub key_index_dir: Option<std::path::PathBuf>,
    lifecycle: tokio::sync::Mutex<()>,
}

fn task_not_found(name: &str) -> Error {
    Error::not_found(format!("task {name:?} does not exist (`rtsync task list` shows the tasks)"))
}

fn ds_not_found(name: &str) -> Error {
    Error::not_found(format!("data source {name:?} does not exist (`rtsync datasource list` shows them)"))
}

/// Parses a task type: `REALTIME`/`14`, refusing the seed's other types with a pointer.
pub fn parse_task_type(text: &str) -> Result<i64> {
    let t = text.trim().to_ascii_uppercase().replace('-', "_");
    match t.as_str() {
        "REALTIME" | "REAL_TIME" | "14" | "CDC" | "REALTIME_SYNC" => Ok(TASK_TYPE_REALTIME),
        "BATCH" | "BATCH_SYNC" | "10" | "291" | "OFFLINE" => Err(Error::bad_request(format!(
            "task type {text:?} is batch sync (task_type 10/291): rtsync does not do scheduled batch sync; it runs real-time single-table tasks (--type REALTIME, task_type 14)"
        ))),
        "MULTI_TABLE" | "MULTITABLE" | "MULTI_TABLE_REALTIME" | "281" | "FULL_DATABASE" => {
            Err(Error::bad_request(format!(
                "task type {text:?} is multi-table real-time sync (task_type 281): rtsync syncs one table or topic per task; create one REALTIME task (task_type 14) per table"
            )))
        }
        _ => Err(Error::bad_request(format!(
            "unknown task type {text:?}: rtsync runs real-time single-table sync tasks, --type REALTIME (task_type 14)"
        ))),
    }
}

/// Parses `name=$.json.path:type` (type defaults to string; the type is after the last `:`).
pub fn parse_column_arg(text: &str) -> Result<ColumnSpec> {
    let (name, rest) = text.split_once('=').ok_or_else(|| {
        Error::bad_request(format!("--column {text:?}: expected name=$.json.path:type (e.g. id=$.id:bigint)"))
    })?;
    let (expr, ty) = match rest.rsplit_once(':') {
        Some((e, t))
            if !t.contains(']') && !t.contains(')') || t.trim().to_ascii_lowercase().starts_with("decimal") =>
        {
            (e, t)
        }
        _ => (rest, "string"),
    };
    if name.trim().is_empty() || expr.trim().is_empty() {
        return Err(Error::bad_request(format!("--column {text:?}: name and expression must not be empty")));
    }
    Ok(ColumnSpec::new(name.trim(), expr.trim(), ty.trim()))
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Control {
    pub fn new(catalog: Catalog, scheduler: Arc<Scheduler>, secrets: Secrets, cluster: Option<Arc<Cluster>>) -> Self {
        Self { catalog, scheduler, secrets, cluster, key_index_dir: None, lifecycle: tokio::sync::Mutex::new(()) }
    }

    /// Runs a new or continued run: here (single daemon), or by whichever worker of the
    /// task's vcluster claims its lease (shared catalog; this worker is woken to try first).
    async fn launch(&self, req: RunRequest) {
        match &self.cluster {
            None => self.scheduler.start(req).await,
            Some(c) => c.wake(),
        }
    }

    /// Stops the task's run, wherever it runs, and waits until it has committed and stopped.
    /// The caller has already recorded in the catalog what the task should do next (the
    /// holder on another worker acts on it at its next round). Returns the run id when it ran
    /// here.
    async fn halt(&self, task: &Task, why: StopReason) -> Result<Option<i64>> {
        if self.scheduler.is_active(task.id) || self.cluster.is_none() {
            let run = self.scheduler.stop(task.id, why).await;
            if let Some(c) = &self.cluster {
                c.release(task.id).await?;
            }
            return Ok(run);
        }
        if let Some(holder) = Cluster::holder(self.catalog.db(), task.id).await? {
            tracing::info!(task = %task.name, worker = %holder.worker, "waiting for the worker that runs the task to stop it");
            if !Cluster::wait_released(self.catalog.db(), task.id, crate::cluster::REMOTE_STOP_TIMEOUT).await? {
                return Err(Error::new(
                    crate::error::Code::Unavailable,
                    format!(
                        "worker {} still holds task {:?} after {}s: it stops the task at its next lease round, or its lease expires if it is gone (`rtsync workers list`)",
                        holder.worker,
                        task.name,
                        crate::cluster::REMOTE_STOP_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
        Ok(None)
    }

    /// The workers of the catalog: with a shared catalog its registry; else this daemon.
    pub async fn workers(&self) -> Result<Vec<Worker>> {
        if self.cluster.is_some() {
            return Cluster::workers(self.catalog.db()).await;
        }
        let mut tasks = Vec::new();
        for (id, slot) in self.scheduler.slots() {
            if self.scheduler.is_active(id)
                && let Ok(name) = slot.name.lock()
            {
                tasks.push(name.clone());
            }
        }
        tasks.sort();
        let now = crate::catalog::now();
        Ok(vec![Worker {
            id: self.scheduler.worker_id().to_string(),
            address: self.scheduler.address().to_string(),
            vcluster: "*".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.scheduler.started_at().to_string(),
            last_heartbeat: now,
            heartbeat_age_ms: 0,
            state: "alive".to_string(),
            tasks,
        }])
    }

    /// Where a task runs: its lease holder (shared catalog), or this daemon when it runs it.
    async fn worker_of(&self, task: &Task) -> Result<Option<String>> {
        match &self.cluster {
            Some(_) => Ok(Cluster::holder(self.catalog.db(), task.id).await?.map(|h| h.worker)),
            None => Ok(self.scheduler.is_active(task.id).then(|| self.scheduler.worker_id().to_string())),
        }
    }

    /// A note for a deploy or start when no live worker serves the task's vcluster.
    async fn no_worker_note(&self, task: &Task) -> Result<Option<String>> {
        if self.cluster.is_none() || Cluster::live_workers(self.catalog.db(), &task.vcluster).await? > 0 {
            return Ok(None);
        }
        Ok(Some(format!(
            "no live worker serves vcluster {:?}: the task starts when one does (`rtsync serve --vcluster {}`; `rtsync workers list`)",
            task.vcluster, task.vcluster
        )))
    }

    /// A lease was claimed here: start (or continue) the task's open run on this worker.
    pub async fn start_leased(&self, cluster: &Arc<Cluster>, task_id: i64, epoch: i64) -> Result<()> {
        let _guard = self.lifecycle.lock().await;
        let task = self
            .catalog
            .task_by_id(task_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("task {task_id} vanished")))?;
        if task.state != TaskState::Running {
            return Err(Error::conflict(format!("task {:?} is {}, not running", task.name, task.state)));
        }
        let (version, spec) = match self.deployed_spec(&task).await {
            Ok(v) => v,
            Err(err) => {
                self.catalog.set_state(task.id, TaskState::Failed).await?;
                self.catalog
                    .set_last_error(task.id, Some(&format!("could not start on worker {}: {err}", cluster.opts.id)))
                    .await?;
                if let Some(run) = self.catalog.open_run(task.id).await? {
                    self.catalog.end_run(run.id, "failed", &err.message).await?;
                }
                return Err(err);
            }
        };
        let (run_id, reason) = match self.catalog.open_run(task.id).await? {
            Some(run) if run.version == version && run.incarnation == task.incarnation => {
                (run.id, format!("lease {epoch} claimed by worker {}", cluster.opts.id))
            }
            other => {
                if let Some(run) = other {
                    self.catalog.end_run(run.id, "stopped", "superseded").await?;
                }
                let run = self.catalog.insert_run(task.id, version, task.incarnation).await?;
                (run, format!("lease {epoch} claimed by worker {} (new run)", cluster.opts.id))
            }
        };
        self.scheduler
            .start(RunRequest {
                task_id: task.id,
                task_name: task.name.clone(),
                version,
                incarnation: task.incarnation,
                run_id,
                spec,
                reason,
                lease: Some(Lease { cluster: cluster.clone(), epoch }),
            })
            .await;
        Ok(())
    }

    /// For each task `worker` holds a lease on: keep running it, or stop it because the
    /// catalog says it should not run (stopped, undeployed, failed) or runs another version.
    pub async fn leased_tasks_want(&self, worker: &str) -> Result<Vec<(i64, Want)>> {
        let rows = self
            .catalog
            .db()
            .query(
                "SELECT t.id, t.state, t.deployed_version, t.incarnation, t.vcluster FROM task_leases l JOIN tasks t ON t.id = l.task_id WHERE l.worker_id = $1",
                crate::params![worker],
            )
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let (id, state, version, incarnation, vcluster) =
                (r.i64(0)?, r.text(1)?, r.opt_i64(2)?, r.i64(3)?, r.text(4)?);
            let want = if state != TaskState::Running.as_str() {
                Want::Stop(StopReason::Released(format!("the task is {state} in the catalog")))
            } else if self.cluster.as_ref().is_some_and(|c| c.opts.vcluster != vcluster) {
                Want::Stop(StopReason::Moved(format!("the task moved to vcluster {vcluster}")))
            } else {
                match (self.scheduler.running(id), version) {
                    (Some((v, inc)), Some(want)) if v != want || inc != incarnation => {
                        Want::Stop(StopReason::Redeploy(want))
                    }
                    (None, _) => Want::Stop(StopReason::Released("the task does not run on this worker".into())),
                    _ => Want::Keep,
                }
            };
            out.push((id, want));
        }
        Ok(out)
    }

    /// Brings the stored secrets to this daemon's mode: a password inside a `url` moves to
    /// `password`; with a key, plaintext secrets are encrypted (a key set on a catalog that had
    /// none); every encrypted one must open. Returns how many secret values stay in plaintext.
    pub async fn seal_stored_secrets(&self) -> Result<usize> {
        let mut plaintext = 0;
        let mut updates = Vec::new();
        for ds in self.catalog.datasources().await? {
            let mut props = ds.properties.clone();
            let moved = secrets::move_url_password(&mut props);
            let sealed = self
                .secrets
                .seal_all(&props, self.secrets.key())
                .map_err(|e| e.context(format!("data source {:?}", ds.name)))?;
            let plain = |p: &std::collections::BTreeMap<String, String>| {
                p.iter().filter(|(k, v)| secrets::is_secret_property(k, v) && !secrets::is_encrypted(v)).count()
            };
            if moved || (self.secrets.key().is_some() && plain(&props) > 0) {
                updates.push((ds.id, sealed.clone()));
            }
            plaintext += plain(&sealed);
        }
        if !updates.is_empty() {
            self.catalog.update_datasource_properties(&updates).await?;
            self.catalog.compact().await?;
            tracing::info!(
                datasources = updates.len(),
                "stored secrets brought to this daemon's mode (url passwords split out, encrypted with the key)"
            );
        }
        Ok(plaintext)
    }

    /// First start: the default SYNC vcluster, folder and Lakehouse data source. Workers of a
    /// shared catalog may start together: an insert another one made first is no error.
    pub async fn seed(&self, lakehouse_root: &str) -> Result<()> {
        fn made_elsewhere<T>(r: Result<T>) -> Result<()> {
            match r {
                Ok(_) => Ok(()),
                Err(e) if e.code == crate::error::Code::Conflict => Ok(()),
                Err(e) => Err(e),
            }
        }
        if self.catalog.vcluster(DEFAULT_VCLUSTER).await?.is_none() {
            made_elsewhere(self.catalog.insert_vcluster(DEFAULT_VCLUSTER, "SYNC", DEFAULT_VCLUSTER_SLOTS).await)?;
        }
        if self.catalog.folder(DEFAULT_FOLDER).await?.is_none() {
            made_elsewhere(self.catalog.insert_folder(DEFAULT_FOLDER).await)?;
        }
        match self.catalog.datasource(DEFAULT_LAKEHOUSE).await? {
            None => {
                let props = connectors::default_target_props(lakehouse_root);
                made_elsewhere(
                    self.catalog.insert_datasource(DEFAULT_LAKEHOUSE, connectors::TARGET_TYPE, &props).await,
                )?;
            }
            Some(ds) if ds.properties != connectors::default_target_props(lakehouse_root) => {
                tracing::info!(datasource = DEFAULT_LAKEHOUSE, configured = %lakehouse_root, "the catalog's default lakehouse data source keeps the root it was created with");
            }
            Some(_) => {}
        }
        Ok(())
    }

    // ---- data sources ----

    pub async fn create_datasource(&self, req: CreateDataSource) -> Result<DataSource> {
        validate_name("data source", &req.name)?;
        let ds_type: DsType = req.ds_type.parse()?;
        let stored = self.secrets.store(&req.properties)?;
        datasource::validate(ds_type, &secrets::placeholders(&stored))?;
        if self.catalog.datasource(&req.name).await?.is_some() {
            return Err(Error::conflict(format!("data source {:?} already exists", req.name)));
        }
        Ok(self.catalog.insert_datasource(&req.name, ds_type, &stored).await?.redacted())
    }

    pub async fn datasources(&self, ds_type: Option<&str>) -> Result<Vec<DataSource>> {
        let filter: Option<DsType> = ds_type.map(str::parse).transpose()?;
        Ok(self
            .catalog
            .datasources()
            .await?
            .into_iter()
            .filter(|d| filter.is_none_or(|t| t == d.ds_type))
            .map(|d| d.redacted())
            .collect())
    }

    /// The data source as stored: secrets encrypted or referenced.
    async fn datasource_full(&self, name: &str) -> Result<DataSource> {
        self.catalog.datasource(name).await?.ok_or_else(|| ds_not_found(name))
    }

    /// The data source as a connector needs it: secrets decrypted, references read. Only for
    /// building connector configurations; never returned.
    async fn resolved(&self, name: &str) -> Result<DataSource> {
        let mut ds = self.datasource_full(name).await?;
        ds.properties = self.secrets.resolve(&ds.properties).map_err(|e| e.context(format!("data source {name:?}")))?;
        Ok(ds)
    }

    pub async fn datasource(&self, name: &str) -> Result<DataSource> {
        Ok(self.datasource_full(name).await?.redacted())
    }

    pub async fn delete_datasource(&self, name: &str) -> Result<()> {
        self.datasource_full(name).await?;
        let mut users = Vec::new();
        for t in self.catalog.tasks(None).await? {
            let mut configs = vec![t.draft.clone()];
            if let Some(v) = self.catalog.deployed(&t).await? {
                configs.push(v.config);
            }
            if configs.iter().any(|c| c.source.as_deref() == Some(name) || c.sink == name) {
                users.push(t.name);
            }
        }
        if !users.is_empty() {
            return Err(Error::conflict(format!(
                "data source {name:?} is used by task(s) {}: configure them to use another data source (or delete them) first",
                users.join(", ")
            )));
        }
        self.catalog.delete_datasource(name).await
    }

    pub async fn test_datasource(&self, name: &str, object: Option<&str>) -> Result<TestResult> {
        let ds = match self.resolved(name).await {
            Ok(ds) => ds,
            Err(e) if e.code == crate::error::Code::NotFound => return Err(e),
            Err(e) => return Ok(TestResult { ok: false, message: e.message }),
        };
        Ok(datasource::test(&ds, object).await)
    }

    // ---- vclusters and folders ----

    pub async fn create_vcluster(&self, req: CreateVCluster) -> Result<VCluster> {
        validate_name("vcluster", &req.name)?;
        let ty = req.vcluster_type.trim().to_ascii_uppercase();
        if !VCLUSTER_TYPES.contains(&ty.as_str()) {
            return Err(Error::bad_request(format!(
                "vcluster type {:?} is unknown: use one of {}",
                req.vcluster_type,
                VCLUSTER_TYPES.join(", ")
            )));
        }
        if req.slots < 1 {
            return Err(Error::bad_request(format!("--slots {}: a vcluster needs at least 1 slot", req.slots)));
        }
        if self.catalog.vcluster(&req.name).await?.is_some() {
            return Err(Error::conflict(format!("vcluster {:?} already exists", req.name)));
        }
        self.catalog.insert_vcluster(&req.name, &ty, req.slots).await
    }

    pub async fn vclusters(&self) -> Result<Vec<VCluster>> {
        self.catalog.vclusters().await
    }

    pub async fn vcluster(&self, name: &str) -> Result<VCluster> {
        self.catalog.vcluster(name).await?.ok_or_else(|| Error::not_found(format!("vcluster {name:?} does not exist")))
    }

    pub async fn delete_vcluster(&self, name: &str) -> Result<()> {
        let vc = self.vcluster(name).await?;
        if !vc.tasks.is_empty() {
            return Err(Error::conflict(format!(
                "vcluster {name:?} runs task(s) {}: stop them first",
                vc.tasks.join(", ")
            )));
        }
        self.catalog.delete_vcluster(name).await
    }

    pub async fn create_folder(&self, req: CreateFolder) -> Result<Folder> {
        validate_name("folder", &req.name)?;
        if self.catalog.folder(&req.name).await?.is_some() {
            return Err(Error::conflict(format!("folder {:?} already exists", req.name)));
        }
        self.catalog.insert_folder(&req.name).await
    }

    pub async fn folders(&self) -> Result<Vec<Folder>> {
        self.catalog.folders().await
    }

    pub async fn delete_folder(&self, name: &str) -> Result<()> {
        let f = self
            .catalog
            .folder(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("folder {name:?} does not exist")))?;
        if f.tasks > 0 {
            return Err(Error::conflict(format!(
                "folder {name:?} holds {} task(s): delete or move them first",
                f.tasks
            )));
        }
        self.catalog.delete_folder(name).await
    }

    // ---- metadata ----

    pub async fn namespaces(&self, ds: &str) -> Result<Vec<Namespace>> {
        meta::namespaces(&self.resolved(ds).await?).await
    }

    pub async fn objects(&self, ds: &str, namespace: &str) -> Result<Vec<MetaObject>> {
        meta::objects(&self.resolved(ds).await?, namespace).await
    }

    pub async fn object_detail(&self, ds: &str, namespace: &str, object: &str, sample: usize) -> Result<MetaDetail> {
        meta::detail(&self.resolved(ds).await?, namespace, object, sample).await
    }

    // ---- table maintenance ----

    /// The sink configuration of `schema.table` in the target data source `ds`.
    async fn table_config(
        &self,
        ds: &str,
        schema: &str,
        table: &str,
    ) -> Result<rtsync_sink_lakehouse::LakehouseSinkConfig> {
        let ds = self.resolved(ds).await?;
        let config = connectors::target_config(&ds, schema, table)?;
        config.validate()?;
        Ok(config)
    }

    /// `rtsync table info`: version, files, size, small files, last compaction, vacuum and
    /// log checkpoint.
    pub async fn table_info(&self, ds: &str, schema: &str, table: &str) -> Result<TableInfo> {
        let config = self.table_config(ds, schema, table).await?;
        let info = rtsync_sink_lakehouse::maintenance::table_info(&config).await?;
        Ok(TableInfo::from_sink(info, config.target_file_size))
    }

    /// `rtsync table upgrade`: enables deletion vectors, so CDC tasks apply changes
    /// merge-on-read from their next start; the table's info after it.
    pub async fn upgrade_table(&self, ds: &str, schema: &str, table: &str) -> Result<TableInfo> {
        let config = self.table_config(ds, schema, table).await?;
        rtsync_sink_lakehouse::maintenance::enable_deletion_vectors(&config).await?;
        let info = rtsync_sink_lakehouse::maintenance::table_info(&config).await?;
        Ok(TableInfo::from_sink(info, config.target_file_size))
    }

    /// `rtsync table optimize`: compacts the table now (safe while a task writes it).
    pub async fn optimize_table(&self, ds: &str, schema: &str, table: &str) -> Result<OptimizeResult> {
        let config = self.table_config(ds, schema, table).await?;
        let report = rtsync_sink_lakehouse::maintenance::optimize(&config).await?;
        Ok(OptimizeResult {
            version: report.version,
            files_removed: report.files_removed,
            files_added: report.files_added,
            bytes_removed: report.bytes_removed,
            bytes_added: report.bytes_added,
        })
    }

    /// `rtsync table vacuum`: deletes the files that left the table more than `retention`
    /// ago (default: the table's `vacuum_retention`, 7 days); `dry_run` lists them only.
    pub async fn vacuum_table(&self, ds: &str, schema: &str, table: &str, req: VacuumRequest) -> Result<VacuumResult> {
        let config = self.table_config(ds, schema, table).await?;
        let retention = req
            .retention
            .as_deref()
            .map(crate::duration::parse)
            .transpose()
            .map_err(|e| Error::bad_request(e.context_prefix("retention").report()))?;
        // The cutoff is `now - retention`: a retention past the calendar's range would overflow.
        if retention.is_some_and(|r| r > MAX_VACUUM_RETENTION) {
            return Err(Error::bad_request(format!(
                "retention: at most {} (files older than that are all vacuumed anyway)",
                crate::duration::format(MAX_VACUUM_RETENTION)
            )));
        }
        let files = rtsync_sink_lakehouse::maintenance::vacuum(&config, retention, req.dry_run).await?;
        Ok(VacuumResult {
            dry_run: req.dry_run,
            retention: crate::duration::format(retention.unwrap_or(config.vacuum_retention)),
            files,
        })
    }

    // ---- tasks ----

    async fn task_full(&self, name: &str) -> Result<Task> {
        self.catalog.task(name).await?.ok_or_else(|| task_not_found(name))
    }

    pub async fn create_task(&self, req: CreateTask) -> Result<Task> {
        let task_type = parse_task_type(&req.task_type)?;
        validate_name("task", &req.name)?;
        let folder_name = req.folder.unwrap_or_else(|| DEFAULT_FOLDER.to_string());
        let folder = self.catalog.folder(&folder_name).await?.ok_or_else(|| {
            Error::not_found(format!(
                "folder {folder_name:?} does not exist: create it with `rtsync folder create {folder_name}`"
            ))
        })?;
        let vcluster = req.vcluster.unwrap_or_else(|| DEFAULT_VCLUSTER.to_string());
        self.check_vcluster_type(&vcluster).await?;
        if self.catalog.task(&req.name).await?.is_some() {
            return Err(Error::conflict(format!("task {:?} already exists", req.name)));
        }
        self.catalog.insert_task(&req.name, task_type, folder.id, &vcluster).await
    }

    /// The vcluster exists and is SYNC.
    async fn check_vcluster_type(&self, name: &str) -> Result<VCluster> {
        let vc = self.catalog.vcluster(name).await?.ok_or_else(|| {
            Error::conflict(format!(
                "no SYNC vcluster {name:?}: it does not exist; create it with `rtsync vcluster create {name} --type SYNC --slots N` (or pick one from `rtsync vcluster list`)"
            ))
        })?;
        if vc.vcluster_type != "SYNC" {
            return Err(Error::conflict(format!(
                "vcluster {name:?} is of type {}: real-time sync tasks run on a SYNC vcluster (`rtsync vcluster list`)",
                vc.vcluster_type
            )));
        }
        Ok(vc)
    }

    /// The vcluster can take this task (which does not count against itself).
    async fn check_slot(&self, task: &Task) -> Result<()> {
        let vc = self.check_vcluster_type(&task.vcluster).await?;
        let others: Vec<&String> = vc.tasks.iter().filter(|t| **t != task.name).collect();
        if others.len() as i64 >= vc.slots {
            return Err(Error::conflict(format!(
                "vcluster {:?} has no free slot: {} of {} used by {}; stop a task, or use another SYNC vcluster (`task configure {} --vcluster V`)",
                vc.name,
                others.len(),
                vc.slots,
                others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                task.name
            )));
        }
        Ok(())
    }

    pub async fn tasks(&self, folder: Option<&str>) -> Result<Vec<Task>> {
        if let Some(f) = folder
            && self.catalog.folder(f).await?.is_none()
        {
            return Err(Error::not_found(format!("folder {f:?} does not exist")));
        }
        self.catalog.tasks(folder).await
    }

    pub async fn configure(&self, name: &str, patch: ConfigPatch) -> Result<Task> {
        let _guard = self.lifecycle.lock().await;
        let task = self.task_full(name).await?;
        let mut cfg = task.draft.clone();
        if let Some(s) = patch.source {
            let ds = self.datasource_full(&s).await?;
            if ds.ds_type.connector().is_some_and(|c| !c.is_source()) {
                connectors::source_of(&ds)?;
            }
            cfg.source = Some(s);
        }
        if let Some(s) = patch.source_schema {
            cfg.source_schema = Some(s);
        }
        if let Some(t) = patch.source_table {
            cfg.source_table = Some(t);
        }
        if let Some(s) = patch.sink {
            let ds = self.datasource_full(&s).await?;
            connectors::check_target(&ds)?;
            cfg.sink = s;
        }
        if let Some(s) = patch.sink_schema {
            cfg.sink_schema = s;
        }
        if let Some(t) = patch.sink_table {
            cfg.sink_table = Some(t);
        }
        if let Some(o) = patch.start_offset {
            connectors::check_start_offset(&o)?;
            cfg.start_offset = Some(o);
        }
        if patch.clear_columns {
            cfg.columns.clear();
        }
        if let Some(cols) = patch.columns {
            cfg.columns = cols;
        }
        if let Some(p) = patch.error_policy {
            cfg.error_policy = p;
        }
        if let Some(f) = patch.format {
            cfg.format = Some(f);
        }
        if let Some(k) = patch.key_columns {
            cfg.key_columns = k;
        }
        if let Some(j) = patch.json_fields {
            cfg.json_fields = j;
        }
        if let Some(ms) = patch.commit_interval_ms {
            if !(crate::spec::MIN_COMMIT_INTERVAL_MS..=crate::spec::MAX_COMMIT_INTERVAL_MS).contains(&ms) {
                return Err(Error::bad_request(format!(
                    "--commit-interval: {ms}ms is out of range: use 10ms to {}",
                    crate::duration::format(Duration::from_millis(crate::spec::MAX_COMMIT_INTERVAL_MS))
                )));
            }
            cfg.commit_interval_ms = Some(ms);
        }
        let vcluster = match patch.vcluster {
            Some(v) => {
                self.check_vcluster_type(&v).await?;
                v
            }
            None => task.vcluster.clone(),
        };
        self.validate_config(&cfg).await?;
        self.catalog.update_draft(task.id, &cfg, &vcluster).await?;
        self.task_full(name).await
    }

    /// Checks what can be checked without connecting: names, namespaces, JSONPath, casts.
    async fn validate_config(&self, cfg: &TaskConfig) -> Result<()> {
        if let Some(src) = &cfg.source {
            let ds = self.datasource_full(src).await?;
            if let Some(connector) = ds.ds_type.connector() {
                connector.check_task(&ds, cfg)?;
            }
        }
        for (field, value) in
            [("--sink-schema", Some(cfg.sink_schema.as_str())), ("--sink-table", cfg.sink_table.as_deref())]
        {
            if let Some(v) = value
                && (v.is_empty() || v.contains('/') || v.contains('\\') || v == "." || v == "..")
            {
                return Err(Error::bad_request(format!("{field} {v:?} is not a valid name")));
            }
        }
        rtsync_mapping::compile(&cfg.columns).map_err(|e| Error::bad_request(e.context_prefix("--column").report()))?;
        Ok(())
    }

    /// The spec a version runs as, in `incarnation`.
    async fn build_spec(&self, task: &Task, cfg: &TaskConfig, incarnation: i64) -> Result<TaskSpec> {
        let src_name = cfg.source.as_deref().ok_or_else(|| {
            Error::bad_request(format!(
                "task {:?} has no source: `rtsync task configure {} --source DS --source-table T`",
                task.name, task.name
            ))
        })?;
        let src = self.resolved(src_name).await.map_err(|e| e.context("the task's source"))?;
        let sink_ds = self.resolved(&cfg.sink).await.map_err(|e| e.context("the task's target"))?;
        let table = cfg.source_table.as_deref().ok_or_else(|| {
            Error::bad_request(format!(
                "task {:?} has no source table/topic: `rtsync task configure {} --source-table T`",
                task.name, task.name
            ))
        })?;
        let sink_table = cfg.effective_sink_table().unwrap_or(table);
        let source = connectors::source_of(&src)?.source_spec(&src, &task.name, cfg, table)?;
        let mut sink = connectors::target_config(&sink_ds, &cfg.sink_schema, sink_table)?;
        // merge-on-read key indexes live in this worker's data directory
        sink.index_dir = self.key_index_dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        let spec = TaskSpec {
            name: app_id(&task.name, incarnation),
            source,
            sink,
            columns: cfg.columns.clone(),
            error_policy: cfg.error_policy,
            commit_interval: cfg
                .commit_interval_ms
                .map_or(rtsync_engine::DEFAULT_COMMIT_INTERVAL, Duration::from_millis),
            max_buffered_rows: rtsync_engine::DEFAULT_MAX_BUFFERED_ROWS,
            max_buffered_bytes: rtsync_engine::DEFAULT_MAX_BUFFERED_BYTES,
        };
        spec.validate().map_err(|e: SyncError| Error::bad_request(e.report()))?;
        Ok(spec)
    }

    pub async fn preview(&self, name: &str, limit: usize) -> Result<Preview> {
        let task = self.task_full(name).await?;
        let spec = self.build_spec(&task, &task.draft, task.incarnation).await?;
        preview::preview(&spec, limit).await
    }

    /// Compares the task's source table with its Delta table (`task verify`), with the
    /// deployed version's configuration (the draft's before the first deploy).
    pub async fn verify(&self, name: &str) -> Result<crate::verify::VerifyReport> {
        let task = self.task_full(name).await?;
        let deployed = self.catalog.deployed(&task).await?;
        let cfg = deployed.map_or_else(|| task.draft.clone(), |v| v.config);
        let spec = self.build_spec(&task, &cfg, task.incarnation).await?;
        crate::verify::verify(&spec).await
    }

    async fn refuse(&self, task: &Task, err: Error) -> Error {
        if let Err(e) = self.catalog.set_last_error(task.id, Some(&format!("deploy refused: {}", err.message))).await {
            tracing::error!(task = %task.name, error = %e, "recording why the deploy was refused failed");
        }
        err
    }

    pub async fn deploy(&self, name: &str) -> Result<ActionResult> {
        let _guard = self.lifecycle.lock().await;
        let task = self.task_full(name).await?;
        let deployed = self.catalog.deployed(&task).await?;
        let unchanged = deployed.as_ref().is_some_and(|v| v.config == task.draft);
        if task.state == TaskState::Running && unchanged {
            let v = deployed.as_ref().map_or(0, |v| v.version);
            return Err(Error::conflict(format!(
                "task {name:?} is already deployed and running as version {v}, and the draft has not changed since: nothing to deploy (change it with `rtsync task configure`, or use `task stop`/`task start`)"
            )));
        }
        let mut incarnation = task.incarnation;
        let mut notes = Vec::new();
        if let Some(prev) = &deployed
            && !prev.config.same_source(&task.draft)
        {
            incarnation += 1;
            notes.push(format!(
                "the source changed since version {}, so the task starts afresh as {}",
                prev.version,
                app_id(name, incarnation)
            ));
        }
        let checked = match self.build_spec(&task, &task.draft, incarnation).await {
            Ok(spec) => self.check_slot(&task).await.map(|()| spec),
            Err(e) => Err(e),
        };
        let spec = match checked {
            Ok(spec) => spec,
            Err(e) => return Err(self.refuse(&task, e.context(format!("deploying task {name:?}"))).await),
        };
        if task.state == TaskState::Running {
            let next = self.catalog.latest_version(task.id).await?.map_or(1, |v| v.version + 1);
            if self.cluster.is_some() {
                // The holder stops the old version when it sees the task stopped.
                self.catalog.set_state(task.id, TaskState::Stopped).await?;
            }
            self.halt(&task, StopReason::Redeploy(next)).await?;
            if let Some(open) = self.catalog.open_run(task.id).await? {
                self.catalog.end_run(open.id, "superseded", &format!("replaced by version {next}")).await?;
            }
        }
        let version = match (&deployed, unchanged) {
            (Some(v), true) => {
                notes.push(format!("the draft equals version {}, so no new version was published", v.version));
                v.version
            }
            _ => self.catalog.publish(task.id, &task.draft, incarnation).await?,
        };
        self.catalog.set_state(task.id, TaskState::Running).await?;
        self.catalog.set_last_error(task.id, None).await?;
        let run_id = self.catalog.insert_run(task.id, version, incarnation).await?;
        self.launch(RunRequest {
            task_id: task.id,
            task_name: task.name.clone(),
            version,
            incarnation,
            run_id,
            reason: format!("deploy of version {version}"),
            spec: spec.clone(),
            lease: None,
        })
        .await;
        if let Some(note) = self.no_worker_note(&task).await? {
            notes.push(note);
        }
        let mut message = format!(
            "task {name} deployed as version {version} and started: run {run_id}, writing {} (Delta app id {})",
            spec.sink.table_location(),
            spec.name
        );
        for n in notes {
            message.push_str("; ");
            message.push_str(&n);
        }
        Ok(ActionResult { message, task: self.task_full(name).await?, run_id: Some(run_id), version: Some(version) })
    }

    pub async fn stop(&self, name: &str) -> Result<ActionResult> {
        let _guard = self.lifecycle.lock().await;
        let task = self.task_full(name).await?;
        match task.state {
            TaskState::Running => {}
            TaskState::Draft => return Err(Error::conflict(format!("task {name:?} is not deployed: nothing to stop"))),
            s => return Err(Error::conflict(format!("task {name:?} is not running (it is {s}): nothing to stop"))),
        }
        self.catalog.set_state(task.id, TaskState::Stopped).await?;
        let run = self.halt(&task, StopReason::User).await?;
        if let Some(open) = self.catalog.open_run(task.id).await? {
            self.catalog.end_run(open.id, "stopped", "stopped by the user").await?;
        }
        let pos = self.catalog.status(task.id).await?.and_then(|s| s.position).unwrap_or_else(|| "none yet".into());
        Ok(ActionResult {
            message: format!("task {name} stopped; position kept ({pos}): `rtsync task start {name}` resumes from it"),
            task: self.task_full(name).await?,
            run_id: run,
            version: task.deployed_version,
        })
    }

    pub async fn start(&self, name: &str) -> Result<ActionResult> {
        let _guard = self.lifecycle.lock().await;
        let task = self.task_full(name).await?;
        match task.state {
            TaskState::Stopped | TaskState::Failed => {}
            TaskState::Running => return Err(Error::conflict(format!("task {name:?} is already running"))),
            TaskState::Draft => {
                return Err(Error::conflict(format!(
                    "task {name:?} is not deployed: deploy it with `rtsync task deploy {name}`"
                )));
            }
        }
        let version =
            task.deployed_version.ok_or_else(|| Error::internal("a deployed task has no deployed version"))?;
        let v = self
            .catalog
            .version(task.id, version)
            .await?
            .ok_or_else(|| Error::internal(format!("version {version} is missing")))?;
        let spec = self.build_spec(&task, &v.config, task.incarnation).await?;
        self.check_slot(&task).await?;
        self.catalog.set_state(task.id, TaskState::Running).await?;
        self.catalog.set_last_error(task.id, None).await?;
        let run_id = self.catalog.insert_run(task.id, version, task.incarnation).await?;
        self.launch(RunRequest {
            task_id: task.id,
            task_name: task.name.clone(),
            version,
            incarnation: task.incarnation,
            run_id,
            reason: "start".into(),
            spec,
            lease: None,
        })
        .await;
        let note = self.no_worker_note(&task).await?.map(|n| format!("; {n}")).unwrap_or_default();
        Ok(ActionResult {
            message: format!(
                "task {name} started (version {version}, run {run_id}): it resumes from the position committed in its table{note}"
            ),
            task: self.task_full(name).await?,
            run_id: Some(run_id),
            version: Some(version),
        })
    }

    pub async fn undeploy(&self, name: &str) -> Result<ActionResult> {
        let _guard = self.lifecycle.lock().await;
        let task = self.task_full(name).await?;
        if task.state == TaskState::Draft {
            return Err(Error::conflict(format!("task {name:?} is not deployed: nothing to undeploy")));
        }
        if self.cluster.is_some() {
            self.catalog.set_state(task.id, TaskState::Stopped).await?;
        }
        let run = self.halt(&task, StopReason::Undeploy).await?;
        if let Some(open) = self.catalog.open_run(task.id).await? {
            self.catalog.end_run(open.id, "undeployed", "undeployed by the user").await?;
        }
        let cleanup = self.drop_source_objects(&task).await;
        let incarnation = self.catalog.undeploy(task.id).await?;
        // The next incarnation starts with fresh metrics (no position, no counts).
        self.scheduler.forget(task.id);
        Ok(ActionResult {
            message: format!(
                "task {name} undeployed and its position forgotten: the next deploy starts afresh from its start offset as Delta app id {} (rows already in the table stay){cleanup}",
                app_id(name, incarnation)
            ),
            task: self.task_full(name).await?,
            run_id: run,
            version: None,
        })
    }

    /// Undeploy: the connector drops what the task made on the source's server (a
    /// PostgreSQL slot, so the server stops retaining WAL for it). Returns a note for the
    /// message.
    async fn drop_source_objects(&self, task: &Task) -> String {
        let Ok(Some(v)) = self.catalog.deployed(task).await else {
            return String::new();
        };
        let Ok(spec) = self.build_spec(task, &v.config, task.incarnation).await else { return String::new() };
        spec.source.source().cleanup(&spec.name).await
    }

    pub async fn delete_task(&self, name: &str) -> Result<()> {
        let _guard = self.lifecycle.lock().await;
        let task = self.task_full(name).await?;
        if task.state.is_deployed() {
            return Err(Error::conflict(format!(
                "task {name:?} is deployed: undeploy it first (`rtsync task undeploy {name} -y`)"
            )));
        }
        self.catalog.delete_task(task.id).await?;
        self.scheduler.forget(task.id);
        Ok(())
    }

    pub async fn versions(&self, name: &str) -> Result<Vec<Version>> {
        let task = self.task_full(name).await?;
        let mut out = Vec::new();
        let mut v = 1;
        while let Some(ver) = self.catalog.version(task.id, v).await? {
            out.push(ver);
            v += 1;
        }
        Ok(out)
    }

    pub async fn task_detail(&self, name: &str) -> Result<TaskDetail> {
        let task = self.task_full(name).await?;
        let deployed = self.catalog.deployed(&task).await?;
        let cfg = deployed.as_ref().map(|v| &v.config).unwrap_or(&task.draft);
        let target = self.catalog.datasource(&cfg.sink).await?.and_then(|ds| {
            let table = cfg.effective_sink_table()?;
            connectors::target_config(&ds, &cfg.sink_schema, table).ok().map(|c| c.table_location())
        });
        let saved = self.catalog.status(task.id).await?.unwrap_or_default();
        let mut status = TaskStatus {
            phase: task.state.to_string(),
            position: saved.position.clone(),
            epoch: saved.epoch,
            rows_synced: saved.rows_synced,
            last_commit_at: saved.last_commit_at.clone(),
            ..Default::default()
        };
        let mut last_commit_ms = None;
        if let Some(slot) = self.scheduler.slot(task.id) {
            let live = slot.live();
            let m = slot.metrics.snapshot();
            if let Some(phase) = live.phase {
                status.phase = phase.to_string();
                status.run_id = live.run_id;
                status.attempt = live.attempt;
                if let Some(at) = live.retry_at {
                    let secs = at.saturating_duration_since(std::time::Instant::now()).as_secs();
                    status.warning = Some(format!("retrying in {secs}s after a transient error (see last_error)"));
                }
            }
            status.rows_per_sec = (live.rows_per_sec() * 10.0).round() / 10.0;
            if !m.position.is_empty() {
                status.position = Some(m.position.clone());
                status.epoch = Some(m.epoch as i64);
            }
            if m.last_commit_unix_ms > 0 {
                last_commit_ms = Some(m.last_commit_unix_ms);
                status.freshness_ms = Some(m.last_freshness_ms as i64);
                status.freshness_p99_ms = Some(m.freshness_p99_ms as i64);
            }
            status.snapshot = m.snapshot.map(|s| SnapshotStatus {
                rows: s.rows as i64,
                estimated_rows: s.estimated_rows.map(|n| n as i64),
                percent: s.percent().map(|p| p as i64),
                eta_secs: s.eta_secs.map(|n| n as i64),
            });
            status.rejected = m.rejected as i64;
            status.dead_lettered = m.dead_lettered as i64;
            status.errors = m.errors as i64;
        }
        if status.run_id.is_none()
            && let Some(open) = self.catalog.open_run(task.id).await?
        {
            status.run_id = Some(open.id);
        }
        status.worker = self.worker_of(&task).await?;
        if task.state.is_deployed() {
            status.lag = self.lag(cfg, status.position.as_deref()).await;
        }
        if status.warning.is_none() && task.state == TaskState::Running {
            status.warning = self.diagnose(&task, &status, last_commit_ms).await?;
        }
        Ok(TaskDetail { app_id: task.app_id(), deployed, status, target, task })
    }

    /// How far the source is ahead of the task's position, in the source's own unit, when
    /// its connector can say quickly.
    async fn lag(&self, cfg: &TaskConfig, position: Option<&str>) -> Option<i64> {
        let ds = self.resolved(cfg.source.as_deref()?).await.ok()?;
        ds.ds_type.connector()?.lag(&ds, cfg, position).await
    }

    /// Names a likely cause when a running task falls behind (the seed's "increasing sync
    /// latency" row).
    async fn diagnose(&self, task: &Task, s: &TaskStatus, last_commit_ms: Option<u64>) -> Result<Option<String>> {
        let vc = self.catalog.vcluster(&task.vcluster).await?;
        let slots = vc.map(|v| format!("{} of {} slots used", v.slots_used, v.slots)).unwrap_or_default();
        let lag = s.lag.unwrap_or(0);
        let since_commit = last_commit_ms.map(|t| Duration::from_millis(unix_ms().saturating_sub(t)));
        if lag > 0 && since_commit.is_none_or(|d| d > BEHIND_AFTER) && s.phase == "running" {
            let since = since_commit.map_or("no commit yet".to_string(), |d| format!("no commit for {}s", d.as_secs()));
            return Ok(Some(format!(
                "falling behind: {lag} message(s) waiting and {since}; check whether the source's volume spiked and whether vcluster {} has capacity ({slots})",
                task.vcluster
            )));
        }
        if let Some(p99) = s.freshness_p99_ms
            && p99 as u64 > SLOW_FRESHNESS_MS
        {
            return Ok(Some(format!(
                "sync latency is high (freshness p99 {:.1}s, lag {lag}): check whether the source's volume spiked and whether vcluster {} has capacity ({slots})",
                p99 as f64 / 1000.0,
                task.vcluster
            )));
        }
        Ok(None)
    }

    // ---- runs ----

    pub async fn runs(&self, task: &str) -> Result<Vec<Run>> {
        let t = self.task_full(task).await?;
        self.catalog.runs(t.id).await
    }

    pub async fn run_detail(&self, run_id: i64) -> Result<RunDetail> {
        let run =
            self.catalog.run(run_id).await?.ok_or_else(|| {
                Error::not_found(format!("run {run_id} does not exist (`rtsync runs list --task T`)"))
            })?;
        let attempts = self.catalog.attempts(run_id).await?;
        Ok(RunDetail { run, attempts })
    }

    pub async fn attempt_log(&self, run_id: i64, attempt: Option<i64>) -> Result<AttemptLog> {
        let detail = self.run_detail(run_id).await?;
        let a = match attempt {
            Some(n) => detail
                .attempts
                .into_iter()
                .find(|a| a.attempt == n)
                .ok_or_else(|| Error::not_found(format!("run {run_id} has no attempt {n}")))?,
            None => detail
                .attempts
                .into_iter()
                .last()
                .ok_or_else(|| Error::not_found(format!("run {run_id} has no attempts yet")))?,
        };
        let lines = self.catalog.log_lines(run_id, a.attempt).await?;
        Ok(AttemptLog { run_id, attempt: a, lines })
    }

    // ---- daemon start ----

    /// The deployed version of a running task and the spec it runs as.
    async fn deployed_spec(&self, task: &Task) -> Result<(i64, TaskSpec)> {
        let version =
            task.deployed_version.ok_or_else(|| Error::internal("running task without a deployed version"))?;
        let v = self
            .catalog
            .version(task.id, version)
            .await?
            .ok_or_else(|| Error::internal(format!("version {version} is missing")))?;
        Ok((version, self.build_spec(task, &v.config, task.incarnation).await?))
    }

    /// After a start (clean or after a kill): ends attempts the previous daemon left open and
    /// resumes every running task, continuing its open run with a new attempt.
    pub async fn resume_all(&self) -> Result<usize> {
        if self.cluster.is_some() {
            // With a shared catalog the workers claim the deployed tasks by lease.
            return Ok(0);
        }
        let _guard = self.lifecycle.lock().await;
        let lost = self.catalog.mark_lost_attempts().await?;
        if lost > 0 {
            tracing::warn!(attempts = lost, "attempts left open by the previous daemon were marked lost");
        }
        let mut resumed = 0;
        for task in self.catalog.tasks(None).await? {
            let open = self.catalog.open_run(task.id).await?;
            if task.state != TaskState::Running {
                if let Some(run) = open {
                    self.catalog.end_run(run.id, "stopped", "the task was not running when the daemon started").await?;
                }
                continue;
            }
            let prepared = self.deployed_spec(&task).await;
            match prepared {
                Ok((version, spec)) => {
                    let (run_id, reason) = match open {
                        Some(run) if run.version == version && run.incarnation == task.incarnation => {
                            (run.id, "daemon restart")
                        }
                        other => {
                            if let Some(run) = other {
                                self.catalog.end_run(run.id, "stopped", "superseded at daemon start").await?;
                            }
                            (
                                self.catalog.insert_run(task.id, version, task.incarnation).await?,
                                "daemon restart (new run)",
                            )
                        }
                    };
                    tracing::info!(task = %task.name, run = run_id, "resuming deployed task");
                    self.launch(RunRequest {
                        task_id: task.id,
                        task_name: task.name.clone(),
                        version,
                        incarnation: task.incarnation,
                        run_id,
                        spec,
                        reason: reason.into(),
                        lease: None,
                    })
                    .await;
                    resumed += 1;
                }
                Err(err) => {
                    tracing::error!(task = %task.name, error = %err, "cannot resume the task");
                    self.catalog.set_state(task.id, TaskState::Failed).await?;
                    self.catalog
                        .set_last_error(task.id, Some(&format!("could not resume at daemon start: {err}")))
                        .await?;
                    if let Some(run) = open {
                        self.catalog.end_run(run.id, "failed", &err.message).await?;
                    }
                }
            }
        }
        Ok(resumed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn task_types() {
        assert_eq!(parse_task_type("REALTIME").unwrap(), 14);
        assert_eq!(parse_task_type("14").unwrap(), 14);
        assert!(parse_task_type("BATCH").unwrap_err().message.contains("batch"));
        assert!(parse_task_type("281").unwrap_err().message.contains("multi-table"));
        assert!(parse_task_type("nonsense").unwrap_err().message.contains("REALTIME"));
    }

    #[test]
    fn column_args() {
        assert_eq!(parse_column_arg("id=$.id:bigint").unwrap(), ColumnSpec::new("id", "$.id", "bigint"));
        assert_eq!(parse_column_arg("a=$.x.y").unwrap(), ColumnSpec::new("a", "$.x.y", "string"));
        assert_eq!(parse_column_arg("s=$.items[0:2]:json").unwrap(), ColumnSpec::new("s", "$.items[0:2]", "json"));
        assert_eq!(parse_column_arg("s=$.items[0:2]").unwrap(), ColumnSpec::new("s", "$.items[0:2]", "string"));
        assert_eq!(
            parse_column_arg("m=$.amount:decimal(12,2)").unwrap(),
            ColumnSpec::new("m", "$.amount", "decimal(12,2)")
        );
        assert_eq!(parse_column_arg("m=$.a:DECIMAL(9,1)").unwrap(), ColumnSpec::new("m", "$.a", "DECIMAL(9,1)"));
        assert_eq!(parse_column_arg("p=partition:int").unwrap(), ColumnSpec::new("p", "partition", "int"));
        assert!(parse_column_arg("nothing").is_err());
    }
}
