//! Data sources: checking their properties, turning them into connector configurations, and
//! `datasource test`.
//!
//! Kafka properties use librdkafka's names: `bootstrap.servers` is required, every other
//! property (`security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`, …) is
//! passed to the consumer as it is. Databases take `url` plus optional `user` and `password`.
//! A Lakehouse data source has a `root` (a local directory or an object-store URI); its other
//! properties are object-store options.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rtsync_core::{ErrorKind, Source, SyncError};
use rtsync_sink_lakehouse::LakehouseSinkConfig;
use rtsync_source_kafka::{KafkaSource, KafkaSourceConfig, StartOffset};
use rtsync_source_mysql::{MySqlSource, MySqlSourceConfig};
use rtsync_source_postgres::{PostgresSource, PostgresSourceConfig};

use crate::error::{Error, Result};
use crate::model::{DataSource, DsType, Family, TestResult};

pub const BOOTSTRAP_SERVERS: &str = "bootstrap.servers";
pub const ROOT: &str = "root";
pub const URL: &str = "url";
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks the properties of a new data source, naming the first problem.
pub fn validate(ds_type: DsType, props: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in props {
        if k.trim().is_empty() {
            return Err(Error::bad_request("a property has an empty name"));
        }
        if v.contains('\n') && k != "ssl.ca.pem" && k != "ssl.certificate.pem" && k != "ssl.key.pem" {
            return Err(Error::bad_request(format!("property {k}: the value holds a line break")));
        }
    }
    match ds_type.family() {
        Family::Kafka => {
            let servers = props.get(BOOTSTRAP_SERVERS).map(|s| s.trim()).unwrap_or("");
            if servers.is_empty() {
                return Err(Error::bad_request(
                    "a kafka data source needs bootstrap.servers (e.g. --set bootstrap.servers=127.0.0.1:9092)",
                ));
            }
            let cfg = kafka_config_with_topic(props, "probe", StartOffset::Earliest);
            cfg.validate().map_err(|e| Error::bad_request(e.to_string().replace("source.properties.", "property ")))?;
        }
        Family::Lakehouse => {
            if props.get(ROOT).is_none_or(|r| r.trim().is_empty()) {
                return Err(Error::bad_request(
                    "a lakehouse data source needs root (a directory or an object-store URI)",
                ));
            }
        }
        Family::Mysql | Family::Postgres | Family::SqlServer => {
            let Some(url) = props.get(URL).map(|s| s.trim()).filter(|s| !s.is_empty()) else {
                return Err(Error::bad_request(format!(
                    "a {ds_type} data source needs url (e.g. --set url={})",
                    example_url(ds_type.family())
                )));
            };
            let schemes: &[&str] = match ds_type.family() {
                Family::Mysql => &["mysql", "mariadb"],
                Family::Postgres => &["postgres", "postgresql"],
                _ => &["sqlserver", "mssql", "jdbc:sqlserver"],
            };
            let scheme = url.split("://").next().unwrap_or("").to_ascii_lowercase();
            if !url.contains("://") || !schemes.contains(&scheme.as_str()) {
                return Err(Error::bad_request(format!(
                    "url {:?} is not a {ds_type} URL (e.g. {})",
                    crate::model::redact_url(url),
                    example_url(ds_type.family())
                )));
            }
        }
    }
    Ok(())
}

fn example_url(family: Family) -> &'static str {
    match family {
        Family::Mysql => "mysql://host:3306/db",
        Family::Postgres => "postgres://host:5432/db",
        _ => "sqlserver://host:1433;database=db",
    }
}

fn kafka_config_with_topic(props: &BTreeMap<String, String>, topic: &str, start: StartOffset) -> KafkaSourceConfig {
    let servers = props.get(BOOTSTRAP_SERVERS).cloned().unwrap_or_default();
    let properties =
        props.iter().filter(|(k, _)| k.as_str() != BOOTSTRAP_SERVERS).map(|(k, v)| (k.clone(), v.clone())).collect();
    KafkaSourceConfig { start_offset: start, properties, ..KafkaSourceConfig::new(servers, topic) }
}

/// The Kafka source configuration for `topic` of a Kafka data source.
pub fn kafka_config(ds: &DataSource, topic: &str, start: StartOffset) -> Result<KafkaSourceConfig> {
    if ds.ds_type.family() != Family::Kafka {
        return Err(Error::bad_request(format!("data source {} is {}, not kafka", ds.name, ds.ds_type)));
    }
    Ok(kafka_config_with_topic(&ds.properties, topic, start))
}

/// The PostgreSQL source configuration for `schema.table` of a PostgreSQL-family data source.
pub fn postgres_config(ds: &DataSource, schema: &str, table: &str) -> Result<PostgresSourceConfig> {
    if ds.ds_type.family() != Family::Postgres {
        return Err(Error::bad_request(format!("data source {} is {}, not PostgreSQL", ds.name, ds.ds_type)));
    }
    let url = ds.properties.get(URL).cloned().unwrap_or_default();
    let mut cfg = PostgresSourceConfig::new(url, schema, table);
    cfg.user = ds.properties.get("user").cloned();
    cfg.password = ds.properties.get("password").cloned();
    Ok(cfg)
}

/// The MySQL source configuration for `database.table` of a MySQL-family data source.
pub fn mysql_config(ds: &DataSource, database: &str, table: &str) -> Result<MySqlSourceConfig> {
    if ds.ds_type.family() != Family::Mysql {
        return Err(Error::bad_request(format!("data source {} is {}, not MySQL", ds.name, ds.ds_type)));
    }
    let url = ds.properties.get(URL).cloned().unwrap_or_default();
    let mut cfg = MySqlSourceConfig::new(url, database, table);
    cfg.user = ds.properties.get("user").cloned();
    cfg.password = ds.properties.get("password").cloned();
    Ok(cfg)
}

/// A librdkafka client for metadata look-ups on a Kafka data source.
pub fn kafka_consumer(ds: &DataSource, group: &str) -> Result<BaseConsumer> {
    let mut cc = ClientConfig::new();
    for (k, v) in &ds.properties {
        cc.set(k, v);
    }
    cc.set("group.id", group).set("enable.auto.commit", "false").set("allow.auto.create.topics", "false");
    cc.create().map_err(|e| {
        Error::bad_request(format!(
            "data source {}: creating the Kafka client failed, check its properties: {e}",
            ds.name
        ))
    })
}

/// Where a Lakehouse data source's root is, as the sink takes it.
pub fn lakehouse_root(ds: &DataSource) -> Result<String> {
    if ds.ds_type != DsType::Lakehouse {
        return Err(Error::bad_request(format!(
            "data source {} is {}, not lakehouse: the target must be a lakehouse data source",
            ds.name, ds.ds_type
        )));
    }
    ds.properties
        .get(ROOT)
        .cloned()
        .ok_or_else(|| Error::bad_request(format!("lakehouse data source {} has no root", ds.name)))
}

pub fn lakehouse_config(ds: &DataSource, schema: &str, table: &str) -> Result<LakehouseSinkConfig> {
    let root = lakehouse_root(ds)?;
    let mut cfg = LakehouseSinkConfig::new(root, schema, table);
    cfg.storage_options =
        ds.properties.iter().filter(|(k, _)| k.as_str() != ROOT).map(|(k, v)| (k.clone(), v.clone())).collect();
    Ok(cfg)
}

/// The local directory of a Lakehouse root, when it is one.
pub fn local_root(root: &str) -> Option<std::path::PathBuf> {
    if let Some(path) = root.strip_prefix("file://") {
        return Some(path.into());
    }
    (!root.contains("://")).then(|| root.into())
}

/// Says what is wrong with a source connector that is not in this build.
pub fn not_implemented(ds_type: DsType) -> Error {
    let what = match ds_type.family() {
        Family::Mysql => "MySQL-family CDC (binlog) source",
        Family::SqlServer => "SQL Server CDC source",
        _ => "source",
    };
    Error::bad_request(format!(
        "the {what} is not available in this rtsync build yet: {ds_type} data sources can be stored and configured, but not tested, browsed, previewed or deployed; Kafka, MySQL and PostgreSQL are ready today"
    ))
}

/// `schema.table` or `table` (schema `public`).
pub fn split_table(object: &str) -> (String, String) {
    match object.split_once('.') {
        Some((s, t)) => (s.to_string(), t.to_string()),
        None => ("public".to_string(), object.to_string()),
    }
}

/// `datasource test`: connects and says what is wrong. For Kafka with `object`, checks that
/// topic exactly as a task would (the connector's pre-flight check).
pub async fn test(ds: &DataSource, object: Option<&str>) -> TestResult {
    match test_inner(ds, object).await {
        Ok(message) => TestResult { ok: true, message },
        Err(err) => TestResult { ok: false, message: err.message },
    }
}

async fn test_inner(ds: &DataSource, object: Option<&str>) -> Result<String> {
    match ds.ds_type.family() {
        Family::Kafka => {
            let servers = ds.properties.get(BOOTSTRAP_SERVERS).cloned().unwrap_or_default();
            if let Some(topic) = object {
                let mut source =
                    KafkaSource::new(format!("test-{}", ds.name), kafka_config(ds, topic, StartOffset::Earliest)?)?;
                let checked = source.check().await;
                let _ = source.close().await;
                checked?;
                return Ok(format!("connected to Kafka at {servers}; topic {topic:?} exists"));
            }
            let consumer = kafka_consumer(ds, &format!("rtsync-test-{}", ds.name))?;
            let srv = servers.clone();
            let (brokers, topics) = tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(None, METADATA_TIMEOUT)
                    .map(|m| (m.brokers().len(), m.topics().iter().filter(|t| !t.name().starts_with("__")).count()))
                    .map_err(|e| rtsync_source_kafka::classify(e, "reading the cluster's metadata", &srv))
            })
            .await
            .map_err(|e| Error::internal(format!("metadata task failed: {e}")))??;
            Ok(format!("connected to Kafka at {servers}: {brokers} broker(s), {topics} topic(s)"))
        }
        Family::Lakehouse => {
            let root = lakehouse_root(ds)?;
            let Some(dir) = local_root(&root) else {
                return Ok(format!("root {root} is an object-store URI: it is checked when a task first writes to it"));
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::bad_request(format!("cannot create the lakehouse root {}: {e}", dir.display())))?;
            let probe = dir.join(".rtsync-write-test");
            std::fs::write(&probe, b"ok").map_err(|e| {
                Error::bad_request(format!("cannot write in the lakehouse root {}: {e}", dir.display()))
            })?;
            let _ = std::fs::remove_file(&probe);
            Ok(format!("lakehouse root {} is writable", dir.display()))
        }
        Family::Postgres => {
            let Some(object) = object else {
                return Err(Error::bad_request(
                    "the PostgreSQL check runs against a table: add --object SCHEMA.TABLE (it checks the connection, credentials, wal_level, replication privilege, the table and its key)",
                ));
            };
            let (schema, table) = split_table(object);
            let mut source = PostgresSource::new(format!("test-{}", ds.name), postgres_config(ds, &schema, &table)?)?;
            let checked = source.check().await;
            let _ = source.close().await;
            checked?;
            Ok(format!(
                "connected to PostgreSQL; table {schema}.{table} is ready for CDC (wal_level logical, replication privilege, key)"
            ))
        }
        Family::Mysql => {
            let Some((database, table)) = object.and_then(|o| o.split_once('.')) else {
                return Err(Error::bad_request(
                    "the MySQL check runs against a table: add --object DATABASE.TABLE (it checks the connection, credentials, binlog settings, privileges and the table)",
                ));
            };
            let mut source = MySqlSource::new(format!("test-{}", ds.name), mysql_config(ds, database, table)?)?;
            let checked = source.check().await;
            let _ = source.close().await;
            checked?;
            Ok(format!("connected to MySQL; table {database}.{table} is ready for CDC (binlog, privileges)"))
        }
        Family::SqlServer => Err(not_implemented(ds.ds_type)),
    }
}

/// Sync errors from connectors keep their full report.
pub fn sync_err(err: SyncError) -> Error {
    let code = if err.kind() == ErrorKind::Transient {
        crate::error::Code::Unavailable
    } else {
        crate::error::Code::BadRequest
    };
    Error::new(code, err.report())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn validates_each_family() {
        assert!(
            validate(DsType::Kafka, &props(&[("bootstrap.servers", "h:9092"), ("security.protocol", "SASL_SSL")]))
                .is_ok()
        );
        let err = validate(DsType::Kafka, &props(&[])).unwrap_err();
        assert!(err.message.contains("bootstrap.servers"), "{err}");
        let err = validate(DsType::Kafka, &props(&[("bootstrap.servers", "h:1"), ("group.id", "g")])).unwrap_err();
        assert!(err.message.contains("property group.id"), "{err}");
        assert!(validate(DsType::AuroraMysql, &props(&[("url", "mysql://h:3306/db"), ("password", "x")])).is_ok());
        let err = validate(DsType::Postgresql, &props(&[("url", "mysql://u:secret@h/db")])).unwrap_err();
        assert!(!err.message.contains("secret"), "{err}");
        assert!(validate(DsType::Lakehouse, &props(&[("root", "/tmp/x")])).is_ok());
        assert!(validate(DsType::Lakehouse, &props(&[])).is_err());
    }

    #[test]
    fn kafka_properties_pass_through() {
        let ds = DataSource {
            id: 1,
            name: "k".into(),
            ds_type: DsType::Kafka,
            ds_type_id: 2,
            properties: props(&[("bootstrap.servers", "h:9092"), ("sasl.password", "p")]),
            created_at: String::new(),
        };
        let cfg = kafka_config(&ds, "orders", StartOffset::Latest).unwrap();
        assert_eq!(cfg.bootstrap_servers, "h:9092");
        assert_eq!(cfg.properties.get("sasl.password").map(String::as_str), Some("p"));
        assert!(!cfg.properties.contains_key("bootstrap.servers"));
        let shown = ds.redacted();
        assert_eq!(shown.properties["sasl.password"], "***");
    }
}
