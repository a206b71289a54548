//! Avro records to Arrow columns: the type mapping, the column builders, the JSON rendering.
//!
//! **Types.** Each Avro type lands as the smallest lossless Arrow (and Delta) type:
//! `boolean`, `int` → int, `long` → bigint, `float` → float, `double` → double, `string`,
//! `enum` and `uuid` → string, `bytes` and `fixed` → binary, `decimal(p,s)` → decimal(p,s)
//! (precision above 38: the decimal's text), `date` → date, `timestamp-millis|micros|nanos` →
//! timestamp (UTC; nanoseconds are truncated to microseconds, Delta's unit),
//! `local-timestamp-*` → timestamp without time zone, `time-millis|micros` → bigint
//! microseconds since midnight, `duration` → its JSON text. A union of `null` and one type is
//! that type, nullable; any other union lands as the JSON text of the value. Records become
//! structs, arrays lists, maps maps with string keys, unless the field is named in
//! `json_fields` (or that list holds `*`), which lands it as JSON text.
//!
//! **Building.** A batch's values of one column are collected and built into one array at
//! the end, children before parents, so a nested column costs one pass per level, not one
//! builder call per leaf per row through dynamic dispatch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apache_avro::Schema as AvroSchema;
use apache_avro::schema::{Name, RecordSchema, ResolvedSchema};
use apache_avro::types::Value;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, ListArray, MapArray, NullBufferBuilder, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use base64::Engine;
use rtsync_core::json::push_string;

use crate::spec::TIMESTAMP_TZ;

/// The key and value field names of a map column's entries.
const MAP_KEYS: &str = "key";
const MAP_VALUES: &str = "value";

/// A parsed Avro schema with its named types, so references resolve.
pub(crate) struct Parsed {
    pub schema: AvroSchema,
    /// The schemas it references (registry schema references), whose named types it uses.
    references: Vec<AvroSchema>,
    names: HashMap<Name, AvroSchema>,
}

impl Parsed {
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::parse_with(text, &[])
    }

    /// A schema whose named types may come from `references` (schema texts).
    pub fn parse_with(text: &str, references: &[&str]) -> Result<Self, String> {
        let (schema, references) = if references.is_empty() {
            (AvroSchema::parse_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))?, Vec::new())
        } else {
            AvroSchema::parse_str_with_list(text, references)
                .map_err(|e| format!("not a valid Avro schema with its references: {e}"))?
        };
        let mut all: Vec<&AvroSchema> = references.iter().collect();
        all.push(&schema);
        let names = ResolvedSchema::try_from(all)
            .map_err(|e| format!("the Avro schema has an unresolved name: {e}"))?
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        Ok(Self { schema, references, names })
    }

    /// Decodes one datum written with this schema.
    pub fn decode(&self, payload: &mut &[u8]) -> apache_avro::AvroResult<Value> {
        if self.references.is_empty() {
            apache_avro::from_avro_datum(&self.schema, payload, None)
        } else {
            apache_avro::from_avro_datum_schemata(&self.schema, self.references.iter().collect(), payload, None)
        }
    }

    /// `schema` with a reference replaced by the type it names.
    pub fn resolve<'s>(&'s self, schema: &'s AvroSchema) -> &'s AvroSchema {
        match schema {
            AvroSchema::Ref { name } => self.names.get(name).unwrap_or(schema),
            other => other,
        }
    }

    /// The record at the top, or the record inside a `[null, record]` union (a Debezium
    /// image), or why there is none.
    pub fn record<'s>(&'s self, schema: &'s AvroSchema) -> Result<&'s RecordSchema, String> {
        match self.resolve(schema) {
            AvroSchema::Record(r) => Ok(r),
            AvroSchema::Union(u) => {
                let mut non_null = u.variants().iter().filter(|v| !matches!(v, AvroSchema::Null));
                match (non_null.next(), non_null.next()) {
                    (Some(one), None) => self.record(one),
                    _ => Err("a union of several records".to_string()),
                }
            }
            other => Err(format!("a {}, not a record", type_name(other))),
        }
    }
}

/// Whether a field lands as JSON text by the `json_fields` option.
pub(crate) fn as_json(json_fields: &[String], name: &str) -> bool {
    json_fields.iter().any(|f| f == "*" || f == name)
}

/// The Arrow field of a record field. `json` lands nested types as JSON text; it applies to
/// the whole field (a `*` option: to every nested field at the top level).
pub(crate) fn arrow_field(parsed: &Parsed, name: &str, schema: &AvroSchema, json: bool) -> Field {
    let (data_type, nullable) = arrow_type(parsed, schema, json, 0);
    Field::new(name, data_type, nullable)
}

/// Deep enough for any real schema; a recursive record type stops here and lands as JSON.
const MAX_NESTING: usize = 32;

fn arrow_type(parsed: &Parsed, schema: &AvroSchema, json: bool, depth: usize) -> (DataType, bool) {
    let schema = parsed.resolve(schema);
    let ty = match schema {
        AvroSchema::Null => return (DataType::Utf8, true),
        AvroSchema::Boolean => DataType::Boolean,
        AvroSchema::Int => DataType::Int32,
        AvroSchema::Long | AvroSchema::TimeMillis | AvroSchema::TimeMicros => DataType::Int64,
        AvroSchema::Float => DataType::Float32,
        AvroSchema::Double => DataType::Float64,
        AvroSchema::Bytes | AvroSchema::Fixed(_) => DataType::Binary,
        AvroSchema::String | AvroSchema::Enum(_) | AvroSchema::Uuid | AvroSchema::BigDecimal => DataType::Utf8,
        AvroSchema::Duration => DataType::Utf8,
        AvroSchema::Decimal(d) if (1..=38).contains(&d.precision) && d.scale <= d.precision => {
            DataType::Decimal128(d.precision as u8, d.scale as i8)
        }
        AvroSchema::Decimal(_) => DataType::Utf8,
        AvroSchema::Date => DataType::Date32,
        AvroSchema::TimestampMillis | AvroSchema::TimestampMicros | AvroSchema::TimestampNanos => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMP_TZ.into()))
        }
        AvroSchema::LocalTimestampMillis | AvroSchema::LocalTimestampMicros | AvroSchema::LocalTimestampNanos => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        AvroSchema::Union(u) => {
            let mut non_null = u.variants().iter().filter(|v| !matches!(parsed.resolve(v), AvroSchema::Null));
            return match (non_null.next(), non_null.next()) {
                (Some(one), None) => (arrow_type(parsed, one, json, depth).0, true),
                (None, None) => (DataType::Utf8, true),
                _ => (DataType::Utf8, true),
            };
        }
        _ if json || depth >= MAX_NESTING => DataType::Utf8,
        AvroSchema::Record(r) => DataType::Struct(
            r.fields
                .iter()
                .map(|f| {
                    let (t, n) = arrow_type(parsed, &f.schema, json, depth + 1);
                    Field::new(&f.name, t, n)
                })
                .collect(),
        ),
        AvroSchema::Array(a) => {
            let (t, n) = arrow_type(parsed, &a.items, json, depth + 1);
            DataType::List(Arc::new(Field::new("element", t, n)))
        }
        AvroSchema::Map(m) => {
            let (t, n) = arrow_type(parsed, &m.types, json, depth + 1);
            let entries = Fields::from(vec![Field::new(MAP_KEYS, DataType::Utf8, false), Field::new(MAP_VALUES, t, n)]);
            DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
        }
        AvroSchema::Ref { .. } => DataType::Utf8,
    };
    (ty, false)
}

/// How a type is named in messages: `long`, `record`, `decimal`.
pub(crate) fn type_name(schema: &AvroSchema) -> String {
    match schema {
        AvroSchema::Record(r) => format!("record {}", r.name.name),
        AvroSchema::Enum(e) => format!("enum {}", e.name.name),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

/// A writer's value where a reader expects another type: `Ok(true)` when the column's type
/// holds every value of the writer's (equal, or a lossless promotion: int into bigint,
/// float into double), `Ok(false)` when the writer's type is wider than the column
/// (int → long: the column would have to widen), `Err` when they are unrelated.
pub(crate) fn fits(column: &DataType, writer: &DataType) -> Result<bool, ()> {
    use DataType as T;
    match (column, writer) {
        (a, b) if a == b => Ok(true),
        (T::Int64, T::Int32) | (T::Float64, T::Float32 | T::Int32 | T::Int64) | (T::Float32, T::Int32 | T::Int64) => {
            Ok(true)
        }
        (T::Int32, T::Int64) | (T::Float32, T::Float64) => Ok(false),
        (T::Decimal128(p, s), T::Decimal128(wp, ws)) if s == ws => Ok(p >= wp),
        (T::Utf8, T::Binary) | (T::Binary, T::Utf8) => Ok(true),
        (T::Struct(cols), T::Struct(ws)) => {
            let mut all = true;
            for w in ws {
                if let Some(c) = cols.iter().find(|c| c.name() == w.name()) {
                    all &= fits(c.data_type(), w.data_type())?;
                }
            }
            Ok(all)
        }
        (T::List(c), T::List(w)) => fits(c.data_type(), w.data_type()),
        (T::Map(c, _), T::Map(w, _)) => fits(c.data_type(), w.data_type()),
        // Nested as JSON text on one side: the text of anything.
        (T::Utf8, _) => Ok(true),
        _ => Err(()),
    }
}

/// The value inside a union branch.
pub(crate) fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

/// The field `name` of a record value.
pub(crate) fn record_field<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    match unwrap_union(value) {
        Value::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        _ => None,
    }
}

/// Builds the array of type `data_type` from one value per row (`None`: NULL). Values are
/// taken by the Avro promotion rules; anything else is an error naming the value's type.
pub(crate) fn build(data_type: &DataType, values: &[Option<&Value>]) -> Result<ArrayRef, String> {
    let n = values.len();
    let vals = || values.iter().map(|v| v.map(unwrap_union).filter(|v| !matches!(v, Value::Null)));
    macro_rules! primitive {
        ($builder:expr, $($pat:pat => $out:expr),+ $(,)?) => {{
            let mut b = $builder;
            for v in vals() {
                match v {
                    None => b.append_null(),
                    $(Some($pat) => b.append_value($out),)+
                    Some(other) => return Err(mismatch(data_type, other)),
                }
            }
            Ok(Arc::new(b.finish()) as ArrayRef)
        }};
    }
    match data_type {
        DataType::Boolean => primitive!(BooleanBuilder::with_capacity(n), Value::Boolean(b) => *b),
        DataType::Int32 => primitive!(Int32Builder::with_capacity(n), Value::Int(i) => *i),
        DataType::Int64 => primitive!(Int64Builder::with_capacity(n),
            Value::Long(i) => *i,
            Value::Int(i) => i64::from(*i),
            Value::TimeMicros(t) => *t,
            Value::TimeMillis(t) => i64::from(*t) * 1000,
        ),
        DataType::Float32 => primitive!(Float32Builder::with_capacity(n),
            Value::Float(f) => *f,
            Value::Int(i) => *i as f32,
            Value::Long(i) => *i as f32,
        ),
        DataType::Float64 => primitive!(Float64Builder::with_capacity(n),
            Value::Double(f) => *f,
            Value::Float(f) => f64::from(*f),
            Value::Int(i) => f64::from(*i),
            Value::Long(i) => *i as f64,
        ),
        DataType::Date32 => primitive!(Date32Builder::with_capacity(n), Value::Date(d) => *d),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(n);
            for v in vals() {
                let micros = match v {
                    None => None,
                    Some(Value::TimestampMillis(t) | Value::LocalTimestampMillis(t)) => Some(t.saturating_mul(1000)),
                    Some(Value::TimestampMicros(t) | Value::LocalTimestampMicros(t)) => Some(*t),
                    Some(Value::TimestampNanos(t) | Value::LocalTimestampNanos(t)) => Some(t.div_euclid(1000)),
                    Some(other) => return Err(mismatch(data_type, other)),
                };
                b.append_option(micros);
            }
            Ok(Arc::new(b.finish().with_timezone_opt(tz.clone())))
        }
        DataType::Decimal128(p, s) => {
            let mut b = Decimal128Builder::with_capacity(n);
            for v in vals() {
                match v {
                    None => b.append_null(),
                    Some(Value::Decimal(d)) => {
                        let bytes =
                            <Vec<u8>>::try_from(d).map_err(|e| format!("a decimal that cannot be read: {e}"))?;
                        b.append_value(unscaled(&bytes).ok_or_else(|| {
                            format!("a decimal of {} bytes does not fit decimal({p},{s})", bytes.len())
                        })?);
                    }
                    Some(other) => return Err(mismatch(data_type, other)),
                }
            }
            Ok(Arc::new(b.finish().with_precision_and_scale(*p, *s).map_err(|e| e.to_string())?))
        }
        DataType::Binary => {
            let mut b = BinaryBuilder::with_capacity(n, 0);
            for v in vals() {
                match v {
                    None => b.append_null(),
                    Some(Value::Bytes(x) | Value::Fixed(_, x)) => b.append_value(x),
                    Some(Value::String(s)) => b.append_value(s),
                    Some(other) => return Err(mismatch(data_type, other)),
                }
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Utf8 => {
            let mut b = StringBuilder::with_capacity(n, 0);
            let mut text = String::new();
            for v in vals() {
                match v {
                    None => b.append_null(),
                    Some(Value::String(s) | Value::Enum(_, s)) => b.append_value(s),
                    Some(Value::Uuid(u)) => b.append_value(u.to_string()),
                    Some(Value::Bytes(x)) => b.append_value(
                        std::str::from_utf8(x)
                            .map_err(|_| "bytes that are not UTF-8 for a string column".to_string())?,
                    ),
                    Some(other) => {
                        text.clear();
                        push_json(&mut text, other);
                        b.append_value(&text);
                    }
                }
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Struct(fields) => {
            let mut nulls = NullBufferBuilder::new(n);
            let mut children: Vec<Vec<Option<&Value>>> = vec![Vec::with_capacity(n); fields.len()];
            for v in vals() {
                match v {
                    None => {
                        nulls.append_null();
                        children.iter_mut().for_each(|c| c.push(None));
                    }
                    Some(Value::Record(items)) => {
                        nulls.append_non_null();
                        for (f, child) in fields.iter().zip(children.iter_mut()) {
                            child.push(items.iter().find(|(name, _)| name == f.name()).map(|(_, v)| v));
                        }
                    }
                    Some(other) => return Err(mismatch(data_type, other)),
                }
            }
            let arrays = fields
                .iter()
                .zip(&children)
                .map(|(f, c)| build(f.data_type(), c).map_err(|e| format!("field {:?}: {e}", f.name())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Arc::new(StructArray::try_new(fields.clone(), arrays, nulls.finish()).map_err(|e| e.to_string())?))
        }
        DataType::List(item) => {
            let mut nulls = NullBufferBuilder::new(n);
            let mut lengths = Vec::with_capacity(n);
            let mut items: Vec<Option<&Value>> = Vec::new();
            for v in vals() {
                match v {
                    None => {
                        nulls.append_null();
                        lengths.push(0);
                    }
                    Some(Value::Array(xs)) => {
                        nulls.append_non_null();
                        lengths.push(xs.len());
                        items.extend(xs.iter().map(Some));
                    }
                    Some(other) => return Err(mismatch(data_type, other)),
                }
            }
            let child = build(item.data_type(), &items)?;
            let list = ListArray::try_new(item.clone(), OffsetBuffer::from_lengths(lengths), child, nulls.finish())
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(list))
        }
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return Err("a map column without key/value entries".to_string());
            };
            let mut nulls = NullBufferBuilder::new(n);
            let mut lengths = Vec::with_capacity(n);
            let mut keys = StringBuilder::new();
            let mut items: Vec<Option<&Value>> = Vec::new();
            for v in vals() {
                match v {
                    None => {
                        nulls.append_null();
                        lengths.push(0);
                    }
                    Some(Value::Map(map)) => {
                        nulls.append_non_null();
                        lengths.push(map.len());
                        // Sorted by key: the same map always lands the same way.
                        let ordered: BTreeMap<&String, &Value> = map.iter().collect();
                        for (k, v) in ordered {
                            keys.append_value(k);
                            items.push(Some(v));
                        }
                    }
                    Some(other) => return Err(mismatch(data_type, other)),
                }
            }
            let values = build(kv[1].data_type(), &items)?;
            let entry_array = StructArray::try_new(kv.clone(), vec![Arc::new(keys.finish()), values], None)
                .map_err(|e| e.to_string())?;
            let map = MapArray::try_new(
                entries.clone(),
                OffsetBuffer::from_lengths(lengths),
                entry_array,
                nulls.finish(),
                *sorted,
            )
            .map_err(|e| e.to_string())?;
            Ok(Arc::new(map))
        }
        other => Err(format!("no Avro value lands as {other}")),
    }
}

fn mismatch(data_type: &DataType, value: &Value) -> String {
    format!("a {} value where the column is {data_type}", value_kind(value))
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "string",
        Value::Fixed(..) => "fixed",
        Value::Enum(..) => "enum",
        Value::Union(..) => "union",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Record(_) => "record",
        Value::Date(_) => "date",
        Value::Decimal(_) | Value::BigDecimal(_) => "decimal",
        Value::TimeMillis(_) | Value::TimeMicros(_) => "time",
        Value::TimestampMillis(_)
        | Value::TimestampMicros(_)
        | Value::TimestampNanos(_)
        | Value::LocalTimestampMillis(_)
        | Value::LocalTimestampMicros(_)
        | Value::LocalTimestampNanos(_) => "timestamp",
        Value::Duration(_) => "duration",
        Value::Uuid(_) => "uuid",
    }
}

/// A big-endian two's complement integer of at most 16 bytes.
pub(crate) fn unscaled(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() {
        return Some(0);
    }
    let significant = bytes.len().checked_sub(16).map_or(bytes, |extra| {
        let (sign, rest) = bytes.split_at(extra);
        let fill = if rest[0] & 0x80 != 0 { 0xff } else { 0 };
        if sign.iter().all(|&b| b == fill) { rest } else { &[] }
    });
    if significant.is_empty() {
        return None;
    }
    let fill = if significant[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 16];
    buf[16 - significant.len()..].copy_from_slice(significant);
    Some(i128::from_be_bytes(buf))
}

/// The unscaled value and scale of a decimal as exact text: `-12.50`.
pub(crate) fn decimal_text(out: &mut String, unscaled: i128, scale: usize) {
    let digits = unscaled.unsigned_abs().to_string();
    if unscaled < 0 {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(&digits);
    }
}

/// Renders a decoded value as JSON text, for columns that land as JSON and for JSONPath
/// columns over the record. Logical types render as the text their column type reads back:
/// dates `"YYYY-MM-DD"`, timestamps RFC 3339 in UTC, decimals as exact numbers in a string
/// (when the schema is at hand: [`push_json_typed`]), bytes in base64.
pub(crate) fn push_json(out: &mut String, value: &Value) {
    push_json_typed(out, value, None);
}

/// [`push_json`] with the value's schema, which decimals need for their scale.
pub(crate) fn push_json_typed(out: &mut String, value: &Value, schema: Option<(&Parsed, &AvroSchema)>) {
    use std::fmt::Write;
    let schema = schema.map(|(p, s)| (p, p.resolve(s)));
    match value {
        Value::Null => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Date(d) => match chrono::NaiveDate::from_num_days_from_ce_opt(d.saturating_add(719_163)) {
            Some(date) => push_string(out, &date.format("%Y-%m-%d").to_string()),
            None => {
                let _ = write!(out, "{d}");
            }
        },
        Value::Long(i) | Value::TimeMicros(i) => {
            let _ = write!(out, "{i}");
        }
        Value::TimeMillis(t) => {
            let _ = write!(out, "{}", i64::from(*t) * 1000);
        }
        Value::Float(f) => push_float(out, f64::from(*f)),
        Value::Double(f) => push_float(out, *f),
        Value::Bytes(b) | Value::Fixed(_, b) => {
            push_string(out, &base64::engine::general_purpose::STANDARD.encode(b));
        }
        Value::String(s) | Value::Enum(_, s) => push_string(out, s),
        Value::Uuid(u) => push_string(out, &u.to_string()),
        Value::Union(i, inner) => {
            let branch = schema.and_then(|(p, s)| match s {
                AvroSchema::Union(u) => u.variants().get(*i as usize).map(|b| (p, b)),
                _ => None,
            });
            push_json_typed(out, inner, branch);
        }
        Value::Array(items) => {
            let item = schema.and_then(|(p, s)| match s {
                AvroSchema::Array(a) => Some((p, a.items.as_ref())),
                _ => None,
            });
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_typed(out, v, item);
            }
            out.push(']');
        }
        Value::Map(map) => {
            let item = schema.and_then(|(p, s)| match s {
                AvroSchema::Map(m) => Some((p, m.types.as_ref())),
                _ => None,
            });
            let ordered: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (i, (k, v)) in ordered.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, k);
                out.push(':');
                push_json_typed(out, v, item);
            }
            out.push('}');
        }
        Value::Record(fields) => {
            let record = schema.and_then(|(p, s)| match s {
                AvroSchema::Record(r) => Some((p, r)),
                _ => None,
            });
            out.push('{');
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, k);
                out.push(':');
                let field = record.and_then(|(p, r)| r.fields.iter().find(|f| &f.name == k).map(|f| (p, &f.schema)));
                push_json_typed(out, v, field);
            }
            out.push('}');
        }
        Value::Decimal(d) => {
            let scale = match schema {
                Some((_, AvroSchema::Decimal(ds))) => ds.scale,
                _ => 0,
            };
            match <Vec<u8>>::try_from(d).ok().as_deref().and_then(unscaled) {
                Some(v) => {
                    out.push('"');
                    decimal_text(out, v, scale);
                    out.push('"');
                }
                None => out.push_str("null"),
            }
        }
        Value::BigDecimal(b) => push_string(out, &b.to_string()),
        Value::TimestampMillis(t) => push_instant(out, t.saturating_mul(1000), true),
        Value::TimestampMicros(t) => push_instant(out, *t, true),
        Value::TimestampNanos(t) => push_instant(out, t.div_euclid(1000), true),
        Value::LocalTimestampMillis(t) => push_instant(out, t.saturating_mul(1000), false),
        Value::LocalTimestampMicros(t) => push_instant(out, *t, false),
        Value::LocalTimestampNanos(t) => push_instant(out, t.div_euclid(1000), false),
        Value::Duration(d) => {
            let _ = write!(
                out,
                r#"{{"months":{},"days":{},"millis":{}}}"#,
                u32::from(d.months()),
                u32::from(d.days()),
                u32::from(d.millis())
            );
        }
    }
}

fn push_float(out: &mut String, f: f64) {
    use std::fmt::Write;
    if f.is_finite() {
        let _ = write!(out, "{f}");
    } else {
        // JSON has no NaN or infinity; the double cast reads these strings back.
        push_string(
            out,
            if f.is_nan() {
                "NaN"
            } else if f > 0.0 {
                "inf"
            } else {
                "-inf"
            },
        );
    }
}

fn push_instant(out: &mut String, micros: i64, utc: bool) {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) if utc => push_string(out, &t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        Some(t) => push_string(out, &t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
        None => {
            use std::fmt::Write;
            let _ = write!(out, "{micros}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unscaled_reads_twos_complement() {
        assert_eq!(unscaled(&[0x04, 0xe2]), Some(1250));
        assert_eq!(unscaled(&[0xfb, 0x1e]), Some(-1250));
        assert_eq!(unscaled(&[]), Some(0));
        let mut wide = vec![1u8, 0, 0, 0];
        wide.extend_from_slice(&[0x7f; 16]);
        assert_eq!(unscaled(&wide), None, "does not fit 16 bytes");
        let mut padded = vec![0xffu8; 4];
        padded.extend_from_slice(&[0xff; 15]);
        padded.push(0xfe);
        assert_eq!(unscaled(&padded), Some(-2));
    }

    #[test]
    fn decimals_render_exactly() {
        let mut s = String::new();
        decimal_text(&mut s, -5, 3);
        assert_eq!(s, "-0.005");
        s.clear();
        decimal_text(&mut s, 123_456, 2);
        assert_eq!(s, "1234.56");
    }

    #[test]
    fn widening_and_promotion() {
        assert_eq!(fits(&DataType::Int64, &DataType::Int32), Ok(true));
        assert_eq!(fits(&DataType::Int32, &DataType::Int64), Ok(false));
        assert_eq!(fits(&DataType::Float32, &DataType::Float64), Ok(false));
        assert_eq!(fits(&DataType::Boolean, &DataType::Int64), Err(()));
    }
}
