//! What a user writes for one target column, and the closed set of target types.
//!
//! The spec is plain serde text so that it round-trips through a task file unchanged; every check
//! happens in [`crate::compile`], which turns the text into typed values once, before streaming.

use std::fmt;
use std::str::FromStr;

use arrow::datatypes::{DataType, TimeUnit};
use rtsync_core::SyncError;
use serde::{Deserialize, Serialize};

/// The time zone of every `timestamp` column: values are stored as UTC instants.
pub const TIMESTAMP_TZ: &str = "UTC";

/// The largest precision of a `decimal(p,s)` column (Arrow Decimal128, Delta decimal).
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// The type names [`ColumnType`] accepts, as listed in error messages.
pub const TYPE_NAMES: &str =
    "string, boolean (bool), int, bigint (long), double (float), decimal(p,s), date, timestamp, json";

/// One target column: `name`, the `expr` that computes it (a JSONPath over the message value,
/// or a built-in field such as `key` or `offset`) and its `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    pub expr: String,
    #[serde(rename = "type")]
    pub ty: String,
}

impl ColumnSpec {
    pub fn new(name: impl Into<String>, expr: impl Into<String>, ty: impl Into<String>) -> Self {
        Self { name: name.into(), expr: expr.into(), ty: ty.into() }
    }
}

/// The type of a target column. Parsed case-insensitively from [`ColumnSpec::ty`]; displayed in
/// its canonical lower-case spelling (`decimal(18,2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// Utf8: strings unescaped, any other value as its JSON text.
    String,
    /// Boolean.
    Boolean,
    /// Int32.
    Int,
    /// Int64.
    BigInt,
    /// Float64.
    Double,
    /// Decimal128(precision, scale), 1 <= precision <= 38, 0 <= scale <= precision.
    Decimal { precision: u8, scale: u8 },
    /// Date32: days since 1970-01-01.
    Date,
    /// Timestamp(Microsecond, "UTC").
    Timestamp,
    /// Utf8 holding the JSON text of the value.
    Json,
}

impl ColumnType {
    /// The Arrow type of the column's values.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            // Lossless: scale <= precision <= 38 < i8::MAX, checked when parsed.
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale as i8),
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMP_TZ.into())),
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Int => f.write_str("int"),
            ColumnType::BigInt => f.write_str("bigint"),
            ColumnType::Double => f.write_str("double"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Timestamp => f.write_str("timestamp"),
            ColumnType::Json => f.write_str("json"),
        }
    }
}

impl FromStr for ColumnType {
    type Err = SyncError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        let ty = match lower.as_str() {
            "string" => ColumnType::String,
            "boolean" | "bool" => ColumnType::Boolean,
            "int" => ColumnType::Int,
            "bigint" | "long" => ColumnType::BigInt,
            "double" | "float" => ColumnType::Double,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            "json" => ColumnType::Json,
            other => match other.strip_prefix("decimal") {
                Some(args) => parse_decimal_args(text, args)?,
                None => return Err(SyncError::config(format!("unknown type {text:?}; expected one of {TYPE_NAMES}"))),
            },
        };
        Ok(ty)
    }
}

/// `args` is what follows `decimal`: `(p,s)`, spaces allowed around the numbers.
fn parse_decimal_args(text: &str, args: &str) -> Result<ColumnType, SyncError> {
    let malformed =
        || SyncError::config(format!("type {text:?}: expected decimal(p,s) with 1 <= p <= 38 and 0 <= s <= p"));
    let inner = args.trim().strip_prefix('(').and_then(|a| a.strip_suffix(')')).ok_or_else(malformed)?;
    let (p, s) = inner.split_once(',').ok_or_else(malformed)?;
    let precision: u8 = p.trim().parse().map_err(|_| malformed())?;
    let scale: u8 = s.trim().parse().map_err(|_| malformed())?;
    if precision == 0 || precision > MAX_DECIMAL_PRECISION || scale > precision {
        return Err(malformed());
    }
    Ok(ColumnType::Decimal { precision, scale })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_and_alias_case_insensitively() {
        let cases = [
            ("string", ColumnType::String),
            ("STRING", ColumnType::String),
            ("boolean", ColumnType::Boolean),
            ("Bool", ColumnType::Boolean),
            ("int", ColumnType::Int),
            ("bigint", ColumnType::BigInt),
            ("LONG", ColumnType::BigInt),
            ("double", ColumnType::Double),
            ("float", ColumnType::Double),
            ("date", ColumnType::Date),
            ("timestamp", ColumnType::Timestamp),
            ("json", ColumnType::Json),
            ("decimal(18,2)", ColumnType::Decimal { precision: 18, scale: 2 }),
            ("DECIMAL( 38 , 0 )", ColumnType::Decimal { precision: 38, scale: 0 }),
            ("decimal(1,1)", ColumnType::Decimal { precision: 1, scale: 1 }),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<ColumnType>().unwrap(), want, "{text}");
        }
    }

    #[test]
    fn refuses_unknown_types_and_bad_decimals() {
        let err = "varchar".parse::<ColumnType>().unwrap_err().to_string();
        assert_eq!(err, format!("unknown type \"varchar\"; expected one of {TYPE_NAMES}"));
        for bad in
            ["decimal", "decimal(0,0)", "decimal(39,2)", "decimal(5,6)", "decimal(5)", "decimal(a,b)", "decimal(5,2"]
        {
            let err = bad.parse::<ColumnType>().unwrap_err().to_string();
            assert!(err.contains("expected decimal(p,s)"), "{bad}: {err}");
        }
    }

    #[test]
    fn displays_canonical_names_and_maps_to_arrow() {
        let dec = ColumnType::Decimal { precision: 18, scale: 2 };
        assert_eq!(dec.to_string(), "decimal(18,2)");
        assert_eq!(dec.data_type(), DataType::Decimal128(18, 2));
        assert_eq!(ColumnType::Boolean.to_string(), "boolean");
        assert_eq!(ColumnType::Timestamp.data_type(), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        assert_eq!(ColumnType::Date.data_type(), DataType::Date32);
        assert_eq!(ColumnType::Json.data_type(), DataType::Utf8);
    }

    #[test]
    fn spec_refuses_unknown_fields() {
        let ok: ColumnSpec = serde_json::from_str(r#"{"name":"id","expr":"$.id","type":"bigint"}"#).unwrap();
        assert_eq!(ok, ColumnSpec::new("id", "$.id", "bigint"));
        let err = serde_json::from_str::<ColumnSpec>(r#"{"name":"id","expr":"$.id","type":"bigint","x":1}"#);
        assert!(err.unwrap_err().to_string().contains("unknown field `x`"));
    }
}
