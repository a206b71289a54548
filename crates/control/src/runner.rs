//! Builds a task from its spec and runs it, retrying transient failures as new attempts.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rtsync_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::{ColumnMapping, MappedBatch, OP_COLUMN, Source, SyncError, SyncResult, TableDescription};
use rtsync_engine::{Backoff, EngineConfig, Task, TaskMetrics};
use rtsync_sink_lakehouse::DeltaSink;
use tokio::sync::watch;

use crate::spec::TaskSpec;

/// How a run is observed and stopped.
pub struct RunOptions {
    pub metrics: Arc<TaskMetrics>,
    /// Set to true to stop: the task commits what it holds and returns Ok.
    pub shutdown: watch::Receiver<bool>,
    /// Retry transient failures (true) or return the first error (false).
    pub retry: bool,
}

pub(crate) fn engine_config(spec: &TaskSpec) -> EngineConfig {
    EngineConfig {
        task: spec.name.clone(),
        commit_interval: spec.commit_interval,
        max_buffered_rows: spec.max_buffered_rows,
        max_buffered_bytes: spec.max_buffered_bytes,
        error_policy: spec.error_policy,
    }
}

/// The mapping of a table source: every column as the source sends it, plus the op column
/// (and, when the source sends them, unchanged-column lists) for the upsert sink.
struct TableMapping {
    schema: SchemaRef,
}

impl TableMapping {
    fn new(description: &TableDescription) -> Self {
        let mut fields: Vec<Field> = description.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
        Self { schema: Arc::new(Schema::new(fields)) }
    }
}

impl ColumnMapping for TableMapping {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn map(&self, input: &RecordBatch) -> SyncResult<MappedBatch> {
        Ok(MappedBatch { rows: input.clone(), rejected: Vec::new() })
    }
}

/// Runs a table (CDC) source: checks it, describes the table, so the target is created from
/// its columns and upserts by its primary key (appends when it has none), then runs the task
/// (which does not check the source a second time).
pub(crate) async fn run_table_source<S: Source>(spec: &TaskSpec, opts: &RunOptions, mut source: S) -> SyncResult<()> {
    source.check().await.map_err(|e| e.context_prefix("checking the source"))?;
    let description =
        source.describe().await?.ok_or_else(|| SyncError::internal("a table source did not describe its table"))?;
    let mapping: Arc<dyn ColumnMapping> = Arc::new(TableMapping::new(&description));
    let sink: Box<dyn rtsync_core::Sink> = if description.primary_key.is_empty() {
        tracing::warn!(task = %spec.name, "the source table has no primary key: the target is its change log (every row with its operation in _rtsync_op), not a mirror");
        Box::new(DeltaSink::new(&spec.name, spec.sink.clone())?)
    } else {
        Box::new(DeltaSink::upsert(&spec.name, spec.sink.clone(), description.primary_key.clone())?)
    };
    Task::new(engine_config(spec), source, mapping, sink, opts.metrics.clone(), opts.shutdown.clone())
        .source_checked()
        .run()
        .await
}

/// One attempt: fresh connections, resume from the table's checkpoint.
async fn attempt(spec: &TaskSpec, opts: &RunOptions) -> SyncResult<()> {
    spec.source.source().run(spec, opts).await
}

/// Runs until shutdown (Ok) or a definite error. Transient errors are retried with backoff
/// when `opts.retry`; the backoff resets after an attempt that committed something.
pub async fn run_task(spec: &TaskSpec, mut opts: RunOptions) -> SyncResult<()> {
    let mut backoff = Backoff::default();
    let mut attempt_no = 1u32;
    loop {
        let commits_before = opts.metrics.commits.load(Ordering::Relaxed);
        match attempt(spec, &opts).await {
            Ok(()) => return Ok(()),
            Err(err) if opts.retry && err.kind().is_transient() && !*opts.shutdown.borrow() => {
                opts.metrics.errors.fetch_add(1, Ordering::Relaxed);
                if opts.metrics.commits.load(Ordering::Relaxed) > commits_before {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(task = %spec.name, attempt = attempt_no, retry_in_ms = delay.as_millis() as u64, error = %err.report(), "attempt failed, retrying");
                attempt_no += 1;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = opts.shutdown.changed() => return Ok(()),
                }
            }
            Err(err) => {
                opts.metrics.errors.fetch_add(1, Ordering::Relaxed);
                return Err(err);
            }
        }
    }
}
