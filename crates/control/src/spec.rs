//! The task spec: what `rtsync run SPEC` reads (TOML, or JSON).

use std::path::Path;
use std::time::Duration;

use rtsync_core::{ErrorPolicy, SyncError, SyncResult};
use rtsync_engine::{DEFAULT_COMMIT_INTERVAL, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_BUFFERED_ROWS};
use rtsync_mapping::ColumnSpec;
use rtsync_sink_lakehouse::LakehouseSinkConfig;
use serde::{Deserialize, Serialize};

pub use crate::connectors::SourceSpec;

/// One real-time sync task.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique per target table: the Delta `txn` application id of the task's commits.
    pub name: String,
    pub source: SourceSpec,
    pub sink: LakehouseSinkConfig,
    /// Target columns. Empty: the source's built-in fields (Kafka: key, value, timestamp,
    /// partition, offset, headers).
    #[serde(default)]
    pub columns: Vec<ColumnSpec>,
    #[serde(default)]
    pub error_policy: ErrorPolicy,
    #[serde(default = "default_commit_interval", with = "crate::duration")]
    pub commit_interval: Duration,
    #[serde(default = "default_max_buffered_rows")]
    pub max_buffered_rows: usize,
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
}

/// The commit interval's bounds: 10 ms, 1 day.
pub const MIN_COMMIT_INTERVAL_MS: u64 = 10;
pub const MAX_COMMIT_INTERVAL_MS: u64 = 86_400_000;

fn default_commit_interval() -> Duration {
    DEFAULT_COMMIT_INTERVAL
}

fn default_max_buffered_rows() -> usize {
    DEFAULT_MAX_BUFFERED_ROWS
}

fn default_max_buffered_bytes() -> usize {
    DEFAULT_MAX_BUFFERED_BYTES
}

impl TaskSpec {
    /// Reads a spec file: `.json` as JSON, anything else as TOML.
    pub fn load(path: &Path) -> SyncResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SyncError::with_source(rtsync_core::ErrorKind::Config, format!("reading spec {}", path.display()), e)
        })?;
        let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let spec = if is_json { Self::from_json(&text) } else { Self::from_toml(&text) }
            .map_err(|e| e.context_prefix(format!("spec {}", path.display())))?;
        Ok(spec)
    }

    pub fn from_toml(text: &str) -> SyncResult<Self> {
        let spec: Self = toml::from_str(text).map_err(|e| SyncError::config(e.to_string().trim().to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn from_json(text: &str) -> SyncResult<Self> {
        let spec: Self = serde_json::from_str(text).map_err(|e| SyncError::config(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every field, JSONPath expressions included; names the first offending field.
    pub fn validate(&self) -> SyncResult<()> {
        let name_ok = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(SyncError::config(format!(
                "name: {:?} must be non-empty and use only letters, digits, '_', '-' and '.'",
                self.name
            )));
        }
        self.source.source().validate()?;
        if self.source.is_table() && !self.columns.is_empty() {
            return Err(SyncError::config(
                "columns: a table source maps every source column to the target as it is; remove [[columns]]",
            ));
        }
        self.sink.validate()?;
        rtsync_mapping::compile(&self.columns).map_err(|e| e.context_prefix("columns"))?;
        if self.commit_interval < Duration::from_millis(MIN_COMMIT_INTERVAL_MS) {
            return Err(SyncError::config("commit_interval: must be at least 10ms"));
        }
        // Deadlines are `now + interval`: a larger one would overflow the clock.
        if self.commit_interval > Duration::from_millis(MAX_COMMIT_INTERVAL_MS) {
            return Err(SyncError::config("commit_interval: must be at most 1d"));
        }
        if self.max_buffered_rows == 0 || self.max_buffered_bytes == 0 {
            return Err(SyncError::config("max_buffered_rows / max_buffered_bytes: must be positive"));
        }
        Ok(())
    }

    /// The dead-letter table beside the target: `<table>__dlq`.
    pub fn dead_letter_sink(&self) -> LakehouseSinkConfig {
        self.sink.sibling(format!("{}__dlq", self.sink.table))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "orders"
[source]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topic = "orders"
start_offset = "earliest"
[sink]
root = "./lakehouse"
schema = "public"
table = "orders"
[[columns]]
name = "id"
expr = "$.id"
type = "bigint"
[[columns]]
name = "code"
expr = "$.data.code"
type = "string"
"#;

    #[test]
    fn the_minimal_spec_parses() {
        let spec = TaskSpec::from_toml(MINIMAL).unwrap();
        assert_eq!(spec.name, "orders");
        let SourceSpec::Kafka(k) = &spec.source else { panic!("kafka expected") };
        assert_eq!(k.topic, "orders");
        assert_eq!(spec.sink.table_location(), "./lakehouse/public/orders");
        assert_eq!(spec.columns.len(), 2);
        assert_eq!(spec.error_policy, ErrorPolicy::Fail);
        assert_eq!(spec.commit_interval, Duration::from_secs(1));
        assert_eq!(spec.dead_letter_sink().table, "orders__dlq");
    }

    #[test]
    fn the_minimal_postgres_spec_parses() {
        let spec = TaskSpec::from_toml(
            r#"
name = "pg_orders"
[source]
type = "postgresql"
url = "postgres://user:password@127.0.0.1:5432/shop"
schema = "public"
table = "orders"
[sink]
root = "./lakehouse"
schema = "public"
table = "orders"
"#,
        )
        .unwrap();
        let SourceSpec::Postgresql(p) = &spec.source else { panic!("postgresql expected") };
        assert_eq!(p.table, "orders");
        assert!(spec.source.is_table());
        assert!(!format!("{spec:?}").contains("password@"), "the password never prints");
    }

    #[test]
    fn the_minimal_mysql_spec_parses() {
        let spec = TaskSpec::from_toml(
            r#"
name = "my_orders"
[source]
type = "mysql"
url = "mysql://user:password@127.0.0.1:3306"
schema = "shop"
table = "orders"
[sink]
root = "./lakehouse"
schema = "public"
table = "orders"
"#,
        )
        .unwrap();
        let SourceSpec::Mysql(m) = &spec.source else { panic!("mysql expected") };
        assert_eq!((m.schema.as_str(), m.table.as_str()), ("shop", "orders"));
        assert!(!format!("{spec:?}").contains("password@"), "the password never prints");
    }

    #[test]
    fn bad_specs_name_the_field() {
        let bad_path = MINIMAL.replace("$.data.code", "$.data[?(@.x");
        let err = TaskSpec::from_toml(&bad_path).unwrap_err();
        assert!(err.to_string().contains("\"code\""), "{err}");
        let unknown = MINIMAL.replace("start_offset = \"earliest\"", "start_ofset = \"earliest\"");
        let err = TaskSpec::from_toml(&unknown).unwrap_err();
        assert!(err.to_string().contains("start_ofset"), "{err}");
        let interval = format!("commit_interval = \"soon\"\n{MINIMAL}");
        assert!(TaskSpec::from_toml(&interval).is_err());
        let policy = format!("error_policy = \"dead_letter\"\ncommit_interval = \"250ms\"\n{MINIMAL}");
        let spec = TaskSpec::from_toml(&policy).unwrap();
        assert_eq!(spec.error_policy, ErrorPolicy::DeadLetter);
        assert_eq!(spec.commit_interval, Duration::from_millis(250));
    }
}
