//! Metadata browsing (`meta namespaces|objects|detail`), the seed's `list_namespaces`,
//! `list_metadata_objects` and `get_metadata_detail`.
//!
//! **Kafka** has one namespace, [`KAFKA_NAMESPACE`]; its objects are the topics, with their
//! partition counts and watermarks. A topic's detail samples the newest messages (read with
//! the Kafka connector under a throw-away consumer group, committing nothing) and infers the
//! fields of their JSON values: each field's JSONPath, a guessed type, how many sampled
//! messages had it, and a ready `--column` argument.
//!
//! **PostgreSQL / MySQL** (and their Aurora and PolarDB flavours): namespaces are the
//! schemas (MySQL: databases), objects their tables with primary key and row estimate, and a
//! table's detail lists each column's source type next to the Delta type it becomes, read with
//! the connector's own catalog queries (no slot, no binlog connection).
//!
//! **Lakehouse**: namespaces are the schema directories under the root, objects the Delta
//! tables in them, and a table's columns come from its Delta schema.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rtsync_core::arrow::array::{Array, AsArray};
use rtsync_core::{Source, SyncError};
use rtsync_source_kafka::{KafkaSource, StartOffset};
use serde_json::Value;

use rtsync_core::ColumnSummary;
use rtsync_core::arrow::datatypes::{Field, Schema, SchemaRef};
use rtsync_source_mysql::browse as my_browse;
use rtsync_source_postgres::browse as pg_browse;

use crate::datasource::{self, kafka_config, kafka_consumer, local_root, sync_err};
use crate::error::{Error, Result};
use crate::model::{DataSource, Family, KAFKA_NAMESPACE, MetaColumn, MetaDetail, MetaObject, Namespace, PartitionInfo};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SAMPLE: usize = 100;
const SAMPLE_WAIT: Duration = Duration::from_secs(6);

fn unique_group(purpose: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("rtsync-{purpose}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::internal(format!("metadata task failed: {e}"))
}

pub async fn namespaces(ds: &DataSource) -> Result<Vec<Namespace>> {
    match ds.ds_type.family() {
        Family::Kafka => {
            let topics = kafka_topics(ds).await?;
            Ok(vec![Namespace { name: KAFKA_NAMESPACE.to_string(), objects: Some(topics.len() as i64) }])
        }
        Family::Lakehouse => {
            let dir = lakehouse_dir(ds)?;
            let mut out = Vec::new();
            for name in subdirs(&dir)? {
                let tables = subdirs(&dir.join(&name))?
                    .into_iter()
                    .filter(|t| dir.join(&name).join(t).join("_delta_log").is_dir())
                    .count();
                out.push(Namespace { name, objects: Some(tables as i64) });
            }
            Ok(out)
        }
        Family::Postgres | Family::Mysql => db_namespaces(ds).await,
        _ => Err(datasource::not_implemented(ds.ds_type)),
    }
}

pub async fn objects(ds: &DataSource, namespace: &str) -> Result<Vec<MetaObject>> {
    match ds.ds_type.family() {
        Family::Kafka => {
            check_kafka_namespace(namespace)?;
            kafka_topics(ds).await
        }
        Family::Lakehouse => {
            let dir = lakehouse_dir(ds)?.join(namespace);
            if !dir.is_dir() {
                return Err(Error::not_found(format!(
                    "schema {namespace:?} does not exist in lakehouse {} ({})",
                    ds.name,
                    dir.display()
                )));
            }
            let mut out = Vec::new();
            for name in subdirs(&dir)? {
                if !dir.join(&name).join("_delta_log").is_dir() {
                    continue;
                }
                let version = match open_delta(&dir.join(&name)).await {
                    Ok(t) => t.version().map(|v| format!("version {v}")),
                    Err(e) => Some(format!("unreadable: {e}")),
                };
                out.push(MetaObject { name, kind: "table".into(), detail: version, ..Default::default() });
            }
            Ok(out)
        }
        Family::Postgres | Family::Mysql => db_objects(ds, namespace).await,
        _ => Err(datasource::not_implemented(ds.ds_type)),
    }
}

pub async fn detail(ds: &DataSource, namespace: &str, object: &str, sample: usize) -> Result<MetaDetail> {
    match ds.ds_type.family() {
        Family::Kafka => {
            check_kafka_namespace(namespace)?;
            kafka_detail(ds, object, sample.clamp(1, 10_000)).await
        }
        Family::Lakehouse => {
            let path = lakehouse_dir(ds)?.join(namespace).join(object);
            if !path.join("_delta_log").is_dir() {
                return Err(Error::not_found(format!(
                    "table {namespace}.{object} does not exist in lakehouse {} ({})",
                    ds.name,
                    path.display()
                )));
            }
            let table = open_delta(&path).await?;
            let snapshot =
                table.snapshot().map_err(|e| Error::bad_request(format!("reading table {}: {e}", path.display())))?;
            let columns = snapshot
                .schema()
                .fields()
                .map(|f| MetaColumn {
                    name: f.name().clone(),
                    ty: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                    ..Default::default()
                })
                .collect();
            Ok(MetaDetail {
                datasource: ds.name.clone(),
                namespace: namespace.to_string(),
                object: object.to_string(),
                kind: "table".into(),
                columns,
                note: table.version().map(|v| format!("Delta table at {}, version {v}", path.display())),
                ..Default::default()
            })
        }
        Family::Postgres | Family::Mysql => db_detail(ds, namespace, object).await,
        _ => Err(datasource::not_implemented(ds.ds_type)),
    }
}

/// PostgreSQL schemas / MySQL databases, with their table counts.
async fn db_namespaces(ds: &DataSource) -> Result<Vec<Namespace>> {
    let listed = if ds.ds_type.family() == Family::Postgres {
        pg_browse::list_schemas(&datasource::postgres_config(ds, "public", "")?).await
    } else {
        my_browse::list_schemas(&datasource::mysql_config(ds, "", "")?).await
    };
    Ok(listed.map_err(sync_err)?.into_iter().map(|s| Namespace { name: s.name, objects: Some(s.tables) }).collect())
}

/// The tables of a PostgreSQL schema / MySQL database, with their keys and row estimates.
async fn db_objects(ds: &DataSource, namespace: &str) -> Result<Vec<MetaObject>> {
    let no_key = |key: &[String], what: &str| {
        if key.is_empty() { Some(format!("no primary key: {what}")) } else { None }
    };
    if ds.ds_type.family() == Family::Postgres {
        let cfg = datasource::postgres_config(ds, namespace, "")?;
        let tables = pg_browse::list_tables(&cfg, namespace).await.map_err(sync_err)?;
        return Ok(tables
            .into_iter()
            .map(|t| {
                let detail = match (t.primary_key.is_empty(), t.replica_identity.as_str()) {
                    (true, "full") => Some(
                        "no primary key: replica identity full, the target is its change log (_rtsync_op)".to_string(),
                    ),
                    (true, "index") => Some("replica identity index: merged by that index".to_string()),
                    (true, _) => no_key(&t.primary_key, "updates and deletes cannot be identified"),
                    (false, _) => None,
                };
                MetaObject {
                    name: t.name,
                    kind: t.kind,
                    primary_key: t.primary_key,
                    estimated_rows: t.estimated_rows,
                    detail,
                    ..Default::default()
                }
            })
            .collect());
    }
    let cfg = datasource::mysql_config(ds, namespace, "")?;
    let tables = my_browse::list_tables(&cfg, namespace).await.map_err(sync_err)?;
    Ok(tables
        .into_iter()
        .map(|t| MetaObject {
            detail: no_key(&t.primary_key, "rtsync syncs MySQL tables that have one")
                .or_else(|| t.engine.map(|e| format!("engine {e}"))),
            name: t.name,
            kind: "table".into(),
            primary_key: t.primary_key,
            estimated_rows: t.estimated_rows,
            ..Default::default()
        })
        .collect())
}

/// A table's columns: the source's type, the Delta type it becomes, nullability; and the key.
async fn db_detail(ds: &DataSource, namespace: &str, object: &str) -> Result<MetaDetail> {
    let (columns, key, note): (Vec<ColumnSummary>, Vec<String>, String) = if ds.ds_type.family() == Family::Postgres {
        let cfg = datasource::postgres_config(ds, namespace, object)?;
        let t = pg_browse::table_detail(&cfg, namespace, object).await.map_err(sync_err)?;
        let note = match (t.has_primary_key, t.key.is_empty()) {
            (true, _) => "upserted by the primary key".to_string(),
            (false, false) => "upserted by the replica identity index".to_string(),
            (false, true) if t.replica_identity == "full" => {
                "no primary key, replica identity full: the target is the table's change log, each row with its operation in _rtsync_op".to_string()
            }
            (false, true) => format!(
                "no primary key and replica identity {}: a task cannot identify updates and deletes; add a primary key or ALTER TABLE … REPLICA IDENTITY FULL",
                t.replica_identity
            ),
        };
        (t.columns, t.key, note)
    } else {
        let cfg = datasource::mysql_config(ds, namespace, object)?;
        let t = my_browse::table_detail(&cfg, namespace, object).await.map_err(sync_err)?;
        let note = if t.primary_key.is_empty() {
            format!(
                "no primary key: rtsync mirrors MySQL rows by key; ALTER TABLE {namespace}.{object} ADD PRIMARY KEY (…)"
            )
        } else {
            "upserted by the primary key".to_string()
        };
        (t.columns, t.primary_key, note)
    };
    let schema: SchemaRef = Arc::new(Schema::new(
        columns.iter().map(|c| Field::new(&c.name, c.target_type.clone(), true)).collect::<Vec<_>>(),
    ));
    let delta: HashMap<String, String> =
        rtsync_sink_lakehouse::delta_types(&schema).map_err(sync_err)?.into_iter().collect();
    Ok(MetaDetail {
        datasource: ds.name.clone(),
        namespace: namespace.to_string(),
        object: object.to_string(),
        kind: "table".into(),
        columns: columns
            .into_iter()
            .map(|c| MetaColumn {
                ty: delta.get(&c.name).cloned().unwrap_or_else(|| c.target_type.to_string()),
                source_type: Some(c.source_type),
                nullable: c.nullable,
                name: c.name,
                ..Default::default()
            })
            .collect(),
        primary_key: key,
        note: Some(note),
        ..Default::default()
    })
}

fn check_kafka_namespace(namespace: &str) -> Result<()> {
    if namespace == KAFKA_NAMESPACE {
        Ok(())
    } else {
        Err(Error::not_found(format!("Kafka has one namespace, {KAFKA_NAMESPACE:?}; {namespace:?} does not exist")))
    }
}

fn lakehouse_dir(ds: &DataSource) -> Result<std::path::PathBuf> {
    let root = datasource::lakehouse_root(ds)?;
    let dir = local_root(&root).ok_or_else(|| {
        Error::bad_request(format!("lakehouse {} is at {root}: browsing works on local roots only", ds.name))
    })?;
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::bad_request(format!("lakehouse root {}: {e}", dir.display())))?;
    }
    Ok(dir)
}

fn subdirs(dir: &std::path::Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::bad_request(format!("listing {}: {e}", dir.display())))?;
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
        .collect();
    out.sort();
    Ok(out)
}

async fn open_delta(path: &std::path::Path) -> Result<deltalake::DeltaTable> {
    let location = path.to_string_lossy().to_string();
    let url = deltalake::ensure_table_uri(&location)
        .map_err(|e| Error::bad_request(format!("table location {location}: {e}")))?;
    deltalake::open_table(url).await.map_err(|e| Error::bad_request(format!("opening Delta table {location}: {e}")))
}

/// Topics (without internal `__` ones) with partitions and watermarks.
async fn kafka_topics(ds: &DataSource) -> Result<Vec<MetaObject>> {
    let consumer = kafka_consumer(ds, &unique_group("meta"))?;
    let servers = ds.properties.get(datasource::BOOTSTRAP_SERVERS).cloned().unwrap_or_default();
    tokio::task::spawn_blocking(move || -> Result<Vec<MetaObject>> {
        let md = consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(|e| rtsync_source_kafka::classify(e, "listing topics", &servers))?;
        let mut out = Vec::new();
        for t in md.topics() {
            if t.name().starts_with("__") {
                continue;
            }
            let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            parts.sort_unstable();
            let mut messages = 0i64;
            let mut ranges = Vec::new();
            for &p in &parts {
                match consumer.fetch_watermarks(t.name(), p, METADATA_TIMEOUT) {
                    Ok((lo, hi)) => {
                        messages += (hi - lo).max(0);
                        ranges.push(format!("{p}:{lo}..{hi}"));
                    }
                    Err(e) => ranges.push(format!("{p}:? ({e})")),
                }
            }
            out.push(MetaObject {
                name: t.name().to_string(),
                kind: "topic".into(),
                partitions: Some(parts.len() as i64),
                messages: Some(messages),
                detail: Some(ranges.join(" ")),
                ..Default::default()
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    })
    .await
    .map_err(join_err)?
}

fn watermarks(ds: &DataSource, topic: &str) -> Result<Vec<PartitionInfo>> {
    let consumer = kafka_consumer(ds, &unique_group("meta"))?;
    let servers = ds.properties.get(datasource::BOOTSTRAP_SERVERS).cloned().unwrap_or_default();
    let md = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| rtsync_source_kafka::classify(e, &format!("reading metadata of topic {topic:?}"), &servers))?;
    let meta = md.topics().iter().find(|t| t.name() == topic);
    let parts: Vec<i32> = match meta {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().iter().map(|p| p.id()).collect(),
        _ => {
            return Err(Error::not_found(format!(
                "topic {topic:?} does not exist on {servers}: check the topic name (`rtsync meta objects {} {KAFKA_NAMESPACE}` lists them)",
                ds.name
            )));
        }
    };
    let mut out = Vec::new();
    for p in parts {
        let (low, high) = consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT).map_err(|e| {
            rtsync_source_kafka::classify(e, &format!("reading offsets of {topic:?} partition {p}"), &servers)
        })?;
        out.push(PartitionInfo { partition: p, low, high });
    }
    out.sort_by_key(|p| p.partition);
    Ok(out)
}

/// The high watermarks of a topic's partitions (for lag).
pub async fn high_watermarks(ds: &DataSource, topic: &str) -> Result<Vec<PartitionInfo>> {
    let ds = ds.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || watermarks(&ds, &topic)).await.map_err(join_err)?
}

async fn kafka_detail(ds: &DataSource, topic: &str, sample: usize) -> Result<MetaDetail> {
    let partitions = high_watermarks(ds, topic).await?;
    let per_partition = sample.div_ceil(partitions.len().max(1)) as i64;
    let mut starts = std::collections::BTreeMap::new();
    let mut expected = 0usize;
    for p in &partitions {
        let from = (p.high - per_partition).max(p.low);
        starts.insert(p.partition, from);
        expected += (p.high - from).max(0) as usize;
    }
    let expected = expected.min(sample);
    let values = if expected == 0 {
        Vec::new()
    } else {
        sample_values(ds, topic, StartOffset::Offsets(starts), expected).await?
    };
    let mut fields = FieldSet::default();
    let mut not_json = 0i64;
    for v in &values {
        match v.as_deref().map(serde_json::from_slice::<Value>) {
            Some(Ok(json)) => fields.observe(&json),
            Some(Err(_)) => not_json += 1,
            None => {}
        }
    }
    let sampled = values.len() as i64;
    let columns = fields.columns(sampled);
    let note = if sampled == 0 {
        Some(
            "the topic holds no messages: fields cannot be inferred yet; the built-in fields are always available"
                .to_string(),
        )
    } else {
        Some(format!("fields inferred from the newest {sampled} message(s); types are guesses from the sampled values"))
    };
    Ok(MetaDetail {
        datasource: ds.name.clone(),
        namespace: KAFKA_NAMESPACE.to_string(),
        object: topic.to_string(),
        kind: "topic".into(),
        columns,
        builtin: builtin_fields(),
        sampled: Some(sampled),
        not_json: Some(not_json),
        partitions,
        note,
        ..Default::default()
    })
}

fn builtin_fields() -> Vec<MetaColumn> {
    let f = |name: &str, ty: &str, nullable: bool| MetaColumn {
        name: name.into(),
        ty: ty.into(),
        nullable,
        path: None,
        seen: None,
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

/// Reads up to `n` message values from `start` with the Kafka connector; commits nothing.
pub async fn sample_values(ds: &DataSource, topic: &str, start: StartOffset, n: usize) -> Result<Vec<Option<Vec<u8>>>> {
    let mut cfg = kafka_config(ds, topic, start)?;
    cfg.group_id = Some(unique_group("sample"));
    cfg.max_batch_rows = n.clamp(1, 10_000);
    let mut source = KafkaSource::new(unique_group("sample"), cfg)?;
    let result = async {
        source.check().await?;
        source.open(None).await?;
        let deadline = Instant::now() + SAMPLE_WAIT;
        let mut out = Vec::new();
        while out.len() < n && Instant::now() < deadline {
            if let Some(batch) = source.next_batch(Duration::from_millis(300)).await? {
                let values = batch.rows.column(1).as_binary::<i32>();
                for i in 0..values.len() {
                    if out.len() < n {
                        out.push(values.is_valid(i).then(|| values.value(i).to_vec()));
                    }
                }
            }
        }
        Ok::<_, SyncError>(out)
    }
    .await;
    let _ = source.close().await;
    Ok(result?)
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

    fn columns(&self, sampled: i64) -> Vec<MetaColumn> {
        let mut used = std::collections::HashSet::new();
        self.order
            .iter()
            .filter_map(|path| {
                let s = self.stats.get(path)?;
                let ty = s.guess.name();
                let mut name = column_name(path);
                while !used.insert(name.clone()) {
                    name.push('_');
                }
                Some(MetaColumn {
                    name: name.clone(),
                    ty: ty.to_string(),
                    nullable: s.nulls > 0 || s.seen < sampled,
                    path: Some(path.clone()),
                    seen: Some(s.seen),
                    column_arg: Some(format!("{name}={path}:{ty}")),
                    ..Default::default()
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
        let mut set = FieldSet::default();
        for text in [
            r#"{"id":1,"data":{"code":"A","at":"2024-01-02T03:04:05Z"},"items":[{"sku":"x"}],"price":1,"odd key":true}"#,
            r#"{"id":2,"data":{"code":null,"at":"2024-01-02T03:04:05Z"},"items":[],"price":2.5}"#,
        ] {
            set.observe(&serde_json::from_str(text).unwrap());
        }
        let cols = set.columns(2);
        let find = |p: &str| cols.iter().find(|c| c.path.as_deref() == Some(p)).unwrap();
        assert_eq!(find("$.id").ty, "bigint");
        assert!(!find("$.id").nullable);
        assert_eq!(find("$.data.code").ty, "string");
        assert!(find("$.data.code").nullable);
        assert_eq!(find("$.data.at").ty, "timestamp");
        assert_eq!(find("$.items").ty, "json");
        assert_eq!(find("$.items[0].sku").column_arg.as_deref(), Some("items_0_sku=$.items[0].sku:string"));
        assert_eq!(find("$.price").ty, "double");
        assert_eq!(find("$['odd key']").ty, "boolean");
        assert_eq!(find("$.data").ty, "json");
    }
}
