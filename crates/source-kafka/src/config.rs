//! The Kafka source's configuration.

use std::collections::BTreeMap;
use std::fmt;

use rtsync_core::SyncError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::registry::SchemaRegistryConfig;

/// Rows per batch handed to the engine, at most.
pub const DEFAULT_MAX_BATCH_ROWS: usize = 32_768;
/// How long the poll thread waits for more messages after the first one of a batch.
pub const DEFAULT_LINGER_MS: u64 = 50;
/// How often the topic's partition count is re-read to pick up new partitions.
pub const PARTITION_REFRESH_SECS: u64 = 30;

/// The placeholder Debezium writes for a value it did not capture (an unchanged TOASTed
/// column of PostgreSQL); configurable in Debezium as `unavailable.value.placeholder`.
pub const DEFAULT_UNAVAILABLE_VALUE: &str = "__debezium_unavailable_value";

/// How message values are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageFormat {
    /// JSON text; columns are JSONPath expressions over it. Appended.
    #[default]
    Json,
    /// Avro in the Confluent wire format, schemas from the Schema Registry. Appended.
    Avro,
    /// Protobuf in the Confluent wire format, schemas from the Schema Registry. Appended.
    Protobuf,
    /// Debezium change events in JSON (with or without the embedded schema): applied as
    /// upserts and deletes by key.
    DebeziumJson,
    /// Debezium change events in Avro with the Schema Registry: upserts and deletes by key.
    DebeziumAvro,
}

impl MessageFormat {
    pub const NAMES: &'static str = "json, avro, protobuf, debezium-json, debezium-avro";

    pub fn as_str(self) -> &'static str {
        match self {
            MessageFormat::Json => "json",
            MessageFormat::Avro => "avro",
            MessageFormat::Protobuf => "protobuf",
            MessageFormat::DebeziumJson => "debezium-json",
            MessageFormat::DebeziumAvro => "debezium-avro",
        }
    }

    /// Whether messages carry a schema id that the registry resolves.
    pub fn needs_registry(self) -> bool {
        matches!(self, MessageFormat::Avro | MessageFormat::Protobuf | MessageFormat::DebeziumAvro)
    }

    /// Whether messages are change events applied by key (else appended).
    pub fn is_change_events(self) -> bool {
        matches!(self, MessageFormat::DebeziumJson | MessageFormat::DebeziumAvro)
    }
}

impl fmt::Display for MessageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MessageFormat {
    type Err = SyncError;

    fn from_str(text: &str) -> Result<Self, SyncError> {
        let format = match text.trim().to_ascii_lowercase().as_str() {
            "json" => MessageFormat::Json,
            "avro" => MessageFormat::Avro,
            "protobuf" | "proto" => MessageFormat::Protobuf,
            "debezium-json" | "debezium" => MessageFormat::DebeziumJson,
            "debezium-avro" => MessageFormat::DebeziumAvro,
            _ => {
                return Err(SyncError::config(format!("format {text:?} is not one of {}", MessageFormat::NAMES)));
            }
        };
        Ok(format)
    }
}

/// Where a task starts reading when it has no checkpoint yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StartOffset {
    /// The oldest message still on the broker.
    #[default]
    Earliest,
    /// Only messages produced after the task starts.
    Latest,
    /// The first message whose timestamp is at or after this epoch-milliseconds instant.
    Timestamp(i64),
    /// Explicit next offsets per partition; unlisted partitions start at the earliest.
    Offsets(BTreeMap<i32, i64>),
}

impl StartOffset {
    /// Parses `earliest`, `latest`, `timestamp:EPOCH_MS`, an RFC 3339 instant, or
    /// `PARTITION:OFFSET,…`.
    pub fn parse(text: &str) -> Result<Self, SyncError> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "earliest" | "beginning" | "smallest" => return Ok(StartOffset::Earliest),
            "latest" | "end" | "largest" => return Ok(StartOffset::Latest),
            _ => {}
        }
        if let Some(ms) = text.strip_prefix("timestamp:") {
            let ms = ms.trim();
            if let Ok(ms) = ms.parse::<i64>() {
                return Ok(StartOffset::Timestamp(ms));
            }
            return chrono::DateTime::parse_from_rfc3339(ms)
                .map(|t| StartOffset::Timestamp(t.timestamp_millis()))
                .map_err(|_| {
                    SyncError::config(format!(
                        "start_offset: {ms:?} is neither epoch milliseconds nor an RFC 3339 time"
                    ))
                });
        }
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
            return Ok(StartOffset::Timestamp(t.timestamp_millis()));
        }
        if text.contains(':') {
            let offsets: crate::KafkaOffsets = text.parse()?;
            return Ok(StartOffset::Offsets(offsets.next));
        }
        Err(SyncError::config(format!(
            "start_offset: {text:?} is not one of earliest, latest, timestamp:EPOCH_MS, an RFC 3339 time, or PARTITION:OFFSET,…"
        )))
    }
}

impl fmt::Display for StartOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartOffset::Earliest => f.write_str("earliest"),
            StartOffset::Latest => f.write_str("latest"),
            StartOffset::Timestamp(ms) => write!(f, "timestamp:{ms}"),
            StartOffset::Offsets(map) => {
                let offsets = crate::KafkaOffsets { next: map.clone() };
                write!(f, "{offsets}")
            }
        }
    }
}

impl Serialize for StartOffset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StartOffset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Millis(i64),
            Offsets(BTreeMap<String, i64>),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => StartOffset::parse(&text).map_err(serde::de::Error::custom),
            Raw::Millis(ms) => Ok(StartOffset::Timestamp(ms)),
            Raw::Offsets(map) => {
                let mut offsets = BTreeMap::new();
                for (p, o) in map {
                    let p: i32 = p.parse().map_err(|_| {
                        serde::de::Error::custom(format!("start_offset: partition {p:?} is not a number"))
                    })?;
                    offsets.insert(p, o);
                }
                Ok(StartOffset::Offsets(offsets))
            }
        }
    }
}

/// One topic of one cluster.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port…]` (librdkafka `bootstrap.servers`).
    pub bootstrap_servers: String,
    pub topic: String,
    /// Consumer group whose offsets are committed after each Delta commit, for lag tools.
    /// Default: `rtsync-<task name>`.
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub start_offset: StartOffset,
    /// Passed to librdkafka as they are (`security.protocol`, `sasl.mechanism`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default = "default_max_batch_rows")]
    pub max_batch_rows: usize,
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// How message values are encoded.
    #[serde(default, skip_serializing_if = "is_default_format")]
    pub format: MessageFormat,
    /// The Schema Registry of `avro`, `protobuf` and `debezium-avro` topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// Debezium: the key columns the changes are applied by. Empty: the fields of the
    /// message key (Debezium writes the primary key there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_columns: Vec<String>,
    /// Avro/Protobuf/Debezium: fields that land as JSON text instead of a typed column
    /// (nested records, arrays and maps otherwise become structs, lists and maps); `*` for
    /// every nested field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_fields: Vec<String>,
    /// Debezium: the placeholder of a value the event does not carry.
    #[serde(default = "default_unavailable_value", skip_serializing_if = "is_default_unavailable_value")]
    pub unavailable_value: String,
}

fn is_default_format(f: &MessageFormat) -> bool {
    *f == MessageFormat::Json
}

fn default_unavailable_value() -> String {
    DEFAULT_UNAVAILABLE_VALUE.to_string()
}

fn is_default_unavailable_value(v: &str) -> bool {
    v == DEFAULT_UNAVAILABLE_VALUE
}

fn default_max_batch_rows() -> usize {
    DEFAULT_MAX_BATCH_ROWS
}

fn default_linger_ms() -> u64 {
    DEFAULT_LINGER_MS
}

impl KafkaSourceConfig {
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            group_id: None,
            start_offset: StartOffset::Earliest,
            properties: BTreeMap::new(),
            max_batch_rows: DEFAULT_MAX_BATCH_ROWS,
            linger_ms: DEFAULT_LINGER_MS,
            format: MessageFormat::Json,
            schema_registry: None,
            key_columns: Vec::new(),
            json_fields: Vec::new(),
            unavailable_value: default_unavailable_value(),
        }
    }

    /// Names the first offending field.
    pub fn validate(&self) -> Result<(), SyncError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(SyncError::config("source.bootstrap_servers: must not be empty"));
        }
        if self.topic.trim().is_empty() {
            return Err(SyncError::config("source.topic: must not be empty"));
        }
        if self.max_batch_rows == 0 {
            return Err(SyncError::config("source.max_batch_rows: must be at least 1"));
        }
        match (&self.schema_registry, self.format.needs_registry()) {
            (Some(registry), _) => registry.validate()?,
            (None, true) => {
                return Err(SyncError::config(format!(
                    "source.schema_registry.url: format {} needs a Schema Registry",
                    self.format
                )));
            }
            (None, false) => {}
        }
        if !self.key_columns.is_empty() && !self.format.is_change_events() {
            return Err(SyncError::config(format!(
                "source.key_columns: only change-event formats (debezium-json, debezium-avro) apply rows by key; format is {}",
                self.format
            )));
        }
        for key in ["enable.auto.commit", "enable.auto.offset.store", "group.id", "bootstrap.servers"] {
            if self.properties.contains_key(key) {
                return Err(SyncError::config(format!(
                    "source.properties.{key}: rtsync sets this itself (use the source's own fields)"
                )));
            }
        }
        Ok(())
    }

    pub fn group_id_for(&self, task: &str) -> String {
        self.group_id.clone().unwrap_or_else(|| format!("rtsync-{task}"))
    }
}

pub(crate) use rtsync_core::secret::is_secret_key as is_secret;

impl fmt::Debug for KafkaSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<&str, &str> =
            self.properties.iter().map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() })).collect();
        f.debug_struct("KafkaSourceConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic", &self.topic)
            .field("group_id", &self.group_id)
            .field("start_offset", &self.start_offset)
            .field("properties", &props)
            .field("max_batch_rows", &self.max_batch_rows)
            .field("linger_ms", &self.linger_ms)
            .field("format", &self.format)
            .field("schema_registry", &self.schema_registry)
            .field("key_columns", &self.key_columns)
            .field("json_fields", &self.json_fields)
            .field("unavailable_value", &self.unavailable_value)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_offsets_parse() {
        assert_eq!(StartOffset::parse("earliest").unwrap(), StartOffset::Earliest);
        assert_eq!(StartOffset::parse("LATEST").unwrap(), StartOffset::Latest);
        assert_eq!(StartOffset::parse("timestamp:1700000000000").unwrap(), StartOffset::Timestamp(1_700_000_000_000));
        assert_eq!(StartOffset::parse("2023-11-14T22:13:20Z").unwrap(), StartOffset::Timestamp(1_700_000_000_000));
        assert_eq!(StartOffset::parse("0:5,2:9").unwrap(), StartOffset::Offsets(BTreeMap::from([(0, 5), (2, 9)])));
        assert!(StartOffset::parse("yesterday").is_err());
    }

    #[test]
    fn config_from_toml_and_secrets_hidden() {
        let cfg: KafkaSourceConfig = toml::from_str(
            r#"
            bootstrap_servers = "127.0.0.1:9092"
            topic = "orders"
            start_offset = { "0" = 10, "1" = 20 }
            properties = { "security.protocol" = "SASL_SSL", "sasl.password" = "hunter2" }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.start_offset, StartOffset::Offsets(BTreeMap::from([(0, 10), (1, 20)])));
        let shown = format!("{cfg:?}");
        assert!(shown.contains("SASL_SSL"));
        assert!(!shown.contains("hunter2"));
        assert!(toml::from_str::<KafkaSourceConfig>("bootstrap_servers='a'\ntopic='t'\nbogus=1").is_err());
    }
}
