//! What the catalog holds and the HTTP API exchanges. Names follow the seed document: data
//! sources with a `ds_type`, SYNC vclusters, folders, tasks of `task_type` 14 with a draft and
//! published versions, runs and their attempts.

use std::collections::BTreeMap;
use std::fmt;

use rtsync_core::ErrorPolicy;
use rtsync_mapping::ColumnSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default SYNC vcluster and folder created on the first start.
pub const DEFAULT_VCLUSTER: &str = "default";
pub const DEFAULT_VCLUSTER_SLOTS: i64 = 8;
pub const DEFAULT_FOLDER: &str = "default";
/// The Lakehouse data source created on the first start, pointing at `<data dir>/lakehouse`.
pub const DEFAULT_LAKEHOUSE: &str = "lakehouse";
pub const DEFAULT_SINK_SCHEMA: &str = "public";
/// The only task type rtsync runs: single-table real-time sync.
pub const TASK_TYPE_REALTIME: i64 = 14;

/// Checks a catalog name: letters, digits, `_` and `-`, 1 to 100 characters. Task names may
/// not hold `.` because the Delta application id of a later incarnation is `<name>.<n>`.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!("{what} name {name:?} is not valid: use 1-100 letters, digits, '_' or '-'")))
    }
}

pub use crate::connectors::DsType;

/// A named connection. `properties` never leaves the daemon with secrets in it: the API
/// returns [`DataSource::redacted`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataSource {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub ds_type: DsType,
    /// The seed's number for the type (2 Kafka, 5 MySQL, …).
    #[serde(rename = "ds_type")]
    pub ds_type_id: i64,
    pub properties: BTreeMap<String, String>,
    pub created_at: String,
}

pub const REDACTED: &str = "***";

pub use rtsync_core::secret::is_secret_key;

impl DataSource {
    /// The data source as the API shows it: secret values replaced by `***`, a password inside
    /// a URL too; references (`password_env=NAME`) as they are.
    pub fn redacted(&self) -> DataSource {
        DataSource { properties: crate::secrets::shown(&self.properties), ..self.clone() }
    }
}

pub use rtsync_core::text::redact_url;

/// A pool of worker capacity. Tasks run on vclusters of type `SYNC`; each running task takes
/// one slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VCluster {
    pub id: i64,
    pub name: String,
    pub vcluster_type: String,
    pub slots: i64,
    /// Running tasks on it.
    pub slots_used: i64,
    pub tasks: Vec<String>,
    pub created_at: String,
}

pub const VCLUSTER_TYPES: [&str; 3] = ["SYNC", "GENERAL", "ANALYTICS"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Folder {
    pub id: i64,
    pub name: String,
    pub tasks: i64,
    pub created_at: String,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Never deployed, or undeployed: only the draft exists; no position.
    Draft,
    /// Deployed and meant to run: the scheduler runs it, after a daemon restart too.
    Running,
    /// Deployed, stopped by the user: the position is kept; `task start` resumes.
    Stopped,
    /// Deployed, stopped by an error that retrying cannot fix; `task start` tries again.
    Failed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Draft => "draft",
            TaskState::Running => "running",
            TaskState::Stopped => "stopped",
            TaskState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "draft" => TaskState::Draft,
            "running" => TaskState::Running,
            "stopped" => TaskState::Stopped,
            "failed" => TaskState::Failed,
            other => return Err(Error::internal(format!("catalog holds an unknown task state {other:?}"))),
        })
    }

    pub fn is_deployed(self) -> bool {
        self != TaskState::Draft
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a task syncs: its draft, and each published version. Every field has a default so
/// that `task configure` can fill it in steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// The source data source's name.
    #[serde(default)]
    pub source: Option<String>,
    /// Database/schema (Kafka: `default`).
    #[serde(default)]
    pub source_schema: Option<String>,
    /// Table or topic.
    #[serde(default)]
    pub source_table: Option<String>,
    /// The target Lakehouse data source's name.
    #[serde(default = "default_sink")]
    pub sink: String,
    #[serde(default = "default_sink_schema")]
    pub sink_schema: String,
    /// Default: the source table's name.
    #[serde(default)]
    pub sink_table: Option<String>,
    /// Kafka: earliest (default), latest, timestamp:MS, RFC 3339, or `0:42,1:17`.
    #[serde(default)]
    pub start_offset: Option<String>,
    /// Empty: the source's default mapping (Kafka: its built-in fields).
    #[serde(default)]
    #[schema(value_type = Vec<crate::openapi::ColumnSpecSchema>)]
    pub columns: Vec<ColumnSpec>,
    #[serde(default)]
    #[schema(value_type = crate::openapi::ErrorPolicySchema)]
    pub error_policy: ErrorPolicy,
    #[serde(default)]
    #[schema(minimum = 10, maximum = 86_400_000)]
    pub commit_interval_ms: Option<u64>,
    /// Kafka: how message values are encoded (json, avro, protobuf, debezium-json,
    /// debezium-avro); None: json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Kafka change events: the columns rows are applied by (default: the message key's
    /// fields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_columns: Vec<String>,
    /// Kafka registry formats: fields landing as JSON text (`*`: every nested field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_fields: Vec<String>,
}

fn default_sink() -> String {
    DEFAULT_LAKEHOUSE.to_string()
}

fn default_sink_schema() -> String {
    DEFAULT_SINK_SCHEMA.to_string()
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            source: None,
            source_schema: None,
            source_table: None,
            sink: default_sink(),
            sink_schema: default_sink_schema(),
            sink_table: None,
            start_offset: None,
            columns: Vec::new(),
            error_policy: ErrorPolicy::Fail,
            commit_interval_ms: None,
            format: None,
            key_columns: Vec::new(),
            json_fields: Vec::new(),
        }
    }
}

impl TaskConfig {
    pub fn effective_sink_table(&self) -> Option<&str> {
        self.sink_table.as_deref().or(self.source_table.as_deref())
    }

    /// True when `other` reads another stream: its position means nothing to this config.
    pub fn same_source(&self, other: &TaskConfig) -> bool {
        self.source == other.source
            && self.source_schema == other.source_schema
            && self.source_table == other.source_table
    }
}

/// `task configure`: each field given replaces the draft's; `columns` replaces the whole
/// list; `clear_columns` goes back to the source's default mapping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_offset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::openapi::ColumnSpecSchema>>)]
    pub columns: Option<Vec<ColumnSpec>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear_columns: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::ErrorPolicySchema>)]
    pub error_policy: Option<ErrorPolicy>,
    /// Milliseconds, 10 to 86400000 (one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 10, maximum = 86_400_000)]
    pub commit_interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcluster: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_fields: Option<Vec<String>>,
}

/// A task as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    pub id: i64,
    pub name: String,
    pub task_type: i64,
    pub folder: String,
    pub vcluster: String,
    pub state: TaskState,
    pub draft: TaskConfig,
    pub deployed_version: Option<i64>,
    /// Bumped by undeploy (and by a deploy that changes the source): the Delta application
    /// id of incarnation 1 is the task's name, of incarnation n > 1 `<name>.<n>`.
    pub incarnation: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The Delta `txn` application id (and Kafka consumer group suffix) of a task incarnation.
pub fn app_id(task: &str, incarnation: i64) -> String {
    if incarnation <= 1 { task.to_string() } else { format!("{task}.{incarnation}") }
}

impl Task {
    pub fn app_id(&self) -> String {
        app_id(&self.name, self.incarnation)
    }
}

/// A published version of a task's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Version {
    pub version: i64,
    pub config: TaskConfig,
    pub incarnation: i64,
    pub published_at: String,
}

/// One deployment's life, from deploy/start to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub id: i64,
    pub task: String,
    pub version: i64,
    pub incarnation: i64,
    /// running, stopped, failed, undeployed, superseded.
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    pub rows_synced: i64,
    pub attempts: i64,
}

/// One try within a run: the first one, and one more after each transient failure or
/// daemon restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub run_id: i64,
    pub attempt: i64,
    /// running, stopped, failed, interrupted (daemon shut down), moved (to another worker),
    /// lost (daemon killed, or its lease lost).
    pub status: String,
    /// Why it started: deploy, start, retry, daemon restart.
    pub reason: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    /// The worker that ran it.
    #[serde(default)]
    pub worker: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    pub ts: String,
    pub level: String,
    pub message: String,
}

/// `runs detail`: the run and its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunDetail {
    pub run: Run,
    pub attempts: Vec<Attempt>,
}

/// `attempts log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptLog {
    pub run_id: i64,
    pub attempt: Attempt,
    pub lines: Vec<LogLine>,
}

/// The live side of a task, from the scheduler (and the catalog's last saved copy).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskStatus {
    /// running, retrying (while a run is active); else the task's state: stopped, failed, draft.
    pub phase: String,
    pub run_id: Option<i64>,
    pub attempt: Option<i64>,
    /// The source position of the last commit (Kafka: next offset per partition). The truth
    /// is in the Delta table; this is its last known copy.
    pub position: Option<String>,
    pub epoch: Option<i64>,
    /// Messages on the broker not yet synced, when the source can tell.
    pub lag: Option<i64>,
    pub rows_synced: i64,
    pub rows_per_sec: f64,
    pub freshness_ms: Option<i64>,
    pub freshness_p99_ms: Option<i64>,
    pub last_commit_at: Option<String>,
    pub rejected: i64,
    pub dead_lettered: i64,
    pub errors: i64,
    /// A diagnosis when something looks wrong (latency growing, retrying).
    pub warning: Option<String>,
    /// The worker that runs the task (its lease holder with a shared catalog).
    #[serde(default)]
    pub worker: Option<String>,
    /// Set while the task's initial copy of a table runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotStatus>,
}

/// An initial copy in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotStatus {
    /// Rows copied so far (a resumed copy counts the rows an earlier attempt committed).
    pub rows: i64,
    /// The server's estimate of the table's rows when the copy started (PostgreSQL's planner,
    /// MySQL's optimizer statistics, SQL Server's partition counts), never a count.
    pub estimated_rows: Option<i64>,
    /// Percent of the estimate copied; None without an estimate or once the copy passed it.
    pub percent: Option<i64>,
    /// Seconds left at this attempt's rate so far; None until there is a rate.
    pub eta_secs: Option<i64>,
}

/// `workers list`: one `rtsync serve` process of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Worker {
    pub id: String,
    /// Where its API answers.
    pub address: String,
    pub vcluster: String,
    pub version: String,
    pub started_at: String,
    pub last_heartbeat: String,
    /// Milliseconds since the last heartbeat, by the catalog's clock.
    pub heartbeat_age_ms: i64,
    /// alive, stopping (shutting down gracefully), or dead (no heartbeat within its lease TTL).
    pub state: String,
    /// The tasks it holds a lease on.
    pub tasks: Vec<String>,
}

/// `task show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskDetail {
    pub task: Task,
    pub app_id: String,
    pub deployed: Option<Version>,
    pub status: TaskStatus,
    /// Where the rows go: `<root>/<schema>/<table>`.
    pub target: Option<String>,
}

/// `POST /api/v1/datasources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDataSource {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,100}$")]
    pub name: String,
    #[serde(rename = "type")]
    pub ds_type: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVCluster {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,100}$")]
    pub name: String,
    #[serde(rename = "type", default = "default_vcluster_type")]
    pub vcluster_type: String,
    #[serde(default = "default_slots")]
    #[schema(minimum = 1)]
    pub slots: i64,
}

fn default_vcluster_type() -> String {
    "SYNC".to_string()
}

fn default_slots() -> i64 {
    DEFAULT_VCLUSTER_SLOTS
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFolder {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,100}$")]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,100}$")]
    pub name: String,
    /// `REALTIME` or `14`.
    #[serde(rename = "type", default = "default_task_type")]
    pub task_type: String,
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub vcluster: Option<String>,
}

fn default_task_type() -> String {
    "REALTIME".to_string()
}

/// The result of `datasource test`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TestResult {
    pub ok: bool,
    pub message: String,
}

/// A lifecycle action's answer: what happened, in words, and the task afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionResult {
    pub message: String,
    pub task: Task,
    pub run_id: Option<i64>,
    pub version: Option<i64>,
}

/// `task preview`: mapped rows (JSON objects in target column order) and rejected ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Preview {
    pub columns: Vec<PreviewColumn>,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    pub rejected: Vec<PreviewRejected>,
    pub messages_read: i64,
    pub note: Option<String>,
    /// A table source's `schema.table` (its preview reads rows, not messages).
    #[serde(default)]
    pub table: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewRejected {
    pub at: String,
    pub reason: String,
}

/// Metadata browsing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Namespace {
    pub name: String,
    pub objects: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetaObject {
    pub name: String,
    /// topic, table, partitioned table.
    pub kind: String,
    /// Databases: the primary key's columns (empty when the table has none).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Databases: the server's row estimate (PostgreSQL reltuples, MySQL TABLE_ROWS).
    #[serde(default)]
    pub estimated_rows: Option<i64>,
    /// Kafka: partitions.
    pub partitions: Option<i64>,
    /// Kafka: messages on the broker (sum of high − low watermarks).
    pub messages: Option<i64>,
    /// Kafka: per partition `low..high`; Lakehouse: table version.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetaColumn {
    pub name: String,
    /// The type in the target Delta table (Kafka: the inferred mapping type).
    #[serde(rename = "type")]
    pub ty: String,
    /// Databases: the column's type as the source declares it (`numeric(12,2)`, `bigint unsigned`).
    #[serde(default)]
    pub source_type: Option<String>,
    pub nullable: bool,
    /// Kafka inferred fields: the JSONPath over the message value.
    pub path: Option<String>,
    /// Kafka inferred fields: how many sampled messages had the field.
    pub seen: Option<i64>,
    /// A ready `--column` argument.
    pub column_arg: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetaDetail {
    pub datasource: String,
    pub namespace: String,
    pub object: String,
    pub kind: String,
    pub columns: Vec<MetaColumn>,
    /// Databases: the key rows are merged by (primary key, or PostgreSQL's replica identity index).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Kafka: built-in fields, always available without a JSONPath.
    pub builtin: Vec<MetaColumn>,
    pub sampled: Option<i64>,
    pub not_json: Option<i64>,
    pub partitions: Vec<PartitionInfo>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionInfo {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// A Delta table's health (`rtsync table info`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableInfo {
    pub location: String,
    pub version: u64,
    pub active_files: u64,
    pub bytes: u64,
    /// Files under half of the target file size.
    pub small_files: u64,
    pub target_file_size: u64,
    /// RFC 3339 times of the last compaction and vacuum in the table's retained history.
    pub last_compaction: Option<String>,
    pub last_vacuum: Option<String>,
    /// The version of the last log checkpoint.
    pub last_checkpoint_version: Option<i64>,
    /// How CDC tasks apply changes to it: `merge_on_read` (the table has deletion vectors) or
    /// `copy_on_write`.
    #[serde(default)]
    pub apply: String,
    /// Rows hidden by deletion vectors (purged by maintenance).
    #[serde(default)]
    pub rows_hidden: u64,
}

impl TableInfo {
    pub fn from_sink(info: rtsync_sink_lakehouse::maintenance::TableInfo, target_file_size: u64) -> Self {
        let time = |ms: Option<i64>| {
            ms.and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        };
        TableInfo {
            location: info.location,
            version: info.version,
            active_files: info.active_files,
            bytes: info.bytes,
            small_files: info.small_files,
            target_file_size,
            last_compaction: time(info.last_compaction_ms),
            last_vacuum: time(info.last_vacuum_ms),
            last_checkpoint_version: info.last_checkpoint_version,
            apply: if info.deletion_vectors { "merge_on_read" } else { "copy_on_write" }.to_string(),
            rows_hidden: info.rows_hidden,
        }
    }
}

/// What `rtsync table optimize` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OptimizeResult {
    /// The table version after the compaction; none when there was nothing to compact.
    pub version: Option<u64>,
    pub files_removed: u64,
    pub files_added: u64,
    pub bytes_removed: u64,
    pub bytes_added: u64,
}

/// `rtsync table vacuum` options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VacuumRequest {
    #[serde(default)]
    pub dry_run: bool,
    /// `7d`, `12h`; default: the table's vacuum retention.
    #[serde(default)]
    pub retention: Option<String>,
}

/// The files a vacuum deleted (or would delete, with `dry_run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VacuumResult {
    pub dry_run: bool,
    pub retention: String,
    pub files: Vec<String>,
}
