//! Computed columns over Kafka JSON messages: JSONPath expressions and typed casts, from the
//! source's Arrow batch to the target's Arrow batch.
//!
//! # Use as a library
//!
//! [`compile`] the column specs once, then [`map`](rtsync_core::ColumnMapping::map) each batch
//! of Kafka messages (the row shape of [`kafka::kafka_source_schema`], which
//! `rtsync-source-kafka` emits) into a batch of typed target rows; a message that does not fit
//! is listed in [`MappedBatch::rejected`] instead:
//!
//! ```
//! use std::sync::Arc;
//!
//! use rtsync_mapping::arrow::array::{
//!     AsArray, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
//! };
//! use rtsync_mapping::arrow::datatypes::{Decimal128Type, Int64Type};
//! use rtsync_mapping::{ColumnMapping, ColumnSpec, compile};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let values: Vec<Option<&[u8]>> = vec![Some(br#"{"id": 7, "amount": "12.50"}"#), Some(b"oops")];
//! let messages = RecordBatch::try_new(
//!     rtsync_mapping::kafka::kafka_source_schema(),
//!     vec![
//!         Arc::new(BinaryArray::from(vec![None::<&[u8]>; 2])), // key
//!         Arc::new(BinaryArray::from(values)),                // value
//!         Arc::new(TimestampMillisecondArray::from(vec![0, 1]).with_timezone("UTC")),
//!         Arc::new(Int32Array::from(vec![0, 0])), // partition
//!         Arc::new(Int64Array::from(vec![0, 1])), // offset
//!         Arc::new(StringArray::from(vec![None::<&str>; 2])), // headers
//!     ],
//! )?;
//! let mapping = compile(&[
//!     ColumnSpec::new("id", "$.id", "bigint"),
//!     ColumnSpec::new("amount", "$.amount", "decimal(10,2)"),
//! ])?;
//! let out = mapping.map(&messages)?;
//! assert_eq!(out.rows.num_rows(), 1);
//! assert_eq!(out.rows.column(0).as_primitive::<Int64Type>().value(0), 7);
//! assert_eq!(out.rows.column(1).as_primitive::<Decimal128Type>().value(0), 1250); // 12.50
//! assert_eq!(out.rejected[0].row, 1, "the second message is not JSON");
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! A task's `[[columns]]` ([`ColumnSpec`]) are compiled once by [`compile`] into a
//! [`KafkaJsonMapping`], which implements [`rtsync_core::ColumnMapping`]. Compilation refuses
//! anything that can be known wrong without data (names, types, JSONPath syntax), naming the
//! column, so a bad spec fails when it is loaded, not at the first message.
//!
//! **The hot path.** Each message's JSON is read once and serves every column of its row:
//!
//! * paths made only of names and indices (`$.id`, `$.items[0].sku`, `$['a b']`) share one
//!   trie and are extracted in a single validating pass over the message bytes, with no DOM
//!   (`src/json.rs` says why this is not sonic-rs' `get_many`);
//! * other paths (wildcards, filters, slices, `..`, negative indices) are parsed once by
//!   jsonpath-rust at compile time and evaluated on a tree that borrows the message and keeps
//!   each value's raw text (`src/node.rs`), built only when the mapping has such a path;
//! * values are cast from their raw text straight into per-column Arrow builders
//!   (`src/column.rs`, `src/cast.rs`); decimals and integers are read exactly from the digits,
//!   never through `f64`.
//!
//! **Errors.** A message whose value is not UTF-8, not JSON (anything after the value
//! included), nested deeper than [`MAX_DEPTH`], or holding a value a column cannot take, is
//! *rejected*: left out of the output and listed in [`rtsync_core::MappedBatch::rejected`] with
//! its raw bytes and a reason naming the column, its type, the path and the value (at most 80
//! characters of it), e.g. `column "amount" (decimal(18,2)) at $.amount: value "abc" is not a
//! decimal`. The task's error policy decides what happens next. A missing path and a JSON
//! `null` are NULL; a tombstone (no value) is NULL in every path column.
//!
//! **Casts.** `string`: strings unescaped, other values as their JSON text. `json`: the value's
//! JSON text (a string keeps its quotes). `boolean`: `true`/`false`, strings `"true"`/`"false"`
//! in any case. `int`/`bigint`: whole numbers in range (`1.0` and `1e3` are whole), strings
//! holding one. `double`: numbers, numeric strings (`"NaN"` and `"inf"` included; digits beyond
//! the range of a double are an error). `decimal(p,s)`: numbers and numeric strings, exactly;
//! more than `s` fraction digits are rounded half away from zero, more than `p-s` integer digits
//! are an error. `date`: `"YYYY-MM-DD"` or whole days since 1970-01-01. `timestamp`: RFC 3339
//! with an offset (converted to UTC), `YYYY-MM-DD HH:MM:SS[.f]` or with `T` and no offset
//! (UTC), or whole epoch milliseconds; digits past microseconds are truncated. A path that can
//! match several values gives `string` and `json` columns a JSON array of every match; other
//! types take exactly one match.
//!
//! **Built-in fields** (`key`, `value`, `timestamp`, `partition`, `offset`, `headers`) are
//! copied from the source columns: key and value must be UTF-8 and are cast as the content of a
//! string (a `json` column checks they are JSON); the message timestamp goes from milliseconds
//! to microseconds. With no columns configured the target gets every built-in field
//! ([`default_columns`]).

mod avro;
mod cast;
mod column;
mod expr;
mod json;
mod mapping;
mod node;
mod protobuf;
mod records;
mod spec;

pub use json::MAX_DEPTH;
pub use mapping::{KafkaJsonMapping, compile, default_columns};
pub use records::{RecordMapping, RecordOptions, avro_fields, debezium_json_columns, json_key_fields};
/// The `rtsync-core` types a user of this crate needs, so that a program can depend on this
/// crate alone.
pub use rtsync_core::{ColumnMapping, MappedBatch, Rejected, arrow, kafka};
pub use spec::{ColumnSpec, ColumnType, MAX_DECIMAL_PRECISION, TIMESTAMP_TZ, TYPE_NAMES};
