//! Browsing a Kafka cluster without a task: its topics with partitions and watermarks, a
//! topic's newest messages, and the JSON fields they hold. Every call uses a throw-away
//! consumer group and commits nothing, so no task's offsets move.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rtsync_core::{Source, SyncError, SyncResult};
use serde_json::Value;

use crate::{KafkaSource, KafkaSourceConfig, StartOffset, classify};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// One partition's offsets: the oldest message still on the broker, and the next offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
}

/// A topic (internal `__` topics are left out) and its partitions' watermarks; a partition
/// whose watermarks could not be read carries why.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: Vec<(i32, Result<Watermarks, String>)>,
}

impl TopicSummary {
    /// Messages on the broker over the partitions that answered.
    pub fn messages(&self) -> i64 {
        self.partitions.iter().filter_map(|(_, w)| w.as_ref().ok()).map(|w| (w.high - w.low).max(0)).sum()
    }
}

/// What the cluster looks like: brokers and (non-internal) topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSummary {
    pub brokers: usize,
    pub topics: usize,
}

/// A consumer group nobody else uses.
pub fn throwaway_group(purpose: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("rtsync-{purpose}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn metadata_consumer(config: &KafkaSourceConfig) -> SyncResult<BaseConsumer> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &config.bootstrap_servers);
    for (k, v) in &config.properties {
        cc.set(k, v);
    }
    cc.set("group.id", throwaway_group("meta"))
        .set("enable.auto.commit", "false")
        .set("allow.auto.create.topics", "false");
    cc.create().map_err(|e| SyncError::config(format!("creating the Kafka client failed, check its properties: {e}")))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> SyncResult<T> + Send + 'static) -> SyncResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| SyncError::internal(format!("metadata task failed: {e}")))?
}

/// Connects and counts brokers and topics (`datasource test`).
pub async fn cluster_summary(config: &KafkaSourceConfig) -> SyncResult<ClusterSummary> {
    let consumer = metadata_consumer(config)?;
    let servers = config.bootstrap_servers.clone();
    blocking(move || {
        let md = consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(|e| classify(e, "reading the cluster's metadata", &servers))?;
        Ok(ClusterSummary {
            brokers: md.brokers().len(),
            topics: md.topics().iter().filter(|t| !t.name().starts_with("__")).count(),
        })
    })
    .await
}

/// Every topic with its partitions' watermarks, by name.
pub async fn list_topics(config: &KafkaSourceConfig) -> SyncResult<Vec<TopicSummary>> {
    let consumer = metadata_consumer(config)?;
    let servers = config.bootstrap_servers.clone();
    blocking(move || {
        let md =
            consumer.fetch_metadata(None, METADATA_TIMEOUT).map_err(|e| classify(e, "listing topics", &servers))?;
        let mut out = Vec::new();
        for t in md.topics().iter().filter(|t| !t.name().starts_with("__")) {
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            let partitions = ids
                .into_iter()
                .map(|p| {
                    let marks = consumer
                        .fetch_watermarks(t.name(), p, METADATA_TIMEOUT)
                        .map(|(low, high)| Watermarks { partition: p, low, high })
                        .map_err(|e| e.to_string());
                    (p, marks)
                })
                .collect();
            out.push(TopicSummary { name: t.name().to_string(), partitions });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
    .await
}

/// The watermarks of `topic`'s partitions; None when the topic does not exist.
pub async fn watermarks(config: &KafkaSourceConfig, topic: &str) -> SyncResult<Option<Vec<Watermarks>>> {
    let consumer = metadata_consumer(config)?;
    let servers = config.bootstrap_servers.clone();
    let topic = topic.to_string();
    blocking(move || {
        let md = consumer
            .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
            .map_err(|e| classify(e, &format!("reading metadata of topic {topic:?}"), &servers))?;
        let parts: Vec<i32> = match md.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                t.partitions().iter().map(|p| p.id()).collect()
            }
            _ => return Ok(None),
        };
        let mut out = Vec::new();
        for p in parts {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, METADATA_TIMEOUT)
                .map_err(|e| classify(e, &format!("reading offsets of {topic:?} partition {p}"), &servers))?;
            out.push(Watermarks { partition: p, low, high });
        }
        out.sort_by_key(|w| w.partition);
        Ok(Some(out))
    })
    .await
}

/// Reads up to `n` message values of `config.topic` from `start`, for at most `wait`, under a
/// throw-away group; acknowledges nothing.
pub async fn sample_values(
    config: &KafkaSourceConfig,
    start: StartOffset,
    n: usize,
    wait: Duration,
) -> SyncResult<Vec<Option<Vec<u8>>>> {
    let config = KafkaSourceConfig { start_offset: start, ..config.clone() };
    let batches = read_batches(&config, n.clamp(1, 10_000), wait, wait).await?;
    let mut out = Vec::with_capacity(n);
    for batch in &batches {
        let values = batch.column(1).as_binary::<i32>();
        out.extend((0..values.len()).map(|i| values.is_valid(i).then(|| values.value(i).to_vec())));
    }
    Ok(out)
}

/// Reads up to `limit` messages of `config.topic` from its `start_offset` under a throw-away
/// group, as the task would receive them (record batches of the built-in fields); stops after
/// `read_for`, or once `idle_after_data` passed without more. Acknowledges nothing.
pub async fn read_batches(
    config: &KafkaSourceConfig,
    limit: usize,
    read_for: Duration,
    idle_after_data: Duration,
) -> SyncResult<Vec<RecordBatch>> {
    let mut cfg = config.clone();
    let group = throwaway_group("preview");
    cfg.group_id = Some(group.clone());
    cfg.max_batch_rows = limit.max(1);
    let mut source = KafkaSource::new(group, cfg)?;
    let read = async {
        source.check().await?;
        source.open(None).await?;
        let started = Instant::now();
        let mut last_data: Option<Instant> = None;
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut rows = 0usize;
        while rows < limit && started.elapsed() < read_for && last_data.is_none_or(|t| t.elapsed() < idle_after_data) {
            if let Some(batch) = source.next_batch(Duration::from_millis(300)).await? {
                let take = batch.rows.num_rows().min(limit - rows);
                batches.push(batch.rows.slice(0, take));
                rows += take;
                last_data = Some(Instant::now());
            }
        }
        Ok::<_, SyncError>(batches)
    }
    .await;
    let _ = source.close().await;
    read
}

/// Reads the newest messages of `config.topic`, about `sample` over all partitions, and the
/// topic's watermarks; None when the topic does not exist.
pub async fn sample_newest(
    config: &KafkaSourceConfig,
    sample: usize,
    wait: Duration,
) -> SyncResult<Option<(Vec<Watermarks>, Vec<Option<Vec<u8>>>)>> {
    let Some((partitions, batches)) = newest_messages(config, sample, wait).await? else { return Ok(None) };
    let mut values = Vec::new();
    for batch in &batches {
        let column = batch.column(1).as_binary::<i32>();
        values.extend((0..column.len()).map(|i| column.is_valid(i).then(|| column.value(i).to_vec())));
    }
    Ok(Some((partitions, values)))
}

/// The newest messages of `config.topic` as the task would receive them (about `sample` over
/// all partitions), and the topic's watermarks; None when the topic does not exist.
pub async fn newest_messages(
    config: &KafkaSourceConfig,
    sample: usize,
    wait: Duration,
) -> SyncResult<Option<(Vec<Watermarks>, Vec<RecordBatch>)>> {
    let Some(partitions) = watermarks(config, &config.topic).await? else { return Ok(None) };
    let per_partition = sample.div_ceil(partitions.len().max(1)) as i64;
    let mut starts = BTreeMap::new();
    let mut expected = 0usize;
    for p in &partitions {
        let from = (p.high - per_partition).max(p.low);
        starts.insert(p.partition, from);
        expected += (p.high - from).max(0) as usize;
    }
    let expected = expected.min(sample);
    let batches = if expected == 0 {
        Vec::new()
    } else {
        let config = KafkaSourceConfig { start_offset: StartOffset::Offsets(starts), ..config.clone() };
        read_batches(&config, expected.clamp(1, 10_000), wait, wait).await?
    };
    Ok(Some((partitions, batches)))
}

/// A JSON field seen in sampled message values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferredField {
    /// A suggested column name: `$.data.code` → `data_code`.
    pub name: String,
    /// JSONPath from the value's root.
    pub path: String,
    /// rtsync's column type name guessed from the values (`bigint`, `timestamp`, `json`, …).
    pub ty: &'static str,
    /// Missing or null in some sampled message.
    pub nullable: bool,
    /// Sampled messages that had the field.
    pub seen: i64,
}

/// What the sampled values hold: their fields, in first-seen order, and how many values were
/// not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferredFields {
    pub fields: Vec<InferredField>,
    pub sampled: i64,
    pub not_json: i64,
}

/// Infers the JSON fields of sampled message values (null values are counted, not inspected).
pub fn infer_fields(values: &[Option<Vec<u8>>]) -> InferredFields {
    let mut set = FieldSet::default();
    let mut not_json = 0i64;
    for v in values {
        match v.as_deref().map(serde_json::from_slice::<Value>) {
            Some(Ok(json)) => set.observe(&json),
            Some(Err(_)) => not_json += 1,
            None => {}
        }
    }
    let sampled = values.len() as i64;
    InferredFields { fields: set.fields(sampled), sampled, not_json }
}

/// Fields seen in sampled JSON values, in first-seen order.
#[derive(Default)]
struct FieldSet {
    order: Vec<String>,
    stats: HashMap<String, FieldStat>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Guess {
    Null,
    Boolean,
    BigInt,
    Double,
    Date,
    Timestamp,
    String,
    Json,
}

impl Guess {
    fn name(self) -> &'static str {
        match self {
            Guess::Null | Guess::String => "string",
            Guess::Boolean => "boolean",
            Guess::BigInt => "bigint",
            Guess::Double => "double",
            Guess::Date => "date",
            Guess::Timestamp => "timestamp",
            Guess::Json => "json",
        }
    }

    fn of(v: &Value) -> Guess {
        match v {
            Value::Null => Guess::Null,
            Value::Bool(_) => Guess::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => Guess::BigInt,
            Value::Number(_) => Guess::Double,
            Value::String(s) => {
                if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() {
                    Guess::Date
                } else if chrono::DateTime::parse_from_rfc3339(s).is_ok()
                    || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").is_ok()
                {
                    Guess::Timestamp
                } else {
                    Guess::String
                }
            }
            Value::Array(_) | Value::Object(_) => Guess::Json,
        }
    }

    fn merge(self, other: Guess) -> Guess {
        use Guess::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (BigInt, Double) | (Double, BigInt) => Double,
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            (Json, _) | (_, Json) => Json,
            _ => String,
        }
    }
}

struct FieldStat {
    guess: Guess,
    seen: i64,
    nulls: i64,
}

impl FieldSet {
    fn observe(&mut self, v: &Value) {
        self.walk("$".to_string(), v, true);
    }

    fn record(&mut self, path: &str, v: &Value) {
        let g = Guess::of(v);
        match self.stats.get_mut(path) {
            Some(s) => {
                s.guess = s.guess.merge(g);
                s.seen += 1;
                s.nulls += i64::from(g == Guess::Null);
            }
            None => {
                self.order.push(path.to_string());
                self.stats
                    .insert(path.to_string(), FieldStat { guess: g, seen: 1, nulls: i64::from(g == Guess::Null) });
            }
        }
    }

    fn walk(&mut self, path: String, v: &Value, root: bool) {
        match v {
            Value::Object(map) => {
                if !root {
                    self.record(&path, v);
                }
                for (k, child) in map {
                    let p = if is_plain_key(k) {
                        format!("{path}.{k}")
                    } else {
                        format!("{path}['{}']", k.replace('\'', "\\'"))
                    };
                    self.walk(p, child, false);
                }
            }
            Value::Array(items) => {
                self.record(&path, v);
                if let Some(first @ Value::Object(_)) = items.first() {
                    self.walk(format!("{path}[0]"), first, false);
                }
            }
            _ => self.record(&path, v),
        }
    }

    fn fields(&self, sampled: i64) -> Vec<InferredField> {
        let mut used = HashSet::new();
        self.order
            .iter()
            .filter_map(|path| {
                let s = self.stats.get(path)?;
                let mut name = column_name(path);
                while !used.insert(name.clone()) {
                    name.push('_');
                }
                Some(InferredField {
                    name,
                    path: path.clone(),
                    ty: s.guess.name(),
                    nullable: s.nulls > 0 || s.seen < sampled,
                    seen: s.seen,
                })
            })
            .collect()
    }
}

fn is_plain_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit())
}

/// `$.data.code` → `data_code`, `$.items[0].sku` → `items_0_sku`.
fn column_name(path: &str) -> String {
    let mut out = String::new();
    for c in path.trim_start_matches('$').chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_string();
    if out.is_empty() { "value".to_string() } else { out }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn infers_fields_paths_and_types() {
        let json = [
            r#"{"id":1,"data":{"code":"A","at":"2024-01-02T03:04:05Z"},"items":[{"sku":"x"}],"price":1,"odd key":true}"#,
            r#"{"id":2,"data":{"code":null,"at":"2024-01-02T03:04:05Z"},"items":[],"price":2.5}"#,
        ];
        let values: Vec<Option<Vec<u8>>> = json.iter().map(|t| Some(t.as_bytes().to_vec())).collect();
        let inferred = infer_fields(&values);
        let find = |p: &str| inferred.fields.iter().find(|c| c.path == p).unwrap();
        assert_eq!(find("$.id").ty, "bigint");
        assert!(!find("$.id").nullable);
        assert_eq!(find("$.data.code").ty, "string");
        assert!(find("$.data.code").nullable);
        assert_eq!(find("$.data.at").ty, "timestamp");
        assert_eq!(find("$.items").ty, "json");
        assert_eq!(find("$.items[0].sku").name, "items_0_sku");
        assert_eq!(find("$.price").ty, "double");
        assert_eq!(find("$['odd key']").ty, "boolean");
        assert_eq!(find("$.data").ty, "json");

        let mixed = [Some(json[0].as_bytes().to_vec()), Some(b"not json".to_vec()), None];
        let inferred = infer_fields(&mixed);
        assert_eq!((inferred.sampled, inferred.not_json), (3, 1));
        assert!(inferred.fields.iter().all(|f| f.nullable && f.seen == 1));
    }
}
