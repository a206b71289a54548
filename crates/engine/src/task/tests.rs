//! The commit protocol against an in-memory source and sink.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use arrow::array::{BinaryArray, Int32Array, Int64Array};
use async_trait::async_trait;
use rtsync_core::{CommitStats, MappedBatch};
use serde::{Deserialize, Serialize};

use super::*;

/// Next offset per partition, like Kafka's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Offs(BTreeMap<i32, i64>);

impl fmt::Display for Offs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl FromStr for Offs {
    type Err = SyncError;
    fn from_str(_: &str) -> Result<Self, Self::Err> {
        Err(SyncError::internal("not used"))
    }
}

impl Position for Offs {
    fn covers(&self, other: &Self) -> bool {
        other.0.iter().all(|(p, o)| self.0.get(p).is_some_and(|m| m >= o))
    }
    fn advance(&mut self, later: &Self) {
        for (p, o) in &later.0 {
            let e = self.0.entry(*p).or_insert(*o);
            *e = (*e).max(*o);
        }
    }
    fn of_row(rows: &RecordBatch, row: usize) -> Option<Self> {
        let p = rows.column_by_name("partition")?.as_primitive_opt::<Int32Type>()?.value(row);
        let o = rows.column_by_name("offset")?.as_primitive_opt::<Int64Type>()?.value(row);
        Some(Offs(BTreeMap::from([(p, o + 1)])))
    }
}

fn source_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("value", DataType::Binary, true),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
    ]))
}

/// One partition of messages; "bad" values are rejected by the mapping.
struct LogSource {
    log: Vec<&'static str>,
    next: usize,
    per_batch: usize,
}

#[async_trait]
impl Source for LogSource {
    type Position = Offs;
    async fn check(&mut self) -> SyncResult<()> {
        Ok(())
    }
    async fn open(&mut self, resume: Option<Offs>) -> SyncResult<SchemaRef> {
        self.next = resume.and_then(|r| r.0.get(&0).copied()).unwrap_or(0) as usize;
        Ok(source_schema())
    }
    async fn next_batch(&mut self, max_wait: Duration) -> SyncResult<Option<ChangeBatch<Offs>>> {
        if self.next >= self.log.len() {
            tokio::time::sleep(max_wait).await;
            return Ok(None);
        }
        let end = (self.next + self.per_batch).min(self.log.len());
        let values: Vec<&[u8]> = self.log[self.next..end].iter().map(|s| s.as_bytes()).collect();
        let rows = RecordBatch::try_new(
            source_schema(),
            vec![
                Arc::new(BinaryArray::from(values)),
                Arc::new(Int32Array::from(vec![0; end - self.next])),
                Arc::new(Int64Array::from((self.next as i64..end as i64).collect::<Vec<_>>())),
            ],
        )?;
        self.next = end;
        Ok(Some(ChangeBatch {
            rows,
            end: Offs(BTreeMap::from([(0, end as i64)])),
            event_time_ms: None,
            source_bytes: 0,
        }))
    }
}

/// Keeps the value column as text; rejects "bad…".
struct TextMapping;

impl ColumnMapping for TextMapping {
    fn output_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, true)]))
    }
    fn map(&self, input: &RecordBatch) -> SyncResult<MappedBatch> {
        let values = input.column(0).as_binary::<i32>();
        let mut out = StringBuilder::new();
        let mut rejected = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let text = std::str::from_utf8(v.unwrap_or_default()).unwrap_or_default();
            if text.starts_with("bad") {
                rejected.push(Rejected {
                    row: i,
                    reason: format!("{text} is bad"),
                    raw: Some(text.as_bytes().to_vec()),
                });
            } else {
                out.append_value(text);
            }
        }
        Ok(MappedBatch { rows: RecordBatch::try_new(self.output_schema(), vec![Arc::new(out.finish())])?, rejected })
    }
}

/// A table in memory: committed rows and checkpoints; can be told to fail a commit.
#[derive(Default)]
struct Table {
    rows: Vec<String>,
    checkpoint: Option<Checkpoint>,
    fail_next_commit: bool,
}

struct MemSink {
    table: Arc<Mutex<Table>>,
    buffer: Vec<String>,
}

impl MemSink {
    fn new(table: &Arc<Mutex<Table>>) -> Box<Self> {
        Box::new(Self { table: table.clone(), buffer: Vec::new() })
    }
}

#[async_trait]
impl Sink for MemSink {
    async fn open(&mut self, _schema: SchemaRef) -> SyncResult<Option<Checkpoint>> {
        Ok(self.table.lock().unwrap().checkpoint.clone())
    }
    async fn write(&mut self, batch: RecordBatch) -> SyncResult<()> {
        let col = batch.column_by_name("v").or_else(|| batch.column_by_name("reason")).unwrap();
        self.buffer.extend(col.as_string::<i32>().iter().map(|v| v.unwrap_or_default().to_string()));
        Ok(())
    }
    async fn commit(&mut self, checkpoint: &Checkpoint) -> SyncResult<CommitStats> {
        let mut t = self.table.lock().unwrap();
        if t.fail_next_commit {
            t.fail_next_commit = false;
            return Err(SyncError::transient("storage hiccup"));
        }
        if t.checkpoint.as_ref().is_some_and(|c| c.epoch >= checkpoint.epoch) {
            return Ok(CommitStats::default());
        }
        t.rows.append(&mut self.buffer);
        t.checkpoint = Some(checkpoint.clone());
        Ok(CommitStats { version: Some(checkpoint.epoch as i64), ..Default::default() })
    }
    fn buffered_rows(&self) -> usize {
        self.buffer.len()
    }
    fn buffered_bytes(&self) -> usize {
        0
    }
}

const LOG: [&str; 10] = ["a", "b", "bad1", "c", "d", "e", "bad2", "f", "g", "h"];

fn task(
    table: &Arc<Mutex<Table>>,
    dlq: &Arc<Mutex<Table>>,
    policy: ErrorPolicy,
    per_batch: usize,
    stop_after_ms: u64,
) -> (Task<LogSource>, Arc<TaskMetrics>) {
    let metrics = Arc::new(TaskMetrics::default());
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(stop_after_ms)).await;
        let _ = tx.send(true);
    });
    let config =
        EngineConfig { commit_interval: Duration::from_millis(100), error_policy: policy, ..EngineConfig::new("t") };
    let source = LogSource { log: LOG.to_vec(), next: 0, per_batch };
    let task = Task::new(config, source, Arc::new(TextMapping), MemSink::new(table), metrics.clone(), rx)
        .with_dead_letter_sink(MemSink::new(dlq));
    (task, metrics)
}

#[tokio::test]
async fn every_row_lands_once_across_a_failed_commit() {
    let table = Arc::new(Mutex::new(Table::default()));
    let dlq = Arc::new(Mutex::new(Table::default()));
    table.lock().unwrap().fail_next_commit = true;
    let (first, _) = task(&table, &dlq, ErrorPolicy::DeadLetter, 3, 300);
    let err = first.run().await.unwrap_err();
    assert!(err.kind().is_transient());
    // The dead-letter table committed epoch 1 before the main table's commit failed.
    assert_eq!(dlq.lock().unwrap().rows, vec!["bad1 is bad", "bad2 is bad"]);
    assert!(table.lock().unwrap().checkpoint.is_none());

    let (second, metrics) = task(&table, &dlq, ErrorPolicy::DeadLetter, 4, 300);
    second.run().await.unwrap();
    assert_eq!(table.lock().unwrap().rows, vec!["a", "b", "c", "d", "e", "f", "g", "h"]);
    assert_eq!(dlq.lock().unwrap().rows, vec!["bad1 is bad", "bad2 is bad"], "dead letters are not written twice");
    let cp = table.lock().unwrap().checkpoint.clone().unwrap();
    assert_eq!(cp.position, serde_json::json!({"0": 10}));
    assert!(cp.epoch >= 2, "epochs continue after the dead-letter table's: {}", cp.epoch);
    assert_eq!(metrics.snapshot().rows_out, 8);
}

#[tokio::test]
async fn fail_policy_stops_at_the_first_bad_record_naming_it() {
    let table = Arc::new(Mutex::new(Table::default()));
    let dlq = Arc::new(Mutex::new(Table::default()));
    let (t, _) = task(&table, &dlq, ErrorPolicy::Fail, 1, 5_000);
    let err = t.run().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Data);
    assert!(err.to_string().contains("at partition 0 offset 2"), "{err}");
    assert!(err.to_string().contains("bad1 is bad"), "{err}");
    assert!(dlq.lock().unwrap().rows.is_empty());
    // Whatever was committed before the bad record stays; nothing after it.
    let rows = table.lock().unwrap().rows.clone();
    assert!(rows.len() <= 2 && rows.iter().zip(["a", "b"]).all(|(r, e)| r == e), "{rows:?}");
}

#[tokio::test]
async fn shutdown_commits_what_is_buffered_and_restart_resumes() {
    let table = Arc::new(Mutex::new(Table::default()));
    let dlq = Arc::new(Mutex::new(Table::default()));
    let (t, _) = task(&table, &dlq, ErrorPolicy::DeadLetter, 10, 150);
    t.run().await.unwrap();
    assert_eq!(table.lock().unwrap().rows.len(), 8);
    let epoch = table.lock().unwrap().checkpoint.as_ref().unwrap().epoch;
    let (again, metrics) = task(&table, &dlq, ErrorPolicy::DeadLetter, 10, 150);
    again.run().await.unwrap();
    assert_eq!(table.lock().unwrap().rows.len(), 8, "nothing is read twice");
    assert_eq!(table.lock().unwrap().checkpoint.as_ref().unwrap().epoch, epoch, "an idle task does not commit");
    assert_eq!(metrics.snapshot().rows_in, 0);
}
