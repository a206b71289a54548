//! Kafka: data sources hold librdkafka properties (`bootstrap.servers` required, the rest,
//! `security.protocol`, `sasl.*`, `ssl.*`, passed to the consumer as they are). One namespace,
//! [`NAMESPACE`]; its objects are the topics. A task maps message fields to columns and
//! appends.
//!
//! Browsing a topic samples its newest messages under a throw-away consumer group (nothing is
//! committed) and infers the fields of their JSON values.

use std::time::Duration;

use async_trait::async_trait;
use rtsync_core::verify::TableVerifier;
use rtsync_core::{ColumnMapping, ErrorPolicy, SyncResult};
use rtsync_engine::Task;
use rtsync_sink_lakehouse::DeltaSink;
use rtsync_source_kafka::{KafkaOffsets, KafkaSource, KafkaSourceConfig, StartOffset, browse};

use super::{Connector, DsType, Props, SourceSpec, TaskSource, api_err, checked};
use crate::error::{Error, Result};
use crate::model::{DataSource, MetaColumn, MetaDetail, MetaObject, Namespace, PartitionInfo, Preview, TaskConfig};
use crate::runner::{RunOptions, engine_config};
use crate::spec::TaskSpec;

/// Kafka has no namespaces; its topics live in this one.
pub const NAMESPACE: &str = "default";
pub const BOOTSTRAP_SERVERS: &str = "bootstrap.servers";
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
    let properties =
        props.iter().filter(|(k, _)| k.as_str() != BOOTSTRAP_SERVERS).map(|(k, v)| (k.clone(), v.clone())).collect();
    KafkaSourceConfig { start_offset: start, properties, ..KafkaSourceConfig::new(servers, topic) }
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
        config(props, "probe", StartOffset::Earliest)
            .validate()
            .map_err(|e| Error::bad_request(e.to_string().replace("source.properties.", "property ")))
    }

    fn check_task(&self, _ds: &DataSource, cfg: &TaskConfig) -> Result<()> {
        if let Some(ns) = &cfg.source_schema
            && ns != NAMESPACE
        {
            return Err(Error::bad_request(format!(
                "--source-schema {ns:?}: Kafka topics live in the namespace {NAMESPACE:?}"
            )));
        }
        start_offset(cfg).map(|_| ())
    }

    fn check_start_offset(&self, text: &str) -> Option<Result<()>> {
        Some(StartOffset::parse(text).map(|_| ()).map_err(|e| Error::bad_request(e.report())))
    }

    fn source_spec(&self, ds: &DataSource, _task: &str, cfg: &TaskConfig, table: &str) -> Result<SourceSpec> {
        Ok(SourceSpec::Kafka(config(&ds.properties, table, start_offset(cfg)?)))
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
        let mapping: std::sync::Arc<dyn ColumnMapping> = std::sync::Arc::new(rtsync_mapping::compile(&spec.columns)?);
        let sink = Box::new(DeltaSink::new(&spec.name, spec.sink.clone())?);
        let source = KafkaSource::new(&spec.name, self.clone())?;
        let mut task =
            Task::new(engine_config(spec), source, mapping, sink, opts.metrics.clone(), opts.shutdown.clone());
        if spec.error_policy == ErrorPolicy::DeadLetter {
            task = task.with_dead_letter_sink(Box::new(DeltaSink::new(&spec.name, spec.dead_letter_sink())?));
        }
        task.run().await
    }

    async fn preview(&self, spec: &TaskSpec, limit: usize) -> Result<Preview> {
        let batches = browse::read_batches(self, limit, PREVIEW_READ_FOR, PREVIEW_IDLE_AFTER_DATA).await?;
        let note = format!(
            "no messages to preview from start offset {} within {}s: check the topic has messages and the start offset",
            self.start_offset,
            PREVIEW_READ_FOR.as_secs()
        );
        crate::preview::mapped_preview(spec, &batches, note)
    }

    async fn verifier(&self, spec: &TaskSpec) -> Result<(Box<dyn TableVerifier>, String)> {
        Err(Error::bad_request(format!(
            "task {:?} reads Kafka topic {:?}: verify compares a source table with its target, and a topic is an append-only log with no table to compare with",
            spec.name, self.topic
        )))
    }
}
