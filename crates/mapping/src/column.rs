//! Output columns: one Arrow builder per target column, and the casts that append to it.
//!
//! A value goes from the message's bytes to the builder without an intermediate row value: a
//! JSON value arrives as its raw text (a slice of the message), is classified by its first byte
//! and parsed straight into the builder's native type. Strings are copied once, into the
//! builder, unless they hold escapes (then they are decoded through one scratch buffer reused
//! for the whole batch). A failed cast appends nothing, so the caller can finish the row with
//! nulls and drop it.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::error::ArrowError;
use chrono::{DateTime, SecondsFormat};

use crate::cast::{
    BadEscape, IntError, NumberError, Rounding, parse_bool, parse_date, parse_i32, parse_i64, parse_number,
    parse_timestamp, unescape_into,
};
use crate::json::{self, JsonError};
use crate::spec::{ColumnType, TIMESTAMP_TZ};

/// Longest excerpt of a value quoted in a rejection reason.
const SHOWN_MAX: usize = 80;

/// Average bytes reserved per string value when a batch starts; builders grow past it.
const STRING_BYTES_HINT: usize = 16;

const MICROS_PER_MILLI: i64 = 1_000;
const MILLIS_PER_DAY: i64 = 86_400_000;

/// Why a value could not be cast; [`CastError::describe`] words it for a user.
#[derive(Debug)]
pub(crate) enum CastError {
    /// Not a kind of value the column takes (`"abc"` for a decimal, `1.5` for an int).
    Invalid,
    /// The right kind, but outside the column's range.
    OutOfRange,
    /// A string whose `\u` escapes hold an unpaired surrogate: no Unicode text.
    BadEscape,
    /// Text that should be JSON (a `json` column from a Kafka key or value) is not.
    NotJson(JsonError),
}

impl From<BadEscape> for CastError {
    fn from(_: BadEscape) -> Self {
        CastError::BadEscape
    }
}

impl From<IntError> for CastError {
    fn from(err: IntError) -> Self {
        match err {
            IntError::NotAnInteger => CastError::Invalid,
            IntError::OutOfRange => CastError::OutOfRange,
        }
    }
}

impl CastError {
    /// `value "abc" is not a decimal`; `shown` is the value as quoted JSON text.
    pub(crate) fn describe(&self, raw: &str, ty: ColumnType) -> String {
        let shown = shown(raw);
        match self {
            CastError::Invalid => format!("value {shown} is not {}", expected(ty)),
            CastError::OutOfRange => format!("value {shown} is out of range for {ty}"),
            CastError::BadEscape => format!("value {shown} holds an unpaired UTF-16 surrogate escape"),
            CastError::NotJson(err) => format!("value {shown} is not valid JSON: {err}"),
        }
    }
}

/// What a column of type `ty` takes, as a noun phrase.
fn expected(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Boolean => "a boolean",
        ColumnType::Int | ColumnType::BigInt => "an integer",
        ColumnType::Double => "a number",
        ColumnType::Decimal { .. } => "a decimal",
        ColumnType::Date => "a date (\"YYYY-MM-DD\" or days since 1970-01-01)",
        ColumnType::Timestamp => "a timestamp (RFC 3339, \"YYYY-MM-DD HH:MM:SS[.ffffff]\" or epoch milliseconds)",
        ColumnType::String | ColumnType::Json => "a string",
    }
}

/// At most [`SHOWN_MAX`] characters of `raw`, on one line.
pub(crate) fn shown(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(SHOWN_MAX + 3));
    for (i, ch) in raw.chars().enumerate() {
        if i == SHOWN_MAX {
            out.push('…');
            break;
        }
        out.push(if ch.is_control() { ' ' } else { ch });
    }
    out
}

/// The content of the JSON string literal `raw`, decoded into `scratch` only if it has escapes.
fn string_content<'s>(raw: &'s str, scratch: &'s mut String) -> Result<&'s str, CastError> {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    if !inner.contains('\\') {
        return Ok(inner);
    }
    scratch.clear();
    unescape_into(inner, scratch, false)?;
    Ok(scratch)
}

/// The builder of one target column.
pub(crate) enum Builder {
    String(StringBuilder),
    Json(StringBuilder),
    Boolean(BooleanBuilder),
    Int(Int32Builder),
    BigInt(Int64Builder),
    Double(Float64Builder),
    /// `limit` is 10^precision: every value's magnitude must stay below it.
    Decimal {
        values: Decimal128Builder,
        scale: u32,
        limit: i128,
    },
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    pub(crate) fn new(ty: ColumnType, capacity: usize) -> Result<Builder, ArrowError> {
        let strings = || StringBuilder::with_capacity(capacity, capacity * STRING_BYTES_HINT);
        Ok(match ty {
            ColumnType::String => Builder::String(strings()),
            ColumnType::Json => Builder::Json(strings()),
            ColumnType::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
            ColumnType::Int => Builder::Int(Int32Builder::with_capacity(capacity)),
            ColumnType::BigInt => Builder::BigInt(Int64Builder::with_capacity(capacity)),
            ColumnType::Double => Builder::Double(Float64Builder::with_capacity(capacity)),
            ColumnType::Decimal { precision, scale } => Builder::Decimal {
                values: Decimal128Builder::with_capacity(capacity).with_precision_and_scale(precision, scale as i8)?,
                scale: u32::from(scale),
                limit: 10i128.pow(u32::from(precision)),
            },
            ColumnType::Date => Builder::Date(Date32Builder::with_capacity(capacity)),
            ColumnType::Timestamp => {
                Builder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone(TIMESTAMP_TZ))
            }
        })
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            Builder::String(b) | Builder::Json(b) => b.append_null(),
            Builder::Boolean(b) => b.append_null(),
            Builder::Int(b) => b.append_null(),
            Builder::BigInt(b) => b.append_null(),
            Builder::Double(b) => b.append_null(),
            Builder::Decimal { values, .. } => values.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::String(b) | Builder::Json(b) => Arc::new(b.finish()),
            Builder::Boolean(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::BigInt(b) => Arc::new(b.finish()),
            Builder::Double(b) => Arc::new(b.finish()),
            Builder::Decimal { values, .. } => Arc::new(values.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
        }
    }

    /// Appends the JSON value whose validated text is `raw` (no surrounding whitespace).
    /// JSON `null` appends NULL. On error nothing is appended.
    pub(crate) fn append_json(&mut self, raw: &str, scratch: &mut String) -> Result<(), CastError> {
        let Some(&first) = raw.as_bytes().first() else {
            return Err(CastError::Invalid);
        };
        match (first, &mut *self) {
            (b'n', _) => self.append_null(),
            (_, Builder::Json(b)) => b.append_value(raw),
            (b'"', Builder::String(b)) => b.append_value(string_content(raw, scratch)?),
            (b'"', _) => self.append_str(string_content(raw, scratch)?)?,
            (_, Builder::String(b)) => b.append_value(raw),
            (b't' | b'f', Builder::Boolean(b)) => b.append_value(first == b't'),
            (b'{' | b'[' | b't' | b'f', _) => return Err(CastError::Invalid),
            // A number.
            (_, Builder::Double(b)) => match raw.parse::<f64>() {
                Ok(v) if v.is_finite() => b.append_value(v),
                Ok(_) => return Err(CastError::OutOfRange),
                Err(_) => return Err(CastError::Invalid),
            },
            (_, Builder::Date(b)) => b.append_value(parse_i32(raw)?),
            (_, Builder::Timestamp(b)) => {
                let millis = parse_i64(raw)?;
                b.append_value(millis.checked_mul(MICROS_PER_MILLI).ok_or(CastError::OutOfRange)?)
            }
            _ => self.append_number_text(raw)?,
        }
        Ok(())
    }

    /// Appends the content of a string (decoded JSON string, Kafka key or value text) cast to
    /// the column's type. On error nothing is appended.
    pub(crate) fn append_str(&mut self, text: &str) -> Result<(), CastError> {
        match self {
            Builder::String(b) => b.append_value(text),
            Builder::Json(b) => b.append_value(json::validate(text).map_err(CastError::NotJson)?),
            Builder::Boolean(b) => b.append_value(parse_bool(text).ok_or(CastError::Invalid)?),
            Builder::Double(b) => match text.parse::<f64>() {
                // "inf" and "NaN" are taken as written; digits too large for a double are not.
                Ok(v) if v.is_infinite() && text.bytes().any(|c| c.is_ascii_digit()) => {
                    return Err(CastError::OutOfRange);
                }
                Ok(v) => b.append_value(v),
                Err(_) => return Err(CastError::Invalid),
            },
            Builder::Date(b) => b.append_value(parse_date(text).ok_or(CastError::Invalid)?),
            Builder::Timestamp(b) => b.append_value(parse_timestamp(text).ok_or(CastError::Invalid)?),
            Builder::Int(_) | Builder::BigInt(_) | Builder::Decimal { .. } => self.append_number_text(text)?,
        }
        Ok(())
    }

    /// Integer and decimal columns, from a number's text (JSON number or numeric string).
    fn append_number_text(&mut self, text: &str) -> Result<(), CastError> {
        match self {
            Builder::Int(b) => b.append_value(parse_i32(text)?),
            Builder::BigInt(b) => b.append_value(parse_i64(text)?),
            Builder::Decimal { values, scale, limit } => {
                let number = parse_number(text).ok_or(CastError::Invalid)?;
                let v = number.scaled(*scale, Rounding::HalfAwayFromZero).map_err(|e| match e {
                    NumberError::OutOfRange | NumberError::Inexact => CastError::OutOfRange,
                })?;
                if v.unsigned_abs() >= limit.unsigned_abs() {
                    return Err(CastError::OutOfRange);
                }
                values.append_value(v)
            }
            _ => return Err(CastError::Invalid),
        }
        Ok(())
    }

    /// A Kafka partition or offset. Compile time allows only int, bigint and string here.
    pub(crate) fn append_integer(&mut self, v: i64) -> Result<(), CastError> {
        match self {
            Builder::Int(b) => b.append_value(i32::try_from(v).map_err(|_| CastError::OutOfRange)?),
            Builder::BigInt(b) => b.append_value(v),
            Builder::String(b) => {
                let _ = write!(b, "{v}");
                b.append_value("");
            }
            _ => return Err(CastError::Invalid),
        }
        Ok(())
    }

    /// A Kafka message timestamp (epoch milliseconds). Compile time allows timestamp, bigint,
    /// date and string here.
    pub(crate) fn append_timestamp_millis(&mut self, millis: i64) -> Result<(), CastError> {
        match self {
            Builder::Timestamp(b) => b.append_value(millis.checked_mul(MICROS_PER_MILLI).ok_or(CastError::OutOfRange)?),
            Builder::BigInt(b) => b.append_value(millis),
            Builder::Date(b) => {
                let days = i32::try_from(millis.div_euclid(MILLIS_PER_DAY)).map_err(|_| CastError::OutOfRange)?;
                b.append_value(days)
            }
            Builder::String(b) => {
                let time = DateTime::from_timestamp_millis(millis).ok_or(CastError::OutOfRange)?;
                b.append_value(time.to_rfc3339_opts(SecondsFormat::Millis, true))
            }
            _ => return Err(CastError::Invalid),
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};

    use super::*;

    /// Casts each JSON text into a fresh column of `ty`; Ok(array) or the first error described.
    fn cast(ty: &str, raws: &[&str]) -> Result<ArrayRef, String> {
        let ty: ColumnType = ty.parse().unwrap();
        let mut b = Builder::new(ty, raws.len()).unwrap();
        let mut scratch = String::new();
        for raw in raws {
            b.append_json(raw, &mut scratch).map_err(|e| e.describe(raw, ty))?;
        }
        Ok(b.finish())
    }

    fn err(ty: &str, raw: &str) -> String {
        cast(ty, &[raw]).unwrap_err()
    }

    #[test]
    fn strings_unescape_and_other_values_keep_their_text() {
        let a =
            cast("string", &[r#""plain""#, r#""a\"b\u00e9\ud83d\ude00""#, "12.50", "true", r#"{"a": [1]}"#, "null"])
                .unwrap();
        let a = a.as_string::<i32>();
        assert_eq!(a.value(0), "plain");
        assert_eq!(a.value(1), "a\"bé😀");
        assert_eq!(a.value(2), "12.50");
        assert_eq!(a.value(3), "true");
        assert_eq!(a.value(4), r#"{"a": [1]}"#);
        assert!(a.is_null(5));
        assert_eq!(err("string", r#""\ud800""#), r#"value "\ud800" holds an unpaired UTF-16 surrogate escape"#);
    }

    #[test]
    fn json_keeps_raw_text_and_quotes() {
        let a = cast("json", &[r#""abc""#, "1.0", r#"{"b": 1, "a": 2}"#, "null"]).unwrap();
        let a = a.as_string::<i32>();
        assert_eq!(a.value(0), r#""abc""#);
        assert_eq!(a.value(1), "1.0");
        assert_eq!(a.value(2), r#"{"b": 1, "a": 2}"#);
        assert!(a.is_null(3));
    }

    #[test]
    fn booleans() {
        let a = cast("boolean", &["true", "false", r#""TRUE""#, r#""false""#, "null"]).unwrap();
        let a = a.as_boolean();
        assert!(a.value(0) && !a.value(1) && a.value(2) && !a.value(3) && a.is_null(4));
        assert_eq!(err("bool", "1"), "value 1 is not a boolean");
        assert_eq!(err("bool", r#""yes""#), r#"value "yes" is not a boolean"#);
        assert_eq!(err("bool", "[true]"), "value [true] is not a boolean");
    }

    #[test]
    fn integers() {
        let a = cast("int", &["7", "-2147483648", r#""42""#, "1.0", "null"]).unwrap();
        let a = a.as_primitive::<Int32Type>();
        assert_eq!((a.value(0), a.value(1), a.value(2), a.value(3)), (7, i32::MIN, 42, 1));
        assert!(a.is_null(4));
        assert_eq!(err("int", "2147483648"), "value 2147483648 is out of range for int");
        assert_eq!(err("int", "1.5"), "value 1.5 is not an integer");
        assert_eq!(err("int", r#""4x""#), r#"value "4x" is not an integer"#);
        assert_eq!(err("int", "true"), "value true is not an integer");

        let a = cast("bigint", &["9223372036854775807", r#""-9223372036854775808""#]).unwrap();
        let a = a.as_primitive::<Int64Type>();
        assert_eq!((a.value(0), a.value(1)), (i64::MAX, i64::MIN));
        assert_eq!(err("long", "9223372036854775808"), "value 9223372036854775808 is out of range for bigint");
        assert_eq!(err("bigint", "{}"), "value {} is not an integer");
    }

    #[test]
    fn doubles() {
        let a = cast("double", &["1.5", "-2e-3", "12345678901234567890", r#""3.25""#, r#""NaN""#]).unwrap();
        let a = a.as_primitive::<Float64Type>();
        assert_eq!((a.value(0), a.value(1), a.value(2), a.value(3)), (1.5, -0.002, 1.2345678901234567e19, 3.25));
        assert!(a.value(4).is_nan());
        assert_eq!(err("double", "1e999"), "value 1e999 is out of range for double");
        assert_eq!(err("double", r#""-1e999""#), r#"value "-1e999" is out of range for double"#);
        let inf = cast("double", &[r#""-inf""#, r#""Infinity""#]).unwrap();
        assert_eq!(inf.as_primitive::<Float64Type>().values().to_vec(), vec![f64::NEG_INFINITY, f64::INFINITY]);
        assert_eq!(err("float", r#""abc""#), r#"value "abc" is not a number"#);
        assert_eq!(err("double", "false"), "value false is not a number");
    }

    #[test]
    fn decimals_are_exact_and_round_half_away_from_zero() {
        let a = cast(
            "decimal(19,2)",
            &["12345678901234567.89", "-0.005", "0.004", r#""1.5e3""#, "7", r#""-12.345""#, "99999999999999999.994"],
        )
        .unwrap();
        let a = a.as_primitive::<Decimal128Type>();
        assert_eq!(a.precision(), 19);
        assert_eq!(a.scale(), 2);
        let values: Vec<i128> = (0..a.len()).map(|i| a.value(i)).collect();
        assert_eq!(values, vec![1_234_567_890_123_456_789, -1, 0, 150_000, 700, -1235, 9_999_999_999_999_999_999]);
        assert_eq!(a.value_as_string(0), "12345678901234567.89");
        assert_eq!(
            err("decimal(19,2)", "99999999999999999.995"),
            "value 99999999999999999.995 is out of range for decimal(19,2)"
        );
        assert_eq!(err("decimal(5,2)", "1000"), "value 1000 is out of range for decimal(5,2)");
        assert_eq!(err("decimal(18,2)", r#""abc""#), r#"value "abc" is not a decimal"#);
        assert_eq!(err("decimal(18,2)", "1e400"), "value 1e400 is out of range for decimal(18,2)");

        let big = cast("decimal(20,0)", &["9223372036854775808", "-99999999999999999999"]).unwrap();
        let big = big.as_primitive::<Decimal128Type>();
        assert_eq!(big.value(0), 9_223_372_036_854_775_808);
        assert_eq!(big.value(1), -99_999_999_999_999_999_999);
        let max = cast("decimal(38,0)", &["99999999999999999999999999999999999999"]).unwrap();
        assert_eq!(max.as_primitive::<Decimal128Type>().value(0), 10i128.pow(38) - 1);
    }

    #[test]
    fn dates() {
        let a = cast("date", &[r#""2024-02-29""#, "19782", "-1", "null"]).unwrap();
        let a = a.as_primitive::<Date32Type>();
        assert_eq!((a.value(0), a.value(1), a.value(2)), (19_782, 19_782, -1));
        assert!(a.is_null(3));
        let expected = "a date (\"YYYY-MM-DD\" or days since 1970-01-01)";
        assert_eq!(err("date", r#""2023-02-29""#), format!(r#"value "2023-02-29" is not {expected}"#));
        assert_eq!(err("date", r#""19782""#), format!(r#"value "19782" is not {expected}"#));
        assert_eq!(err("date", "1.5"), format!("value 1.5 is not {expected}"));
        assert_eq!(err("date", "3000000000"), "value 3000000000 is out of range for date");
    }

    #[test]
    fn timestamps() {
        let a = cast(
            "timestamp",
            &[
                r#""2023-11-15T00:13:20.5+02:00""#,
                r#""2023-11-14 22:13:20""#,
                "1700000000123",
                r#""2023-11-14T22:13:20""#,
            ],
        )
        .unwrap();
        let a = a.as_primitive::<TimestampMicrosecondType>();
        assert_eq!(a.timezone(), Some("UTC"));
        assert_eq!(a.value(0), 1_700_000_000_500_000);
        assert_eq!(a.value(1), 1_700_000_000_000_000);
        assert_eq!(a.value(2), 1_700_000_000_123_000);
        assert_eq!(a.value(3), 1_700_000_000_000_000);
        let expected = "a timestamp (RFC 3339, \"YYYY-MM-DD HH:MM:SS[.ffffff]\" or epoch milliseconds)";
        assert_eq!(err("timestamp", r#""yesterday""#), format!(r#"value "yesterday" is not {expected}"#));
        assert_eq!(err("timestamp", "1.5"), format!("value 1.5 is not {expected}"));
        assert_eq!(err("timestamp", "9223372036854775807"), "value 9223372036854775807 is out of range for timestamp");
    }

    #[test]
    fn kafka_fields() {
        let mut s = Builder::new(ColumnType::String, 2).unwrap();
        s.append_integer(-3).unwrap();
        s.append_timestamp_millis(1_700_000_000_123).unwrap();
        let s = s.finish();
        let s = s.as_string::<i32>();
        assert_eq!((s.value(0), s.value(1)), ("-3", "2023-11-14T22:13:20.123Z"));
        let mut d = Builder::new(ColumnType::Date, 1).unwrap();
        d.append_timestamp_millis(-1).unwrap();
        assert_eq!(d.finish().as_primitive::<Date32Type>().value(0), -1);
        let mut j = Builder::new(ColumnType::Json, 1).unwrap();
        assert!(j.append_str(" {\"a\": 1} ").is_ok());
        assert_eq!(j.finish().as_string::<i32>().value(0), "{\"a\": 1}");
        let mut j = Builder::new(ColumnType::Json, 1).unwrap();
        let e = j.append_str("{oops").unwrap_err().describe("\"{oops\"", ColumnType::Json);
        assert!(e.starts_with("value \"{oops\" is not valid JSON: "), "{e}");
    }

    #[test]
    fn shown_values_are_short_and_on_one_line() {
        assert_eq!(shown("\"a\nb\""), "\"a b\"");
        let long = "x".repeat(200);
        let s = shown(&long);
        assert_eq!(s.chars().count(), SHOWN_MAX + 1);
        assert!(s.ends_with('…'));
        let emoji = "😀".repeat(100);
        assert_eq!(shown(&emoji).chars().count(), SHOWN_MAX + 1);
    }
}
