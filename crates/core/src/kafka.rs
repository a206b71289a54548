//! The row schema every Kafka source emits: the message's built-in fields.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const KEY: &str = "key";
pub const VALUE: &str = "value";
pub const TIMESTAMP: &str = "timestamp";
pub const PARTITION: &str = "partition";
pub const OFFSET: &str = "offset";
pub const HEADERS: &str = "headers";

/// The built-in fields, in column order.
pub const BUILTIN_FIELDS: [&str; 6] = [KEY, VALUE, TIMESTAMP, PARTITION, OFFSET, HEADERS];

/// `key` and `value` are the raw bytes, `timestamp` the message timestamp in ms (UTC),
/// `headers` a JSON object text (`{"name":"value"}`, values as UTF-8 text) or NULL.
pub fn kafka_source_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(KEY, DataType::Binary, true),
        Field::new(VALUE, DataType::Binary, true),
        Field::new(TIMESTAMP, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
        Field::new(PARTITION, DataType::Int32, false),
        Field::new(OFFSET, DataType::Int64, false),
        Field::new(HEADERS, DataType::Utf8, true),
    ]))
}

/// The first byte of a message in the Confluent wire format (Schema Registry serializers).
pub const WIRE_MAGIC: u8 = 0;

/// Splits a message in the Confluent wire format into the schema id and the payload after it:
/// a zero magic byte, the id as 4 big-endian bytes, then the encoded record. For Protobuf the
/// payload starts with the message indexes ([`split_message_indexes`]).
pub fn split_wire(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [WIRE_MAGIC, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [WIRE_MAGIC, ..] => Err(format!("{} bytes is too short for the schema registry header", bytes.len())),
        [other, ..] => Err(format!(
            "first byte is {other:#04x}, not the schema registry magic byte 0 (was it written by a registry-aware serializer?)"
        )),
        [] => Err("the value is empty".to_string()),
    }
}

/// Reads the Protobuf message indexes that follow the schema id: a zig-zag varint count,
/// then that many zig-zag varint indexes (a count of 0 means the first message, `[0]`).
/// Returns the path of the message type in the `.proto` file and the payload after it.
pub fn split_message_indexes(payload: &[u8]) -> Result<(Vec<i32>, &[u8]), String> {
    let mut rest = payload;
    let mut next = || -> Result<i32, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, tail) = rest.split_first().ok_or("the message indexes end early")?;
            rest = tail;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                let zigzag = (value >> 1) as i64 ^ -((value & 1) as i64);
                return i32::try_from(zigzag).map_err(|_| format!("message index {zigzag} is out of range"));
            }
        }
        Err("a message index varint is longer than 10 bytes".to_string())
    };
    let count = next()?;
    if count < 0 {
        return Err(format!("the message index count is negative ({count})"));
    }
    let indexes = if count == 0 { vec![0] } else { (0..count).map(|_| next()).collect::<Result<_, _>>()? };
    Ok((indexes, rest))
}

/// The kind of schema a registry holds (`schemaType`; absent means Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

impl SchemaType {
    /// From the registry's `schemaType` field (`None`: Avro).
    pub fn from_registry(text: Option<&str>) -> Result<Self, String> {
        match text.map(str::to_ascii_uppercase).as_deref() {
            None | Some("AVRO") => Ok(SchemaType::Avro),
            Some("PROTOBUF") => Ok(SchemaType::Protobuf),
            Some("JSON") => Ok(SchemaType::Json),
            Some(other) => Err(format!("unknown schema type {other:?}")),
        }
    }
}

/// A schema another one imports (a registry schema reference), resolved to its text.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaReference {
    /// The name the importing schema uses for it (a `.proto` file's import path).
    pub name: String,
    /// Its schema text.
    pub text: String,
}

/// One schema as a Schema Registry serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredSchema {
    /// The global id messages carry in their header.
    pub id: u32,
    pub schema_type: SchemaType,
    /// The schema text: Avro JSON, `.proto` source or JSON Schema.
    pub text: String,
    /// The subject and version it was looked up under, when looked up that way.
    pub subject: Option<String>,
    pub version: Option<i32>,
    /// The schemas it references, resolved through the registry (transitively, each once).
    pub references: Vec<SchemaReference>,
}

/// Schemas by id, for the decoders of registry-encoded messages. Implementations cache: a
/// schema id never changes its schema, so each id is fetched once per process.
pub trait SchemaLookup: Send + Sync {
    /// The schema with this id. May block on the network the first time an id is seen (once
    /// per id); never called from two threads for one task at once.
    fn schema_by_id(&self, id: u32) -> crate::SyncResult<std::sync::Arc<RegisteredSchema>>;
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn splits_the_confluent_header() {
        assert_eq!(split_wire(&[0, 0, 0, 1, 2, 9, 9]).unwrap(), (258, &[9u8, 9][..]));
        assert!(split_wire(&[0, 0, 1]).unwrap_err().contains("too short"));
        assert!(split_wire(b"{\"a\":1}").unwrap_err().contains("0x7b"));
        assert_eq!(split_wire(&[]).unwrap_err(), "the value is empty");
    }

    #[test]
    fn reads_protobuf_message_indexes() {
        // count 0: the first message type.
        assert_eq!(split_message_indexes(&[0, 7]).unwrap(), (vec![0], &[7u8][..]));
        // count 2 (zig-zag 4), indexes 1 (2) and 0 (0).
        assert_eq!(split_message_indexes(&[4, 2, 0, 8]).unwrap(), (vec![1, 0], &[8u8][..]));
        // index 300: zig-zag 600 = 0xd8 0x04.
        assert_eq!(split_message_indexes(&[2, 0xd8, 0x04]).unwrap(), (vec![300], &[][..]));
        assert!(split_message_indexes(&[4, 2]).unwrap_err().contains("end early"));
        assert!(split_message_indexes(&[1]).unwrap_err().contains("negative"));
    }
}
