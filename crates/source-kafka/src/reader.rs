//! The poll thread: librdkafka messages into Arrow columns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rtsync_core::arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Array, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::json::push_string;
use rtsync_core::{ChangeBatch, ErrorKind, SyncError, SyncResult};
use tokio::sync::mpsc;

use crate::KafkaOffsets;
use crate::config::PARTITION_REFRESH_SECS;

/// Log a repeated broker error at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long one poll blocks while nothing is buffered, so `stop` is seen promptly.
const IDLE_POLL: Duration = Duration::from_millis(100);

pub(crate) struct Reader {
    pub consumer: Arc<BaseConsumer>,
    pub topic: String,
    pub servers: String,
    pub max_rows: usize,
    pub linger: Duration,
    pub known_partitions: Vec<i32>,
    pub stop: Arc<AtomicBool>,
    pub tx: mpsc::Sender<SyncResult<ChangeBatch<KafkaOffsets>>>,
}

/// Column builders for one batch.
struct Columns {
    key: BinaryBuilder,
    value: BinaryBuilder,
    timestamp: TimestampMillisecondBuilder,
    event_ms: Int64Builder,
    partition: Int32Builder,
    offset: Int64Builder,
    headers: StringBuilder,
    header_text: Vec<u8>,
    end: KafkaOffsets,
    rows: usize,
    bytes: u64,
}

impl Columns {
    fn new(rows: usize) -> Self {
        Self {
            key: BinaryBuilder::with_capacity(rows, rows * 16),
            value: BinaryBuilder::with_capacity(rows, rows * 256),
            timestamp: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            event_ms: Int64Builder::with_capacity(rows),
            partition: Int32Builder::with_capacity(rows),
            offset: Int64Builder::with_capacity(rows),
            headers: StringBuilder::new(),
            header_text: Vec::new(),
            end: KafkaOffsets::default(),
            rows: 0,
            bytes: 0,
        }
    }

    fn append(&mut self, msg: &BorrowedMessage<'_>) {
        let key = msg.key();
        let value = msg.payload();
        self.key.append_option(key);
        self.value.append_option(value);
        let ts = msg.timestamp().to_millis();
        self.timestamp.append_option(ts);
        self.event_ms.append_option(ts);
        self.partition.append_value(msg.partition());
        self.offset.append_value(msg.offset());
        match msg.headers() {
            Some(headers) if headers.count() > 0 => {
                self.header_text.clear();
                self.header_text.push(b'{');
                for (i, h) in headers.iter().enumerate() {
                    if i > 0 {
                        self.header_text.push(b',');
                    }
                    push_string(&mut self.header_text, h.key);
                    self.header_text.push(b':');
                    match h.value {
                        Some(v) => push_string(&mut self.header_text, &String::from_utf8_lossy(v)),
                        None => self.header_text.extend_from_slice(b"null"),
                    }
                }
                self.header_text.push(b'}');
                // Built from &str pieces and lossy UTF-8: always valid UTF-8.
                self.headers.append_value(String::from_utf8_lossy(&self.header_text));
            }
            _ => self.headers.append_null(),
        }
        self.end.record(msg.partition(), msg.offset());
        self.rows += 1;
        self.bytes += (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64;
    }

    fn finish(mut self) -> SyncResult<ChangeBatch<KafkaOffsets>> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.headers.finish()),
        ];
        let rows = RecordBatch::try_new(rtsync_core::kafka::kafka_source_schema(), columns)?;
        let event_time_ms: Int64Array = self.event_ms.finish();
        Ok(ChangeBatch { rows, end: self.end, event_time_ms: Some(event_time_ms), source_bytes: self.bytes })
    }
}

impl Reader {
    pub(crate) fn run(mut self) {
        let mut last_refresh = Instant::now();
        let mut last_error_log: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            if last_refresh.elapsed() >= Duration::from_secs(PARTITION_REFRESH_SECS) {
                last_refresh = Instant::now();
                if let Err(err) = self.pick_up_new_partitions() {
                    tracing::warn!(topic = %self.topic, error = %err.report(), "refreshing partitions failed");
                }
            }
            match self.fill_batch(&mut last_error_log) {
                Ok(None) => continue,
                Ok(Some(batch)) => {
                    if self.tx.blocking_send(batch.finish()).is_err() {
                        return;
                    }
                }
                Err(err) => {
                    let _ = self.tx.blocking_send(Err(err));
                    return;
                }
            }
        }
    }

    /// Polls until `max_rows` messages, or `linger` after the first message, or `stop`.
    fn fill_batch(&mut self, last_error_log: &mut Option<Instant>) -> SyncResult<Option<Columns>> {
        let mut cols: Option<Columns> = None;
        let mut deadline: Option<Instant> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(cols);
            }
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(cols);
                    }
                    d - now
                }
                None => IDLE_POLL,
            };
            match self.consumer.poll(timeout) {
                None => {
                    if deadline.is_none() {
                        // Idle: give the outer loop a chance to refresh partitions.
                        return Ok(None);
                    }
                }
                Some(Ok(msg)) => {
                    let c = cols.get_or_insert_with(|| Columns::new(self.max_rows.min(8192)));
                    c.append(&msg);
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + self.linger);
                    }
                    if c.rows >= self.max_rows {
                        return Ok(cols);
                    }
                }
                Some(Err(err)) => self.on_error(err, last_error_log)?,
            }
        }
    }

    fn on_error(&self, err: KafkaError, last_log: &mut Option<Instant>) -> SyncResult<()> {
        match err.rdkafka_error_code() {
            Some(RDKafkaErrorCode::PartitionEOF) => Ok(()),
            Some(RDKafkaErrorCode::OffsetOutOfRange) => Err(SyncError::with_source(
                ErrorKind::Source,
                format!(
                    "topic {:?}: the offset to resume from is no longer on the broker (deleted by retention before \
                     it was synced, so messages were lost upstream); undeploy the task or set start_offset to continue",
                    self.topic
                ),
                err,
            )),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                Err(SyncError::with_source(
                    ErrorKind::Source,
                    format!("topic {:?} disappeared from {} while the task was reading it", self.topic, self.servers),
                    err,
                ))
            }
            Some(
                RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed,
            ) => Err(crate::classify(err, &format!("reading topic {:?}", self.topic), &self.servers)),
            _ => {
                // Connectivity and broker-side hiccups: librdkafka retries by itself.
                if last_log.is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL) {
                    *last_log = Some(Instant::now());
                    tracing::warn!(topic = %self.topic, servers = %self.servers, error = %err, "kafka consumer error, retrying");
                }
                Ok(())
            }
        }
    }

    fn pick_up_new_partitions(&mut self) -> SyncResult<()> {
        let now = crate::topic_partitions(&self.consumer, &self.servers, &self.topic)?;
        let added: Vec<i32> = now.iter().copied().filter(|p| !self.known_partitions.contains(p)).collect();
        if added.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &added {
            tpl.add_partition_offset(&self.topic, p, Offset::Beginning)
                .map_err(|e| SyncError::with_source(ErrorKind::Internal, "building the assignment", e))?;
        }
        self.consumer
            .incremental_assign(&tpl)
            .map_err(|e| crate::classify(e, "assigning new partitions", &self.servers))?;
        tracing::info!(topic = %self.topic, partitions = ?added, "new partitions assigned from the beginning");
        self.known_partitions.extend(added);
        Ok(())
    }
}
