//! PostgreSQL types → Arrow types, and the text parsers that fill Arrow builders.
//!
//! Both the snapshot (COPY text format) and the stream (pgoutput text tuples) deliver each
//! value as its type's text output, rendered under the pinned session settings
//! ([`crate::config::SESSION_OPTIONS`]). One parser per Arrow type turns that text into the
//! Arrow value, so a row reads the same whether the snapshot or the stream delivered it.
//!
//! | PostgreSQL | Arrow | notes |
//! | --- | --- | --- |
//! | `bool` | Boolean | |
//! | `int2` / `int4` / `int8` | Int16 / Int32 / Int64 | |
//! | `oid` | Int64 | unsigned 32-bit widened |
//! | `float4` / `float8` | Float32 / Float64 | NaN and ±Infinity kept |
//! | `numeric(p,s)`, p ≤ 38, 0 ≤ s ≤ p | Decimal128(p,s) | `NaN`, `±Infinity` → NULL (Decimal has no such values) |
//! | `numeric` (unbounded), p > 38 | Utf8 | the exact text, `NaN` / `Infinity` included |
//! | `text`, `varchar`, `char(n)`, `name`, `"char"`, `citext`, enums | Utf8 | `char(n)` keeps its padding |
//! | `bytea` | Binary | |
//! | `date` | Date32 | ±infinity → 9999-12-31 / 0001-01-01, the ends of Delta's date range; dates outside that range (BC, after 9999) → NULL |
//! | `timestamp` | Timestamp(µs, None) | ±infinity → i64::MAX / i64::MIN |
//! | `timestamptz` | Timestamp(µs, "UTC") | ±infinity → i64::MAX / i64::MIN |
//! | `time`, `timetz`, `interval` | Utf8 | `13:45:00.5`, `13:45:00+02`, ISO 8601 `P1DT2H` |
//! | `uuid` | Utf8 | |
//! | `json`, `jsonb` | Utf8 | the JSON text (jsonb as PostgreSQL normalizes it) |
//! | arrays (any element type) | Utf8 | JSON text: `[1,2,null]`, `[["a","b"]]`; numbers and booleans as JSON numbers/booleans, json elements embedded, everything else as strings; a non-default lower bound (`[0:1]={…}`) is dropped |
//! | domains | as their base type | |
//! | anything else (inet, money, geometric, ranges, composites, xml, bit…) | Utf8 | the type's text output |

use std::collections::HashMap;
use std::sync::Arc;

use rtsync_core::arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use rtsync_core::arrow::datatypes::{DataType, TimeUnit};
use rtsync_core::civil::days_from_civil;
use rtsync_core::json::push_string;

pub(crate) mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BOX: u32 = 603;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const JSONB: u32 = 3802;
}

/// A `pg_type` row: what classification needs to know about a type that is not built in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeRow {
    /// `typtype`: b base, d domain, e enum, c composite, r range, m multirange, p pseudo.
    pub typtype: char,
    /// `typcategory`: A array, …
    pub category: char,
    pub elem: u32,
    pub base: u32,
    /// The domain's typmod (`typtypmod`), -1 when none.
    pub base_typmod: i32,
    pub delim: char,
}

/// The `pg_type` rows of the types a table uses (and their elements and bases).
pub(crate) type TypeCatalog = HashMap<u32, TypeRow>;

/// How one column's values are emitted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ValueKind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Decimal {
        precision: u8,
        scale: i8,
    },
    Text,
    Binary,
    Date,
    Timestamp,
    TimestampTz,
    /// An array, as JSON text.
    Array {
        elem: ElemKind,
        delim: u8,
    },
}

/// How an array element is written into JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElemKind {
    Number,
    Bool,
    Json,
    String,
}

impl ValueKind {
    pub fn arrow_type(&self) -> DataType {
        match self {
            ValueKind::Bool => DataType::Boolean,
            ValueKind::Int16 => DataType::Int16,
            ValueKind::Int32 => DataType::Int32,
            ValueKind::Int64 => DataType::Int64,
            ValueKind::Float32 => DataType::Float32,
            ValueKind::Float64 => DataType::Float64,
            ValueKind::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            ValueKind::Text | ValueKind::Array { .. } => DataType::Utf8,
            ValueKind::Binary => DataType::Binary,
            ValueKind::Date => DataType::Date32,
            ValueKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ValueKind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// The emitted kind of a column of type `type_oid` with modifier `typmod`.
pub(crate) fn classify(type_oid: u32, typmod: i32, catalog: &TypeCatalog) -> ValueKind {
    classify_depth(type_oid, typmod, catalog, 0)
}

fn classify_depth(type_oid: u32, typmod: i32, catalog: &TypeCatalog, depth: u8) -> ValueKind {
    match type_oid {
        oid::BOOL => return ValueKind::Bool,
        oid::INT2 => return ValueKind::Int16,
        oid::INT4 => return ValueKind::Int32,
        oid::INT8 | oid::OID => return ValueKind::Int64,
        oid::FLOAT4 => return ValueKind::Float32,
        oid::FLOAT8 => return ValueKind::Float64,
        oid::NUMERIC => return numeric_kind(typmod),
        oid::BYTEA => return ValueKind::Binary,
        oid::DATE => return ValueKind::Date,
        oid::TIMESTAMP => return ValueKind::Timestamp,
        oid::TIMESTAMPTZ => return ValueKind::TimestampTz,
        _ => {}
    }
    let Some(row) = catalog.get(&type_oid) else {
        return ValueKind::Text;
    };
    if row.typtype == 'd' && row.base != 0 && depth < 8 {
        return classify_depth(row.base, row.base_typmod, catalog, depth + 1);
    }
    if row.category == 'A' && row.elem != 0 {
        let delim = if row.elem == oid::BOX { b';' } else { u8::try_from(row.delim).unwrap_or(b',') };
        return ValueKind::Array { elem: elem_kind(row.elem, catalog), delim };
    }
    ValueKind::Text
}

fn elem_kind(type_oid: u32, catalog: &TypeCatalog) -> ElemKind {
    let mut t = type_oid;
    for _ in 0..8 {
        match t {
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID | oid::FLOAT4 | oid::FLOAT8 | oid::NUMERIC => {
                return ElemKind::Number;
            }
            oid::BOOL => return ElemKind::Bool,
            oid::JSON | oid::JSONB => return ElemKind::Json,
            _ => match catalog.get(&t) {
                Some(row) if row.typtype == 'd' && row.base != 0 => t = row.base,
                _ => return ElemKind::String,
            },
        }
    }
    ElemKind::String
}

/// `numeric(p,s)` → Decimal128(p,s) when Arrow can hold it exactly; otherwise the text.
fn numeric_kind(typmod: i32) -> ValueKind {
    if typmod < 4 {
        return ValueKind::Text; // unbounded numeric
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    // PostgreSQL 15 stores the scale as an 11-bit two's complement number.
    let scale = ((t & 0x7ff) ^ 1024) - 1024;
    if (1..=38).contains(&precision) && (0..=precision).contains(&scale) {
        ValueKind::Decimal { precision: precision as u8, scale: scale as i8 }
    } else {
        ValueKind::Text
    }
}

/// One column's Arrow builder, fed with text values.
pub(crate) enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    Text(StringBuilder),
    Binary(BinaryBuilder, Vec<u8>),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Array(StringBuilder, ElemKind, u8, String),
}

impl ColumnBuilder {
    pub fn new(kind: &ValueKind, capacity: usize) -> Self {
        match kind {
            ValueKind::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            ValueKind::Int16 => ColumnBuilder::Int16(Int16Builder::with_capacity(capacity)),
            ValueKind::Int32 => ColumnBuilder::Int32(Int32Builder::with_capacity(capacity)),
            ValueKind::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(capacity)),
            ValueKind::Float32 => ColumnBuilder::Float32(Float32Builder::with_capacity(capacity)),
            ValueKind::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(capacity)),
            ValueKind::Decimal { precision, scale } => ColumnBuilder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(*precision, *scale)
                    .unwrap_or_else(|_| Decimal128Builder::with_capacity(capacity)),
                *scale,
            ),
            ValueKind::Text => ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 8)),
            ValueKind::Binary => {
                ColumnBuilder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 8), Vec::new())
            }
            ValueKind::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            ValueKind::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity)),
            ValueKind::TimestampTz => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"))
            }
            ValueKind::Array { elem, delim } => {
                ColumnBuilder::Array(StringBuilder::with_capacity(capacity, capacity * 8), *elem, *delim, String::new())
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            ColumnBuilder::Bool(b) => b.len(),
            ColumnBuilder::Int16(b) => b.len(),
            ColumnBuilder::Int32(b) => b.len(),
            ColumnBuilder::Int64(b) => b.len(),
            ColumnBuilder::Float32(b) => b.len(),
            ColumnBuilder::Float64(b) => b.len(),
            ColumnBuilder::Decimal(b, _) => b.len(),
            ColumnBuilder::Text(b) | ColumnBuilder::Array(b, ..) => b.len(),
            ColumnBuilder::Binary(b, _) => b.len(),
            ColumnBuilder::Date(b) => b.len(),
            ColumnBuilder::Timestamp(b) => b.len(),
        }
    }

    pub fn append_null(&mut self) {
        match self {
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Int16(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float32(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Decimal(b, _) => b.append_null(),
            ColumnBuilder::Text(b) | ColumnBuilder::Array(b, ..) => b.append_null(),
            ColumnBuilder::Binary(b, _) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
        }
    }

    pub fn append_nulls(&mut self, n: usize) {
        for _ in 0..n {
            self.append_null();
        }
    }

    /// Appends the value whose text output is `text`. On a value that does not parse, nothing
    /// is appended and the reason is returned.
    pub fn append_text(&mut self, text: &str) -> Result<(), &'static str> {
        match self {
            ColumnBuilder::Bool(b) => match text {
                "t" | "true" => b.append_value(true),
                "f" | "false" => b.append_value(false),
                _ => return Err("not a boolean"),
            },
            ColumnBuilder::Int16(b) => b.append_value(text.parse().map_err(|_| "not an int2")?),
            ColumnBuilder::Int32(b) => b.append_value(text.parse().map_err(|_| "not an int4")?),
            ColumnBuilder::Int64(b) => b.append_value(text.parse().map_err(|_| "not an int8")?),
            ColumnBuilder::Float32(b) => b.append_value(text.parse().map_err(|_| "not a float4")?),
            ColumnBuilder::Float64(b) => b.append_value(text.parse().map_err(|_| "not a float8")?),
            ColumnBuilder::Decimal(b, scale) => match parse_decimal(text, *scale)? {
                Some(v) => b.append_value(v),
                None => b.append_null(),
            },
            ColumnBuilder::Text(b) => b.append_value(text),
            ColumnBuilder::Binary(b, scratch) => {
                decode_bytea(text, scratch)?;
                b.append_value(&scratch[..]);
            }
            ColumnBuilder::Date(b) => b.append_option(parse_date(text)?),
            ColumnBuilder::Timestamp(b) => b.append_value(parse_timestamp(text).ok_or("not a timestamp")?),
            ColumnBuilder::Array(b, elem, delim, scratch) => {
                scratch.clear();
                array_to_json(text, *elem, *delim, scratch)?;
                b.append_value(&scratch[..]);
            }
        }
        Ok(())
    }

    /// The column so far; the builder is left empty, ready for the next batch.
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Int16(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, _) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) | ColumnBuilder::Array(b, ..) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b, _) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// `-123.45` at scale 2 → -12345. `NaN` / `Infinity` → None. More fraction digits than the
/// scale (never produced by a `numeric(p,s)` column) is an error, never a silent rounding.
pub(crate) fn parse_decimal(text: &str, scale: i8) -> Result<Option<i128>, &'static str> {
    const BAD: &str = "not a numeric";
    match text {
        "NaN" | "Infinity" | "-Infinity" => return Ok(None),
        _ => {}
    }
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(BAD);
    }
    let scale = usize::try_from(scale).map_err(|_| BAD)?;
    let mut value: i128 = 0;
    let push = |value: i128, d: u8| -> Result<i128, &'static str> {
        if !d.is_ascii_digit() {
            return Err(BAD);
        }
        value.checked_mul(10).and_then(|v| v.checked_add(i128::from(d - b'0'))).ok_or("numeric out of range")
    };
    for &d in int_part.as_bytes() {
        value = push(value, d)?;
    }
    let frac = frac_part.as_bytes();
    for i in 0..scale {
        value = push(value, frac.get(i).copied().unwrap_or(b'0'))?;
    }
    if frac.len() > scale {
        if frac[scale..].iter().any(|d| !d.is_ascii_digit()) {
            return Err(BAD);
        }
        if frac[scale..].iter().any(|&d| d != b'0') {
            return Err("numeric has more fraction digits than the column's scale");
        }
    }
    Ok(Some(if negative { -value } else { value }))
}

/// `\x0a0b` → bytes.
pub(crate) fn decode_bytea(text: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    const BAD: &str = "not a hex bytea (bytea_output must be hex)";
    let hex = text.strip_prefix("\\x").ok_or(BAD)?.as_bytes();
    if hex.len() % 2 != 0 {
        return Err(BAD);
    }
    out.clear();
    out.reserve(hex.len() / 2);
    for pair in hex.chunks_exact(2) {
        let hi = hex_digit(pair[0]).ok_or(BAD)?;
        let lo = hex_digit(pair[1]).ok_or(BAD)?;
        out.push((hi << 4) | lo);
    }
    Ok(())
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `YYYY-MM-DD` (ISO, the year may have more than 4 digits) with an optional ` BC`.
fn parse_ymd(text: &str, bc: bool) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if bc { 1 - y } else { y };
    Some(days_from_civil(y, m, d))
}

fn strip_bc(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(t) => (t, true),
        None => (text, false),
    }
}

/// Delta's date range, in days since the epoch: 0001-01-01 ..= 9999-12-31. A date outside it
/// cannot be stored: the Python `deltalake` reader fails on a table whose file statistics hold
/// one, and the delta writer panics on a date past year 262142.
pub(crate) const DELTA_DATES: std::ops::RangeInclusive<i32> = -719_162..=2_932_896;

/// Days since the epoch. `infinity` / `-infinity` → the last / first day of [`DELTA_DATES`]
/// (Delta has no infinite date; Spark's PostgreSQL dialect maps them the same way); any other
/// date outside that range → None (NULL).
pub(crate) fn parse_date(text: &str) -> Result<Option<i32>, &'static str> {
    match text {
        "infinity" => return Ok(Some(*DELTA_DATES.end())),
        "-infinity" => return Ok(Some(*DELTA_DATES.start())),
        _ => {}
    }
    let (text, bc) = strip_bc(text);
    let days = parse_ymd(text, bc).ok_or("not a date")?;
    Ok(i32::try_from(days).ok().filter(|d| DELTA_DATES.contains(d)))
}

/// Microseconds since the epoch (UTC when the text carries an offset); `infinity` /
/// `-infinity` → i64::MAX / i64::MIN.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    match text {
        "infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    let (text, bc) = strip_bc(text);
    let (date, time) = text.split_once(' ')?;
    let days = parse_ymd(date, bc)?;
    // The time, then an optional UTC offset: +HH, +HH:MM or +HH:MM:SS.
    let tz_at = time.find(['+', '-']);
    let (clock, offset) = match tz_at {
        Some(i) => (&time[..i], Some(&time[i..])),
        None => (time, None),
    };
    let mut hms = clock.splitn(3, ':');
    let h: i64 = hms.next()?.parse().ok()?;
    let mi: i64 = hms.next()?.parse().ok()?;
    let sec_text = hms.next()?;
    let (s_text, frac_text) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let s: i64 = s_text.parse().ok()?;
    if frac_text.len() > 6 || !frac_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut micros: i64 = 0;
    for i in 0..6 {
        micros = micros * 10 + frac_text.as_bytes().get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    let mut offset_secs = 0;
    if let Some(off) = offset {
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let mut parts = off[1..].split(':');
        let oh: i64 = parts.next()?.parse().ok()?;
        let om: i64 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        let os: i64 = parts.next().map_or(Some(0), |p| p.parse().ok())?;
        offset_secs = sign * (oh * 3600 + om * 60 + os);
    }
    let secs = days.checked_mul(86_400)? + h * 3600 + mi * 60 + s - offset_secs;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// Rewrites a PostgreSQL array literal (`{1,2,NULL}`, `{{"a b",c}}`, `[0:1]={x,y}`) as JSON.
pub(crate) fn array_to_json(text: &str, elem: ElemKind, delim: u8, out: &mut String) -> Result<(), &'static str> {
    const BAD: &str = "not an array literal";
    let bytes = text.as_bytes();
    let mut i = 0;
    if bytes.first() == Some(&b'[') {
        // Explicit bounds: skip "[l:u][l:u]=".
        i = text.find('=').ok_or(BAD)? + 1;
    }
    parse_array_level(bytes, &mut i, elem, delim, out)?;
    if i != bytes.len() {
        return Err(BAD);
    }
    Ok(())
}

fn parse_array_level(b: &[u8], i: &mut usize, elem: ElemKind, delim: u8, out: &mut String) -> Result<(), &'static str> {
    const BAD: &str = "not an array literal";
    if b.get(*i) != Some(&b'{') {
        return Err(BAD);
    }
    *i += 1;
    out.push('[');
    if b.get(*i) == Some(&b'}') {
        *i += 1;
        out.push(']');
        return Ok(());
    }
    loop {
        match b.get(*i) {
            Some(b'{') => parse_array_level(b, i, elem, delim, out)?,
            Some(b'"') => {
                *i += 1;
                let mut raw = Vec::new();
                loop {
                    match b.get(*i) {
                        Some(b'\\') => {
                            raw.push(*b.get(*i + 1).ok_or(BAD)?);
                            *i += 2;
                        }
                        Some(b'"') => {
                            *i += 1;
                            break;
                        }
                        Some(&c) => {
                            raw.push(c);
                            *i += 1;
                        }
                        None => return Err(BAD),
                    }
                }
                let value = std::str::from_utf8(&raw).map_err(|_| BAD)?;
                write_elem(value, elem, out);
            }
            Some(_) => {
                let start = *i;
                while let Some(&c) = b.get(*i) {
                    if c == delim || c == b'}' {
                        break;
                    }
                    *i += 1;
                }
                let token = std::str::from_utf8(&b[start..*i]).map_err(|_| BAD)?.trim();
                if token.eq_ignore_ascii_case("NULL") {
                    out.push_str("null");
                } else {
                    write_elem(token, elem, out);
                }
            }
            None => return Err(BAD),
        }
        match b.get(*i) {
            Some(&c) if c == delim => {
                *i += 1;
                out.push(',');
            }
            Some(b'}') => {
                *i += 1;
                out.push(']');
                return Ok(());
            }
            _ => return Err(BAD),
        }
    }
}

fn write_elem(value: &str, elem: ElemKind, out: &mut String) {
    match elem {
        ElemKind::Number if is_json_number(value) => out.push_str(value),
        ElemKind::Bool if value == "t" => out.push_str("true"),
        ElemKind::Bool if value == "f" => out.push_str("false"),
        ElemKind::Json => out.push_str(value),
        _ => push_string(out, value),
    }
}

/// True for text that is a JSON number (PostgreSQL's `NaN` and `Infinity` are not).
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i == int_start || (b[int_start] == b'0' && i - int_start > 1) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let f = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == f {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let e = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rtsync_core::arrow::array::{Array, AsArray};
    use rtsync_core::arrow::datatypes::{Decimal128Type, Float64Type};

    fn typmod(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + 4
    }

    #[test]
    fn classifies_builtin_numeric_and_catalog_types() {
        let mut cat = TypeCatalog::new();
        assert_eq!(classify(oid::NUMERIC, typmod(12, 2), &cat), ValueKind::Decimal { precision: 12, scale: 2 });
        assert_eq!(classify(oid::NUMERIC, -1, &cat), ValueKind::Text);
        assert_eq!(classify(oid::NUMERIC, typmod(50, 2), &cat), ValueKind::Text);
        assert_eq!(classify(oid::NUMERIC, typmod(5, -2), &cat), ValueKind::Text);
        assert_eq!(classify(25, -1, &cat), ValueKind::Text);
        assert_eq!(classify(oid::OID, -1, &cat), ValueKind::Int64);
        // int4[] and a domain over numeric(10,3), and an array of that domain.
        cat.insert(1007, TypeRow { typtype: 'b', category: 'A', elem: 23, base: 0, base_typmod: -1, delim: ',' });
        cat.insert(
            90001,
            TypeRow {
                typtype: 'd',
                category: 'N',
                elem: 0,
                base: oid::NUMERIC,
                base_typmod: typmod(10, 3),
                delim: ',',
            },
        );
        cat.insert(90002, TypeRow { typtype: 'b', category: 'A', elem: 90001, base: 0, base_typmod: -1, delim: ',' });
        cat.insert(90003, TypeRow { typtype: 'e', category: 'E', elem: 0, base: 0, base_typmod: -1, delim: ',' });
        assert_eq!(classify(1007, -1, &cat), ValueKind::Array { elem: ElemKind::Number, delim: b',' });
        assert_eq!(classify(90001, -1, &cat), ValueKind::Decimal { precision: 10, scale: 3 });
        assert_eq!(classify(90002, -1, &cat), ValueKind::Array { elem: ElemKind::Number, delim: b',' });
        assert_eq!(classify(90003, -1, &cat), ValueKind::Text);
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(parse_decimal("123.45", 2), Ok(Some(12345)));
        assert_eq!(parse_decimal("-0.05", 2), Ok(Some(-5)));
        assert_eq!(parse_decimal("7", 3), Ok(Some(7000)));
        assert_eq!(parse_decimal("1.50", 1), Ok(Some(15)));
        assert_eq!(parse_decimal("NaN", 2), Ok(None));
        assert_eq!(parse_decimal("-Infinity", 2), Ok(None));
        assert_eq!(
            parse_decimal("99999999999999999999999999999999999999", 0),
            Ok(Some(99_999_999_999_999_999_999_999_999_999_999_999_999))
        );
        assert!(parse_decimal("1.234", 2).is_err());
        assert!(parse_decimal("1x", 0).is_err());
        assert!(parse_decimal("", 0).is_err());
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(parse_date("1970-01-01"), Ok(Some(0)));
        assert_eq!(parse_date("2000-03-01"), Ok(Some(11_017)));
        assert_eq!(parse_date("1969-12-31"), Ok(Some(-1)));
        assert_eq!(parse_date("9999-12-31"), Ok(Some(2_932_896)));
        assert_eq!(parse_date("0001-01-01"), Ok(Some(-719_162)));
        assert_eq!(parse_date("infinity"), Ok(Some(2_932_896)));
        assert_eq!(parse_date("-infinity"), Ok(Some(-719_162)));
        // Outside Delta's range: 1 BC (astronomical year 0), PostgreSQL's first and last dates.
        for outside in ["0001-12-31 BC", "4714-11-24 BC", "10000-01-01", "5874897-12-31"] {
            assert_eq!(parse_date(outside), Ok(None), "{outside}");
        }
        assert!(parse_date("2024-13-01").is_err());
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2024-02-29 12:34:56.789012"), Some(1_709_210_096_789_012));
        assert_eq!(parse_timestamp("2024-02-29 12:34:56.5+00"), Some(1_709_210_096_500_000));
        assert_eq!(parse_timestamp("2024-02-29 14:34:56.5+02"), Some(1_709_210_096_500_000));
        assert_eq!(parse_timestamp("2024-02-29 12:04:56.5-00:30"), Some(1_709_210_096_500_000));
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.999999+00"), Some(-1));
        assert_eq!(parse_timestamp("-infinity"), Some(i64::MIN));
        assert_eq!(parse_timestamp("12345-01-01 00:00:00"), Some((days_from_civil(12345, 1, 1)) * 86_400_000_000));
        assert_eq!(parse_timestamp("2024-02-29"), None);
    }

    #[test]
    fn bytea_hex() {
        let mut out = Vec::new();
        decode_bytea("\\x00ff10", &mut out).unwrap();
        assert_eq!(out, vec![0, 255, 16]);
        decode_bytea("\\x", &mut out).unwrap();
        assert!(out.is_empty());
        assert!(decode_bytea("abc", &mut out).is_err());
    }

    #[test]
    fn arrays_become_json() {
        let json = |t: &str, e: ElemKind| {
            let mut s = String::new();
            array_to_json(t, e, b',', &mut s).map(|_| s)
        };
        assert_eq!(json("{1,2,NULL}", ElemKind::Number).unwrap(), "[1,2,null]");
        assert_eq!(json("{}", ElemKind::Number).unwrap(), "[]");
        assert_eq!(json("{{1,2},{3,4}}", ElemKind::Number).unwrap(), "[[1,2],[3,4]]");
        assert_eq!(json("{NaN,1.5,Infinity}", ElemKind::Number).unwrap(), r#"["NaN",1.5,"Infinity"]"#);
        assert_eq!(json("{t,f}", ElemKind::Bool).unwrap(), "[true,false]");
        assert_eq!(
            json(r#"{a,"b c","d\"e","NULL",NULL,"x\\y"}"#, ElemKind::String).unwrap(),
            r#"["a","b c","d\"e","NULL",null,"x\\y"]"#
        );
        assert_eq!(json(r#"{"{\"a\": 1}",2}"#, ElemKind::Json).unwrap(), r#"[{"a": 1},2]"#);
        assert_eq!(json("[0:1]={7,8}", ElemKind::Number).unwrap(), "[7,8]");
        assert!(json("{1,2", ElemKind::Number).is_err());
        let mut s = String::new();
        array_to_json("{(0,0),(1,1);(2,2),(3,3)}", ElemKind::String, b';', &mut s).unwrap();
        assert_eq!(s, r#"["(0,0),(1,1)","(2,2),(3,3)"]"#);
    }

    #[test]
    fn builders_parse_text() {
        let mut b = ColumnBuilder::new(&ValueKind::Decimal { precision: 10, scale: 2 }, 4);
        b.append_text("1.25").unwrap();
        b.append_text("NaN").unwrap();
        b.append_null();
        assert!(b.append_text("x").is_err());
        let a = b.finish();
        assert_eq!(a.data_type(), &DataType::Decimal128(10, 2));
        let a = a.as_primitive::<Decimal128Type>();
        assert_eq!((a.len(), a.value(0), a.is_null(1), a.is_null(2)), (3, 125, true, true));
        let mut f = ColumnBuilder::new(&ValueKind::Float64, 4);
        for t in ["NaN", "Infinity", "-Infinity", "1e+20", "0.1"] {
            f.append_text(t).unwrap();
        }
        let fa = f.finish();
        let fa = fa.as_primitive::<Float64Type>();
        assert!(fa.value(0).is_nan());
        assert_eq!((fa.value(1), fa.value(2), fa.value(3), fa.value(4)), (f64::INFINITY, f64::NEG_INFINITY, 1e20, 0.1));
        let mut t = ColumnBuilder::new(&ValueKind::TimestampTz, 1);
        t.append_text("2024-01-01 00:00:00+00").unwrap();
        assert_eq!(t.finish().data_type(), &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
    }
}
