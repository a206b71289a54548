//! Builds a task from its spec and runs it, retrying transient failures as new attempts.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rtsync_core::{ColumnMapping, ErrorPolicy, SyncResult};
use rtsync_engine::{Backoff, EngineConfig, Task, TaskMetrics};
use rtsync_sink_lakehouse::DeltaSink;
use rtsync_source_kafka::KafkaSource;
use tokio::sync::watch;

use crate::spec::{SourceSpec, TaskSpec};

/// How a run is observed and stopped.
pub struct RunOptions {
    pub metrics: Arc<TaskMetrics>,
    /// Set to true to stop: the task commits what it holds and returns Ok.
    pub shutdown: watch::Receiver<bool>,
    /// Retry transient failures (true) or return the first error (false).
    pub retry: bool,
}

fn engine_config(spec: &TaskSpec) -> EngineConfig {
    EngineConfig {
        task: spec.name.clone(),
        commit_interval: spec.commit_interval,
        max_buffered_rows: spec.max_buffered_rows,
        max_buffered_bytes: spec.max_buffered_bytes,
        error_policy: spec.error_policy,
    }
}

/// One attempt: fresh connections, resume from the table's checkpoint.
async fn attempt(spec: &TaskSpec, opts: &RunOptions) -> SyncResult<()> {
    let mapping: Arc<dyn ColumnMapping> = Arc::new(rtsync_mapping::compile(&spec.columns)?);
    let sink = Box::new(DeltaSink::new(&spec.name, spec.sink.clone())?);
    match &spec.source {
        SourceSpec::Kafka(config) => {
            let source = KafkaSource::new(&spec.name, config.clone())?;
            let mut task = Task::new(engine_config(spec), source, mapping, sink, opts.metrics.clone(), opts.shutdown.clone());
            if spec.error_policy == ErrorPolicy::DeadLetter {
                task = task.with_dead_letter_sink(Box::new(DeltaSink::new(&spec.name, spec.dead_letter_sink())?));
            }
            task.run().await
        }
    }
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
