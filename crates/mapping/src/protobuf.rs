//! Protobuf records as Avro values, so one path (typed columns, schema evolution, the JSON
//! rendering of computed columns) serves both registry formats.
//!
//! **Schemas.** The registry holds a `.proto` file's text; it is compiled in process (protox,
//! no `protoc`), with the `google/protobuf/*.proto` well-known files and the schemas the
//! registry lists as its references (by their import names) available to import. The
//! message a value holds is named by the message indexes of the Confluent wire header: the
//! first index picks a top-level message of the file, each further one a message nested in
//! the previous (`[0]`, the first message, when the header says nothing else).
//!
//! **Types.** Each message becomes an Avro record with its fields in declaration order,
//! typed without loss: `double`, `float`, `bool`, `string`, `bytes` as themselves; `int32`,
//! `sint32`, `sfixed32` → `int`; `int64`, `sint64`, `sfixed64`, `uint32`, `fixed32` → `long`;
//! `uint64`, `fixed64` → `decimal(20,0)`; enums → the value's name as a string (its number
//! when the schema does not know it); a nested message → a record (a recursive one lands as
//! JSON text past the nesting limit); `repeated` → an array; `map<K, V>` → a map whose keys
//! are the keys' text. `google.protobuf.Timestamp` → a timestamp (microseconds, UTC) and the
//! wrappers (`Int64Value`, `StringValue`, …) → their value. A field with presence (a message,
//! proto3 `optional`, a `oneof` member, proto2 `optional`) is nullable and NULL when absent;
//! a proto3 scalar without presence reads as its default when absent, as every protobuf
//! reader sees it.

use std::collections::{HashMap, HashSet};

use apache_avro::types::Value;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use protox::prost_reflect::{
    self as reflect, DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
};
use rtsync_core::kafka::SchemaReference;
use serde_json::json;

/// The name the registry's schema text is compiled under (one no import uses).
const SCHEMA_FILE: &str = "rtsync-registry-schema.proto";

/// Serves the registry's schema text as [`SCHEMA_FILE`], and its references by name.
struct RegistryText {
    text: String,
    references: Vec<SchemaReference>,
}

impl FileResolver for RegistryText {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == SCHEMA_FILE {
            return File::from_source(name, &self.text);
        }
        match self.references.iter().find(|r| r.name == name) {
            Some(r) => File::from_source(name, &r.text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compiles a `.proto` schema text with the schemas it references.
pub(crate) fn compile(text: &str, references: &[SchemaReference]) -> Result<DescriptorPool, String> {
    let mut files = ChainFileResolver::new();
    files.add(RegistryText { text: text.to_string(), references: references.to_vec() });
    files.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(files);
    match compiler.open_file(SCHEMA_FILE) {
        Ok(_) => Ok(compiler.descriptor_pool()),
        Err(e) if e.is_file_not_found() => Err(format!(
            "the .proto schema imports a file that is neither one of its registry references nor a google/protobuf file ({e})"
        )),
        Err(e) => Err(format!("not a valid .proto schema: {e}")),
    }
}

/// The message at `indexes` (see the module docs).
pub(crate) fn message(pool: &DescriptorPool, indexes: &[i32]) -> Result<MessageDescriptor, String> {
    let file = pool.get_file_by_name(SCHEMA_FILE).ok_or("the .proto schema did not compile to a file")?;
    let position = |i: i32| usize::try_from(i).map_err(|_| format!("message index {i} is negative"));
    let first = position(indexes.first().copied().unwrap_or(0))?;
    let mut found = file.messages().nth(first).ok_or_else(|| {
        format!("the .proto schema has no message at index {first} (it declares {})", file.messages().len())
    })?;
    for &i in indexes.iter().skip(1) {
        let at = position(i)?;
        let nested = found.child_messages().nth(at);
        found = nested.ok_or_else(|| format!("message {} has no nested message at index {at}", found.full_name()))?;
    }
    Ok(found)
}

/// The Avro schema (as its JSON) the records of `message` are read as.
pub(crate) fn avro_schema(message: &MessageDescriptor) -> serde_json::Value {
    record_schema(message, &mut HashSet::new())
}

fn record_schema(message: &MessageDescriptor, defined: &mut HashSet<String>) -> serde_json::Value {
    let name = message.full_name();
    if !defined.insert(name.to_string()) {
        // Defined already (a type used twice, or a recursive one): a reference.
        return json!(name);
    }
    let fields: Vec<serde_json::Value> =
        message.fields().map(|f| json!({ "name": f.name(), "type": field_schema(&f, defined) })).collect();
    json!({ "type": "record", "name": name, "fields": fields })
}

fn field_schema(field: &FieldDescriptor, defined: &mut HashSet<String>) -> serde_json::Value {
    if let Some(value_kind) = map_value_kind(field) {
        return json!({ "type": "map", "values": kind_schema(&value_kind, defined) });
    }
    let item = kind_schema(&field.kind(), defined);
    if field.is_list() {
        json!({ "type": "array", "items": item })
    } else if field.supports_presence() {
        json!(["null", item])
    } else {
        item
    }
}

fn kind_schema(kind: &Kind, defined: &mut HashSet<String>) -> serde_json::Value {
    match kind {
        Kind::Double => json!("double"),
        Kind::Float => json!("float"),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!("int"),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint32 | Kind::Fixed32 => json!("long"),
        Kind::Uint64 | Kind::Fixed64 => {
            json!({ "type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 0 })
        }
        Kind::Bool => json!("boolean"),
        Kind::String | Kind::Enum(_) => json!("string"),
        Kind::Bytes => json!("bytes"),
        Kind::Message(m) => match well_known(m) {
            Some(WellKnown::Timestamp) => json!({ "type": "long", "logicalType": "timestamp-micros" }),
            Some(WellKnown::Wrapper(inner)) => kind_schema(&inner, defined),
            None => record_schema(m, defined),
        },
    }
}

/// The value type of a map field; `None` for any other field.
fn map_value_kind(field: &FieldDescriptor) -> Option<Kind> {
    match field.kind() {
        Kind::Message(entry) if field.is_map() => Some(entry.map_entry_value_field().kind()),
        _ => None,
    }
}

/// Messages that land as a plain value rather than a record.
enum WellKnown {
    Timestamp,
    /// `google.protobuf.*Value`: the kind of its `value` field.
    Wrapper(Kind),
}

fn well_known(message: &MessageDescriptor) -> Option<WellKnown> {
    match message.full_name() {
        "google.protobuf.Timestamp" => Some(WellKnown::Timestamp),
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => message.get_field_by_name("value").map(|f| WellKnown::Wrapper(f.kind())),
        _ => None,
    }
}

/// How a field's type is named in `meta detail`: `int64`, `repeated string`,
/// `map<string, double>`, `shop.Ship`, `optional string`.
pub(crate) fn type_name(field: &FieldDescriptor) -> String {
    let kind_name = |kind: &Kind| match kind {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => e.full_name().to_string(),
        other => format!("{other:?}").to_lowercase(),
    };
    if let (Kind::Message(entry), true) = (field.kind(), field.is_map()) {
        return format!(
            "map<{}, {}>",
            kind_name(&entry.map_entry_key_field().kind()),
            kind_name(&entry.map_entry_value_field().kind())
        );
    }
    let name = kind_name(&field.kind());
    if field.is_list() {
        format!("repeated {name}")
    } else if field.supports_presence() && !matches!(field.kind(), Kind::Message(_)) {
        format!("optional {name}")
    } else {
        name
    }
}

/// A decoded message as the Avro record of [`avro_schema`].
pub(crate) fn to_avro(message: &DynamicMessage) -> Value {
    Value::Record(message.descriptor().fields().map(|f| (f.name().to_string(), field_value(message, &f))).collect())
}

fn field_value(message: &DynamicMessage, field: &FieldDescriptor) -> Value {
    let value = message.get_field(field);
    if let Some(value_kind) = map_value_kind(field) {
        let entries = match value.as_ref() {
            reflect::Value::Map(m) => m.iter().map(|(k, v)| (key_text(k), kind_value(&value_kind, v))).collect(),
            _ => HashMap::new(),
        };
        return Value::Map(entries);
    }
    if field.is_list() {
        let items = match value.as_ref() {
            reflect::Value::List(items) => items.iter().map(|v| kind_value(&field.kind(), v)).collect(),
            _ => Vec::new(),
        };
        return Value::Array(items);
    }
    if field.supports_presence() {
        return if message.has_field(field) {
            Value::Union(1, Box::new(kind_value(&field.kind(), &value)))
        } else {
            Value::Union(0, Box::new(Value::Null))
        };
    }
    kind_value(&field.kind(), &value)
}

fn key_text(key: &reflect::MapKey) -> String {
    match key {
        reflect::MapKey::Bool(b) => b.to_string(),
        reflect::MapKey::I32(i) => i.to_string(),
        reflect::MapKey::I64(i) => i.to_string(),
        reflect::MapKey::U32(u) => u.to_string(),
        reflect::MapKey::U64(u) => u.to_string(),
        reflect::MapKey::String(s) => s.clone(),
    }
}

fn kind_value(kind: &Kind, value: &reflect::Value) -> Value {
    use reflect::Value as P;
    match (kind, value) {
        (_, P::Bool(b)) => Value::Boolean(*b),
        (_, P::I32(i)) => Value::Int(*i),
        (_, P::I64(i)) => Value::Long(*i),
        (_, P::U32(u)) => Value::Long(i64::from(*u)),
        (_, P::U64(u)) => Value::Decimal(apache_avro::Decimal::from(unsigned_bytes(*u))),
        (_, P::F32(f)) => Value::Float(*f),
        (_, P::F64(f)) => Value::Double(*f),
        (_, P::String(s)) => Value::String(s.clone()),
        (_, P::Bytes(b)) => Value::Bytes(b.to_vec()),
        (Kind::Enum(e), P::EnumNumber(n)) => {
            Value::String(e.get_value(*n).map_or_else(|| n.to_string(), |v| v.name().to_string()))
        }
        (_, P::EnumNumber(n)) => Value::String(n.to_string()),
        (Kind::Message(m), P::Message(inner)) => match well_known(m) {
            Some(WellKnown::Timestamp) => {
                let part = |name: &str| inner.get_field_by_name(name).map(|v| number(&v)).unwrap_or(0);
                Value::TimestampMicros(part("seconds").saturating_mul(1_000_000).saturating_add(part("nanos") / 1000))
            }
            Some(WellKnown::Wrapper(value_kind)) => match inner.get_field_by_name("value") {
                Some(v) => kind_value(&value_kind, &v),
                None => Value::Null,
            },
            None => to_avro(inner),
        },
        (_, P::Message(inner)) => to_avro(inner),
        // Lists and maps are read by their field, never as a single value.
        (_, P::List(_) | P::Map(_)) => Value::Null,
    }
}

fn number(value: &reflect::Value) -> i64 {
    match value {
        reflect::Value::I64(i) => *i,
        reflect::Value::I32(i) => i64::from(*i),
        _ => 0,
    }
}

/// `u` as an Avro decimal's big-endian two's complement bytes (a leading zero keeps it positive).
fn unsigned_bytes(u: u64) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&u.to_be_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use protox::prost::Message;

    const SHOP: &str = r#"
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

message Order {
  int64 id = 1;
  uint64 big = 2;
  Status status = 3;
  optional string note = 4;
  Ship ship = 5;
  repeated string tags = 6;
  map<string, double> attrs = 7;
  google.protobuf.Timestamp placed = 8;
  google.protobuf.Int32Value qty = 9;
  bytes blob = 10;
  enum Status { NEW = 0; PAID = 1; }
  message Line { string sku = 1; }
}
message Ship { string city = 1; Ship next = 2; }
"#;

    fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
        crate::avro::unwrap_union(crate::avro::record_field(record, name).unwrap())
    }

    #[test]
    fn a_message_reads_as_the_avro_record_of_its_schema() {
        let pool = compile(SHOP, &[]).unwrap();
        let order = message(&pool, &[0]).unwrap();
        assert_eq!(order.full_name(), "shop.Order");
        assert_eq!(message(&pool, &[1]).unwrap().full_name(), "shop.Ship");
        // Nested indexes count map entries, which are nested types too (as Confluent's do).
        assert_eq!(message(&pool, &[0, 0]).unwrap().full_name(), "shop.Order.AttrsEntry");
        assert_eq!(message(&pool, &[0, 1]).unwrap().full_name(), "shop.Order.Line");
        assert!(message(&pool, &[2]).unwrap_err().contains("no message at index 2"));

        // The Avro schema parses, recursive `Ship` included, and names what protobuf does.
        let parsed = crate::avro::Parsed::parse(&avro_schema(&order).to_string()).unwrap();
        let record = parsed.record(&parsed.schema).unwrap();
        let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "big", "status", "note", "ship", "tags", "attrs", "placed", "qty", "blob"]);
        let types: Vec<String> = order.fields().map(|f| type_name(&f)).collect();
        assert_eq!(types[..5], ["int64", "uint64", "shop.Order.Status", "optional string", "shop.Ship"]);
        assert_eq!(types[5..7], ["repeated string", "map<string, double>"]);

        let mut m = DynamicMessage::new(order.clone());
        m.set_field_by_name("id", reflect::Value::I64(-7));
        m.set_field_by_name("big", reflect::Value::U64(u64::MAX));
        m.set_field_by_name("status", reflect::Value::EnumNumber(1));
        m.set_field_by_name("tags", reflect::Value::List(vec![reflect::Value::String("a".into())]));
        let mut ts = DynamicMessage::new(pool.get_message_by_name("google.protobuf.Timestamp").unwrap());
        ts.set_field_by_name("seconds", reflect::Value::I64(1_700_000_000));
        ts.set_field_by_name("nanos", reflect::Value::I32(123_456_789));
        m.set_field_by_name("placed", reflect::Value::Message(ts));
        let bytes = m.encode_to_vec();

        let decoded = DynamicMessage::decode(order, bytes.as_slice()).unwrap();
        let value = to_avro(&decoded);
        // Checked against the schema the same way the Avro path's values are.
        assert!(value.validate(&parsed.schema), "{value:?}");
        assert_eq!(field(&value, "id"), &Value::Long(-7));
        assert_eq!(field(&value, "status"), &Value::String("PAID".into()));
        assert_eq!(field(&value, "note"), &Value::Null, "absent optional");
        assert_eq!(field(&value, "ship"), &Value::Null, "absent message");
        assert_eq!(field(&value, "qty"), &Value::Null, "absent wrapper");
        assert_eq!(field(&value, "placed"), &Value::TimestampMicros(1_700_000_000_123_456));
        let Value::Decimal(big) = field(&value, "big") else { panic!("{value:?}") };
        let big = <Vec<u8>>::try_from(big).unwrap();
        assert_eq!(crate::avro::unscaled(&big), Some(i128::from(u64::MAX)));
        assert_eq!(field(&value, "blob"), &Value::Bytes(Vec::new()), "proto3 default");
    }

    #[test]
    fn an_unknown_import_and_a_bad_schema_are_named() {
        let importing = "syntax = \"proto3\"; import \"other.proto\"; message A { B b = 1; }";
        let e = compile(importing, &[]).unwrap_err();
        assert!(e.contains("other.proto") && e.contains("references"), "{e}");
        // The registry's reference of that name resolves it.
        let other = SchemaReference {
            name: "other.proto".into(),
            text: "syntax = \"proto3\"; message B { int32 y = 1; }".into(),
        };
        let pool = compile(importing, &[other]).unwrap();
        let a = message(&pool, &[0]).unwrap();
        assert_eq!(type_name(&a.get_field_by_name("b").unwrap()), "B");
        let e = compile("syntax = \"proto3\"; message A { int32 x = ; }", &[]).unwrap_err();
        assert!(e.contains("not a valid .proto schema"), "{e}");
    }
}
