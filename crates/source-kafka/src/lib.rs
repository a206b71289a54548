//! Kafka topic source.
//!
//! # Use as a library
//!
//! Make a [`KafkaSource`] from a [`KafkaSourceConfig`] (bootstrap servers, topic, where a first
//! start begins) and a task name, which names the consumer group (`rtsync-<task>`). Then drive
//! it through the [`Source`] trait, one call at a time: [`Source::check`] checks that the
//! cluster answers and the topic exists, [`Source::open`] starts after a position (`None` on a
//! first start: from [`KafkaSourceConfig::start_offset`]), [`Source::next_batch`] hands out
//! [`ChangeBatch`]es (one Arrow row per message: key, value, timestamp, partition, offset,
//! headers; see [`rtsync_core::kafka`]) with the [`KafkaOffsets`] just after them,
//! [`Source::ack`] commits the group's offsets on the broker once you have stored a position
//! for good, and [`Source::close`] stops the poll thread. Store `batch.end` durably together
//! with what you did with the messages (as text through `Display`/`FromStr`, e.g.
//! `0:42,1:17`, or as JSON through serde) and hand it back to `open` to resume.
//! `examples/kafka_tail.rs` does all of this against a broker
//! (`cargo run -p rtsync-source-kafka --example kafka_tail`).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use rtsync_source_kafka::{KafkaOffsets, KafkaSource, KafkaSourceConfig, Source, StartOffset, SyncResult};
//!
//! # async fn tail(saved: Option<String>) -> SyncResult<()> {
//! let mut config = KafkaSourceConfig::new("127.0.0.1:19092", "events");
//! config.start_offset = StartOffset::Earliest;
//! let mut source = KafkaSource::new("events", config)?;
//! source.check().await?;
//! // `saved`: the offsets this program stored last time, if any.
//! let resume = saved.map(|text| text.parse::<KafkaOffsets>()).transpose()?;
//! source.open(resume).await?;
//! while let Some(batch) = source.next_batch(Duration::from_secs(1)).await? {
//!     println!("{} messages, next offsets {}", batch.num_rows(), batch.end);
//!     let checkpoint = batch.end.to_string(); // store it with the messages, durably…
//!     source.ack(&batch.end).await?; // …then commit the group's offsets
//! #   let _ = checkpoint;
//! }
//! source.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! **What it reads.** One topic, every partition, assigned explicitly (no group rebalancing:
//! one task owns the whole topic, so a restart can never hand a partition to a zombie twin).
//! New partitions are picked up every [`PARTITION_REFRESH_SECS`] and read from the
//! beginning.
//!
//! **Position.** [`KafkaOffsets`]: the next offset to read per partition. On start the engine
//! hands back the offsets committed in the Delta table; partitions it names resume exactly
//! there, partitions it does not name start at the configured [`StartOffset`] (first start) or
//! at the beginning (a later start: nothing that arrived after the task began is skipped).
//!
//! **Batches.** A dedicated thread polls librdkafka and appends each message's built-in
//! fields straight into Arrow builders (no per-message allocation but the header text), then
//! hands the finished batch to the engine over a bounded channel: while the engine maps and
//! encodes one batch, the thread reads the next one, and when the engine falls behind the
//! channel fills and the thread stops polling (librdkafka's own queue is bounded too).
//!
//! **Acknowledgement.** The group's offsets are committed to the broker only in
//! [`Source::ack`], after the Delta commit holding those messages is durable: lag tools
//! see real progress, and the broker's offsets are never ahead of the table. The table, not
//! the broker, is the truth on restart.
//!
//! **Errors.** An unreachable cluster is transient (librdkafka reconnects; the pre-flight
//! check reports it with the bootstrap servers). A missing topic, refused credentials or
//! authorization, and an offset that the broker no longer has (deleted by retention: messages
//! were lost before we read them) are definite and name the fix.

pub mod browse;
mod config;
mod position;
mod reader;
pub mod registry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rtsync_core::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;

pub use config::{
    DEFAULT_LINGER_MS, DEFAULT_MAX_BATCH_ROWS, DEFAULT_UNAVAILABLE_VALUE, KafkaSourceConfig, MessageFormat,
    PARTITION_REFRESH_SECS, StartOffset,
};
pub use position::KafkaOffsets;
pub use registry::{SchemaRegistry, SchemaRegistryConfig};
/// The `rtsync-core` contracts and types a user of this crate needs, so that a program can
/// depend on this crate alone.
pub use rtsync_core::{ChangeBatch, ErrorKind, Position, Source, SyncError, SyncResult, TableDescription, arrow};

/// How long metadata and offset look-ups may take before the cluster counts as unreachable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches in flight between the poll thread and the engine.
const CHANNEL_DEPTH: usize = 4;

/// A Kafka topic as an rtsync [`Source`].
pub struct KafkaSource {
    config: KafkaSourceConfig,
    task: String,
    consumer: Option<Arc<BaseConsumer>>,
    batches: Option<mpsc::Receiver<SyncResult<ChangeBatch<KafkaOffsets>>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// The last position acknowledged, committed synchronously once more on close so the
    /// group's offsets are not left behind an asynchronous commit still in flight.
    acked: Option<KafkaOffsets>,
}

impl KafkaSource {
    pub fn new(task: impl Into<String>, config: KafkaSourceConfig) -> SyncResult<Self> {
        config.validate()?;
        Ok(Self {
            config,
            task: task.into(),
            consumer: None,
            batches: None,
            stop: Arc::new(AtomicBool::new(false)),
            reader: None,
            acked: None,
        })
    }

    pub fn config(&self) -> &KafkaSourceConfig {
        &self.config
    }

    /// The librdkafka settings of this source's consumer: the bootstrap servers, the group,
    /// rtsync's fixed settings (no auto commit, offset reset is an error) and the configured
    /// `properties`. Public so a benchmark can drain a topic with exactly these settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("group.id", self.config.group_id_for(&self.task))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false")
            // An offset the broker no longer has means messages were deleted before we read
            // them: surface it instead of silently jumping.
            .set("auto.offset.reset", "error")
            .set("fetch.wait.max.ms", "100")
            // librdkafka stops fetching a partition for this long once its local queue holds
            // `queued.min.messages`; the default (1 s) stalls a reader that is merely busy
            // mapping and writing: measured, it held the task to 30 % of a bare consumer with
            // the CPU half idle. 10 ms keeps the queue topped up.
            .set("fetch.queue.backoff.ms", "10")
            .set("client.id", format!("rtsync-{}", self.task));
        for (k, v) in &self.config.properties {
            cc.set(k, v);
        }
        cc
    }

    fn connect(&mut self) -> SyncResult<Arc<BaseConsumer>> {
        if let Some(c) = &self.consumer {
            return Ok(c.clone());
        }
        let consumer: BaseConsumer = self.client_config().create().map_err(|e| {
            SyncError::with_source(ErrorKind::Config, "creating the Kafka client: check source.properties", e)
        })?;
        let consumer = Arc::new(consumer);
        self.consumer = Some(consumer.clone());
        Ok(consumer)
    }

    /// The topic's partition ids, or a definite error when the topic does not exist.
    fn partitions(&mut self) -> SyncResult<Vec<i32>> {
        let consumer = self.connect()?;
        topic_partitions(&consumer, &self.config.bootstrap_servers, &self.config.topic)
    }

    /// Each partition's starting offset for this open.
    fn start_offsets(
        &self,
        consumer: &BaseConsumer,
        partitions: &[i32],
        resume: Option<&KafkaOffsets>,
    ) -> SyncResult<BTreeMap<i32, Offset>> {
        let topic = &self.config.topic;
        let mut out = BTreeMap::new();
        let mut by_time = Vec::new();
        for &p in partitions {
            if let Some(resume) = resume {
                out.insert(p, resume.get(p).map_or(Offset::Beginning, Offset::Offset));
                continue;
            }
            let offset = match &self.config.start_offset {
                StartOffset::Earliest => Offset::Beginning,
                StartOffset::Latest => Offset::End,
                StartOffset::Offsets(map) => map.get(&p).map_or(Offset::Beginning, |&o| Offset::Offset(o)),
                StartOffset::Timestamp(ms) => {
                    by_time.push((p, *ms));
                    continue;
                }
            };
            out.insert(p, offset);
        }
        if !by_time.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for &(p, ms) in &by_time {
                tpl.add_partition_offset(topic, p, Offset::Offset(ms)).map_err(|e| {
                    SyncError::with_source(ErrorKind::Internal, "building the offsets-for-times request", e)
                })?;
            }
            let found = consumer.offsets_for_times(tpl, METADATA_TIMEOUT).map_err(|e| {
                classify(
                    e,
                    &format!("looking up offsets by timestamp in topic {topic:?}"),
                    &self.config.bootstrap_servers,
                )
            })?;
            for elem in found.elements_for_topic(topic) {
                // No message at or after the instant: start at the end of the partition.
                let offset = match elem.offset() {
                    Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                    _ => Offset::End,
                };
                out.insert(elem.partition(), offset);
            }
        }
        Ok(out)
    }
}

impl KafkaSource {
    fn commit_list(&self, position: &KafkaOffsets) -> SyncResult<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in &position.next {
            tpl.add_partition_offset(&self.config.topic, p, Offset::Offset(o))
                .map_err(|e| SyncError::with_source(ErrorKind::Internal, "building the offset commit", e))?;
        }
        Ok(tpl)
    }
}

/// Reads the partition ids of `topic`; a missing topic is a definite error.
fn topic_partitions(consumer: &BaseConsumer, servers: &str, topic: &str) -> SyncResult<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| classify(e, &format!("reading metadata of topic {topic:?}"), servers))?;
    let Some(meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(missing_topic(topic, servers));
    };
    if let Some(err) = meta.error() {
        let code = RDKafkaErrorCode::from(err);
        return Err(match code {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => missing_topic(topic, servers),
            RDKafkaErrorCode::TopicAuthorizationFailed => SyncError::source_err(format!(
                "not authorized to read topic {topic:?} on {servers}: grant the consumer READ/DESCRIBE on the topic"
            )),
            RDKafkaErrorCode::LeaderNotAvailable => SyncError::transient(format!(
                "topic {topic:?} on {servers} has no leader yet (it may be being created)"
            )),
            other => SyncError::transient(format!("topic {topic:?} on {servers}: broker answered {other}")),
        });
    }
    let mut ids: Vec<i32> = meta.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Err(missing_topic(topic, servers));
    }
    Ok(ids)
}

fn missing_topic(topic: &str, servers: &str) -> SyncError {
    SyncError::source_err(format!(
        "topic {topic:?} does not exist on {servers}: check the topic name (source table) and the cluster"
    ))
}

/// Turns a librdkafka error into an rtsync error: connectivity is transient, authentication
/// and authorization are definite. For the control plane, which talks to librdkafka itself;
/// not part of the library API (it takes librdkafka's error type).
#[doc(hidden)]
pub fn classify(err: KafkaError, doing: &str, servers: &str) -> SyncError {
    let code = err.rdkafka_error_code();
    let kind = match code {
        Some(
            RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::InvalidConfig,
        ) => ErrorKind::Source,
        _ => ErrorKind::Transient,
    };
    let hint = match code {
        Some(
            RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure,
        )
        | None => format!(
            "cannot reach Kafka at {servers}: check bootstrap servers, network reachability and security settings"
        ),
        Some(RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::Authentication) => {
            format!("Kafka at {servers} refused the credentials: check sasl.username/sasl.password and sasl.mechanism")
        }
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => format!("Kafka at {servers} denied access: check the account's ACLs for the topic and consumer group"),
        Some(_) => format!("Kafka at {servers}"),
    };
    SyncError::with_source(kind, format!("{doing}: {hint}"), err)
}

#[async_trait]
impl Source for KafkaSource {
    type Position = KafkaOffsets;

    async fn check(&mut self) -> SyncResult<()> {
        let servers = self.config.bootstrap_servers.clone();
        let topic = self.config.topic.clone();
        let consumer = self.connect()?;
        tokio::task::spawn_blocking(move || topic_partitions(&consumer, &servers, &topic).map(|_| ()))
            .await
            .map_err(|e| SyncError::with_source(ErrorKind::Internal, "metadata look-up task", e))?
    }

    async fn open(&mut self, resume: Option<KafkaOffsets>) -> SyncResult<SchemaRef> {
        let consumer = self.connect()?;
        let partitions = self.partitions()?;
        let starts = self.start_offsets(&consumer, &partitions, resume.as_ref())?;
        let mut tpl = TopicPartitionList::new();
        for (&p, &offset) in &starts {
            tpl.add_partition_offset(&self.config.topic, p, offset)
                .map_err(|e| SyncError::with_source(ErrorKind::Internal, "building the assignment", e))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| classify(e, "assigning the topic's partitions", &self.config.bootstrap_servers))?;
        tracing::info!(
            task = %self.task,
            topic = %self.config.topic,
            partitions = partitions.len(),
            resume = %resume.as_ref().map(|r| r.to_string()).unwrap_or_else(|| self.config.start_offset.to_string()),
            "kafka source opened"
        );
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        self.stop.store(false, Ordering::SeqCst);
        let reader = reader::Reader {
            consumer,
            topic: self.config.topic.clone(),
            servers: self.config.bootstrap_servers.clone(),
            max_rows: self.config.max_batch_rows,
            linger: Duration::from_millis(self.config.linger_ms),
            known_partitions: partitions,
            stop: self.stop.clone(),
            tx,
        };
        // The reader's events belong to the caller's span (the daemon routes them to the
        // attempt's log by it).
        let span = tracing::Span::current();
        let handle = std::thread::Builder::new()
            .name(format!("kafka-{}", self.task))
            .spawn(move || span.in_scope(|| reader.run()))
            .map_err(|e| SyncError::with_source(ErrorKind::Internal, "starting the Kafka reader thread", e))?;
        self.reader = Some(handle);
        self.batches = Some(rx);
        Ok(rtsync_core::kafka::kafka_source_schema())
    }

    async fn next_batch(&mut self, max_wait: Duration) -> SyncResult<Option<ChangeBatch<KafkaOffsets>>> {
        let rx = self.batches.as_mut().ok_or_else(|| SyncError::internal("next_batch called before open"))?;
        match tokio::time::timeout(max_wait, rx.recv()).await {
            Err(_elapsed) => Ok(None),
            Ok(Some(result)) => result.map(Some),
            Ok(None) => Err(SyncError::internal("the Kafka reader thread stopped unexpectedly")),
        }
    }

    async fn ack(&mut self, durable: &KafkaOffsets) -> SyncResult<()> {
        let Some(consumer) = self.consumer.clone() else {
            return Ok(());
        };
        if durable.is_empty() {
            return Ok(());
        }
        self.acked = Some(durable.clone());
        let tpl = self.commit_list(durable)?;
        consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| classify(e, "committing consumer group offsets", &self.config.bootstrap_servers))
    }

    async fn close(&mut self) -> SyncResult<()> {
        self.stop.store(true, Ordering::SeqCst);
        // Dropping the receiver unblocks a reader waiting for channel room.
        self.batches = None;
        if let Some(handle) = self.reader.take() {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let consumer = self.consumer.take();
        if let (Some(consumer), Some(acked)) = (consumer, self.acked.take()) {
            let tpl = self.commit_list(&acked)?;
            let servers = self.config.bootstrap_servers.clone();
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
                .await
                .map_err(|e| SyncError::with_source(ErrorKind::Internal, "final offset commit task", e))?
                .map_err(|e| classify(e, "committing consumer group offsets on close", &servers))?;
        }
        Ok(())
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
