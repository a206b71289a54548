//! Delta Lake sink.
//!
//! # Use as a library
//!
//! Make a [`DeltaSink`] from a [`LakehouseSinkConfig`] (root, schema, table) and a task name,
//! which is the Delta `txn` application id its checkpoints are recorded under:
//! [`DeltaSink::new`] appends every row, [`DeltaSink::upsert`] applies change rows (tagged with
//! [`OP_COLUMN`](rtsync_core::OP_COLUMN)) by primary key. Then drive it through the [`Sink`]
//! trait: [`Sink::open`] creates the table when it is missing and returns the task's last
//! [`Checkpoint`] (where your source resumes), [`Sink::write`] buffers Arrow batches, and
//! [`Sink::commit`] makes them visible and durable in ONE Delta transaction together with the
//! next checkpoint (epoch + 1, the source position after the rows). Acknowledge your source only
//! after `commit` returns. [`query_table`] reads the table back with SQL.
//! `examples/delta_write.rs` runs this (`cargo run -p rtsync-sink-lakehouse --example
//! delta_write`); so does this test:
//!
//! ```
//! use std::sync::Arc;
//!
//! use rtsync_sink_lakehouse::arrow::array::{Int64Array, RecordBatch};
//! use rtsync_sink_lakehouse::arrow::datatypes::{DataType, Field, Schema};
//! use rtsync_sink_lakehouse::{Checkpoint, DeltaSink, LakehouseSinkConfig, Sink};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let root = dir.path().display().to_string();
//! let config = LakehouseSinkConfig::new(root, "public", "events");
//! let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
//! let mut sink = DeltaSink::new("my-task", config.clone())?;
//! assert_eq!(sink.open(schema.clone()).await?, None, "a new table holds no checkpoint");
//!
//! let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])?;
//! sink.write(rows).await?;
//! let position = serde_json::json!({ "offset": 2 }); // your source's position after the rows
//! sink.commit(&Checkpoint { task: "my-task".into(), epoch: 1, position: position.clone() }).await?;
//!
//! // After a restart, the table says where the task stands.
//! let mut sink = DeltaSink::new("my-task", config)?;
//! let checkpoint = sink.open(schema).await?.expect("committed above");
//! assert_eq!((checkpoint.epoch, checkpoint.position), (1, position));
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! **Layout.** A task's table lives at `<root>/<schema>/<table>`; `root` is a local directory
//! (created when missing) or an object-store URI the delta crate understands. A missing table
//! is created from the mapping's schema; columns the mapping has and the table lacks are added
//! (schema merge on write), columns the table has and the mapping lacks are written as NULL.
//!
//! **Exactly-once.** [`DeltaSink::commit`] makes ONE Delta transaction holding the data files
//! written since the last commit, a `txn` action (app id = task name, version = epoch) and, in
//! the commit info under `rtsync`, the task, epoch and source position. On open the sink reads
//! the task's `txn` version from the table's snapshot and the position from the commit info of
//! that epoch: the table, not a side file, says where the task stands. A commit whose epoch the
//! table already holds is skipped (idempotent); a concurrent commit by a twin of the same task
//! is refused by Delta's conflict checker and surfaces as [`ErrorKind::Fenced`].
//!
//! **Memory.** The delta writer streams Parquet to storage as batches arrive; what is held is
//! bounded by the row-group buffer, not by the commit interval.
//!
//! **Latency.** Delta writes a checkpoint every `delta.checkpointInterval` commits; after each
//! one the sink reloads the table so the in-memory log replay stays short and commit latency
//! flat over millions of commits.

pub mod browse;
use rtsync_core::duration;
mod dv;
mod error;
mod key_index;
pub mod maintenance;
mod mor;
mod read;
mod upsert;
pub mod verify;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{StructType, Transaction};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use url::Url;

/// For the control plane (it takes the delta crate's error type): not part of the library API.
#[doc(hidden)]
pub use error::classify;
pub use read::query_table;
/// The `rtsync-core` contracts and types a user of this crate needs, so that a program can
/// depend on this crate alone.
pub use rtsync_core::{Checkpoint, CommitStats, ErrorKind, Sink, SyncError, SyncResult, arrow};

/// The commit-info key under which rtsync records its checkpoint.
pub const COMMIT_INFO_KEY: &str = "rtsync";
/// Default checkpoint interval written into tables rtsync creates.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 100;
/// Default size at which the writer rolls to a new Parquet file within one commit.
pub const DEFAULT_TARGET_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// Where the target table is.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LakehouseSinkConfig {
    /// A local directory or an object-store URI (`s3://bucket/lake`, `file:///data/lake`).
    pub root: String,
    #[serde(default = "default_schema")]
    pub schema: String,
    pub table: String,
    /// Object-store options (credentials, region, endpoint), passed to the delta crate.
    #[serde(default)]
    pub storage_options: HashMap<String, String>,
    /// Size the writer rolls to a new Parquet file at, and compaction's target (bytes).
    #[serde(default = "default_target_file_size")]
    pub target_file_size: u64,
    /// Table maintenance (compaction, vacuum) in the background of the task; `false` for
    /// users who run their own.
    #[serde(default = "default_maintenance", skip_serializing_if = "is_default_maintenance")]
    pub maintenance: bool,
    /// Compaction runs once the table has this many small files (under half the target size).
    #[serde(default = "default_compact_min_files", skip_serializing_if = "is_default_compact_min_files")]
    pub compact_min_files: usize,
    /// ... or at least this often while there are two small files or more.
    #[serde(
        default = "default_compact_interval",
        with = "duration",
        skip_serializing_if = "is_default_compact_interval"
    )]
    pub compact_interval: Duration,
    /// Data files no longer in the table are deleted this long after they left it.
    #[serde(
        default = "default_vacuum_retention",
        with = "duration",
        skip_serializing_if = "is_default_vacuum_retention"
    )]
    pub vacuum_retention: Duration,
    /// `delta.logRetentionDuration` of tables rtsync creates (none: Delta's 30 days).
    #[serde(default, with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub log_retention: Option<Duration>,
    /// How a CDC task applies changes to a table it creates (an existing table keeps its own).
    #[serde(default, skip_serializing_if = "ApplyMode::is_default")]
    pub apply: ApplyMode,
    /// Where merge-on-read tables keep their key index (default: a directory under the OS
    /// temporary directory; a missing index is rebuilt from the table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_dir: Option<String>,
    /// Maintenance rewrites a merge-on-read file once its deletion vector hides more than this
    /// share of its rows (0 < purge_threshold <= 1).
    #[serde(default = "default_purge_threshold", skip_serializing_if = "is_default_purge_threshold")]
    pub purge_threshold: f64,
}

/// How a CDC task applies updates and deletes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyMode {
    /// New row versions go to new files; replaced rows are marked in Delta deletion vectors,
    /// so a commit costs O(changes). Readers must support deletion vectors.
    #[default]
    MergeOnRead,
    /// Every file holding a changed key is rewritten (a MERGE): readable by every Delta
    /// reader, but a commit of random updates rewrites most of the table.
    CopyOnWrite,
}

impl ApplyMode {
    fn is_default(&self) -> bool {
        *self == ApplyMode::default()
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ApplyMode::MergeOnRead => "merge_on_read",
            ApplyMode::CopyOnWrite => "copy_on_write",
        }
    }
}

impl fmt::Display for ApplyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defaults of the maintenance options (see the README's table maintenance section).
pub const DEFAULT_COMPACT_MIN_FILES: usize = 32;
pub const DEFAULT_COMPACT_INTERVAL: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_VACUUM_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// Default [`LakehouseSinkConfig::purge_threshold`].
pub const DEFAULT_PURGE_THRESHOLD: f64 = 0.25;

fn default_purge_threshold() -> f64 {
    DEFAULT_PURGE_THRESHOLD
}

fn is_default_purge_threshold(v: &f64) -> bool {
    *v == DEFAULT_PURGE_THRESHOLD
}

fn default_maintenance() -> bool {
    true
}

fn is_default_maintenance(v: &bool) -> bool {
    *v
}

fn default_compact_min_files() -> usize {
    DEFAULT_COMPACT_MIN_FILES
}

fn is_default_compact_min_files(v: &usize) -> bool {
    *v == DEFAULT_COMPACT_MIN_FILES
}

fn default_compact_interval() -> Duration {
    DEFAULT_COMPACT_INTERVAL
}

fn is_default_compact_interval(v: &Duration) -> bool {
    *v == DEFAULT_COMPACT_INTERVAL
}

fn default_vacuum_retention() -> Duration {
    DEFAULT_VACUUM_RETENTION
}

fn is_default_vacuum_retention(v: &Duration) -> bool {
    *v == DEFAULT_VACUUM_RETENTION
}

fn default_schema() -> String {
    "public".to_string()
}

fn default_target_file_size() -> u64 {
    DEFAULT_TARGET_FILE_SIZE
}

impl fmt::Debug for LakehouseSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secret option values (keys, tokens, SAS) never print.
        let opts: std::collections::BTreeMap<&String, &str> = self
            .storage_options
            .iter()
            .map(|(k, v)| (k, if rtsync_core::secret::is_secret_key(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("LakehouseSinkConfig")
            .field("root", &self.root)
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("storage_options", &opts)
            .field("target_file_size", &self.target_file_size)
            .field("maintenance", &self.maintenance)
            .field("compact_min_files", &self.compact_min_files)
            .field("compact_interval", &self.compact_interval)
            .field("vacuum_retention", &self.vacuum_retention)
            .field("log_retention", &self.log_retention)
            .field("apply", &self.apply)
            .field("index_dir", &self.index_dir)
            .field("purge_threshold", &self.purge_threshold)
            .finish()
    }
}

impl LakehouseSinkConfig {
    pub fn new(root: impl Into<String>, schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            schema: schema.into(),
            table: table.into(),
            storage_options: HashMap::new(),
            target_file_size: DEFAULT_TARGET_FILE_SIZE,
            maintenance: true,
            compact_min_files: DEFAULT_COMPACT_MIN_FILES,
            compact_interval: DEFAULT_COMPACT_INTERVAL,
            vacuum_retention: DEFAULT_VACUUM_RETENTION,
            log_retention: None,
            apply: ApplyMode::default(),
            index_dir: None,
            purge_threshold: DEFAULT_PURGE_THRESHOLD,
        }
    }

    /// The same location with these storage options.
    pub fn with_storage_options(mut self, options: impl IntoIterator<Item = (String, String)>) -> Self {
        self.storage_options = options.into_iter().collect();
        self
    }

    pub fn validate(&self) -> SyncResult<()> {
        if self.root.trim().is_empty() {
            return Err(SyncError::config("sink.root: must not be empty"));
        }
        for (field, value) in [("sink.schema", &self.schema), ("sink.table", &self.table)] {
            if value.is_empty() || value.contains('/') || value.contains('\\') || value == "." || value == ".." {
                return Err(SyncError::config(format!("{field}: {value:?} is not a valid name")));
            }
        }
        if self.target_file_size < 1024 {
            return Err(SyncError::config("sink.target_file_size: must be at least 1024 bytes"));
        }
        if self.compact_min_files < 2 {
            return Err(SyncError::config("sink.compact_min_files: must be at least 2"));
        }
        if !(self.purge_threshold > 0.0 && self.purge_threshold <= 1.0) {
            return Err(SyncError::config("sink.purge_threshold: must be above 0 and at most 1"));
        }
        if self.index_dir.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return Err(SyncError::config("sink.index_dir: must not be empty"));
        }
        if self.compact_interval < Duration::from_millis(100) {
            return Err(SyncError::config("sink.compact_interval: must be at least 100ms"));
        }
        if let Some(scheme) = self.root.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
            && !SUPPORTED_SCHEMES.contains(&scheme.as_str())
        {
            return Err(SyncError::config(format!(
                "sink.root: unsupported scheme {scheme}:// (use a local path, file://, s3://, s3a://, az://, abfss:// or gs://)"
            )));
        }
        Ok(())
    }

    /// The same location with another table name (the `<table>__dlq` dead-letter table).
    pub fn sibling(&self, table: impl Into<String>) -> Self {
        Self { table: table.into(), ..self.clone() }
    }

    /// `<root>/<schema>/<table>` as the text the delta crate resolves (local dirs created).
    pub fn table_location(&self) -> String {
        let root = self.root.trim_end_matches('/');
        format!("{root}/{}/{}", self.schema, self.table)
    }

    pub fn table_url(&self) -> SyncResult<Url> {
        register_object_stores();
        let location = self.table_location();
        deltalake::ensure_table_uri(&location)
            .map_err(|e| classify(e, &format!("resolving the table location {location}")))
    }
}

/// Root schemes the sink writes to (the delta crate's handlers for each are registered once).
pub const SUPPORTED_SCHEMES: &[&str] = &["file", "s3", "s3a", "az", "azure", "abfs", "abfss", "adl", "gs", "memory"];

/// Registers the S3, Azure and GCS object stores with the delta crate (idempotent).
pub fn register_object_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::azure::register_handlers(None);
        deltalake::gcp::register_handlers(None);
    });
}

/// The rtsync checkpoint as stored in a commit's info.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCheckpoint {
    task: String,
    epoch: u64,
    position: serde_json::Value,
}

/// How rows are applied to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkMode {
    /// Every row is appended (Kafka).
    Append,
    /// Rows carry [`rtsync_core::OP_COLUMN`] and are applied per primary key (CDC): the table
    /// mirrors the source table.
    Upsert { keys: Vec<String> },
}

/// A column `__unchanged_<name>` (Boolean) beside `<name>` marks rows whose `<name>` value
/// the source did not send (PostgreSQL TOAST): the stored value is kept.
pub const UNCHANGED_PREFIX: &str = "__unchanged_";

/// In append mode, the source's operation of each row (`r` snapshot, `c` insert, `u` an
/// update's new row, `d` a delete's old row) is kept in this column: a table without a primary
/// key is mirrored as its change log.
pub const CHANGE_OP_COLUMN: &str = "_rtsync_op";

/// How often a commit is tried again after losing to a maintenance commit on the same files.
const MAINTENANCE_RETRIES: u32 = 5;

/// A Delta table written by one task.
pub struct DeltaSink {
    config: LakehouseSinkConfig,
    mode: SinkMode,
    /// Upsert mode: change batches since the last commit (MERGE needs them all at once).
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    task: String,
    table: Option<DeltaTable>,
    /// In a mutex only so the sink is `Sync` (the writer's encoders are not); accessed through
    /// `get_mut`, never locked across an await.
    writer: Option<Mutex<RecordBatchWriter>>,
    buffered_rows: usize,
    committed_epoch: u64,
    checkpoint_interval: u64,
    /// Append mode after a source truncate: the commit replaces the table's rows with `pending`.
    overwrite: bool,
    /// The table's columns as written (for an overwrite that has no rows).
    table_columns: Option<SchemaRef>,
    /// The table version after this sink's last commit (or open): when the table is still
    /// there at the next commit, nobody else committed in between and the fence holds.
    known_version: Option<u64>,
    /// Compaction and vacuum of this table, in the background (None: `maintenance = false`).
    maintainer: Option<maintenance::Maintainer>,
    /// Upsert mode on a table with deletion vectors and `apply = "merge_on_read"`.
    mor: Option<mor::MergeOnRead>,
}

impl DeltaSink {
    pub fn new(task: impl Into<String>, config: LakehouseSinkConfig) -> SyncResult<Self> {
        config.validate()?;
        Ok(Self {
            config,
            mode: SinkMode::Append,
            pending: Vec::new(),
            pending_bytes: 0,
            task: task.into(),
            table: None,
            writer: None,
            buffered_rows: 0,
            committed_epoch: 0,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            overwrite: false,
            table_columns: None,
            known_version: None,
            maintainer: None,
            mor: None,
        })
    }

    /// A sink that applies change rows per primary key (`keys`, in key order).
    pub fn upsert(task: impl Into<String>, config: LakehouseSinkConfig, keys: Vec<String>) -> SyncResult<Self> {
        if keys.is_empty() {
            return Err(SyncError::config("upsert mode needs at least one primary-key column"));
        }
        let mut sink = Self::new(task, config)?;
        sink.mode = SinkMode::Upsert { keys };
        Ok(sink)
    }

    /// `delta.checkpointInterval` of a table this sink creates (default
    /// [`DEFAULT_CHECKPOINT_INTERVAL`]); an existing table keeps its own.
    pub fn with_checkpoint_interval(mut self, interval: u64) -> Self {
        self.checkpoint_interval = interval.max(1);
        self
    }

    pub fn config(&self) -> &LakehouseSinkConfig {
        &self.config
    }

    pub fn mode(&self) -> &SinkMode {
        &self.mode
    }

    /// How this upsert sink applies changes since open (None: append mode or not open).
    pub fn apply_mode(&self) -> Option<ApplyMode> {
        match (&self.mode, self.table.is_some(), &self.mor) {
            (SinkMode::Upsert { .. }, true, Some(_)) => Some(ApplyMode::MergeOnRead),
            (SinkMode::Upsert { .. }, true, None) => Some(ApplyMode::CopyOnWrite),
            _ => None,
        }
    }

    /// The key index file of a merge-on-read sink.
    pub fn key_index_path(&self) -> Option<&std::path::Path> {
        self.mor.as_ref().map(|m| m.index_path())
    }

    /// Where the key index of this task's table lives: `index_dir` or the OS temporary
    /// directory, a file named after the table and the task.
    fn index_file(&self) -> std::path::PathBuf {
        let dir = match &self.config.index_dir {
            Some(d) => std::path::PathBuf::from(d),
            None => std::env::temp_dir().join("rtsync-key-index"),
        };
        let readable: String = format!("{}.{}.{}", self.config.schema, self.config.table, self.task)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' { c } else { '_' })
            .collect();
        let id = crc32fast::hash(format!("{}\n{}", self.config.table_location(), self.task).as_bytes());
        dir.join(format!("{readable}-{id:08x}.redb"))
    }

    /// The maintenance metrics of this sink's table (None before open or with maintenance off).
    pub fn maintenance_metrics(&self) -> Option<std::sync::Arc<maintenance::TableMetrics>> {
        self.maintainer.as_ref().map(|m| m.metrics())
    }

    fn location(&self) -> String {
        self.config.table_location()
    }

    async fn load(&self) -> SyncResult<DeltaTable> {
        let url = self.config.table_url()?;
        let mut table = DeltaTableBuilder::from_url(url)
            .map_err(|e| classify(e, &format!("opening table {}", self.location())))?
            .with_storage_options(self.config.storage_options.clone())
            .build()
            .map_err(|e| classify(e, &format!("opening table {}", self.location())))?;
        match table.load().await {
            Ok(()) => Ok(table),
            Err(deltalake::DeltaTableError::NotATable(_)) => Ok(table),
            Err(e) => Err(classify(e, &format!("loading table {}", self.location()))),
        }
    }

    async fn create(&self, table: DeltaTable, schema: &SchemaRef) -> SyncResult<DeltaTable> {
        let schema = table_schema(schema, matches!(self.mode, SinkMode::Append));
        let structure: StructType = schema.as_ref().try_into_kernel().map_err(|e| {
            SyncError::with_source(ErrorKind::Sink, "the mapped schema has a type Delta cannot store", e)
        })?;
        let interval = self.checkpoint_interval.to_string();
        let mut create = table
            .create()
            .with_table_name(&self.config.table)
            .with_columns(structure.fields().cloned())
            .with_configuration_property(deltalake::TableProperty::CheckpointInterval, Some(interval))
            .with_comment(format!("synced by rtsync task {}", self.task));
        if matches!(self.mode, SinkMode::Upsert { .. }) && self.config.apply == ApplyMode::MergeOnRead {
            // reader 3 / writer 7 with the deletionVectors feature
            create = create.with_configuration_property(deltalake::TableProperty::EnableDeletionVectors, Some("true"));
        }
        if let Some(retention) = self.config.log_retention {
            create = create.with_configuration_property(
                deltalake::TableProperty::LogRetentionDuration,
                Some(format!("interval {} seconds", retention.as_secs())),
            );
        }
        create.await.map_err(|e| classify(e, &format!("creating table {}", self.location())))
    }

    /// Append mode after a truncate: rows wait for the commit's overwrite.
    fn keep_for_overwrite(&mut self, batch: RecordBatch) -> SyncResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rows = append_rows(batch)?;
        self.buffered_rows += rows.num_rows();
        self.pending_bytes += rows.get_array_memory_size();
        self.pending.push(rows);
        Ok(())
    }

    fn new_writer(&self, table: &DeltaTable) -> SyncResult<RecordBatchWriter> {
        Ok(RecordBatchWriter::for_table(table)
            .map_err(|e| classify(e, &format!("preparing a writer for {}", self.location())))?
            .with_target_file_size(self.config.target_file_size))
    }

    /// The fence, checked before every commit in the same attempt: the table is brought up to
    /// date and, when anyone committed since this sink's last commit (or open), the task's `txn`
    /// version in it must still be the last epoch this copy committed (or read at open), and
    /// below `epoch`. Any other value means another copy of the task committed in between: its
    /// rows came from positions this copy would write again. A twin that commits after this
    /// check commits after the snapshot this commit reads, where the delta crate's conflict
    /// checker refuses the same application id. Either way: [`ErrorKind::Fenced`].
    async fn fence(&self, table: &mut DeltaTable, epoch: u64) -> SyncResult<()> {
        let location = self.location();
        table.update_incremental(None).await.map_err(|e| classify(e, &format!("refreshing table {location}")))?;
        if self.known_version.is_some() && table.version() == self.known_version {
            return Ok(());
        }
        let snapshot = table.snapshot().map_err(|e| classify(e, &format!("reading the snapshot of {location}")))?;
        let held = snapshot
            .transaction_version(table.log_store().as_ref(), &self.task)
            .await
            .map_err(|e| classify(e, &format!("reading the txn version of task {} in {location}", self.task)))?;
        let held = held.unwrap_or(0).max(0) as u64;
        if held != self.committed_epoch || held >= epoch {
            return Err(SyncError::new(
                ErrorKind::Fenced,
                format!(
                    "table {location} holds epoch {held} of task {}, but this copy last committed epoch {} and was \
                     about to commit epoch {epoch}: another copy of the task is writing; this one stops",
                    self.task, self.committed_epoch
                ),
            ));
        }
        Ok(())
    }

    /// The task's checkpoint: the `txn` version and the position in that epoch's commit info.
    async fn read_checkpoint(&self, table: &DeltaTable) -> SyncResult<Option<Checkpoint>> {
        let snapshot =
            table.snapshot().map_err(|e| classify(e, &format!("reading the snapshot of {}", self.location())))?;
        let epoch = snapshot.transaction_version(table.log_store().as_ref(), &self.task).await.map_err(|e| {
            classify(e, &format!("reading the checkpoint of task {} in {}", self.task, self.location()))
        })?;
        let Some(epoch) = epoch else {
            return Ok(None);
        };
        let epoch = u64::try_from(epoch).map_err(|_| {
            SyncError::sink(format!("table {} holds a negative txn version for task {}", self.location(), self.task))
        })?;
        let mut history = table.history(None);
        while let Some(info) =
            history.try_next().await.map_err(|e| classify(e, &format!("reading the history of {}", self.location())))?
        {
            let Some(stored) = info.info.get(COMMIT_INFO_KEY) else {
                continue;
            };
            let Ok(stored) = serde_json::from_value::<StoredCheckpoint>(stored.clone()) else {
                continue;
            };
            if stored.task == self.task && stored.epoch == epoch {
                return Ok(Some(Checkpoint { task: stored.task, epoch, position: stored.position }));
            }
        }
        Err(SyncError::sink(format!(
            "table {} says task {} committed epoch {epoch}, but that commit's position is no longer in the Delta log \
             (log retention removed it); undeploy the task and start it again with an explicit start position",
            self.location(),
            self.task
        )))
    }
}

#[async_trait]
impl Sink for DeltaSink {
    async fn open(&mut self, schema: SchemaRef) -> SyncResult<Option<Checkpoint>> {
        let mut table = self.load().await?;
        if table.version().is_none() {
            tracing::info!(table = %self.location(), "creating target table");
            table = self.create(table, &schema).await?;
        } else if let Ok(snapshot) = table.snapshot()
            && let Some(interval) = snapshot.metadata().configuration().get("delta.checkpointInterval")
        {
            self.checkpoint_interval = interval.parse().unwrap_or(DEFAULT_CHECKPOINT_INTERVAL);
        }
        let checkpoint = self.read_checkpoint(&table).await?;
        self.committed_epoch = checkpoint.as_ref().map_or(0, |c| c.epoch);
        self.known_version = table.version();
        self.maintainer = self.config.maintenance.then(|| {
            let stored = checkpoint.as_ref().map(|c| StoredCheckpoint {
                task: c.task.clone(),
                epoch: c.epoch,
                position: c.position.clone(),
            });
            maintenance::Maintainer::start(self.config.clone(), self.task.clone(), stored)
        });
        self.mor = match &self.mode {
            SinkMode::Upsert { keys } if self.config.apply == ApplyMode::MergeOnRead => {
                if supports_deletion_vectors(&table) {
                    let index = key_index::KeyIndex::open(&self.index_file())?;
                    let mut mor = mor::MergeOnRead::new(index);
                    mor.sync(&table, keys).await?;
                    Some(mor)
                } else {
                    tracing::info!(
                        task = %self.task,
                        table = %self.location(),
                        "the table has no deletion vectors: applying changes copy-on-write (`rtsync table upgrade` enables merge-on-read)"
                    );
                    None
                }
            }
            _ => None,
        };
        self.writer = Some(Mutex::new(self.new_writer(&table)?));
        self.table = Some(table);
        self.buffered_rows = 0;
        self.overwrite = false;
        self.pending.clear();
        self.pending_bytes = 0;
        self.table_columns = Some(table_schema(&schema, matches!(self.mode, SinkMode::Append)));
        Ok(checkpoint)
    }

    async fn write(&mut self, batch: RecordBatch) -> SyncResult<()> {
        if matches!(self.mode, SinkMode::Upsert { .. }) {
            self.buffered_rows += batch.num_rows();
            self.pending_bytes += batch.get_array_memory_size();
            self.pending.push(batch);
            return Ok(());
        }
        if let Some(cut) = last_truncate(&batch) {
            // The source table was truncated: whatever this commit buffered before is dropped,
            // and the commit replaces the table's rows with the ones that follow.
            let table = self.table.as_ref().ok_or_else(|| SyncError::internal("write called before open"))?;
            self.writer = Some(Mutex::new(self.new_writer(table)?));
            self.pending.clear();
            self.pending_bytes = 0;
            self.overwrite = true;
            self.buffered_rows = 0;
            let rest = batch.slice(cut + 1, batch.num_rows() - cut - 1);
            return self.keep_for_overwrite(rest);
        }
        if self.overwrite {
            return self.keep_for_overwrite(batch);
        }
        let location = self.location();
        let batch = append_rows(batch)?;
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| SyncError::internal("write called before open"))?
            .get_mut()
            .map_err(|_| SyncError::internal("the writer panicked earlier"))?;
        let rows = batch.num_rows();
        writer
            .write_with_mode(batch, WriteMode::MergeSchema)
            .await
            .map_err(|e| classify(e, &format!("writing data files of {location}")))?;
        self.buffered_rows += rows;
        Ok(())
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> SyncResult<CommitStats> {
        if checkpoint.epoch <= self.committed_epoch {
            tracing::debug!(task = %self.task, epoch = checkpoint.epoch, "epoch already committed, skipping");
            return Ok(CommitStats::default());
        }
        let location = self.location();
        let mut table = self.table.take().ok_or_else(|| SyncError::internal("commit called before open"))?;
        let writer = self
            .writer
            .take()
            .ok_or_else(|| SyncError::internal("commit called before open"))?
            .into_inner()
            .map_err(|_| SyncError::internal("the writer panicked earlier"))?;
        let mut bytes = writer.buffer_len() as u64;
        let epoch = i64::try_from(checkpoint.epoch).map_err(|_| SyncError::internal("epoch overflow"))?;
        let stored = StoredCheckpoint {
            task: checkpoint.task.clone(),
            epoch: checkpoint.epoch,
            position: checkpoint.position.clone(),
        };
        let info = serde_json::to_value(&stored)
            .map_err(|e| SyncError::with_source(ErrorKind::Internal, "serializing the checkpoint", e))?;
        let properties = CommitProperties::default()
            .with_application_transaction(Transaction::new(&self.task, epoch))
            .with_metadata([(COMMIT_INFO_KEY.to_string(), info)]);
        let mut writer = writer.with_commit_properties(properties.clone());
        if let Err(e) = self.fence(&mut table, checkpoint.epoch).await {
            self.table = Some(table);
            self.writer = Some(Mutex::new(writer));
            return Err(e);
        }
        let before_commit = table.version();
        let result = match &self.mode {
            SinkMode::Append if self.overwrite => {
                self.overwrite = false;
                bytes = std::mem::take(&mut self.pending_bytes) as u64;
                let mut rows = std::mem::take(&mut self.pending);
                if rows.is_empty()
                    && let Some(columns) = &self.table_columns
                {
                    rows.push(RecordBatch::new_empty(columns.clone()));
                }
                let mut attempt = 0;
                loop {
                    match table
                        .clone()
                        .write(rows.clone())
                        .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
                        .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
                        .with_commit_properties(properties.clone())
                        .await
                    {
                        Ok(written) => {
                            table = written;
                            break Ok(table.version().unwrap_or_default());
                        }
                        Err(e) if attempt < MAINTENANCE_RETRIES && maintenance::lost_to_maintenance(&e) => {
                            attempt += 1;
                            self.fence(&mut table, checkpoint.epoch).await?;
                        }
                        Err(e) => break Err(e),
                    }
                }
            }
            SinkMode::Append => writer.flush_and_commit(&mut table).await,
            SinkMode::Upsert { keys } => {
                let keys = keys.clone();
                let changes = std::mem::take(&mut self.pending);
                // For a MERGE, the bytes reported are those of the change rows applied.
                bytes = std::mem::take(&mut self.pending_bytes) as u64;
                let snapshot_only = !changes.is_empty()
                    && changes
                        .iter()
                        .all(|b| upsert::only_reads(b) && b.column_by_name(rtsync_core::UNCHANGED_COLUMN).is_none());
                if snapshot_only {
                    // Snapshot chunks hold distinct keys: appended as they are, without the
                    // concatenation and per-key collapse a MERGE needs.
                    let mut written = Ok(());
                    for batch in &changes {
                        written = writer.write_with_mode(upsert::without_op(batch)?, WriteMode::MergeSchema).await;
                        if written.is_err() {
                            break;
                        }
                    }
                    drop(changes);
                    bytes = writer.buffer_len() as u64;
                    match written {
                        Ok(()) => writer.flush_and_commit(&mut table).await,
                        Err(e) => Err(e),
                    }
                } else {
                    match upsert::prepare(&changes, &keys)? {
                        Some(p) if !p.truncate && upsert::only_reads(&p.rows.rows) => {
                            let rows = upsert::without_op(&p.rows.rows)?;
                            match writer.write_with_mode(rows, WriteMode::MergeSchema).await {
                                Ok(()) => writer.flush_and_commit(&mut table).await,
                                Err(e) => Err(e),
                            }
                        }
                        Some(p) if self.mor.is_some() => {
                            let mut mor = self.mor.take().ok_or_else(|| SyncError::internal("merge-on-read state"))?;
                            let mut attempt = 0;
                            let applied = loop {
                                let fresh = self.new_writer(&table)?;
                                let outcome =
                                    mor.apply(&table, &p.rows, p.truncate, &keys, fresh, properties.clone()).await;
                                match outcome {
                                    Ok(Ok(applied)) => break Ok(Ok(applied)),
                                    // Someone committed since the snapshot: a compaction (start
                                    // over on the new snapshot) or a twin (the fence stops us).
                                    Ok(Err(e))
                                        if attempt < MAINTENANCE_RETRIES && maintenance::lost_to_maintenance(&e) =>
                                    {
                                        attempt += 1;
                                        if let Err(fenced) = self.fence(&mut table, checkpoint.epoch).await {
                                            break Err(fenced);
                                        }
                                    }
                                    other => break other,
                                }
                            };
                            self.mor = Some(mor);
                            match applied? {
                                Ok(applied) => {
                                    bytes = applied.bytes;
                                    table.update_incremental(Some(applied.version)).await.map(|()| applied.version)
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Some(p) => {
                            let before = table.version();
                            // values a key change carried from the old key's stored row
                            let found = upsert::fetch_carried(&table, &p.rows, &keys)
                                .await
                                .map_err(|e| classify(e, &format!("reading carried values from {location}")))?;
                            tracing::debug!(
                                task = %self.task,
                                carried = p.rows.carries.len(),
                                found = found.iter().map(RecordBatch::num_rows).sum::<usize>(),
                                rows = p.rows.rows.num_rows(),
                                "values carried from old keys"
                            );
                            let rows = upsert::apply_carries(p.rows, &keys, &found)?;
                            let mut attempt = 0;
                            let mut before = before;
                            loop {
                                match upsert::merge(table.clone(), rows.clone(), &keys, p.truncate, properties.clone())
                                    .await
                                {
                                    Ok(merged) => {
                                        table = merged;
                                        break if table.version() == before {
                                            // Nothing changed: record the checkpoint on its own.
                                            writer.flush_and_commit(&mut table).await
                                        } else {
                                            Ok(table.version().unwrap_or_default())
                                        };
                                    }
                                    // A compaction committed first: the rows are the same, so
                                    // the MERGE runs again on the new snapshot.
                                    Err(e) if attempt < MAINTENANCE_RETRIES && maintenance::lost_to_maintenance(&e) => {
                                        attempt += 1;
                                        self.fence(&mut table, checkpoint.epoch).await?;
                                        before = table.version();
                                    }
                                    Err(e) => break Err(e),
                                }
                            }
                        }
                        None => writer.flush_and_commit(&mut table).await,
                    }
                }
            }
        };
        let version = match result {
            Ok(v) => v,
            Err(e) => {
                // Keep the table for the error path; the engine restarts the attempt anyway.
                self.table = Some(table);
                self.writer = Some(Mutex::new(writer));
                return Err(classify(e, &format!("committing to {location}")));
            }
        };
        self.committed_epoch = checkpoint.epoch;
        self.known_version = Some(version);
        if let Some(m) = &self.maintainer {
            m.committed(StoredCheckpoint {
                task: checkpoint.task.clone(),
                epoch: checkpoint.epoch,
                position: checkpoint.position.clone(),
            });
        }
        let rows = std::mem::take(&mut self.buffered_rows) as u64;
        let interval = self.checkpoint_interval;
        let checkpoints_by = |v: u64| (v + 1) / interval.max(1);
        if interval > 0 && before_commit.is_none_or(|b| checkpoints_by(version) > checkpoints_by(b)) {
            // A checkpoint was written (by this commit or a maintenance commit before it):
            // start from it instead of growing the replay.
            table = self.load().await?;
        }
        self.writer = Some(Mutex::new(self.new_writer(&table)?));
        self.table = Some(table);
        Ok(CommitStats { version: Some(version as i64), rows, files: 0, bytes })
    }

    fn buffered_rows(&self) -> usize {
        self.buffered_rows
    }

    fn buffered_bytes(&self) -> usize {
        self.pending_bytes + self.writer.as_ref().and_then(|w| w.lock().ok().map(|w| w.buffer_len())).unwrap_or(0)
    }
}

/// Does the table's protocol have the `deletionVectors` writer feature?
pub(crate) fn supports_deletion_vectors(table: &DeltaTable) -> bool {
    table.snapshot().ok().is_some_and(|s| {
        s.protocol().writer_features().is_some_and(|f| f.iter().any(|f| f.to_string() == "deletionVectors"))
    })
}

/// Append mode: rows as the table takes them, the op column (if any) as [`CHANGE_OP_COLUMN`],
/// unchanged masks dropped. Truncates are handled by the caller (an overwrite).
fn append_rows(batch: RecordBatch) -> SyncResult<RecordBatch> {
    // Kafka batches (the hot path) carry neither an op column nor unchanged masks.
    if batch.schema().fields().iter().all(|f| keep_column(f.name(), false)) {
        return Ok(batch);
    }
    let schema = table_schema(&batch.schema(), true);
    let columns = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| keep_column(f.name(), true))
        .map(|(_, c)| c.clone())
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The row of the last source truncate in `batch`, if any.
fn last_truncate(batch: &RecordBatch) -> Option<usize> {
    use deltalake::arrow::array::{Array, AsArray};
    let ops = batch.column_by_name(rtsync_core::OP_COLUMN)?.as_string_opt::<i32>()?;
    (0..ops.len()).rev().find(|&i| ops.is_valid(i) && ops.value(i) == "t")
}

/// The Delta type each column of `schema` takes in the table (`decimal(12,2)`, `timestamp`,
/// `array<string>`…), by name; the op column and unchanged masks are left out. A type Delta
/// cannot store is named as an error.
pub fn delta_types(schema: &SchemaRef) -> SyncResult<Vec<(String, String)>> {
    let structure: StructType = table_schema(schema, false).as_ref().try_into_kernel().map_err(|e| {
        SyncError::with_source(ErrorKind::Sink, "the source's columns have a type Delta cannot store", e)
    })?;
    Ok(structure.fields().map(|f| (f.name().clone(), f.data_type().to_string())).collect())
}

fn keep_column(name: &str, keep_op: bool) -> bool {
    (keep_op || name != rtsync_core::OP_COLUMN)
        && !rtsync_core::is_contract_column(name)
        && !name.starts_with(UNCHANGED_PREFIX)
}

/// The table's columns: the rows' columns without the unchanged masks, and without the op
/// column, or (`keep_op`, append mode) with it as [`CHANGE_OP_COLUMN`].
fn table_schema(schema: &SchemaRef, keep_op: bool) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| keep_column(f.name(), keep_op))
        .map(|f| {
            if f.name() == rtsync_core::OP_COLUMN {
                std::sync::Arc::new(f.as_ref().clone().with_name(CHANGE_OP_COLUMN).with_nullable(true))
            } else {
                f.clone()
            }
        })
        .collect();
    std::sync::Arc::new(deltalake::arrow::datatypes::Schema::new(fields))
}

#[cfg(test)]
mod tests;
