#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use apache_avro::Schema as AvroSchema;
use apache_avro::types::Record;
use arrow::array::{
    AsArray, BinaryBuilder, Int32Array, Int64Array, ListArray, MapArray, StringArray, StructArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{
    Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};

use super::*;

/// Schemas by id, as a registry would serve them.
struct Schemas(HashMap<u32, Arc<RegisteredSchema>>);

impl Schemas {
    fn new(schemas: &[(u32, &str)]) -> Arc<Self> {
        Arc::new(Schemas(
            schemas
                .iter()
                .map(|(id, text)| {
                    let s = RegisteredSchema {
                        id: *id,
                        schema_type: SchemaType::Avro,
                        text: text.to_string(),
                        subject: Some("t-value".into()),
                        version: Some(*id as i32),
                        references: Vec::new(),
                    };
                    (*id, Arc::new(s))
                })
                .collect(),
        ))
    }

    fn get(&self, id: u32) -> &RegisteredSchema {
        &self.0[&id]
    }
}

impl SchemaLookup for Schemas {
    fn schema_by_id(&self, id: u32) -> SyncResult<Arc<RegisteredSchema>> {
        self.0.get(&id).cloned().ok_or_else(|| SyncError::source_err(format!("no schema id {id}")))
    }
}

/// `value` in the Confluent wire format under schema id `id`.
fn wire(id: u32, schema: &AvroSchema, value: Value) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(schema, value).unwrap());
    out
}

/// A Kafka source batch of these values (keys `k<i>`, offsets from 0).
fn messages(values: &[Option<Vec<u8>>]) -> RecordBatch {
    let mut keys = BinaryBuilder::new();
    let mut vals = BinaryBuilder::new();
    for (i, v) in values.iter().enumerate() {
        keys.append_value(format!("k{i}"));
        vals.append_option(v.as_deref());
    }
    let n = values.len();
    RecordBatch::try_new(
        kafka::kafka_source_schema(),
        vec![
            Arc::new(keys.finish()),
            Arc::new(vals.finish()),
            Arc::new(TimestampMillisecondArray::from(vec![1_700_000_000_000; n]).with_timezone("UTC")),
            Arc::new(Int32Array::from(vec![0; n])),
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(StringArray::from(vec![None::<&str>; n])),
        ],
    )
    .unwrap()
}

const ORDER_V1: &str = r#"{
  "type": "record", "name": "Order", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "qty", "type": "int"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "placed", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "ship", "type": {"type": "record", "name": "Ship", "fields": [
        {"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "int"]}]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "double"}}
  ]
}"#;

fn order(schema: &AvroSchema, id: i64, note: Option<&str>) -> Value {
    let mut r = Record::new(schema).unwrap();
    r.put("id", id);
    r.put("qty", 3);
    r.put("amount", Value::Decimal(apache_avro::Decimal::from(vec![0x04, 0xe2]))); // 12.50
    r.put("placed", Value::TimestampMillis(1_700_000_000_123));
    r.put("day", Value::Date(19_675));
    r.put("ref", Value::Uuid("6f1b2c4e-8a4b-4b0e-9d55-1c2f3a4b5c6d".parse().unwrap()));
    r.put("status", Value::Enum(1, "PAID".into()));
    r.put(
        "note",
        Value::Union(u32::from(note.is_some()), Box::new(note.map_or(Value::Null, |n| Value::String(n.into())))),
    );
    let ship_schema = match schema {
        AvroSchema::Record(rs) => rs.fields.iter().find(|f| f.name == "ship").unwrap().schema.clone(),
        _ => unreachable!(),
    };
    let mut ship = Record::new(&ship_schema).unwrap();
    ship.put("city", "Zürich");
    ship.put("zip", Value::Union(1, Box::new(Value::Int(8001))));
    r.put("ship", ship);
    r.put("tags", Value::Array(vec![Value::String("a".into()), Value::String("b".into())]));
    r.put(
        "attrs",
        Value::Map(HashMap::from([("w".to_string(), Value::Double(1.5)), ("h".to_string(), Value::Double(2.0))])),
    );
    r.into()
}

#[test]
fn avro_records_land_in_typed_columns() {
    let schemas = Schemas::new(&[(1, ORDER_V1)]);
    let schema = AvroSchema::parse_str(ORDER_V1).unwrap();
    let m = RecordMapping::avro(&[], schemas.clone(), schemas.get(1), false, RecordOptions::default()).unwrap();
    let input = messages(&[
        Some(wire(1, &schema, order(&schema, 7, Some("fragile")))),
        Some(b"{\"not\": \"avro\"}".to_vec()),
        None,
        Some(wire(1, &schema, order(&schema, 8, None))),
    ]);
    let out = m.map(&input).unwrap();
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].row, 1);
    assert!(out.rejected[0].reason.contains("not the schema registry magic byte"), "{}", out.rejected[0].reason);
    let rows = &out.rows;
    assert_eq!(rows.num_rows(), 2, "the tombstone carries no record");
    let col = |name: &str| rows.column_by_name(name).unwrap().clone();
    assert_eq!(col("id").as_primitive::<Int64Type>().values().to_vec(), vec![7, 8]);
    assert_eq!(col("qty").as_primitive::<Int32Type>().value(0), 3);
    let amount = col("amount");
    assert_eq!(amount.data_type(), &DataType::Decimal128(10, 2));
    assert_eq!(amount.as_primitive::<Decimal128Type>().value_as_string(0), "12.50");
    assert_eq!(col("placed").data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
    assert_eq!(col("placed").as_primitive::<TimestampMicrosecondType>().value(0), 1_700_000_000_123_000);
    assert_eq!(col("day").as_primitive::<Date32Type>().value(0), 19_675);
    assert_eq!(col("ref").as_string::<i32>().value(0), "6f1b2c4e-8a4b-4b0e-9d55-1c2f3a4b5c6d");
    assert_eq!(col("status").as_string::<i32>().value(0), "PAID");
    let note = col("note");
    assert_eq!(note.as_string::<i32>().value(0), "fragile");
    assert!(note.is_null(1));
    let ship = col("ship");
    let ship = ship.as_any().downcast_ref::<StructArray>().unwrap();
    assert_eq!(ship.column_by_name("city").unwrap().as_string::<i32>().value(1), "Zürich");
    assert_eq!(ship.column_by_name("zip").unwrap().as_primitive::<Int32Type>().value(0), 8001);
    let tags = col("tags");
    let tags = tags.as_any().downcast_ref::<ListArray>().unwrap();
    assert_eq!(tags.value(0).as_string::<i32>().iter().flatten().collect::<Vec<_>>(), vec!["a", "b"]);
    let attrs = col("attrs");
    let attrs = attrs.as_any().downcast_ref::<MapArray>().unwrap();
    let entry = attrs.value(0);
    assert_eq!(entry.column(0).as_string::<i32>().iter().flatten().collect::<Vec<_>>(), vec!["h", "w"]);
    assert_eq!(entry.column(1).as_primitive::<Float64Type>().values().to_vec(), vec![2.0, 1.5]);
}

#[test]
fn json_fields_and_jsonpath_columns_over_avro() {
    let schemas = Schemas::new(&[(1, ORDER_V1)]);
    let schema = AvroSchema::parse_str(ORDER_V1).unwrap();
    let options = RecordOptions { json_fields: vec!["ship".into()], ..RecordOptions::default() };
    let m = RecordMapping::avro(&[], schemas.clone(), schemas.get(1), false, options).unwrap();
    let out = m.map(&messages(&[Some(wire(1, &schema, order(&schema, 7, None)))])).unwrap();
    let ship = out.rows.column_by_name("ship").unwrap();
    assert_eq!(ship.as_string::<i32>().value(0), r#"{"city":"Zürich","zip":8001}"#);

    let columns = [
        ColumnSpec::new("id", "$.id", "bigint"),
        ColumnSpec::new("city", "$.ship.city", "string"),
        ColumnSpec::new("amount", "$.amount", "decimal(12,2)"),
        ColumnSpec::new("placed", "$.placed", "timestamp"),
        ColumnSpec::new("day", "$.day", "date"),
        ColumnSpec::new("first_tag", "$.tags[0]", "string"),
        ColumnSpec::new("offset", "offset", "bigint"),
    ];
    let m = RecordMapping::avro(&columns, schemas.clone(), schemas.get(1), false, RecordOptions::default()).unwrap();
    let out = m.map(&messages(&[None, Some(wire(1, &schema, order(&schema, 9, None)))])).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let rows = &out.rows;
    assert_eq!(rows.num_rows(), 1);
    assert_eq!(rows.column(0).as_primitive::<Int64Type>().value(0), 9);
    assert_eq!(rows.column(1).as_string::<i32>().value(0), "Zürich");
    assert_eq!(rows.column(2).as_primitive::<Decimal128Type>().value_as_string(0), "12.50");
    assert_eq!(rows.column(3).as_primitive::<TimestampMicrosecondType>().value(0), 1_700_000_000_123_000);
    assert_eq!(rows.column(4).as_primitive::<Date32Type>().value(0), 19_675);
    assert_eq!(rows.column(5).as_string::<i32>().value(0), "a");
    assert_eq!(rows.column(6).as_primitive::<Int64Type>().value(0), 1, "the built-in field of the message");
}

const SMALL_V1: &str =
    r#"{"type":"record","name":"R","fields":[{"name":"id","type":"int"},{"name":"gone","type":"string"}]}"#;
const SMALL_V2: &str = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"int"}]}"#;
const SMALL_V3: &str = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"int"},{"name":"added","type":["null","string"],"default":null}]}"#;
const SMALL_WIDE: &str = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"long"}]}"#;
const SMALL_BAD: &str = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"boolean"}]}"#;

#[test]
fn schema_evolution_adds_drops_and_refuses() {
    let schemas = Schemas::new(&[(1, SMALL_V1), (2, SMALL_V2), (3, SMALL_V3), (4, SMALL_WIDE), (5, SMALL_BAD)]);
    let parse = |t: &str| AvroSchema::parse_str(t).unwrap();
    // The task started at version 2: `gone` was removed, `added` comes later.
    let m = RecordMapping::avro(&[], schemas.clone(), schemas.get(2), false, RecordOptions::default()).unwrap();
    let v1 = parse(SMALL_V1);
    let mut old = Record::new(&v1).unwrap();
    old.put("id", 1);
    old.put("gone", "x");
    let out = m.map(&messages(&[Some(wire(1, &v1, old.into()))])).unwrap();
    assert_eq!(out.rows.num_columns(), 1, "a removed field is left out");
    assert_eq!(out.rows.column(0).as_primitive::<Int32Type>().value(0), 1);

    let v3 = parse(SMALL_V3);
    let mut new = Record::new(&v3).unwrap();
    new.put("id", 2);
    new.put("added", Value::Union(1, Box::new(Value::String("y".into()))));
    let err = m.map(&messages(&[Some(wire(3, &v3, new.into()))])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.to_string().contains(r#"schema id 3 adds field "added""#), "{err}");
    // The next attempt starts from version 3 and has the column.
    let m3 = RecordMapping::avro(&[], schemas.clone(), schemas.get(3), false, RecordOptions::default()).unwrap();
    let names: Vec<String> = m3.output_schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, vec!["id", "added"]);

    let wide = parse(SMALL_WIDE);
    let mut w = Record::new(&wide).unwrap();
    w.put("id", 5i64);
    let err = m.map(&messages(&[Some(wire(4, &wide, w.into()))])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Source);
    assert!(err.to_string().contains(r#"field "id" is long but its column is Int32"#), "{err}");

    let bad = parse(SMALL_BAD);
    let mut b = Record::new(&bad).unwrap();
    b.put("id", true);
    let err = m.map(&messages(&[Some(wire(5, &bad, b.into()))])).unwrap_err();
    assert!(err.to_string().contains(r#"field "id" changed to an incompatible type: boolean"#), "{err}");
}

const ENVELOPE: &str = r#"{
  "type": "record", "name": "Envelope", "namespace": "db.public.items",
  "fields": [
    {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
        {"name": "id", "type": "int"},
        {"name": "doc", "type": ["null", "string"], "default": null},
        {"name": "price", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 8, "scale": 2}], "default": null}]}],
     "default": null},
    {"name": "after", "type": ["null", "Value"], "default": null},
    {"name": "op", "type": "string"},
    {"name": "ts_ms", "type": ["null", "long"], "default": null}
  ]
}"#;

fn envelope(schema: &AvroSchema, op: &str, before: Option<(i32, &str)>, after: Option<(i32, &str)>) -> Value {
    let value_schema = match schema {
        AvroSchema::Record(r) => match &r.fields[0].schema {
            AvroSchema::Union(u) => u.variants()[1].clone(),
            _ => unreachable!(),
        },
        _ => unreachable!(),
    };
    let image = |row: Option<(i32, &str)>| match row {
        None => Value::Union(0, Box::new(Value::Null)),
        Some((id, doc)) => {
            let mut r = Record::new(&value_schema).unwrap();
            r.put("id", id);
            r.put("doc", Value::Union(1, Box::new(Value::String(doc.into()))));
            r.put("price", Value::Union(1, Box::new(Value::Decimal(apache_avro::Decimal::from(vec![0x30, 0x39])))));
            Value::Union(1, Box::new(r.into()))
        }
    };
    let mut e = Record::new(schema).unwrap();
    e.put("before", image(before));
    e.put("after", image(after));
    e.put("op", op);
    e.put("ts_ms", Value::Union(1, Box::new(Value::Long(1))));
    e.into()
}

#[test]
fn debezium_avro_events_become_change_rows() {
    let schemas = Schemas::new(&[(1, ENVELOPE)]);
    let schema = AvroSchema::parse_str(ENVELOPE).unwrap();
    let m = RecordMapping::avro(&[], schemas.clone(), schemas.get(1), true, RecordOptions::default()).unwrap();
    let placeholder = "__debezium_unavailable_value";
    let input = messages(&[
        Some(wire(1, &schema, envelope(&schema, "r", None, Some((1, "one"))))),
        Some(wire(1, &schema, envelope(&schema, "u", Some((1, "one")), Some((1, placeholder))))),
        Some(wire(1, &schema, envelope(&schema, "d", Some((1, "one")), None))),
        None,
        Some(wire(1, &schema, envelope(&schema, "c", None, Some((2, "two"))))),
    ]);
    let out = m.map(&input).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let rows = &out.rows;
    let names: Vec<String> = rows.schema().fields().iter().map(|f| f.name().clone()).collect();
    assert_eq!(names, vec!["id", "doc", "price", OP_COLUMN, UNCHANGED_COLUMN]);
    assert_eq!(rows.column(0).as_primitive::<Int32Type>().values().to_vec(), vec![1, 1, 1, 2]);
    let docs: Vec<Option<&str>> = rows.column(1).as_string::<i32>().iter().collect();
    assert_eq!(docs, vec![Some("one"), None, Some("one"), Some("two")], "the placeholder never lands as text");
    assert_eq!(rows.column(2).as_primitive::<Decimal128Type>().value_as_string(0), "123.45");
    let ops: Vec<Option<&str>> = rows.column(3).as_string::<i32>().iter().collect();
    assert_eq!(ops, vec![Some("r"), Some("u"), Some("d"), Some("c")]);
    let unchanged = rows.column(4).as_list::<i32>();
    assert!(unchanged.is_null(0));
    assert_eq!(unchanged.value(1).as_string::<i32>().iter().flatten().collect::<Vec<_>>(), vec!["doc"]);
}

#[test]
fn debezium_json_with_and_without_the_embedded_schema() {
    let columns = [
        ColumnSpec::new("id", "$.id", "bigint"),
        ColumnSpec::new("doc", "$.doc", "string"),
        ColumnSpec::new("price", "$.price", "decimal(8,2)"),
        ColumnSpec::new("born", "$.born", "date"),
        ColumnSpec::new("seen", "$.seen", "timestamp"),
    ];
    let m = RecordMapping::debezium_json(&columns, RecordOptions::default()).unwrap();
    let schema = r#"{"type":"struct","fields":[
        {"field":"before","type":"struct","optional":true,"fields":[]},
        {"field":"after","type":"struct","optional":true,"fields":[
            {"field":"id","type":"int64"},
            {"field":"doc","type":"string","optional":true},
            {"field":"price","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2","connect.decimal.precision":"8"}},
            {"field":"born","type":"int32","name":"io.debezium.time.Date"},
            {"field":"seen","type":"int64","name":"io.debezium.time.MicroTimestamp"}]},
        {"field":"op","type":"string"}]}"#;
    let with_schema = format!(
        r#"{{"schema":{schema},"payload":{{"before":null,"after":{{"id":1,"doc":"a","price":"MDk=","born":19675,"seen":1700000000123456}},"op":"c","ts_ms":1}}}}"#
    );
    let plain = r#"{"before":{"id":1,"doc":"a","price":"123.45","born":"2023-11-14","seen":"2023-11-14T22:13:20.123456Z"},
        "after":{"id":1,"doc":"__debezium_unavailable_value","price":"1.5","born":"2023-11-14","seen":"2023-11-14T22:13:20Z"},"op":"u","ts_ms":2}"#;
    let delete = r#"{"before":{"id":1},"after":null,"op":"d"}"#;
    let input = messages(&[
        Some(with_schema.clone().into_bytes()),
        Some(plain.as_bytes().to_vec()),
        Some(delete.as_bytes().to_vec()),
        None,
        Some(br#"{"op":"x"}"#.to_vec()),
    ]);
    let out = m.map(&input).unwrap();
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].row, 4);
    assert!(out.rejected[0].reason.contains(r#"op "x""#), "{}", out.rejected[0].reason);
    let rows = &out.rows;
    assert_eq!(rows.num_rows(), 3);
    assert_eq!(rows.column(0).as_primitive::<Int64Type>().values().to_vec(), vec![1, 1, 1]);
    assert_eq!(rows.column(1).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("a"), None, None]);
    assert_eq!(rows.column(2).as_primitive::<Decimal128Type>().value_as_string(0), "123.45");
    assert_eq!(rows.column(2).as_primitive::<Decimal128Type>().value_as_string(1), "1.50");
    assert_eq!(rows.column(3).as_primitive::<Date32Type>().value(0), 19_675);
    assert_eq!(rows.column(4).as_primitive::<TimestampMicrosecondType>().value(0), 1_700_000_000_123_456);
    assert_eq!(rows.column(5).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("c"), Some("u"), Some("d")]);
    let unchanged = rows.column_by_name(UNCHANGED_COLUMN).unwrap().as_list::<i32>();
    assert_eq!(unchanged.value(1).as_string::<i32>().iter().flatten().collect::<Vec<_>>(), vec!["doc"]);
    assert!(unchanged.is_null(0) && unchanged.is_null(2));

    let derived = debezium_json_columns(with_schema.as_bytes()).unwrap();
    let derived: Vec<(String, String)> = derived.into_iter().map(|c| (c.name, c.ty)).collect();
    assert_eq!(
        derived,
        vec![
            ("id".into(), "bigint".into()),
            ("doc".into(), "string".into()),
            ("price".into(), "decimal(8,2)".into()),
            ("born".into(), "date".into()),
            ("seen".into(), "timestamp".into()),
        ]
    );
    assert_eq!(json_key_fields(br#"{"schema":{},"payload":{"id":1}}"#), Some(vec!["id".to_string()]));
    assert!(RecordMapping::debezium_json(&[], RecordOptions::default()).is_err());
}

const PROTO: &str = r#"syntax = "proto3";
package shop;
message Order {
  int64 id = 1;
  string name = 2;
  repeated int32 qty = 3;
  Inner inner = 4;
  message Inner { bool ok = 1; }
}"#;

#[test]
fn protobuf_records_land_in_typed_columns() {
    use protox::prost::Message;
    use protox::prost_reflect::{DynamicMessage, Value as P};
    let schema = RegisteredSchema {
        id: 7,
        schema_type: SchemaType::Protobuf,
        text: PROTO.into(),
        subject: Some("t-value".into()),
        version: Some(1),
        references: Vec::new(),
    };
    let schemas = Arc::new(Schemas(HashMap::from([(7, Arc::new(schema))])));
    let mapping = RecordMapping::protobuf(&[], schemas.clone(), schemas.get(7), RecordOptions::default()).unwrap();
    let out_schema = mapping.output_schema();
    let types: Vec<String> = out_schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
    assert_eq!(types[..2], ["id Int64", "name Utf8"]);
    assert!(types[2].starts_with("qty List(") && types[2].contains("Int32"), "{types:?}");
    assert!(types[3].starts_with("inner Struct(") && out_schema.field(3).is_nullable(), "{types:?}");

    let pool = protobuf::compile(PROTO, &[]).unwrap();
    let order = protobuf::message(&pool, &[0]).unwrap();
    let mut m = DynamicMessage::new(order.clone());
    m.set_field_by_name("id", P::I64(5));
    m.set_field_by_name("name", P::String("Zürich".into()));
    m.set_field_by_name("qty", P::List(vec![P::I32(1), P::I32(-2)]));
    let mut inner = DynamicMessage::new(protobuf::message(&pool, &[0, 0]).unwrap());
    inner.set_field_by_name("ok", P::Bool(true));
    m.set_field_by_name("inner", P::Message(inner));
    let framed = |indexes: &[u8], payload: &[u8]| {
        let mut out = vec![0, 0, 0, 0, 7];
        out.extend_from_slice(indexes);
        out.extend_from_slice(payload);
        out
    };
    let empty = DynamicMessage::new(order);
    let values = vec![
        Some(framed(&[0], &m.encode_to_vec())),
        // The same message with its indexes written out: count 1, index 0.
        Some(framed(&[2, 0], &empty.encode_to_vec())),
        Some(framed(&[0], &[0xff])),
        Some(framed(&[4], &[])),
    ];
    let out = mapping.map(&messages(&values)).unwrap();
    assert_eq!(out.rows.num_rows(), 2);
    let reasons: Vec<&str> = out.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[0].contains("not a valid Protobuf shop.Order of schema id 7"), "{reasons:?}");
    assert!(reasons[1].contains("message indexes"), "{reasons:?}");
    let ids = out.rows.column(0).as_primitive::<Int64Type>();
    assert_eq!((ids.value(0), ids.value(1)), (5, 0), "an absent proto3 scalar reads as its default");
    assert_eq!(out.rows.column(1).as_string::<i32>().value(0), "Zürich");
    let qty = out.rows.column(2).as_any().downcast_ref::<ListArray>().unwrap();
    assert_eq!(qty.value(0).as_primitive::<Int32Type>().values().to_vec(), vec![1, -2]);
    let inner = out.rows.column(3).as_any().downcast_ref::<StructArray>().unwrap();
    assert!(inner.is_valid(0) && inner.is_null(1), "an absent message is NULL");
    assert!(inner.column(0).as_boolean().value(0));

    // A task reading Avro refuses a Protobuf schema id, naming both.
    let avro = RecordMapping::avro(
        &[],
        schemas.clone(),
        &Schemas::new(&[(1, ORDER_V1)]).0[&1],
        false,
        RecordOptions::default(),
    )
    .unwrap();
    let e = avro.map(&messages(&[Some(framed(&[0], &m.encode_to_vec()))])).unwrap_err();
    assert!(e.to_string().contains("Protobuf schema; this task's format reads Avro"), "{e}");
}

#[test]
fn avro_schema_references_resolve() {
    let ship =
        r#"{"type": "record", "name": "Ship", "namespace": "shop", "fields": [{"name": "city", "type": "string"}]}"#;
    let order = r#"{"type": "record", "name": "Order", "namespace": "shop",
        "fields": [{"name": "id", "type": "long"}, {"name": "ship", "type": "shop.Ship"}]}"#;
    let schema = RegisteredSchema {
        id: 3,
        schema_type: SchemaType::Avro,
        text: order.into(),
        subject: Some("t-value".into()),
        version: Some(1),
        references: vec![kafka::SchemaReference { name: "shop.Ship".into(), text: ship.into() }],
    };
    let schemas = Arc::new(Schemas(HashMap::from([(3, Arc::new(schema))])));
    let mapping = RecordMapping::avro(&[], schemas.clone(), schemas.get(3), false, RecordOptions::default()).unwrap();
    let out_schema = mapping.output_schema();
    assert!(matches!(out_schema.field(1).data_type(), arrow::datatypes::DataType::Struct(f) if f[0].name() == "city"));
    // id 5 (zig-zag 10), then "Zug" (length zig-zag 6): the datum as the writer encodes it.
    let value = vec![0, 0, 0, 0, 3, 0x0a, 0x06, b'Z', b'u', b'g'];
    let out = mapping.map(&messages(&[Some(value)])).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected.iter().map(|r| &r.reason).collect::<Vec<_>>());
    assert_eq!(out.rows.column(0).as_primitive::<Int64Type>().value(0), 5);
    let ship = out.rows.column(1).as_any().downcast_ref::<StructArray>().unwrap();
    assert_eq!(ship.column(0).as_string::<i32>().value(0), "Zug");
}
