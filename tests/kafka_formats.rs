//! Avro and Protobuf with a Schema Registry, and Debezium change events, from the real broker
//! (tansu) to Delta, read back by the independent Python reader.
//!
//! No Schema Registry server can be installed here from the package registries (Karapace and
//! Confluent's are not published there), so each test serves the registry's REST API itself
//! ([`registry::Registry`]: `GET /schemas/ids/{id}`, `GET /subjects/{s}/versions[/{v}|latest]`,
//! basic authentication), as a Confluent registry answers it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use apache_avro::Schema as AvroSchema;
use apache_avro::types::{Record, Value};
use common::*;
use rtsync_sink_lakehouse::LakehouseSinkConfig;
use serde_json::json;

/// A Confluent-compatible Schema Registry served on loopback by the test.
#[path = "common/registry.rs"]
mod registry;

/// Reads a Delta table with the `deltalake` package and prints its Delta schema and rows:
/// decimals as plain text, timestamps as epoch microseconds, dates as epoch days, maps as
/// `[key, value]` pairs.
const PY_ROWS: &str = r#"
import datetime, decimal, json, sys
import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder
table = DeltaTable(sys.argv[1])
schema = {f["name"]: f["type"] for f in json.loads(table.schema().to_json())["fields"]}
read = QueryBuilder().register("t", table).execute("SELECT * FROM t")
data = pa.RecordBatchReader.from_stream(read).read_all()
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
def enc(v):
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, datetime.datetime):
        v = v if v.tzinfo else v.replace(tzinfo=datetime.timezone.utc)
        return (v - EPOCH) // datetime.timedelta(microseconds=1)
    if isinstance(v, datetime.date):
        return (v - datetime.date(1970, 1, 1)).days
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(repr(v))
print(json.dumps({"schema": schema, "rows": data.to_pylist()}, default=enc))
"#;

/// The table's rows by the integer column `key`, and its Delta schema.
fn read_table(table: &LakehouseSinkConfig, key: &str) -> (BTreeMap<i64, serde_json::Value>, serde_json::Value) {
    let out = python_json(PY_ROWS, &[&table.table_location()]);
    let mut rows = BTreeMap::new();
    for row in out["rows"].as_array().unwrap() {
        let k = row[key].as_i64().unwrap();
        assert!(rows.insert(k, row.clone()).is_none(), "key {k} appears twice");
    }
    (rows, out["schema"].clone())
}

const ORDER_V1: &str = r#"{
  "type": "record", "name": "Order", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "qty", "type": "int"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
    {"name": "placed", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "ship", "type": {"type": "record", "name": "Ship", "fields": [
        {"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "int"], "default": null}]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "double"}}
  ]
}"#;

/// Version 2 adds a nullable field.
fn order_v2() -> String {
    ORDER_V1.replace(
        r#"{"name": "attrs", "type": {"type": "map", "values": "double"}}"#,
        r#"{"name": "attrs", "type": {"type": "map", "values": "double"}},
    {"name": "coupon", "type": ["null", "string"], "default": null}"#,
    )
}

/// Version 3 widens `qty` to long.
fn order_v3() -> String {
    order_v2().replace(r#"{"name": "qty", "type": "int"}"#, r#"{"name": "qty", "type": "long"}"#)
}

/// `v` as the shortest big-endian two's complement bytes (Avro and Connect decimals).
fn unscaled_bytes(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes[start..].to_vec()
}

/// Order `i` under `schema` (with `coupon` when the schema has it).
fn order(schema: &AvroSchema, i: i64, v2: bool) -> Value {
    let mut r = Record::new(schema).unwrap();
    r.put("id", i);
    r.put("qty", (i % 100) as i32);
    r.put("amount", Value::Decimal(apache_avro::Decimal::from(unscaled_bytes(i * 137 - 5000))));
    r.put("placed", Value::TimestampMillis(1_700_000_000_000 + i * 1001));
    r.put("day", Value::Date(19_000 + (i % 1000) as i32));
    r.put("ref", Value::Uuid(format!("00000000-0000-4000-8000-{i:012x}").parse().unwrap()));
    let status = ["NEW", "PAID", "SHIPPED"][(i % 3) as usize];
    r.put("status", Value::Enum((i % 3) as u32, status.into()));
    let note = (i % 4 != 0).then(|| format!("n{i} Zürich 🚀"));
    r.put("note", Value::Union(u32::from(note.is_some()), Box::new(note.map_or(Value::Null, Value::String))));
    let zip = (i % 5 != 0).then_some((i % 90_000) as i32);
    r.put(
        "ship",
        Value::Record(vec![
            ("city".into(), Value::String(format!("c{}", i % 10))),
            ("zip".into(), Value::Union(u32::from(zip.is_some()), Box::new(zip.map_or(Value::Null, Value::Int)))),
        ]),
    );
    r.put("tags", Value::Array((0..i % 3).map(|t| Value::String(format!("t{t}"))).collect()));
    let attrs: HashMap<String, Value> = if i % 2 == 0 {
        HashMap::from([("w".to_string(), Value::Double(i as f64 / 4.0)), ("h".to_string(), Value::Double(1.5))])
    } else {
        HashMap::new()
    };
    r.put("attrs", Value::Map(attrs));
    if v2 {
        let coupon = (i % 2 == 0).then(|| format!("C{i}"));
        r.put("coupon", Value::Union(u32::from(coupon.is_some()), Box::new(coupon.map_or(Value::Null, Value::String))));
    }
    r.into()
}

/// What order `i` reads back as.
fn expected_order(i: i64, v2: bool) -> serde_json::Value {
    let unscaled = i * 137 - 5000;
    let amount = format!("{}{}.{:02}", if unscaled < 0 { "-" } else { "" }, unscaled.abs() / 100, unscaled.abs() % 100);
    let attrs = if i % 2 == 0 { json!([["h", 1.5], ["w", i as f64 / 4.0]]) } else { json!([]) };
    let status = ["NEW", "PAID", "SHIPPED"][(i % 3) as usize];
    json!({
        "id": i,
        "qty": i % 100,
        "amount": amount,
        "placed": (1_700_000_000_000 + i * 1001) * 1000,
        "day": 19_000 + i % 1000,
        "ref": format!("00000000-0000-4000-8000-{i:012x}"),
        "status": status,
        "note": (i % 4 != 0).then(|| format!("n{i} Zürich 🚀")),
        "ship": {"city": format!("c{}", i % 10), "zip": (i % 5 != 0).then_some(i % 90_000)},
        "tags": (0..i % 3).map(|t| format!("t{t}")).collect::<Vec<_>>(),
        "attrs": attrs,
        "coupon": (v2 && i % 2 == 0).then(|| format!("C{i}")),
    })
}

/// `value` in the Confluent wire format under schema id `id`.
fn wire(id: u32, schema: &AvroSchema, value: Value) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(schema, value).unwrap());
    out
}

fn avro_spec(name: &str, servers: &str, topic: &str, root: &str, registry: &str, extra: &str) -> String {
    format!(
        r#"
name = "{name}"
commit_interval = "300ms"
{extra}
[source]
type = "kafka"
bootstrap_servers = "{servers}"
topic = "{topic}"
start_offset = "earliest"
format = "avro"
schema_registry = {{ url = "{registry}", basic_auth_user_info = "app:s3cret" }}
[sink]
root = "{root}"
schema = "public"
table = "{name}"
"#
    )
}

/// Version-1 and version-2 messages of the schema evolution tests.
const V1: i64 = 3000;
const V2: i64 = 500;

/// What a schema evolution test leaves for its checks.
struct Synced {
    _dir: tempfile::TempDir,
    spec: std::path::PathBuf,
    log: std::path::PathBuf,
    table: LakehouseSinkConfig,
    producer: rdkafka::producer::BaseProducer,
}

/// A `format` task on a new topic with a registry: [`V1`] messages from `v1(i)` while the task
/// runs and is SIGKILLed twice, then version 2 registered (`register_v2` returns its encoder)
/// and [`V2`] messages more, which the task takes by restarting itself to add the column; then
/// it is stopped, and must have said so.
async fn sync_two_versions(
    servers: &str,
    topic: &str,
    name: &str,
    format: &str,
    registry_url: &str,
    v1: impl Fn(i64) -> Vec<u8>,
    register_v2: impl FnOnce() -> Box<dyn Fn(i64) -> Vec<u8>>,
) -> Synced {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let body = avro_spec(name, servers, topic, root.to_str().unwrap(), registry_url, "")
        .replace(r#"format = "avro""#, &format!("format = {format:?}"));
    let spec = write_spec(dir.path(), name, &body);
    let log = dir.path().join("rtsync.log");
    let table = LakehouseSinkConfig::new(root.to_str().unwrap(), "public", name);
    let p = producer(servers);
    let mut child = spawn_run(&spec, &log);
    for i in 0..V1 {
        send(&p, topic, (i % 2) as i32, &i.to_string(), Some(&v1(i)), None);
        if i == 1000 || i == 2000 {
            flush(&p);
            std::thread::sleep(Duration::from_millis(1500));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            child = spawn_run(&spec, &log);
        }
    }
    flush(&p);
    assert_eq!(wait_rows(&table, V1 as u64, Duration::from_secs(120)).await, V1 as u64, "{}", log_of(&log));

    let v2 = register_v2();
    for i in V1..V1 + V2 {
        send(&p, topic, (i % 2) as i32, &i.to_string(), Some(&v2(i)), None);
    }
    flush(&p);
    let total = (V1 + V2) as u64;
    assert_eq!(wait_rows(&table, total, Duration::from_secs(120)).await, total, "{}", log_of(&log));
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let log_text = log_of(&log);
    assert!(status.success(), "rtsync exited with {status}; log:\n{log_text}");
    assert!(log_text.contains(r#"adds field \"coupon\""#) || log_text.contains(r#"adds field "coupon""#), "{log_text}");
    Synced { _dir: dir, spec, log, table, producer: p }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_with_a_registry_syncs_exactly_once_and_evolves() {
    let servers = bootstrap();
    let topic = unique("kafka_avro");
    let name = unique("kafka_avro_sync");
    create_topic(&servers, &topic, 2).await;
    let reg = registry::Registry::start("app", "s3cret");
    let subject = format!("{topic}-value");
    let v1_id = reg.register(&subject, ORDER_V1);
    let v1 = AvroSchema::parse_str(ORDER_V1).unwrap();
    // Version 2 adds a field.
    let register_v2 = || -> Box<dyn Fn(i64) -> Vec<u8>> {
        let v2_text = order_v2();
        let v2_id = reg.register(&subject, &v2_text);
        let v2 = AvroSchema::parse_str(&v2_text).unwrap();
        Box::new(move |i| wire(v2_id, &v2, order(&v2, i, true)))
    };
    let v1_message = |i| wire(v1_id, &v1, order(&v1, i, false));
    let Synced { _dir, spec, log, table, producer: p } =
        sync_two_versions(&servers, &topic, &name, "avro", &reg.url, v1_message, register_v2).await;
    let total = (V1 + V2) as u64;

    // Exactly once, value by value, as the independent reader sees it.
    let (rows, schema) = read_table(&table, "id");
    assert_eq!(rows.len() as u64, total);
    for i in 0..V1 + V2 {
        let mut got = rows[&i].clone();
        let want = expected_order(i, i >= V1);
        // floats compare as numbers
        assert_eq!(got.as_object_mut().unwrap().len(), 12, "row {i}: {got}");
        assert_eq!(got, want, "row {i}");
    }
    assert_eq!(schema["amount"], "decimal(12,2)");
    assert_eq!(schema["placed"], "timestamp");
    assert_eq!(schema["day"], "date");
    assert_eq!(schema["qty"], "integer");
    assert_eq!(schema["coupon"], "string");

    // Version 3 widens qty to long: the task stops, naming the column.
    let v3_text = order_v3();
    let v3_id = reg.register(&subject, &v3_text);
    let v3 = AvroSchema::parse_str(&v3_text).unwrap();
    let mut widened = order(&v3, V1 + V2, true);
    if let Value::Record(fields) = &mut widened {
        fields[1].1 = Value::Long(1 << 40);
    }
    send(&p, &topic, 0, "wide", Some(&wire(v3_id, &v3, widened)), None);
    flush(&p);
    let mut child = spawn_run(&spec, &log);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let log_text = log_of(&log);
    assert!(!status.success(), "a widened column must stop the task; log:\n{log_text}");
    assert!(log_text.contains("column") && log_text.contains("qty") && log_text.contains("widen"), "{log_text}");
    assert_eq!(count_rows(&table).await, total, "nothing of the widened message landed");
}

/// `shop.Ship`, in a file of its own that the order schema imports (a registry reference).
const SHIP_PROTO: &str = r#"syntax = "proto3";
package shop;

message Ship {
  string city = 1;
  optional int32 zip = 2;
}
"#;

const ORDER_PROTO_V1: &str = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "shop/ship.proto";

message Order {
  int64 id = 1;
  int32 qty = 2;
  uint64 big = 3;
  Status status = 4;
  optional string note = 5;
  Ship ship = 6;
  repeated string tags = 7;
  map<string, double> attrs = 8;
  google.protobuf.Timestamp placed = 9;
  google.protobuf.Int64Value score = 10;
  bytes blob = 11;
  enum Status { NEW = 0; PAID = 1; SHIPPED = 2; }
}
"#;

/// Version 2 adds an optional field.
fn order_proto_v2() -> String {
    ORDER_PROTO_V1.replace("  bytes blob = 11;\n", "  bytes blob = 11;\n  optional string coupon = 12;\n")
}

/// The `shop.Order` message of a `.proto` text, compiled as a producer's serializer would.
fn proto_order(text: &str) -> protox::prost_reflect::MessageDescriptor {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shop")).unwrap();
    std::fs::write(dir.path().join("shop/ship.proto"), SHIP_PROTO).unwrap();
    std::fs::write(dir.path().join("order.proto"), text).unwrap();
    let pool = protox::Compiler::new([dir.path()]).unwrap().open_file("order.proto").unwrap().descriptor_pool();
    pool.get_message_by_name("shop.Order").unwrap()
}

/// Order `i` as a Protobuf message in the Confluent wire format under schema id `id`
/// (message indexes `[0]`, written as the single byte 0), with `coupon` when `v2`.
fn proto_wire(id: u32, order: &protox::prost_reflect::MessageDescriptor, i: i64, v2: bool) -> Vec<u8> {
    use protox::prost::Message;
    use protox::prost_reflect::{DynamicMessage, MapKey, Value as P};
    let mut m = DynamicMessage::new(order.clone());
    m.set_field_by_name("id", P::I64(i));
    m.set_field_by_name("qty", P::I32((i % 100) as i32));
    m.set_field_by_name("big", P::U64(u64::MAX - i as u64));
    m.set_field_by_name("status", P::EnumNumber((i % 3) as i32));
    if i % 4 != 0 {
        m.set_field_by_name("note", P::String(format!("n{i} Zürich 🚀")));
    }
    if i % 7 != 0 {
        let ship_desc = order.get_field_by_name("ship").unwrap().kind();
        let mut ship = DynamicMessage::new(ship_desc.as_message().unwrap().clone());
        ship.set_field_by_name("city", P::String(format!("c{}", i % 10)));
        if i % 5 != 0 {
            ship.set_field_by_name("zip", P::I32((i % 90_000) as i32));
        }
        m.set_field_by_name("ship", P::Message(ship));
    }
    m.set_field_by_name("tags", P::List((0..i % 3).map(|t| P::String(format!("t{t}"))).collect()));
    if i % 2 == 0 {
        m.set_field_by_name(
            "attrs",
            P::Map(HashMap::from([
                (MapKey::String("w".into()), P::F64(i as f64 / 4.0)),
                (MapKey::String("h".into()), P::F64(1.5)),
            ])),
        );
    }
    let placed_desc = order.get_field_by_name("placed").unwrap().kind();
    let mut placed = DynamicMessage::new(placed_desc.as_message().unwrap().clone());
    placed.set_field_by_name("seconds", P::I64(1_700_000_000 + i));
    placed.set_field_by_name("nanos", P::I32((i % 1000) as i32 * 1_000_000 + 999));
    m.set_field_by_name("placed", P::Message(placed));
    if i % 3 != 0 {
        let score_desc = order.get_field_by_name("score").unwrap().kind();
        let mut score = DynamicMessage::new(score_desc.as_message().unwrap().clone());
        score.set_field_by_name("value", P::I64(-i * 1_000_003));
        m.set_field_by_name("score", P::Message(score));
    }
    if i % 6 != 0 {
        m.set_field_by_name("blob", P::Bytes(vec![0, 0xff, (i % 256) as u8].into()));
    }
    if v2 && i % 2 == 0 {
        m.set_field_by_name("coupon", P::String(format!("C{i}")));
    }
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.push(0);
    out.extend(m.encode_to_vec());
    out
}

/// What Protobuf order `i` reads back as.
fn expected_proto_order(i: i64, v2: bool) -> serde_json::Value {
    let attrs = if i % 2 == 0 { json!([["h", 1.5], ["w", i as f64 / 4.0]]) } else { json!([]) };
    let ship = (i % 7 != 0).then(|| json!({"city": format!("c{}", i % 10), "zip": (i % 5 != 0).then_some(i % 90_000)}));
    let status = ["NEW", "PAID", "SHIPPED"][(i % 3) as usize];
    json!({
        "id": i,
        "qty": i % 100,
        "big": (u64::MAX - i as u64).to_string(),
        "status": status,
        "note": (i % 4 != 0).then(|| format!("n{i} Zürich 🚀")),
        "ship": ship,
        "tags": (0..i % 3).map(|t| format!("t{t}")).collect::<Vec<_>>(),
        "attrs": attrs,
        "placed": (1_700_000_000 + i) * 1_000_000 + (i % 1000) * 1000,
        "score": (i % 3 != 0).then(|| -i * 1_000_003),
        "blob": if i % 6 != 0 { format!("00ff{:02x}", i % 256) } else { String::new() },
        "coupon": (v2 && i % 2 == 0).then(|| format!("C{i}")),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_with_a_registry_syncs_exactly_once_and_evolves() {
    let servers = bootstrap();
    let topic = unique("kafka_proto");
    let name = unique("kafka_proto_sync");
    create_topic(&servers, &topic, 2).await;
    let reg = registry::Registry::start("app", "s3cret");
    let subject = format!("{topic}-value");
    // The order schema imports shop/ship.proto, registered under a subject of its own.
    reg.register_typed("shop-ship", SHIP_PROTO, Some("PROTOBUF"));
    let ship_reference = json!([{"name": "shop/ship.proto", "subject": "shop-ship", "version": 1}]);
    let v1_id = reg.register_with_references(&subject, ORDER_PROTO_V1, Some("PROTOBUF"), ship_reference.clone());
    let v1 = proto_order(ORDER_PROTO_V1);
    // Version 2 adds an optional field.
    let register_v2 = || -> Box<dyn Fn(i64) -> Vec<u8>> {
        let v2_text = order_proto_v2();
        let v2_id = reg.register_with_references(&subject, &v2_text, Some("PROTOBUF"), ship_reference);
        let v2 = proto_order(&v2_text);
        Box::new(move |i| proto_wire(v2_id, &v2, i, true))
    };
    let v1_message = |i| proto_wire(v1_id, &v1, i, false);
    let Synced { _dir, table, .. } =
        sync_two_versions(&servers, &topic, &name, "protobuf", &reg.url, v1_message, register_v2).await;
    let total = (V1 + V2) as u64;

    // Exactly once, value by value, as the independent reader sees it.
    let (rows, schema) = read_table(&table, "id");
    assert_eq!(rows.len() as u64, total);
    for i in 0..V1 + V2 {
        assert_eq!(rows[&i], expected_proto_order(i, i >= V1), "row {i}");
    }
    assert_eq!(schema["big"], "decimal(20,0)");
    assert_eq!(schema["placed"], "timestamp");
    assert_eq!(schema["qty"], "integer");
    assert_eq!(schema["score"], "long");
    assert_eq!(schema["blob"], "binary");
    assert_eq!(schema["coupon"], "string");
    assert_eq!(schema["ship"]["type"], "struct", "{schema}");
}

fn log_of(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One row of the Debezium test's source table.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    id: i64,
    name: String,
    doc: String,
    price_cents: i64,
}

const CONNECT_SCHEMA: &str = r#"{"type":"struct","name":"db.public.items.Envelope","fields":[
  {"field":"before","type":"struct","optional":true,"name":"db.public.items.Value","fields":[
    {"field":"id","type":"int64"},{"field":"name","type":"string","optional":true},
    {"field":"doc","type":"string","optional":true},
    {"field":"price","type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"10"}}]},
  {"field":"after","type":"struct","optional":true,"name":"db.public.items.Value","fields":[
    {"field":"id","type":"int64"},{"field":"name","type":"string","optional":true},
    {"field":"doc","type":"string","optional":true},
    {"field":"price","type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"10"}}]},
  {"field":"op","type":"string"},{"field":"ts_ms","type":"int64","optional":true}]}"#;

/// The message key of a Debezium JSON event of row `id`; with the embedded schema on even ids
/// (both shapes in one topic).
fn json_key(id: i64) -> String {
    if id % 2 == 0 {
        json!({"schema": {"type": "struct", "fields": [{"field": "id", "type": "int64"}]}, "payload": {"id": id}})
            .to_string()
    } else {
        json!({"id": id}).to_string()
    }
}

/// A Debezium JSON event; with the embedded schema on even ids (both shapes in one topic).
fn debezium_event(op: &str, before: Option<&Item>, after: Option<&Item>, doc_unavailable: bool) -> (String, String) {
    let with_schema = before.or(after).is_some_and(|r| r.id % 2 == 0);
    let image = |r: Option<&Item>, unavailable: bool| match r {
        None => serde_json::Value::Null,
        Some(r) => {
            let price = if with_schema {
                let bytes = unscaled_bytes(r.price_cents);
                json!(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes))
            } else {
                json!(format!("{}.{:02}", r.price_cents / 100, r.price_cents % 100))
            };
            let doc = if unavailable { "__debezium_unavailable_value".to_string() } else { r.doc.clone() };
            json!({"id": r.id, "name": r.name, "doc": doc, "price": price})
        }
    };
    let payload = json!({"before": image(before, false), "after": image(after, doc_unavailable), "op": op, "ts_ms": 1});
    let key_id = before.or(after).unwrap().id;
    let value = if with_schema {
        let schema: serde_json::Value = serde_json::from_str(CONNECT_SCHEMA).unwrap();
        json!({"schema": schema, "payload": payload})
    } else {
        payload
    };
    (json_key(key_id), value.to_string())
}

/// One message of a Debezium topic.
enum Change {
    Event {
        op: &'static str,
        before: Option<Item>,
        after: Option<Item>,
        doc_unavailable: bool,
    },
    /// The tombstone after a delete of this row.
    Tombstone(i64),
}

/// A seeded random history of inserts, updates (some with the doc unavailable), deletes with
/// their tombstones, and key changes (a delete of the old key and a create of the new, as
/// Debezium writes them): `(row id whose partition it goes to, change)`, with the rows the
/// table must hold afterwards. Each key's events go to the partition of its key, in order.
fn debezium_history(seed: u64) -> (Vec<(i64, Change)>, BTreeMap<i64, Item>) {
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut oracle: BTreeMap<i64, Item> = BTreeMap::new();
    let mut events = Vec::new();
    let mut next_id = 1i64;
    let item = |id: i64, v: u64| Item {
        id,
        name: format!("item {id} v{v} é"),
        doc: format!("doc {v}"),
        price_cents: (id * 997 + v as i64) % 100_000,
    };
    let event = |op, before, after, doc_unavailable| Change::Event { op, before, after, doc_unavailable };
    for step in 0..1500u64 {
        let live: Vec<i64> = oracle.keys().copied().collect();
        let choice = if live.len() < 5 { 0 } else { next(10) };
        match choice {
            0..=3 => {
                let r = item(next_id, step);
                next_id += 1;
                events.push((r.id, event(if step < 50 { "r" } else { "c" }, None, Some(r.clone()), false)));
                oracle.insert(r.id, r);
            }
            4..=6 => {
                let id = live[next(live.len() as u64) as usize];
                let old = oracle[&id].clone();
                let unavailable = next(3) == 0;
                let mut new = item(id, step);
                if unavailable {
                    new.doc = old.doc.clone();
                }
                events.push((id, event("u", Some(old), Some(new.clone()), unavailable)));
                oracle.insert(id, new);
            }
            7..=8 => {
                let id = live[next(live.len() as u64) as usize];
                let old = oracle.remove(&id).unwrap();
                events.push((id, event("d", Some(old), None, false)));
                events.push((id, Change::Tombstone(id)));
            }
            _ => {
                let id = live[next(live.len() as u64) as usize];
                let old = oracle.remove(&id).unwrap();
                let mut moved = old.clone();
                moved.id = next_id;
                next_id += 1;
                events.push((id, event("d", Some(old), None, false)));
                events.push((id, Change::Tombstone(id)));
                events.push((moved.id, event("c", None, Some(moved.clone()), false)));
                oracle.insert(moved.id, moved);
            }
        }
    }
    (events, oracle)
}

/// Sends `events` (key, value) while the task runs, SIGKILLs it halfway, and waits until the
/// table holds exactly the oracle's rows; stops the task and checks them value by value.
async fn apply_debezium_history(
    servers: &str,
    topic: &str,
    spec: &std::path::Path,
    table: &LakehouseSinkConfig,
    events: &[(i64, String, Option<Vec<u8>>)],
    oracle: &BTreeMap<i64, Item>,
    seed: u64,
) {
    let log = spec.with_file_name("rtsync.log");
    let p = producer(servers);
    let mut child = spawn_run(spec, &log);
    let half = events.len() / 2;
    for (n, (id, key, value)) in events.iter().enumerate() {
        send(&p, topic, (id % 3) as i32, key, value.as_deref(), None);
        if n == half {
            flush(&p);
            std::thread::sleep(Duration::from_millis(1500));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            child = spawn_run(spec, &log);
        }
    }
    flush(&p);
    // Wait until the table holds exactly the oracle's keys.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let rows = loop {
        tokio::time::sleep(Duration::from_millis(700)).await;
        if count_rows(table).await == oracle.len() as u64 {
            let (rows, _) = read_table(table, "id");
            if rows.keys().copied().collect::<Vec<_>>() == oracle.keys().copied().collect::<Vec<_>>() {
                break rows;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the table never matched (seed {seed}); log:\n{}", log_of(&log));
    };
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert!(status.success(), "rtsync exited with {status}; log:\n{}", log_of(&log));
    for (id, want) in oracle {
        let got = &rows[id];
        let price = format!("{}.{:02}", want.price_cents / 100, want.price_cents % 100);
        assert_eq!(
            got,
            &json!({"id": id, "name": want.name, "doc": want.doc, "price": price}),
            "row {id} (seed {seed})"
        );
    }
    assert!(!log_of(&log).contains("__debezium_unavailable_value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_json_changes_apply_as_upserts_across_sigkills() {
    let servers = bootstrap();
    let topic = unique("kafka_dbz");
    let name = unique("kafka_dbz_sync");
    create_topic(&servers, &topic, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let spec_text = format!(
        r#"
name = "{name}"
commit_interval = "300ms"
[source]
type = "kafka"
bootstrap_servers = "{servers}"
topic = "{topic}"
start_offset = "earliest"
format = "debezium-json"
key_columns = ["id"]
[sink]
root = "{root}"
schema = "public"
table = "{name}"
[[columns]]
name = "id"
expr = "$.id"
type = "bigint"
[[columns]]
name = "name"
expr = "$.name"
type = "string"
[[columns]]
name = "doc"
expr = "$.doc"
type = "string"
[[columns]]
name = "price"
expr = "$.price"
type = "decimal(10,2)"
"#,
        root = root.to_str().unwrap()
    );
    let spec = write_spec(dir.path(), &name, &spec_text);
    let table = LakehouseSinkConfig::new(root.to_str().unwrap(), "public", &name);

    let seed = 16u64;
    let (history, oracle) = debezium_history(seed);
    let events: Vec<(i64, String, Option<Vec<u8>>)> = history
        .into_iter()
        .map(|(id, change)| match change {
            Change::Event { op, before, after, doc_unavailable } => {
                let (k, v) = debezium_event(op, before.as_ref(), after.as_ref(), doc_unavailable);
                (id, k, Some(v.into_bytes()))
            }
            Change::Tombstone(row) => (id, json_key(row), None),
        })
        .collect();
    apply_debezium_history(&servers, &topic, &spec, &table, &events, &oracle, seed).await;
}

/// Debezium's Avro envelope of the items table, and its key.
const DBZ_ENVELOPE: &str = r#"{"type": "record", "name": "Envelope", "namespace": "db.public.items", "fields": [
  {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": ["null", "string"], "default": null},
    {"name": "doc", "type": ["null", "string"], "default": null},
    {"name": "price", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}], "default": null}]}],
   "default": null},
  {"name": "after", "type": ["null", "Value"], "default": null},
  {"name": "op", "type": "string"},
  {"name": "ts_ms", "type": ["null", "long"], "default": null}]}"#;
const DBZ_KEY: &str =
    r#"{"type": "record", "name": "Key", "namespace": "db.public.items", "fields": [{"name": "id", "type": "long"}]}"#;

/// A Debezium Avro event in the wire format under schema id `id`.
fn debezium_avro_event(
    id: u32,
    schema: &AvroSchema,
    op: &str,
    before: Option<&Item>,
    after: Option<&Item>,
    doc_unavailable: bool,
) -> Vec<u8> {
    let some = |v: Value| Value::Union(1, Box::new(v));
    let image = |r: Option<&Item>, unavailable: bool| match r {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(r) => {
            let doc = if unavailable { "__debezium_unavailable_value".to_string() } else { r.doc.clone() };
            some(Value::Record(vec![
                ("id".into(), Value::Long(r.id)),
                ("name".into(), some(Value::String(r.name.clone()))),
                ("doc".into(), some(Value::String(doc))),
                ("price".into(), some(Value::Decimal(apache_avro::Decimal::from(unscaled_bytes(r.price_cents))))),
            ]))
        }
    };
    let envelope = Value::Record(vec![
        ("before".into(), image(before, false)),
        ("after".into(), image(after, doc_unavailable)),
        ("op".into(), Value::String(op.into())),
        ("ts_ms".into(), some(Value::Long(1))),
    ]);
    wire(id, schema, envelope)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_avro_changes_apply_as_upserts_across_sigkills() {
    let servers = bootstrap();
    let topic = unique("kafka_dbz_avro");
    let name = unique("kafka_dbz_avro_sync");
    create_topic(&servers, &topic, 3).await;
    let reg = registry::Registry::start("app", "s3cret");
    let value_id = reg.register(&format!("{topic}-value"), DBZ_ENVELOPE);
    // The key columns come from the key subject: no key_columns in the spec.
    reg.register(&format!("{topic}-key"), DBZ_KEY);
    let envelope = AvroSchema::parse_str(DBZ_ENVELOPE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let body = avro_spec(&name, &servers, &topic, root.to_str().unwrap(), &reg.url, "")
        .replace(r#"format = "avro""#, r#"format = "debezium-avro""#);
    let spec = write_spec(dir.path(), &name, &body);
    let table = LakehouseSinkConfig::new(root.to_str().unwrap(), "public", &name);
    let seed = 61u64;
    let (history, oracle) = debezium_history(seed);
    let events: Vec<(i64, String, Option<Vec<u8>>)> = history
        .into_iter()
        .map(|(id, change)| match change {
            Change::Event { op, before, after, doc_unavailable } => {
                let key = before.as_ref().or(after.as_ref()).unwrap().id.to_string();
                let value =
                    debezium_avro_event(value_id, &envelope, op, before.as_ref(), after.as_ref(), doc_unavailable);
                (id, key, Some(value))
            }
            Change::Tombstone(row) => (id, row.to_string(), None),
        })
        .collect();
    apply_debezium_history(&servers, &topic, &spec, &table, &events, &oracle, seed).await;
}
