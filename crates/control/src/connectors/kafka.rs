//! Kafka: data sources hold librdkafka properties (`bootstrap.servers` required, the rest,
//! `security.protocol`, `sasl.*`, `ssl.*`, passed to the consumer as they are) and, for
//! registry formats, the Schema Registry (`schema.registry.url`,
//! `schema.registry.basic.auth.user.info`, a secret, and `schema.registry.ssl.ca.location`).
//! One namespace, [`NAMESPACE`]; its objects are the topics. A task's `format` says how
//! values are encoded: `json` and `avro`/`protobuf` tasks map fields to columns and append,
//! `debezium-json`/`debezium-avro` tasks apply change events by key through the upsert sink.
//!
//! Browsing a topic shows the fields of its registry schema (subject `<topic>-value`) when the
//! data source has a registry and the subject exists; otherwise it samples the newest messages
//! under a throw-away consumer group (nothing is committed) and infers the fields of their
//! JSON values.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::verify::TableVerifier;
use rtsync_core::{ColumnMapping, ErrorPolicy, SyncError, SyncResult};
use rtsync_engine::Task;
use rtsync_mapping::{RecordMapping, RecordOptions};
use rtsync_sink_lakehouse::DeltaSink;
use rtsync_source_kafka::registry::{self, SchemaRegistry, SchemaRegistryConfig};
use rtsync_source_kafka::{KafkaOffsets, KafkaSource, KafkaSourceConfig, MessageFormat, StartOffset, browse};

use super::{Connector, DsType, Props, SourceSpec, TaskSource, api_err, checked};
use crate::error::{Error, Result};
use crate::model::{
    DataSource, MetaColumn, MetaDetail, MetaObject, Namespace, PartitionInfo, Preview, PreviewColumn, TaskConfig,
};
use crate::runner::{RunOptions, engine_config};
use crate::spec::TaskSpec;

/// Kafka has no namespaces; its topics live in this one.
pub const NAMESPACE: &str = "default";
pub const BOOTSTRAP_SERVERS: &str = "bootstrap.servers";
/// Data source properties of the Schema Registry (never passed to librdkafka).
pub const REGISTRY_PREFIX: &str = "schema.registry.";
pub const REGISTRY_URL: &str = "schema.registry.url";
pub const REGISTRY_USER_INFO: &str = "schema.registry.basic.auth.user.info";
pub const REGISTRY_CA: &str = "schema.registry.ssl.ca.location";
/// How many of the newest messages a Debezium JSON task reads to find its columns and key.
const DEBEZIUM_SAMPLE: usize = 20;
/// How long a topic's detail waits for its sample.
const SAMPLE_WAIT: Duration = Duration::from_secs(6);
/// The longest a preview reads.
const PREVIEW_READ_FOR: Duration = Duration::from_secs(8);
/// Once some messages arrived, how long a preview waits for more.
const PREVIEW_IDLE_AFTER_DATA: Duration = Duration::from_millis(1500);

pub struct Kafka;

/// The Kafka source configuration for `topic` of a Kafka data source's properties.
fn config(props: &Props, topic: &str, start: StartOffset) -> KafkaSourceConfig {
    let servers = props.get(BOOTSTRAP_SERVERS).cloned().unwrap_or_default();
    let properties = props
        .iter()
        .filter(|(k, _)| k.as_str() != BOOTSTRAP_SERVERS && !k.starts_with(REGISTRY_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    KafkaSourceConfig {
        start_offset: start,
        properties,
        schema_registry: registry_config(props),
        ..KafkaSourceConfig::new(servers, topic)
    }
}

/// The data source's Schema Registry, when it names one.
fn registry_config(props: &Props) -> Option<SchemaRegistryConfig> {
    let url = props.get(REGISTRY_URL).filter(|u| !u.trim().is_empty())?;
    Some(SchemaRegistryConfig {
        url: url.trim().to_string(),
        basic_auth_user_info: props.get(REGISTRY_USER_INFO).cloned(),
        ssl_ca_location: props.get(REGISTRY_CA).cloned(),
    })
}

/// A task's message format (`None`: json).
fn format(cfg: &TaskConfig) -> Result<MessageFormat> {
    cfg.format
        .as_deref()
        .map_or(Ok(MessageFormat::Json), str::parse)
        .map_err(|e: SyncError| Error::bad_request(e.context_prefix("--message-format").report()))
}

fn check_namespace(namespace: &str) -> Result<()> {
    if namespace == NAMESPACE {
        Ok(())
    } else {
        Err(Error::not_found(format!("Kafka has one namespace, {NAMESPACE:?}; {namespace:?} does not exist")))
    }
}

fn start_offset(cfg: &TaskConfig) -> Result<StartOffset> {
    match &cfg.start_offset {
        Some(o) => StartOffset::parse(o).map_err(|e| Error::bad_request(e.report())),
        None => Ok(StartOffset::Earliest),
    }
}

fn missing_topic(ds: &DataSource, topic: &str) -> Error {
    let servers = ds.properties.get(BOOTSTRAP_SERVERS).cloned().unwrap_or_default();
    Error::not_found(format!(
        "topic {topic:?} does not exist on {servers}: check the topic name (`rtsync meta objects {} {NAMESPACE}` lists them)",
        ds.name
    ))
}

fn with_ds(ds: &DataSource) -> impl Fn(rtsync_core::SyncError) -> Error + '_ {
    move |e| api_err(e.context_prefix(format!("data source {}", ds.name)))
}

fn partition_info(marks: Vec<browse::Watermarks>) -> Vec<PartitionInfo> {
    marks.into_iter().map(|w| PartitionInfo { partition: w.partition, low: w.low, high: w.high }).collect()
}

#[async_trait]
impl Connector for Kafka {
    fn label(&self) -> &'static str {
        "Kafka"
    }

    fn validate(&self, _ds_type: DsType, props: &Props) -> Result<()> {
        let servers = props.get(BOOTSTRAP_SERVERS).map(|s| s.trim()).unwrap_or("");
        if servers.is_empty() {
            return Err(Error::bad_request(
                "a kafka data source needs bootstrap.servers (e.g. --set bootstrap.servers=127.0.0.1:9092)",
            ));
        }
        if let Some(registry) = registry_config(props) {
            registry.validate().map_err(|e| {
                Error::bad_request(
                    e.to_string()
                        .replace("source.schema_registry.url", REGISTRY_URL)
                        .replace("source.schema_registry.basic_auth_user_info", REGISTRY_USER_INFO),
                )
            })?;
        }
        config(props, "probe", StartOffset::Earliest)
            .validate()
            .map_err(|e| Error::bad_request(e.to_string().replace("source.properties.", "property ")))
    }

    fn check_task(&self, ds: &DataSource, cfg: &TaskConfig) -> Result<()> {
        if let Some(ns) = &cfg.source_schema
            && ns != NAMESPACE
        {
            return Err(Error::bad_request(format!(
                "--source-schema {ns:?}: Kafka topics live in the namespace {NAMESPACE:?}"
            )));
        }
        start_offset(cfg)?;
        let format = format(cfg)?;
        if format.needs_registry() && registry_config(&ds.properties).is_none() {
            return Err(Error::bad_request(format!(
                "format {format} reads schemas from a Schema Registry, and data source {} has no {REGISTRY_URL}: create a Kafka data source with `--set {REGISTRY_URL}=http://HOST:8081`",
                ds.name
            )));
        }
        if !format.is_change_events() && !cfg.key_columns.is_empty() {
            return Err(Error::bad_request(format!(
                "--key-column: only change-event formats (debezium-json, debezium-avro) apply rows by key; this task's format is {format}"
            )));
        }
        Ok(())
    }

    fn check_start_offset(&self, text: &str) -> Option<Result<()>> {
        Some(StartOffset::parse(text).map(|_| ()).map_err(|e| Error::bad_request(e.report())))
    }

    fn source_spec(&self, ds: &DataSource, _task: &str, cfg: &TaskConfig, table: &str) -> Result<SourceSpec> {
        Ok(SourceSpec::Kafka(KafkaSourceConfig {
            format: format(cfg)?,
            key_columns: cfg.key_columns.clone(),
            json_fields: cfg.json_fields.clone(),
            ..config(&ds.properties, table, start_offset(cfg)?)
        }))
    }

    async fn test(&self, ds: &DataSource, object: Option<&str>) -> Result<String> {
        let servers = ds.properties.get(BOOTSTRAP_SERVERS).cloned().unwrap_or_default();
        if let Some(topic) = object {
            let cfg = config(&ds.properties, topic, StartOffset::Earliest);
            checked(KafkaSource::new(format!("test-{}", ds.name), cfg)?).await?;
            return Ok(format!("connected to Kafka at {servers}; topic {topic:?} exists"));
        }
        let cluster =
            browse::cluster_summary(&config(&ds.properties, "", StartOffset::Earliest)).await.map_err(with_ds(ds))?;
        Ok(format!("connected to Kafka at {servers}: {} broker(s), {} topic(s)", cluster.brokers, cluster.topics))
    }

    async fn namespaces(&self, ds: &DataSource) -> Result<Vec<Namespace>> {
        let topics = self.objects(ds, NAMESPACE).await?;
        Ok(vec![Namespace { name: NAMESPACE.to_string(), objects: Some(topics.len() as i64) }])
    }

    async fn objects(&self, ds: &DataSource, namespace: &str) -> Result<Vec<MetaObject>> {
        check_namespace(namespace)?;
        let topics =
            browse::list_topics(&config(&ds.properties, "", StartOffset::Earliest)).await.map_err(with_ds(ds))?;
        Ok(topics
            .into_iter()
            .map(|t| {
                let ranges: Vec<String> = t
                    .partitions
                    .iter()
                    .map(|(p, w)| match w {
                        Ok(w) => format!("{p}:{}..{}", w.low, w.high),
                        Err(e) => format!("{p}:? ({e})"),
                    })
                    .collect();
                MetaObject {
                    messages: Some(t.messages()),
                    partitions: Some(t.partitions.len() as i64),
                    name: t.name,
                    kind: "topic".into(),
                    detail: Some(ranges.join(" ")),
                    ..Default::default()
                }
            })
            .collect())
    }

    async fn detail(&self, ds: &DataSource, namespace: &str, topic: &str, sample: usize) -> Result<MetaDetail> {
        check_namespace(namespace)?;
        let cfg = config(&ds.properties, topic, StartOffset::Earliest);
        if let Some(detail) = registry_detail(ds, &cfg).await? {
            return Ok(detail);
        }
        let (partitions, values) = browse::sample_newest(&cfg, sample.clamp(1, 10_000), SAMPLE_WAIT)
            .await
            .map_err(with_ds(ds))?
            .ok_or_else(|| missing_topic(ds, topic))?;
        let inferred = browse::infer_fields(&values);
        let columns = inferred
            .fields
            .into_iter()
            .map(|f| MetaColumn {
                column_arg: Some(format!("{}={}:{}", f.name, f.path, f.ty)),
                name: f.name,
                ty: f.ty.to_string(),
                nullable: f.nullable,
                path: Some(f.path),
                seen: Some(f.seen),
                ..Default::default()
            })
            .collect();
        let note = if inferred.sampled == 0 {
            "the topic holds no messages: fields cannot be inferred yet; the built-in fields are always available"
                .to_string()
        } else {
            format!(
                "fields inferred from the newest {} message(s); types are guesses from the sampled values",
                inferred.sampled
            )
        };
        Ok(MetaDetail {
            datasource: ds.name.clone(),
            namespace: NAMESPACE.to_string(),
            object: topic.to_string(),
            kind: "topic".into(),
            columns,
            builtin: builtin_fields(),
            sampled: Some(inferred.sampled),
            not_json: Some(inferred.not_json),
            partitions: partition_info(partitions),
            note: Some(note),
            ..Default::default()
        })
    }

    /// Messages on the broker after the task's position.
    fn lag_unit(&self) -> Option<&'static str> {
        Some("messages")
    }

    async fn lag(&self, ds: &DataSource, cfg: &TaskConfig, position: Option<&str>) -> Option<i64> {
        let topic = cfg.source_table.as_deref()?;
        let source = config(&ds.properties, topic, StartOffset::Earliest);
        let marks = tokio::time::timeout(super::LAG_TIMEOUT, browse::watermarks(&source, topic)).await.ok()?.ok()??;
        let pos: KafkaOffsets = position.unwrap_or("").parse().ok()?;
        Some(marks.iter().map(|p| (p.high - pos.get(p.partition).unwrap_or(p.low)).max(0)).sum())
    }
}

fn builtin_fields() -> Vec<MetaColumn> {
    let f = |name: &str, ty: &str, nullable: bool| MetaColumn {
        name: name.into(),
        ty: ty.into(),
        nullable,
        column_arg: Some(format!("{name}={name}:{ty}")),
        ..Default::default()
    };
    vec![
        f("key", "string", true),
        f("value", "string", true),
        f("timestamp", "timestamp", true),
        f("partition", "int", false),
        f("offset", "bigint", false),
        f("headers", "json", true),
    ]
}

#[async_trait]
impl TaskSource for KafkaSourceConfig {
    fn validate(&self) -> SyncResult<()> {
        KafkaSourceConfig::validate(self)
    }

    fn is_table(&self) -> bool {
        false
    }

    async fn run(&self, spec: &TaskSpec, opts: &RunOptions) -> SyncResult<()> {
        let (mapping, keys) = format_mapping(self, &spec.columns).await?;
        if self.format != MessageFormat::Json {
            check_table_types(spec, &mapping.output_schema()).await?;
        }
        let sink = Box::new(match keys {
            Some(keys) => DeltaSink::upsert(&spec.name, spec.sink.clone(), keys)?,
            None => DeltaSink::new(&spec.name, spec.sink.clone())?,
        });
        let source = KafkaSource::new(&spec.name, self.clone())?;
        let mut task =
            Task::new(engine_config(spec), source, mapping, sink, opts.metrics.clone(), opts.shutdown.clone());
        if spec.error_policy == ErrorPolicy::DeadLetter {
            task = task.with_dead_letter_sink(Box::new(DeltaSink::new(&spec.name, spec.dead_letter_sink())?));
        }
        task.run().await
    }

    async fn preview(&self, spec: &TaskSpec, limit: usize) -> Result<Preview> {
        let (mapping, _) = format_mapping(self, &spec.columns).await?;
        let columns = if self.format == MessageFormat::Json {
            let specs = if spec.columns.is_empty() { rtsync_mapping::default_columns() } else { spec.columns.clone() };
            specs.into_iter().map(|c| PreviewColumn { name: c.name, ty: c.ty }).collect()
        } else {
            rtsync_sink_lakehouse::delta_types(&mapping.output_schema())?
                .into_iter()
                .map(|(name, ty)| PreviewColumn { name, ty })
                .collect()
        };
        let batches = browse::read_batches(self, limit, PREVIEW_READ_FOR, PREVIEW_IDLE_AFTER_DATA).await?;
        let note = format!(
            "no messages to preview from start offset {} within {}s: check the topic has messages and the start offset",
            self.start_offset,
            PREVIEW_READ_FOR.as_secs()
        );
        crate::preview::mapped_preview(mapping.as_ref(), columns, &batches, note)
    }

    async fn verifier(&self, spec: &TaskSpec) -> Result<(Box<dyn TableVerifier>, String)> {
        Err(Error::bad_request(format!(
            "task {:?} reads Kafka topic {:?}: verify compares a source table with its target, and a topic is an append-only log with no table to compare with",
            spec.name, self.topic
        )))
    }
}

/// The mapping of a task's format, and the key columns when its rows are change events.
async fn format_mapping(
    source: &KafkaSourceConfig,
    columns: &[rtsync_mapping::ColumnSpec],
) -> SyncResult<(Arc<dyn ColumnMapping>, Option<Vec<String>>)> {
    let options =
        RecordOptions { json_fields: source.json_fields.clone(), unavailable_value: source.unavailable_value.clone() };
    let (mapping, keys): (RecordMapping, Option<Vec<String>>) = match source.format {
        MessageFormat::Json => return Ok((Arc::new(rtsync_mapping::compile(columns)?), None)),
        MessageFormat::Avro | MessageFormat::DebeziumAvro | MessageFormat::Protobuf => {
            let config = source.schema_registry.clone().ok_or_else(|| {
                SyncError::config(format!("format {}: the data source has no {REGISTRY_URL}", source.format))
            })?;
            let registry = Arc::new(SchemaRegistry::new(config)?);
            let subject = registry::value_subject(&source.topic);
            let latest = registry.subject_version(&subject, None).await?.ok_or_else(|| {
                SyncError::source_err(format!(
                    "the schema registry at {} has no subject {subject:?}: produce to topic {:?} with a registry serializer first (subjects follow the topic name strategy)",
                    registry.config().url,
                    source.topic
                ))
            })?;
            if source.format == MessageFormat::Protobuf {
                (RecordMapping::protobuf(columns, registry, &latest, options)?, None)
            } else {
                let debezium = source.format == MessageFormat::DebeziumAvro;
                let mapping = RecordMapping::avro(columns, registry.clone(), &latest, debezium, options)?;
                let keys = if debezium { Some(avro_keys(source, &registry).await?) } else { None };
                (mapping, keys)
            }
        }
        MessageFormat::DebeziumJson => {
            let (derived, sampled_keys) = if columns.is_empty() || source.key_columns.is_empty() {
                sample_debezium_json(source).await?
            } else {
                (None, None)
            };
            let columns = if columns.is_empty() {
                derived.ok_or_else(|| {
                    SyncError::config(format!(
                        "format debezium-json: the newest events of topic {:?} carry no embedded schema to take the columns from; configure the columns (`rtsync meta detail` lists the fields)",
                        source.topic
                    ))
                })?
            } else {
                columns.to_vec()
            };
            let keys = if source.key_columns.is_empty() { sampled_keys } else { Some(source.key_columns.clone()) };
            let keys = keys.ok_or_else(|| {
                SyncError::config(format!(
                    "format debezium-json: the newest events of topic {:?} have no JSON key to take the key columns from; name them (--key-column)",
                    source.topic
                ))
            })?;
            (RecordMapping::debezium_json(&columns, options)?, Some(keys))
        }
    };
    if let Some(keys) = &keys {
        let names = mapping.column_names();
        if keys.is_empty() {
            return Err(SyncError::config("key_columns: a change-event task needs at least one key column"));
        }
        if let Some(missing) = keys.iter().find(|k| !names.contains(k)) {
            return Err(SyncError::config(format!(
                "key column {missing:?} is not one of the task's columns ({})",
                names.join(", ")
            )));
        }
    }
    Ok((Arc::new(mapping), keys))
}

/// The key columns of a Debezium Avro topic: as configured, else the fields of its key schema.
async fn avro_keys(source: &KafkaSourceConfig, registry: &SchemaRegistry) -> SyncResult<Vec<String>> {
    if !source.key_columns.is_empty() {
        return Ok(source.key_columns.clone());
    }
    let subject = registry::key_subject(&source.topic);
    let key = registry.subject_version(&subject, None).await?.ok_or_else(|| {
        SyncError::config(format!(
            "format debezium-avro: the schema registry has no subject {subject:?} to take the key columns from; name them (--key-column)"
        ))
    })?;
    let fields = rtsync_mapping::avro_fields(&key, false, &RecordOptions::default())?;
    Ok(fields.into_iter().map(|(f, _)| f.name().clone()).collect())
}

/// Columns (from an embedded schema) and key columns (from a JSON key) of the newest events
/// of a Debezium JSON topic, newest first.
async fn sample_debezium_json(
    source: &KafkaSourceConfig,
) -> SyncResult<(Option<Vec<rtsync_mapping::ColumnSpec>>, Option<Vec<String>>)> {
    let Some((_, batches)) = browse::newest_messages(source, DEBEZIUM_SAMPLE, SAMPLE_WAIT).await? else {
        return Ok((None, None));
    };
    let (mut columns, mut keys) = (None, None);
    for batch in batches.iter().rev() {
        let (k, v) = (batch.column(0).as_binary::<i32>(), batch.column(1).as_binary::<i32>());
        for i in (0..batch.num_rows()).rev() {
            if columns.is_none() && v.is_valid(i) {
                columns = rtsync_mapping::debezium_json_columns(v.value(i));
            }
            if keys.is_none() && k.is_valid(i) {
                keys = rtsync_mapping::json_key_fields(k.value(i)).filter(|k| !k.is_empty());
            }
        }
    }
    Ok((columns, keys))
}

/// `meta detail` from the Schema Registry: the fields of the latest schema of the topic's
/// value subject (of its `after` image for a Debezium envelope); None when the data source
/// has no registry or the registry has no such subject.
async fn registry_detail(ds: &DataSource, cfg: &KafkaSourceConfig) -> Result<Option<MetaDetail>> {
    let Some(config) = cfg.schema_registry.clone() else { return Ok(None) };
    let registry = SchemaRegistry::new(config).map_err(with_ds(ds))?;
    let subject = registry::value_subject(&cfg.topic);
    let Some(latest) = registry.subject_version(&subject, None).await.map_err(with_ds(ds))? else {
        return Ok(None);
    };
    let partitions =
        browse::watermarks(cfg, &cfg.topic).await.map_err(with_ds(ds))?.ok_or_else(|| missing_topic(ds, &cfg.topic))?;
    let options = RecordOptions { json_fields: cfg.json_fields.clone(), ..RecordOptions::default() };
    let protobuf = latest.schema_type == rtsync_core::kafka::SchemaType::Protobuf;
    let (fields, debezium) = match rtsync_mapping::avro_fields(&latest, true, &options) {
        Ok(fields) if !protobuf => (fields, true),
        _ => (rtsync_mapping::avro_fields(&latest, false, &options).map_err(with_ds(ds))?, false),
    };
    let kind = if protobuf { "protobuf" } else { "avro" };
    let schema = rtsync_core::arrow::datatypes::Schema::new(fields.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>());
    let delta = rtsync_sink_lakehouse::delta_types(&Arc::new(schema)).map_err(with_ds(ds))?;
    let columns = fields
        .iter()
        .zip(delta)
        .map(|((f, avro_type), (_, delta_type))| MetaColumn {
            column_arg: Some(format!("{}=$.{}:{}", f.name(), f.name(), cast_type(f.data_type()))),
            name: f.name().clone(),
            ty: delta_type,
            source_type: Some(format!("{kind} {avro_type}")),
            nullable: f.is_nullable(),
            path: Some(format!("$.{}", f.name())),
            ..Default::default()
        })
        .collect();
    let version = latest.version.map(|v| format!(" version {v}")).unwrap_or_default();
    let envelope = if debezium {
        ", a Debezium envelope: the fields of its after image (format debezium-avro)"
    } else if protobuf {
        ", a .proto schema: the fields of its first message (format protobuf)"
    } else {
        ""
    };
    Ok(Some(MetaDetail {
        datasource: ds.name.clone(),
        namespace: NAMESPACE.to_string(),
        object: cfg.topic.clone(),
        kind: "topic".into(),
        columns,
        builtin: builtin_fields(),
        partitions: partition_info(partitions),
        note: Some(format!(
            "fields of schema id {} (subject {subject:?}{version}) from the schema registry at {}{envelope}",
            latest.id,
            registry.config().url
        )),
        ..Default::default()
    }))
}

/// The `--column` type that reads a field of this Arrow type back from the record's JSON.
fn cast_type(data_type: &rtsync_core::arrow::datatypes::DataType) -> String {
    use rtsync_core::arrow::datatypes::DataType as T;
    match data_type {
        T::Boolean => "boolean".into(),
        T::Int32 => "int".into(),
        T::Int64 => "bigint".into(),
        T::Float32 | T::Float64 => "double".into(),
        T::Decimal128(p, s) => format!("decimal({p},{s})"),
        T::Date32 => "date".into(),
        T::Timestamp(..) => "timestamp".into(),
        T::Utf8 | T::Binary => "string".into(),
        _ => "json".into(),
    }
}

/// Stops before writing when the registry's schema gives a column another type than the
/// target table holds: a wider one (int → long, float → double, a larger decimal precision)
/// would need the Delta column to widen, which rtsync does not do; any other is incompatible.
async fn check_table_types(spec: &TaskSpec, schema: &rtsync_core::arrow::datatypes::SchemaRef) -> SyncResult<()> {
    let sink = &spec.sink;
    let Some(table) =
        rtsync_sink_lakehouse::browse::table_detail(&sink.root, &sink.storage_options, &sink.schema, &sink.table)
            .await?
    else {
        return Ok(());
    };
    for (name, wanted) in rtsync_sink_lakehouse::delta_types(schema)? {
        let Some(stored) = table.columns.iter().find(|c| c.name == name) else { continue };
        if stored.delta_type == wanted {
            continue;
        }
        let widening = matches!(
            (stored.delta_type.as_str(), wanted.as_str()),
            ("byte" | "short", "short" | "integer" | "long") | ("integer", "long") | ("float", "double")
        ) || decimal_widens(&stored.delta_type, &wanted);
        let why = if widening {
            "a wider type: the Delta column would have to widen, which rtsync does not do (land the topic in a new table, or keep the field's type and add a new field)"
        } else {
            "an incompatible type (register a compatible schema version, or land the topic in a new table)"
        };
        return Err(SyncError::source_err(format!(
            "column {name:?} of table {} is {}, but the topic's schema now gives it {wanted}: {why}",
            table.location, stored.delta_type
        )));
    }
    Ok(())
}

/// `decimal(p1,s)` → `decimal(p2,s)` with p2 > p1.
fn decimal_widens(stored: &str, wanted: &str) -> bool {
    let parse = |t: &str| -> Option<(u32, u32)> {
        let (p, s) = t.strip_prefix("decimal(")?.strip_suffix(')')?.split_once(',')?;
        Some((p.trim().parse().ok()?, s.trim().parse().ok()?))
    };
    matches!((parse(stored), parse(wanted)), (Some((p1, s1)), Some((p2, s2))) if s1 == s2 && p2 > p1)
}
