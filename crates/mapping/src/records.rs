//! Registry-encoded records and Debezium change events to target rows.
//!
//! [`RecordMapping`] serves the formats other than plain JSON:
//!
//! * **`avro`**: each value is in the Confluent wire format (magic byte, schema id, Avro
//!   datum). The schema of each id comes from the Schema Registry ([`SchemaLookup`], cached
//!   per id) and the datum is decoded with it, the writer's schema.
//! * **`protobuf`**: the same header, then the message indexes and a Protobuf message of the
//!   registry's `.proto` schema; the message is read as the Avro record its type maps to
//!   (see `protobuf.rs`), and from there on it is an Avro record like any other.
//! * **`debezium-avro`**: the same, the record being Debezium's envelope (`before`, `after`,
//!   `op`, `source`, `ts_ms`); the row is the `after` image (the `before` image, or the
//!   message key, for a delete), tagged with its operation for the upsert sink.
//! * **`debezium-json`**: Debezium's envelope in JSON, with the embedded schema
//!   (`{"schema": …, "payload": …}`) or without it. With the schema, Connect's logical types
//!   are rendered as the text the column types read (a `Decimal` from its base64 bytes and
//!   scale to exact digits, `Date` days to `YYYY-MM-DD`, `Timestamp`/`MicroTimestamp`/
//!   `NanoTimestamp` to RFC 3339 in UTC).
//!
//! **Columns.** With no `[[columns]]`, an Avro task's columns are the fields of the record
//! (of the `after` image for Debezium) in the schema the registry held when the task started,
//! typed losslessly (see `avro.rs`), and each message's fields land in them by name, straight
//! from the decoded values. Configured columns are JSONPath expressions (and built-in fields)
//! evaluated over the record rendered as JSON, with the casts of the JSON format: the one
//! place where a message goes through JSON text. Debezium JSON always uses configured
//! columns (the control plane derives them from the embedded schema when there are none).
//!
//! **Schema evolution** (typed Avro columns). A message written with another schema version
//! is decoded with that version and matched by field name: a field the task's columns lack,
//! in a schema newer than the one the task started with, is an added field: the batch fails
//! with a transient error and the next attempt, starting from the registry's latest schema,
//! adds its column (a field that only an older version has was removed since, and is left
//! out). A field whose type the column holds (equal, int into bigint, float into double) is
//! read; a field whose type is wider than its column (int → long, float → double) stops the
//! task with a message naming the column, since the Delta column would have to widen; an
//! unrelated type stops it as incompatible.
//!
//! **Change events.** Debezium's `op` becomes the row's [`OP_COLUMN`] (`c`, `u`, `d`, `r`,
//! `t`); a tombstone (a delete's follow-up with no value) and a `m` (message) event carry no
//! row and are skipped. A value equal to the unavailable-value placeholder
//! (`__debezium_unavailable_value` by default: a TOASTed column the update did not change)
//! lands as NULL and is named in [`UNCHANGED_COLUMN`], so the sink keeps the stored value. A
//! key change arrives from Debezium as a delete of the old key and a create of the new one and
//! is applied as such.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apache_avro::types::Value;
use arrow::array::{Array, ArrayRef, BinaryArray, BinaryBuilder, ListBuilder, StringBuilder, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use base64::Engine;
use protox::prost_reflect::{DynamicMessage, MessageDescriptor};
use rtsync_core::kafka::{self, RegisteredSchema, SchemaLookup, SchemaType, split_message_indexes, split_wire};
use rtsync_core::{
    ColumnMapping, ErrorKind, MappedBatch, OP_COLUMN, Op, Rejected, SyncError, SyncResult, UNCHANGED_COLUMN,
};

use crate::avro::{self, Parsed};
use crate::expr::{Expr, Step};
use crate::mapping::{KafkaJsonMapping, compile};
use crate::protobuf;
use crate::spec::ColumnSpec;

/// What a [`RecordMapping`] needs besides the columns.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// Fields landing as JSON text instead of structs, lists and maps (`*`: all of them).
    pub json_fields: Vec<String>,
    /// Debezium's placeholder for a value the event does not carry.
    pub unavailable_value: String,
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self { json_fields: Vec::new(), unavailable_value: "__debezium_unavailable_value".to_string() }
    }
}

/// Which part of a decoded message is the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The whole record, appended.
    Record,
    /// A Debezium envelope: the `after` (or `before`) image, with its operation.
    Debezium,
}

/// How values are encoded.
enum Encoding {
    /// Confluent wire format + Avro or Protobuf (`kind`); `latest` is the schema id the
    /// columns were derived from.
    Registry {
        registry: Arc<dyn SchemaLookup>,
        latest: u32,
        kind: SchemaType,
    },
    Json,
}

/// How rows become columns.
enum Columns {
    /// The record's fields, typed from the Avro schema.
    Typed(Vec<Field>),
    /// Configured columns over the record's JSON text; `by_field` names the column a
    /// top-level field lands in (`$.f` or `$['f']`), for the unchanged-value list.
    Computed { json: KafkaJsonMapping, by_field: HashMap<String, String> },
}

/// A decoder for registry-encoded values and change events; see the module docs.
pub struct RecordMapping {
    encoding: Encoding,
    shape: Shape,
    columns: Columns,
    schema: SchemaRef,
    options: RecordOptions,
    /// Writer schemas by id (and Protobuf message indexes), with how their fields land in
    /// the columns.
    writers: Mutex<HashMap<(u32, Vec<i32>), Arc<Writer>>>,
}

impl std::fmt::Debug for RecordMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordMapping")
            .field("shape", &self.shape)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// One writer schema, parsed, with the column of each field of its row record.
struct Writer {
    /// The Avro schema (for Protobuf: the one its message maps to).
    parsed: Parsed,
    /// Protobuf: the message type values are decoded as.
    message: Option<MessageDescriptor>,
    /// Per field of the row record (in writer order): the column it lands in.
    slots: Vec<Option<usize>>,
    /// Why this writer cannot be read, found when it was first seen (reported per batch).
    problem: Option<(ErrorKind, String)>,
}

/// One message, decoded.
struct Decoded {
    /// The input row.
    row: usize,
    op: Option<Op>,
    image: Image,
    /// Columns whose value the event did not carry.
    unchanged: Vec<String>,
}

enum Image {
    /// The decoded datum and which part of it is the row (`None`: no image, e.g. a truncate).
    Avro { writer: Arc<Writer>, datum: Value, part: Option<&'static str> },
    /// The row as JSON text (`None`: no image).
    Json(Option<String>),
}

/// The fields a registry schema's records land as: `(column, source type)` per field of the
/// record (of the `after` image when `debezium`; of the first message of a `.proto`
/// schema). For `meta detail` and for the columns. Avro and Protobuf schemas alike.
pub fn avro_fields(
    schema: &RegisteredSchema,
    debezium: bool,
    options: &RecordOptions,
) -> SyncResult<Vec<(Field, String)>> {
    let (parsed, message) = parse_schema(schema, schema.schema_type, &[])?;
    let record = row_record(&parsed, debezium).map_err(|e| schema_error(schema, &e))?;
    Ok(record
        .fields
        .iter()
        .map(|f| {
            let json = avro::as_json(&options.json_fields, &f.name);
            let source_type = match message.as_ref().and_then(|m| m.get_field_by_name(&f.name)) {
                Some(field) => protobuf::type_name(&field),
                None => avro::type_name(parsed.resolve(&f.schema)),
            };
            (avro::arrow_field(&parsed, &f.name, &f.schema, json), source_type)
        })
        .collect())
}

/// A registry schema of the type `kind` parsed, with its Protobuf message at `indexes`.
fn parse_schema(
    schema: &RegisteredSchema,
    kind: SchemaType,
    indexes: &[i32],
) -> SyncResult<(Parsed, Option<MessageDescriptor>)> {
    if schema.schema_type != kind {
        return Err(SyncError::config(format!(
            "schema id {} is a {:?} schema; this task's format reads {kind:?}",
            schema.id, schema.schema_type
        )));
    }
    match kind {
        SchemaType::Avro => {
            let references: Vec<&str> = schema.references.iter().map(|r| r.text.as_str()).collect();
            Ok((Parsed::parse_with(&schema.text, &references).map_err(|e| schema_error(schema, &e))?, None))
        }
        SchemaType::Protobuf => {
            let pool = protobuf::compile(&schema.text, &schema.references).map_err(|e| schema_error(schema, &e))?;
            let message = protobuf::message(&pool, indexes).map_err(|e| schema_error(schema, &e))?;
            let parsed = Parsed::parse(&protobuf::avro_schema(&message).to_string())
                .map_err(|e| schema_error(schema, &format!("message {}: {e}", message.full_name())))?;
            Ok((parsed, Some(message)))
        }
        SchemaType::Json => Err(schema_error(schema, "JSON Schema registry values are not decoded (use format json)")),
    }
}

fn problem_of(e: SyncError) -> (ErrorKind, String) {
    (e.kind(), e.context().to_string())
}

fn schema_error(schema: &RegisteredSchema, problem: &str) -> SyncError {
    let under = match (&schema.subject, schema.version) {
        (Some(s), Some(v)) => format!(" (subject {s:?} version {v})"),
        _ => String::new(),
    };
    SyncError::source_err(format!("schema id {}{under}: {problem}", schema.id))
}

/// The record a row comes from: the top record, or the `after` image's record.
fn row_record(parsed: &Parsed, debezium: bool) -> Result<&apache_avro::schema::RecordSchema, String> {
    let top = parsed.record(&parsed.schema)?;
    if !debezium {
        return Ok(top);
    }
    let after = top
        .fields
        .iter()
        .find(|f| f.name == "after")
        .ok_or_else(|| "is not a Debezium envelope: the record has no `after` field".to_string())?;
    parsed.record(&after.schema).map_err(|e| format!("its `after` field is {e}"))
}

impl RecordMapping {
    /// An `avro` (`debezium` false) or `debezium-avro` mapping. `latest` is the registry's
    /// current schema of the topic's values: with no `columns`, its fields are the columns.
    pub fn avro(
        columns: &[ColumnSpec],
        registry: Arc<dyn SchemaLookup>,
        latest: &RegisteredSchema,
        debezium: bool,
        options: RecordOptions,
    ) -> SyncResult<Self> {
        let shape = if debezium { Shape::Debezium } else { Shape::Record };
        let columns = if columns.is_empty() {
            Columns::Typed(avro_fields(latest, debezium, &options)?.into_iter().map(|(f, _)| f).collect())
        } else {
            computed(columns)?
        };
        Ok(Self::new(
            Encoding::Registry { registry, latest: latest.id, kind: SchemaType::Avro },
            shape,
            columns,
            options,
        ))
    }

    /// A `protobuf` mapping. `latest` is the registry's current schema of the topic's
    /// values: with no `columns`, the fields of its first message are the columns.
    pub fn protobuf(
        columns: &[ColumnSpec],
        registry: Arc<dyn SchemaLookup>,
        latest: &RegisteredSchema,
        options: RecordOptions,
    ) -> SyncResult<Self> {
        let columns = if columns.is_empty() {
            Columns::Typed(avro_fields(latest, false, &options)?.into_iter().map(|(f, _)| f).collect())
        } else {
            computed(columns)?
        };
        let encoding = Encoding::Registry { registry, latest: latest.id, kind: SchemaType::Protobuf };
        Ok(Self::new(encoding, Shape::Record, columns, options))
    }

    /// A `debezium-json` mapping: `columns` over the row images (required).
    pub fn debezium_json(columns: &[ColumnSpec], options: RecordOptions) -> SyncResult<Self> {
        if columns.is_empty() {
            return Err(SyncError::config(
                "columns: a debezium-json task needs its columns (`rtsync meta detail` lists the fields of the events' after image)",
            ));
        }
        Ok(Self::new(Encoding::Json, Shape::Debezium, computed(columns)?, options))
    }

    fn new(encoding: Encoding, shape: Shape, columns: Columns, options: RecordOptions) -> Self {
        let mut fields: Vec<Field> = match &columns {
            Columns::Typed(fields) => fields.clone(),
            Columns::Computed { json, .. } => {
                json.output_schema().fields().iter().map(|f| f.as_ref().clone()).collect()
            }
        };
        if shape == Shape::Debezium {
            fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
        }
        Self {
            encoding,
            shape,
            columns,
            schema: Arc::new(Schema::new(fields)),
            options,
            writers: Mutex::new(HashMap::new()),
        }
    }

    /// The names of the data columns (without the operation column).
    pub fn column_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).filter(|n| n != OP_COLUMN).collect()
    }

    fn writer(
        &self,
        registry: &dyn SchemaLookup,
        latest: u32,
        kind: SchemaType,
        id: u32,
        indexes: Vec<i32>,
    ) -> SyncResult<Arc<Writer>> {
        let key = (id, indexes);
        if let Some(w) = self.writers.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(w);
        }
        let schema = registry.schema_by_id(id)?;
        let (parsed, message) = parse_schema(&schema, kind, &key.1)?;
        let (slots, problem) = match &self.columns {
            Columns::Typed(columns) => self.plan(&schema, &parsed, columns, latest),
            Columns::Computed { .. } => (Vec::new(), None),
        };
        let writer = Arc::new(Writer { parsed, message, slots, problem });
        if let Ok(mut m) = self.writers.lock() {
            m.insert(key, writer.clone());
        }
        Ok(writer)
    }

    /// Where each field of a writer's row record lands, or why it cannot.
    fn plan(
        &self,
        schema: &RegisteredSchema,
        parsed: &Parsed,
        columns: &[Field],
        latest: u32,
    ) -> (Vec<Option<usize>>, Option<(ErrorKind, String)>) {
        let record = match row_record(parsed, self.shape == Shape::Debezium) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Some(problem_of(schema_error(schema, &e)))),
        };
        let mut slots = Vec::with_capacity(record.fields.len());
        let mut problem = None;
        for f in &record.fields {
            let Some(at) = columns.iter().position(|c| c.name() == &f.name) else {
                if schema.id > latest && problem.is_none() {
                    problem = Some((
                        ErrorKind::Transient,
                        format!(
                            "schema id {} adds field {:?}, newer than schema id {latest} the task started with: the next attempt adds its column",
                            schema.id, f.name
                        ),
                    ));
                }
                slots.push(None);
                continue;
            };
            let column = &columns[at];
            let json = avro::as_json(&self.options.json_fields, &f.name);
            let written = avro::arrow_field(parsed, &f.name, &f.schema, json);
            match avro::fits(column.data_type(), written.data_type()) {
                Ok(true) => {}
                Ok(false) => {
                    problem.get_or_insert_with(|| {
                        problem_of(schema_error(
                            schema,
                            &format!(
                                "field {:?} is {} but its column is {}: the column would have to widen to {}, which rtsync does not do to a Delta table; land the new type in a new table or a new field",
                                f.name,
                                avro::type_name(parsed.resolve(&f.schema)),
                                column.data_type(),
                                written.data_type()
                            ),
                        ))
                    });
                }
                Err(()) => {
                    problem.get_or_insert_with(|| {
                        problem_of(schema_error(
                            schema,
                            &format!(
                                "field {:?} changed to an incompatible type: {} where its column is {}",
                                f.name,
                                avro::type_name(parsed.resolve(&f.schema)),
                                column.data_type()
                            ),
                        ))
                    });
                }
            }
            slots.push(Some(at));
        }
        (slots, problem)
    }

    /// Decodes row `row`: `Ok(None)` for a message that carries no row (tombstone, Debezium
    /// message event), `Err` (a reason) to reject it.
    fn decode(
        &self,
        row: usize,
        value: Option<&[u8]>,
        key: Option<&[u8]>,
    ) -> SyncResult<Result<Option<Decoded>, String>> {
        let Some(bytes) = value else {
            return Ok(Ok(None));
        };
        match &self.encoding {
            Encoding::Registry { registry, latest, kind } => {
                let (id, payload) = match split_wire(bytes) {
                    Ok(split) => split,
                    Err(e) => return Ok(Err(format!("value is not in the schema registry wire format: {e}"))),
                };
                let (indexes, mut payload) = if *kind == SchemaType::Protobuf {
                    match split_message_indexes(payload) {
                        Ok(split) => split,
                        Err(e) => return Ok(Err(format!("value has no valid Protobuf message indexes: {e}"))),
                    }
                } else {
                    (Vec::new(), payload)
                };
                let writer = self.writer(registry.as_ref(), *latest, *kind, id, indexes)?;
                if let Some((kind, problem)) = &writer.problem {
                    return Err(SyncError::new(*kind, problem.clone()));
                }
                let datum = match &writer.message {
                    Some(message) => match DynamicMessage::decode(message.clone(), payload) {
                        Ok(m) => protobuf::to_avro(&m),
                        Err(e) => {
                            return Ok(Err(format!(
                                "value is not a valid Protobuf {} of schema id {id}: {e}",
                                message.full_name()
                            )));
                        }
                    },
                    None => match writer.parsed.decode(&mut payload) {
                        Ok(d) => d,
                        Err(e) => return Ok(Err(format!("value is not a valid Avro datum of schema id {id}: {e}"))),
                    },
                };
                if self.shape == Shape::Record {
                    return Ok(Ok(Some(Decoded {
                        row,
                        op: None,
                        image: Image::Avro { writer, datum, part: Some("") },
                        unchanged: Vec::new(),
                    })));
                }
                let op = match avro::record_field(&datum, "op").map(avro::unwrap_union) {
                    Some(Value::String(code)) => code.clone(),
                    _ => return Ok(Err("the Debezium event has no `op` string".to_string())),
                };
                let op = match change_op(&op) {
                    Ok(Some(op)) => op,
                    Ok(None) => return Ok(Ok(None)),
                    Err(reason) => return Ok(Err(reason)),
                };
                let part = match op {
                    Op::Truncate => None,
                    Op::Delete => Some("before"),
                    _ => Some("after"),
                };
                if let Some(p) = part
                    && avro::record_field(&datum, p).is_none_or(|v| matches!(avro::unwrap_union(v), Value::Null))
                {
                    return Ok(Err(format!("the Debezium {} event has no {p} image", op.code())));
                }
                Ok(Ok(Some(Decoded {
                    row,
                    op: Some(op),
                    image: Image::Avro { writer, datum, part },
                    unchanged: Vec::new(),
                })))
            }
            Encoding::Json => Ok(self.decode_json(row, bytes, key)),
        }
    }

    /// A Debezium JSON event: its operation and its row image as JSON text.
    fn decode_json(&self, row: usize, bytes: &[u8], key: Option<&[u8]>) -> Result<Option<Decoded>, String> {
        let event: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("value is not valid JSON: {e}"))?;
        let (payload, schema) = unwrap_payload(&event);
        let Some(payload) = payload.as_object() else {
            return if payload.is_null() {
                Ok(None)
            } else {
                Err("the Debezium event is not a JSON object".to_string())
            };
        };
        let code = payload.get("op").and_then(|o| o.as_str()).ok_or("the Debezium event has no `op` string")?;
        let Some(op) = change_op(code)? else {
            return Ok(None);
        };
        let part = match op {
            Op::Truncate => {
                return Ok(Some(Decoded { row, op: Some(op), image: Image::Json(None), unchanged: Vec::new() }));
            }
            Op::Delete => "before",
            _ => "after",
        };
        let field_schema = schema.and_then(|s| envelope_field(s, part));
        let mut image = match payload.get(part) {
            Some(v) if !v.is_null() => v.clone(),
            // A delete without its before image: the key names the row.
            _ if op == Op::Delete => match key.map(serde_json::from_slice::<serde_json::Value>) {
                Some(Ok(k)) => unwrap_payload(&k).0.clone(),
                _ => return Err("the Debezium delete has neither a before image nor a JSON key".to_string()),
            },
            _ => return Err(format!("the Debezium {code} event has no {part} image")),
        };
        if let Some(s) = field_schema {
            connect_logical(&mut image, s);
        }
        let unchanged = self.blank_unavailable(&mut image);
        Ok(Some(Decoded { row, op: Some(op), image: Image::Json(Some(image.to_string())), unchanged }))
    }

    /// Sets the top-level fields holding the unavailable-value placeholder to null; returns
    /// the columns they land in.
    fn blank_unavailable(&self, image: &mut serde_json::Value) -> Vec<String> {
        let mut unchanged = Vec::new();
        if let (Some(fields), Columns::Computed { by_field, .. }) = (image.as_object_mut(), &self.columns) {
            for (name, v) in fields.iter_mut() {
                if v.as_str() == Some(self.options.unavailable_value.as_str()) {
                    *v = serde_json::Value::Null;
                    if let Some(column) = by_field.get(name) {
                        unchanged.push(column.clone());
                    }
                }
            }
        }
        unchanged
    }
}

/// Debezium's operation code; `None` for events that carry no row (`m`, a logical message).
fn change_op(code: &str) -> Result<Option<Op>, String> {
    match code {
        "m" => Ok(None),
        other => Op::from_code(other)
            .map(Some)
            .ok_or_else(|| format!("the Debezium event's op {other:?} is not one of c, u, d, r, t, m")),
    }
}

/// A JSON converter message with the embedded schema is `{"schema": …, "payload": …}`.
fn unwrap_payload(event: &serde_json::Value) -> (&serde_json::Value, Option<&serde_json::Value>) {
    match event.as_object() {
        Some(o) if o.len() == 2 && o.contains_key("schema") && o.contains_key("payload") => {
            (&o["payload"], o.get("schema"))
        }
        _ => (event, None),
    }
}

/// The Connect schema of the envelope's field `name`.
fn envelope_field<'s>(schema: &'s serde_json::Value, name: &str) -> Option<&'s serde_json::Value> {
    schema.get("fields")?.as_array()?.iter().find(|f| f.get("field").and_then(|n| n.as_str()) == Some(name))
}

/// Renders Connect's logical types of a struct's fields as the text the column casts read.
fn connect_logical(value: &mut serde_json::Value, schema: &serde_json::Value) {
    let (Some(fields), Some(object)) = (schema.get("fields").and_then(|f| f.as_array()), value.as_object_mut()) else {
        return;
    };
    for field in fields {
        let Some(name) = field.get("field").and_then(|n| n.as_str()) else { continue };
        let Some(v) = object.get_mut(name) else { continue };
        if v.is_null() {
            continue;
        }
        let logical = field.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let rendered = match logical {
            "org.apache.kafka.connect.data.Decimal" => {
                let scale = field
                    .get("parameters")
                    .and_then(|p| p.get("scale"))
                    .and_then(|s| s.as_str().and_then(|s| s.parse().ok()).or_else(|| s.as_u64()))
                    .unwrap_or(0) as usize;
                v.as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|bytes| decimal_string(&bytes, scale))
            }
            "io.debezium.data.VariableScaleDecimal" => {
                let scale = v.get("scale").and_then(|s| s.as_u64()).unwrap_or(0) as usize;
                v.get("value")
                    .and_then(|b| b.as_str())
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|bytes| decimal_string(&bytes, scale))
            }
            "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => v
                .as_i64()
                .and_then(|d| chrono::NaiveDate::from_num_days_from_ce_opt(i32::try_from(d + 719_163).ok()?))
                .map(|d| d.format("%Y-%m-%d").to_string()),
            "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
                v.as_i64().and_then(|ms| micros_text(ms.checked_mul(1000)?))
            }
            "io.debezium.time.MicroTimestamp" => v.as_i64().and_then(micros_text),
            "io.debezium.time.NanoTimestamp" => v.as_i64().and_then(|ns| micros_text(ns.div_euclid(1000))),
            _ => None,
        };
        if let Some(text) = rendered {
            *v = serde_json::Value::String(text);
        } else if field.get("type").and_then(|t| t.as_str()) == Some("struct") {
            connect_logical(v, field);
        }
    }
}

fn decimal_string(bytes: &[u8], scale: usize) -> Option<String> {
    let mut out = String::new();
    avro::decimal_text(&mut out, avro::unscaled(bytes)?, scale);
    Some(out)
}

fn micros_text(micros: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(micros).map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// Configured columns, compiled for the record's JSON text.
fn computed(columns: &[ColumnSpec]) -> SyncResult<Columns> {
    let json = compile(columns)?;
    let by_field = columns
        .iter()
        .filter_map(|c| match Expr::parse(&c.expr) {
            Ok(Expr::Simple(steps)) => match steps.as_slice() {
                [Step::Key(field)] => Some((field.clone(), c.name.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect();
    Ok(Columns::Computed { json, by_field })
}

impl ColumnMapping for RecordMapping {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn input_schema(&self) -> Option<SchemaRef> {
        Some(kafka::kafka_source_schema())
    }

    fn map(&self, input: &RecordBatch) -> SyncResult<MappedBatch> {
        let values = binary_column(input, kafka::VALUE)?;
        let keys = binary_column(input, kafka::KEY)?;
        let mut rejected = Vec::new();
        let mut decoded = Vec::with_capacity(input.num_rows());
        for row in 0..input.num_rows() {
            let value = values.is_valid(row).then(|| values.value(row));
            let key = keys.is_valid(row).then(|| keys.value(row));
            match self.decode(row, value, key)? {
                Ok(Some(d)) => decoded.push(d),
                Ok(None) => {}
                Err(reason) => rejected.push(Rejected { row, reason, raw: value.map(<[u8]>::to_vec) }),
            }
        }
        let (mut arrays, kept) = match &self.columns {
            Columns::Typed(fields) => (self.typed(fields, &mut decoded)?, decoded),
            Columns::Computed { json, .. } => self.computed_rows(json, input, decoded, &mut rejected)?,
        };
        rejected.sort_by_key(|r| r.row);
        let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        if self.shape == Shape::Debezium {
            let mut ops = StringBuilder::with_capacity(kept.len(), kept.len());
            for d in &kept {
                ops.append_value(d.op.map_or("c", Op::code));
            }
            // The op column is last in the schema.
            arrays.push(Arc::new(ops.finish()));
            if kept.iter().any(|d| !d.unchanged.is_empty()) {
                let mut list = ListBuilder::new(StringBuilder::new());
                for d in &kept {
                    if d.unchanged.is_empty() {
                        list.append_null();
                    } else {
                        for name in &d.unchanged {
                            list.values().append_value(name);
                        }
                        list.append(true);
                    }
                }
                let array = list.finish();
                fields.push(Field::new(UNCHANGED_COLUMN, array.data_type().clone(), true));
                arrays.push(Arc::new(array));
            }
        }
        let rows = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        Ok(MappedBatch { rows, rejected })
    }
}

impl RecordMapping {
    /// Typed columns straight from the decoded values.
    fn typed(&self, columns: &[Field], decoded: &mut [Decoded]) -> SyncResult<Vec<ArrayRef>> {
        let n = decoded.len();
        let mut cells: Vec<Vec<Option<&Value>>> = vec![vec![None; n]; columns.len()];
        let placeholder = self.options.unavailable_value.as_str();
        let mut unchanged: Vec<Vec<String>> = vec![Vec::new(); n];
        for (i, d) in decoded.iter().enumerate() {
            let Image::Avro { writer, datum, part } = &d.image else { continue };
            let image = match part {
                None => continue,
                Some("") => datum,
                Some(p) => match avro::record_field(datum, p) {
                    Some(v) => avro::unwrap_union(v),
                    None => continue,
                },
            };
            let Value::Record(items) = image else { continue };
            for ((_, v), slot) in items.iter().zip(&writer.slots) {
                let Some(c) = slot else { continue };
                let unavailable = self.shape == Shape::Debezium
                    && match avro::unwrap_union(v) {
                        Value::String(s) => s == placeholder,
                        Value::Bytes(b) => b == placeholder.as_bytes(),
                        _ => false,
                    };
                if unavailable {
                    unchanged[i].push(columns[*c].name().clone());
                } else {
                    cells[*c][i] = Some(v);
                }
            }
        }
        let arrays = columns
            .iter()
            .zip(&cells)
            .map(|(f, values)| {
                avro::build(f.data_type(), values).map_err(|e| {
                    SyncError::new(ErrorKind::Data, format!("column {:?} ({}): {e}", f.name(), f.data_type()))
                })
            })
            .collect::<SyncResult<Vec<_>>>()?;
        drop(cells);
        for (d, names) in decoded.iter_mut().zip(unchanged) {
            d.unchanged = names;
        }
        Ok(arrays)
    }

    /// Configured columns: the images as JSON text through the JSON mapping, built-in fields
    /// from the message. Returns the arrays and the decoded rows that made it.
    fn computed_rows(
        &self,
        json: &KafkaJsonMapping,
        input: &RecordBatch,
        mut decoded: Vec<Decoded>,
        rejected: &mut Vec<Rejected>,
    ) -> SyncResult<(Vec<ArrayRef>, Vec<Decoded>)> {
        let mut texts = BinaryBuilder::new();
        let mut text = String::new();
        for d in &mut decoded {
            match &d.image {
                Image::Json(Some(t)) => texts.append_value(t),
                Image::Json(None) | Image::Avro { part: None, .. } => texts.append_null(),
                Image::Avro { writer, datum, part: Some(p) } => {
                    text.clear();
                    let record = avro::record_field(datum, p).filter(|_| !p.is_empty()).unwrap_or(datum);
                    let top = &writer.parsed.schema;
                    let schema = if p.is_empty() {
                        Some(top)
                    } else {
                        writer
                            .parsed
                            .record(top)
                            .ok()
                            .and_then(|r| r.fields.iter().find(|f| f.name == *p))
                            .map(|f| &f.schema)
                    };
                    avro::push_json_typed(&mut text, record, schema.map(|s| (&writer.parsed, s)));
                    if self.shape == Shape::Debezium && text.contains(self.options.unavailable_value.as_str()) {
                        let mut image: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                            SyncError::with_source(ErrorKind::Internal, "re-reading a rendered record", e)
                        })?;
                        d.unchanged = self.blank_unavailable(&mut image);
                        text = image.to_string();
                    }
                    texts.append_value(&text);
                }
            }
        }
        let indices = UInt32Array::from_iter_values(decoded.iter().map(|d| d.row as u32));
        let source = kafka::kafka_source_schema();
        let columns = source
            .fields()
            .iter()
            .map(|f| {
                if f.name() == kafka::VALUE {
                    return Ok(Arc::new(texts.finish()) as ArrayRef);
                }
                let column = input
                    .column_by_name(f.name())
                    .ok_or_else(|| SyncError::internal(format!("the source batch has no column {:?}", f.name())))?;
                Ok(take(column.as_ref(), &indices, None)?)
            })
            .collect::<SyncResult<Vec<_>>>()?;
        let images = RecordBatch::try_new(source, columns)?;
        let out = json.map(&images)?;
        let mut dropped = vec![false; decoded.len()];
        for r in out.rejected {
            dropped[r.row] = true;
            let row = decoded[r.row].row;
            let raw = binary_column(input, kafka::VALUE)?;
            rejected.push(Rejected { row, reason: r.reason, raw: raw.is_valid(row).then(|| raw.value(row).to_vec()) });
        }
        let kept = decoded.into_iter().zip(dropped).filter(|(_, d)| !d).map(|(d, _)| d).collect();
        Ok((out.rows.columns().to_vec(), kept))
    }
}

fn binary_column<'b>(batch: &'b RecordBatch, name: &str) -> SyncResult<&'b BinaryArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .ok_or_else(|| SyncError::internal(format!("the source batch has no binary column {name:?}")))
}

/// The key columns of a Debezium topic from one message key (JSON, with or without the
/// embedded schema): the key struct's field names.
pub fn json_key_fields(key: &[u8]) -> Option<Vec<String>> {
    let key: serde_json::Value = serde_json::from_slice(key).ok()?;
    let (payload, _) = unwrap_payload(&key);
    Some(payload.as_object()?.keys().cloned().collect())
}

/// Columns for a Debezium JSON topic from one event with the embedded schema: each field of
/// the `after` image, typed from its Connect schema. `None` when the event has no schema.
pub fn debezium_json_columns(value: &[u8]) -> Option<Vec<ColumnSpec>> {
    let event: serde_json::Value = serde_json::from_slice(value).ok()?;
    let (_, schema) = unwrap_payload(&event);
    let after = envelope_field(schema?, "after")?;
    let fields = after.get("fields")?.as_array()?;
    Some(
        fields
            .iter()
            .filter_map(|f| {
                let name = f.get("field")?.as_str()?;
                Some(ColumnSpec::new(name, format!("$['{}']", name.replace('\'', "\\'")), connect_type(f)))
            })
            .collect(),
    )
}

/// The column type of a Connect field schema.
fn connect_type(field: &serde_json::Value) -> String {
    let logical = field.get("name").and_then(|n| n.as_str()).unwrap_or("");
    match logical {
        "org.apache.kafka.connect.data.Decimal" => {
            let p = field.get("parameters");
            let param = |k: &str| p.and_then(|p| p.get(k)).and_then(|s| s.as_str()).and_then(|s| s.parse::<u8>().ok());
            let scale = param("scale").unwrap_or(0);
            let precision = param("connect.decimal.precision").unwrap_or(38).clamp(scale.max(1), 38);
            return format!("decimal({precision},{scale})");
        }
        "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => return "date".into(),
        "io.debezium.time.Timestamp"
        | "org.apache.kafka.connect.data.Timestamp"
        | "io.debezium.time.MicroTimestamp"
        | "io.debezium.time.NanoTimestamp"
        | "io.debezium.time.ZonedTimestamp" => return "timestamp".into(),
        "io.debezium.data.Json" => return "json".into(),
        _ => {}
    }
    match field.get("type").and_then(|t| t.as_str()).unwrap_or("") {
        "int8" | "int16" | "int32" => "int",
        "int64" => "bigint",
        "float" | "float32" | "float64" | "double" => "double",
        "boolean" => "boolean",
        "struct" | "array" | "map" => "json",
        _ => "string",
    }
    .to_string()
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
