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
