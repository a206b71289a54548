//! One task's run loop and its commit protocol.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Int32Builder, Int64Array, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use rtsync_core::{
    ChangeBatch, Checkpoint, ColumnMapping, ErrorKind, ErrorPolicy, MappedBatch, Position, Rejected, Sink, Source,
    SyncError, SyncResult,
};
use tokio::sync::watch;

use crate::TaskMetrics;

pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_BUFFERED_ROWS: usize = 2_000_000;
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 * 1024 * 1024;
/// The longest the loop waits for the source before re-checking shutdown and the clock.
const MAX_POLL_WAIT: Duration = Duration::from_millis(200);

/// How a task batches its commits and treats bad records.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The task's name: the Delta `txn` application id of its commits.
    pub task: String,
    pub commit_interval: Duration,
    /// Commit early once this many rows are buffered.
    pub max_buffered_rows: usize,
    /// Commit early once the sink holds this many encoded bytes.
    pub max_buffered_bytes: usize,
    pub error_policy: ErrorPolicy,
}

impl EngineConfig {
    pub fn new(task: impl Into<String>) -> Self {
        Self {
            task: task.into(),
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            max_buffered_rows: DEFAULT_MAX_BUFFERED_ROWS,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            error_policy: ErrorPolicy::Fail,
        }
    }
}

/// The columns of a task's `<table>__dlq` table.
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("task", DataType::Utf8, false),
        Field::new("source_position", DataType::Utf8, true),
        Field::new("partition", DataType::Int32, true),
        Field::new("offset", DataType::Int64, true),
        Field::new("raw", DataType::Binary, true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("rejected_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
    ]))
}

/// One source → mapping → sink pipeline. Built per attempt; [`Task::run`] consumes it.
pub struct Task<S: Source> {
    config: EngineConfig,
    source: S,
    mapping: Arc<dyn ColumnMapping>,
    sink: Box<dyn Sink>,
    dead_letter: Option<Box<dyn Sink>>,
    metrics: Arc<TaskMetrics>,
    shutdown: watch::Receiver<bool>,
    /// The caller ran the source's pre-flight check already.
    source_checked: bool,
}

/// A source batch and what the mapping made of it.
struct Mapped<P> {
    batch: ChangeBatch<P>,
    mapped: MappedBatch,
}

/// What the loop carries between commits.
struct Pending<P> {
    /// Position after the last batch written (committed or not).
    position: Option<P>,
    /// Whether `position` moved since the last commit.
    dirty: bool,
    rows: usize,
    event_times: Vec<Int64Array>,
    dead_letters: DeadLetters,
}

impl<S: Source> Task<S> {
    pub fn new(
        config: EngineConfig,
        source: S,
        mapping: Arc<dyn ColumnMapping>,
        sink: Box<dyn Sink>,
        metrics: Arc<TaskMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self { config, source, mapping, sink, dead_letter: None, metrics, shutdown, source_checked: false }
    }

    /// The caller has run [`Source::check`] on this source already (to describe its table
    /// before building the sink): the task does not run it a second time.
    pub fn source_checked(mut self) -> Self {
        self.source_checked = true;
        self
    }

    /// Routes rejected records to this sink (the `<table>__dlq` table) when the error policy
    /// is `dead_letter`.
    pub fn with_dead_letter_sink(mut self, sink: Box<dyn Sink>) -> Self {
        self.dead_letter = Some(sink);
        self
    }

    /// Runs until shutdown is signalled (then commits what is buffered and returns Ok) or an
    /// error stops it. A transient error is for the caller to retry with a new `Task`:
    /// everything not committed is read again from the committed position.
    pub async fn run(mut self) -> SyncResult<()> {
        let result = self.run_inner().await;
        if let Err(err) = self.source.close().await {
            tracing::warn!(task = %self.config.task, error = %err.report(), "closing the source failed");
        }
        result
    }

    async fn run_inner(&mut self) -> SyncResult<()> {
        let task = self.config.task.clone();
        let checkpoint = self
            .sink
            .open(self.mapping.output_schema())
            .await
            .map_err(|e| e.context_prefix("opening the target table"))?;
        let resume = decode_position::<S::Position>(checkpoint.as_ref())?;
        let mut epoch = checkpoint.as_ref().map_or(0, |c| c.epoch);

        // The dead-letter table is committed before the main table in each cycle; if it is
        // ahead, the records of that cycle were already dead-lettered by the previous attempt.
        let mut dead_letters = DeadLetters::default();
        if let Some(dlq) = self.dead_letter.as_mut() {
            let dlq_checkpoint =
                dlq.open(dead_letter_schema()).await.map_err(|e| e.context_prefix("opening the dead-letter table"))?;
            if let Some(c) = dlq_checkpoint.filter(|c| c.epoch > epoch) {
                dead_letters.already_written =
                    decode_position::<S::Position>(Some(&c))?.map(|p| serde_json::to_value(p).unwrap_or_default());
                epoch = c.epoch;
            }
        }

        if !self.source_checked {
            self.source.check().await.map_err(|e| e.context_prefix("checking the source"))?;
        }
        self.source.open(resume.clone()).await.map_err(|e| e.context_prefix("opening the source"))?;
        // The table's position is durable: tell the source, so server-side progress (Kafka
        // group offsets, a PostgreSQL slot) catches up even when a killed attempt committed to
        // the table but did not get to acknowledge, and nothing new arrives after the restart.
        if let Some(p) = &resume
            && let Err(err) = self.source.ack(p).await
        {
            tracing::warn!(task = %task, error = %err.report(), "acknowledging the resume position failed");
        }
        tracing::info!(task = %task, epoch, position = %resume.as_ref().map(ToString::to_string).unwrap_or_default(), "task started");
        self.metrics.epoch.store(epoch, Ordering::Relaxed);
        if let Some(p) = &resume {
            self.metrics.set_position(p.to_string());
        }

        let mut pending = Pending { position: resume, dirty: false, rows: 0, event_times: Vec::new(), dead_letters };
        // The last batch mapped and not yet written: it is written (Parquet-encoded by the
        // sink) while the mapping thread maps the next one.
        let mut ready: Option<Mapped<S::Position>> = None;
        let mut next_commit = Instant::now() + self.config.commit_interval;
        loop {
            if *self.shutdown.borrow() {
                self.write_ready(&mut ready, &mut pending).await?;
                self.commit(&mut pending, &mut epoch).await?;
                tracing::info!(task = %task, epoch, "task stopped");
                return Ok(());
            }
            let wait = next_commit.saturating_duration_since(Instant::now()).min(MAX_POLL_WAIT);
            let next = self.source.next_batch(wait).await?;
            self.metrics.set_snapshot_progress(self.source.snapshot_progress());
            match next {
                Some(batch) => {
                    self.metrics.rows_in.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    self.metrics.bytes_in.fetch_add(batch.source_bytes, Ordering::Relaxed);
                    let mapping = self.mapping.clone();
                    let mapper = tokio::task::spawn_blocking(move || {
                        let mapped = mapping.map(&batch.rows);
                        (batch, mapped)
                    });
                    let written = self.write_ready(&mut ready, &mut pending).await;
                    let (batch, mapped) = mapper
                        .await
                        .map_err(|e| SyncError::with_source(ErrorKind::Internal, "the mapping thread failed", e))?;
                    written?;
                    ready = Some(Mapped { batch, mapped: mapped? });
                }
                None => {
                    self.write_ready(&mut ready, &mut pending).await?;
                    // A source that returns at once when idle must not starve the runtime.
                    tokio::task::yield_now().await;
                }
            }
            let due = Instant::now() >= next_commit;
            let full = pending.rows >= self.config.max_buffered_rows
                || self.sink.buffered_bytes() >= self.config.max_buffered_bytes;
            if due || full {
                self.write_ready(&mut ready, &mut pending).await?;
                self.commit(&mut pending, &mut epoch).await?;
                next_commit = Instant::now() + self.config.commit_interval;
            }
        }
    }

    /// Writes the mapped batch held in `ready`, if any: its rejected rows go to the error
    /// policy, its rows to the sink, and only then does the pending position move past it, so
    /// a commit's position covers exactly the rows written before it.
    async fn write_ready(
        &mut self,
        ready: &mut Option<Mapped<S::Position>>,
        pending: &mut Pending<S::Position>,
    ) -> SyncResult<()> {
        let Some(Mapped { batch, mapped }) = ready.take() else {
            return Ok(());
        };
        if !mapped.rejected.is_empty() {
            self.metrics.rejected.fetch_add(mapped.rejected.len() as u64, Ordering::Relaxed);
            self.reject(&batch, mapped.rejected, &mut pending.dead_letters)?;
        }
        let out_rows = mapped.rows.num_rows();
        if out_rows > 0 {
            self.sink.write(mapped.rows).await?;
        }
        pending.rows += out_rows;
        if let Some(times) = batch.event_time_ms {
            pending.event_times.push(times);
        }
        match pending.position.as_mut() {
            Some(p) => p.advance(&batch.end),
            None => pending.position = Some(batch.end),
        }
        pending.dirty = true;
        Ok(())
    }

    /// Applies the error policy to the rows the mapping rejected.
    fn reject(
        &self,
        batch: &ChangeBatch<S::Position>,
        rejected: Vec<Rejected>,
        dlq: &mut DeadLetters,
    ) -> SyncResult<()> {
        if self.dead_letter.is_none() || self.config.error_policy == ErrorPolicy::Fail {
            let first = &rejected[0];
            let at = S::Position::of_row(&batch.rows, first.row)
                .map(|p| describe_row(&batch.rows, first.row, &p))
                .unwrap_or_default();
            return Err(SyncError::data(format!(
                "record{at} could not be mapped: {}; fix the message or the column mapping, or set error_policy = \"dead_letter\"",
                first.reason
            )));
        }
        let already: Option<S::Position> =
            dlq.already_written.as_ref().and_then(|v| serde_json::from_value(v.clone()).ok());
        for r in rejected {
            let row_pos = S::Position::of_row(&batch.rows, r.row);
            if let (Some(done), Some(pos)) = (&already, &row_pos)
                && done.covers(pos)
            {
                continue;
            }
            dlq.push(&batch.rows, batch.event_time_ms.as_ref(), &r, row_pos.as_ref().map(ToString::to_string));
        }
        Ok(())
    }

    /// One commit cycle: dead letters, then the data with the checkpoint, then the source ack.
    async fn commit(&mut self, pending: &mut Pending<S::Position>, epoch: &mut u64) -> SyncResult<()> {
        if !pending.dirty {
            return Ok(());
        }
        let Some(position) = pending.position.clone() else {
            return Ok(());
        };
        let started = Instant::now();
        let next_epoch = *epoch + 1;
        let checkpoint = Checkpoint {
            task: self.config.task.clone(),
            epoch: next_epoch,
            position: serde_json::to_value(&position)
                .map_err(|e| SyncError::with_source(ErrorKind::Internal, "serializing the source position", e))?,
        };
        if let Some(dlq) = self.dead_letter.as_mut()
            && pending.dead_letters.rows > 0
        {
            let rows = pending.dead_letters.finish(&self.config.task)?;
            let n = rows.num_rows() as u64;
            dlq.write(rows).await?;
            dlq.commit(&checkpoint).await.map_err(|e| e.context_prefix("committing the dead-letter table"))?;
            self.metrics.dead_lettered.fetch_add(n, Ordering::Relaxed);
        }
        let stats = self.sink.commit(&checkpoint).await.map_err(|e| e.context_prefix("committing the target table"))?;
        *epoch = next_epoch;
        pending.dirty = false;
        pending.dead_letters.already_written = None;

        let now_ms = unix_ms();
        let latency = started.elapsed().as_millis() as u64;
        let m = &self.metrics;
        m.commits.fetch_add(1, Ordering::Relaxed);
        m.rows_out.fetch_add(pending.rows as u64, Ordering::Relaxed);
        m.bytes_out.fetch_add(stats.bytes, Ordering::Relaxed);
        m.last_commit_unix_ms.store(now_ms, Ordering::Relaxed);
        m.last_commit_latency_ms.store(latency, Ordering::Relaxed);
        m.commit_latency_ms_total.fetch_add(latency, Ordering::Relaxed);
        m.epoch.store(next_epoch, Ordering::Relaxed);
        m.set_position(position.to_string());
        let mut oldest = None::<i64>;
        for times in pending.event_times.drain(..) {
            let values = times.iter().flatten();
            oldest = values.clone().min().into_iter().chain(oldest).min();
            m.record_freshness(values.map(|t| (now_ms as i64 - t).max(0) as u64));
        }
        if let Some(oldest) = oldest {
            m.last_freshness_ms.store((now_ms as i64 - oldest).max(0) as u64, Ordering::Relaxed);
        }
        tracing::debug!(task = %self.config.task, epoch = next_epoch, rows = pending.rows, version = ?stats.version, latency_ms = latency, position = %position, "committed");
        pending.rows = 0;

        if let Err(err) = self.source.ack(&position).await {
            m.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(task = %self.config.task, error = %err.report(), "acknowledging the source failed; the table holds the position");
        }
        Ok(())
    }
}

fn decode_position<P: Position>(checkpoint: Option<&Checkpoint>) -> SyncResult<Option<P>> {
    checkpoint
        .map(|c| {
            serde_json::from_value::<P>(c.position.clone()).map_err(|e| {
                SyncError::with_source(
                    ErrorKind::Config,
                    format!(
                        "the checkpoint in the target table (epoch {}) is not a position of this source type; was the table written by another kind of task?",
                        c.epoch
                    ),
                    e,
                )
            })
        })
        .transpose()
}

/// " at partition 1 offset 42" when the source rows carry those columns, else the position.
fn describe_row<P: Position>(rows: &RecordBatch, row: usize, pos: &P) -> String {
    let partition =
        rows.column_by_name("partition").and_then(|c| c.as_primitive_opt::<Int32Type>()).map(|a| a.value(row));
    let offset = rows.column_by_name("offset").and_then(|c| c.as_primitive_opt::<Int64Type>()).map(|a| a.value(row));
    match (partition, offset) {
        (Some(p), Some(o)) => format!(" at partition {p} offset {o}"),
        _ => format!(" at {pos}"),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Dead-letter rows buffered until the next commit.
#[derive(Default)]
struct DeadLetters {
    /// The dead-letter table's position when it is ahead of the main table (serialized).
    already_written: Option<serde_json::Value>,
    positions: Vec<Option<String>>,
    partitions: Vec<Option<i32>>,
    offsets: Vec<Option<i64>>,
    raws: Vec<Option<Vec<u8>>>,
    reasons: Vec<String>,
    event_times: Vec<Option<i64>>,
    rows: usize,
}

impl DeadLetters {
    fn push(&mut self, rows: &RecordBatch, event_ms: Option<&Int64Array>, r: &Rejected, position: Option<String>) {
        let partition =
            rows.column_by_name("partition").and_then(|c| c.as_primitive_opt::<Int32Type>()).map(|a| a.value(r.row));
        let offset =
            rows.column_by_name("offset").and_then(|c| c.as_primitive_opt::<Int64Type>()).map(|a| a.value(r.row));
        self.positions.push(position);
        self.partitions.push(partition);
        self.offsets.push(offset);
        self.raws.push(r.raw.clone());
        self.reasons.push(r.reason.clone());
        self.event_times.push(event_ms.and_then(|a| a.is_valid(r.row).then(|| a.value(r.row))));
        self.rows += 1;
    }

    fn finish(&mut self, task: &str) -> SyncResult<RecordBatch> {
        let n = self.rows;
        let now_us = unix_ms() as i64 * 1000;
        let mut task_col = StringBuilder::with_capacity(n, n * task.len());
        let mut pos = StringBuilder::new();
        let mut part = Int32Builder::with_capacity(n);
        let mut off = Int64Builder::with_capacity(n);
        let mut raw = BinaryBuilder::new();
        let mut reason = StringBuilder::new();
        let mut ev = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        for i in 0..n {
            task_col.append_value(task);
            pos.append_option(self.positions[i].as_deref());
            part.append_option(self.partitions[i]);
            off.append_option(self.offsets[i]);
            raw.append_option(self.raws[i].as_deref());
            reason.append_value(&self.reasons[i]);
            ev.append_option(self.event_times[i].map(|ms| ms * 1000));
            at.append_value(now_us);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(task_col.finish()),
            Arc::new(pos.finish()),
            Arc::new(part.finish()),
            Arc::new(off.finish()),
            Arc::new(raw.finish()),
            Arc::new(reason.finish()),
            Arc::new(ev.finish()),
            Arc::new(at.finish()),
        ];
        let batch = RecordBatch::try_new(dead_letter_schema(), columns)?;
        *self = DeadLetters { already_written: self.already_written.take(), ..Default::default() };
        Ok(batch)
    }
}

#[cfg(test)]
mod tests;
