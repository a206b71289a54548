//! SQL Server types → Arrow, and tiberius values → Arrow builders.
//!
//! | SQL Server | Arrow (Delta) | Note |
//! |---|---|---|
//! | `bit` | Boolean | |
//! | `tinyint` | Int16 | 0..255, unsigned: the next signed width |
//! | `smallint`, `int`, `bigint` | Int16, Int32, Int64 | |
//! | `decimal(p,s)`, `numeric(p,s)` | Decimal128(p,s) | p ≤ 38 |
//! | `money`, `smallmoney` | Decimal128(19,4), Decimal128(10,4) | read as `CAST(… AS decimal)`: TDS money decodes to a float otherwise |
//! | `real`, `float` | Float32, Float64 | |
//! | `char`, `varchar`, `nchar`, `nvarchar` (also `(max)`), `text`, `ntext` | Utf8 | |
//! | `binary`, `varbinary` (also `(max)`), `image`, `rowversion`/`timestamp` | Binary | |
//! | `date` | Date32 | |
//! | `time(0-7)` | Utf8 `HH:MM:SS[.fffffff]` | 100 ns precision does not fit microseconds; digits as the scale declares |
//! | `datetime` | Timestamp(µs) | its 1/300 s ticks rounded to the millisecond as SQL Server shows them (`.003`, `.007`) |
//! | `smalldatetime` | Timestamp(µs) | |
//! | `datetime2(0-6)` | Timestamp(µs) | |
//! | `datetime2(7)` | Utf8 `YYYY-MM-DD HH:MM:SS.fffffff` | 100 ns precision does not fit microseconds |
//! | `datetimeoffset(0-6)` | Timestamp(µs, UTC) | the instant; the offset is not kept |
//! | `datetimeoffset(7)` | Utf8 `YYYY-MM-DD HH:MM:SS.fffffff +HH:MM` | local time and offset, as SQL Server prints it |
//! | `uniqueidentifier` | Utf8 | upper-case, as SQL Server prints it |
//! | `xml` | Utf8 | the document text |
//! | `sql_variant` | Utf8 | read as `CAST(… AS nvarchar(4000))`: the value's text, its base type is not kept |
//! | `hierarchyid`, `geometry`, `geography` | Binary | the CLR type's serialized bytes (`CAST(… AS varbinary(max))`) |
//!
//! Any other type (user-defined CLR types, `vector`, `json` of SQL Server 2025) is refused by
//! [`SqlType::parse`] with the column's name.

use std::sync::Arc;

use rtsync_core::SyncError;
use rtsync_core::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use rtsync_core::arrow::datatypes::{DataType, TimeUnit};
use tiberius::ColumnData;

use crate::sql::quote_ident;

/// Days from 0001-01-01 (SQL Server's `date` epoch) to 1970-01-01.
const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 (`datetime`'s epoch) to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A column's type as `sys.types` names it, with what the Arrow type depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Decimal {
        precision: u8,
        scale: u8,
    },
    Money,
    SmallMoney,
    Real,
    Float,
    /// char, varchar, nchar, nvarchar, text, ntext; `lob` for `(max)`, text and ntext (the
    /// ones CDC leaves NULL in an update that did not change them).
    Text {
        lob: bool,
    },
    /// binary, varbinary, image, rowversion; `lob` for `(max)` and image.
    Bytes {
        lob: bool,
    },
    Date,
    Time {
        scale: u8,
    },
    DateTime,
    SmallDateTime,
    DateTime2 {
        scale: u8,
    },
    DateTimeOffset {
        scale: u8,
    },
    UniqueIdentifier,
    Xml,
    SqlVariant,
    /// hierarchyid, geometry, geography.
    Clr,
}

impl SqlType {
    /// From `sys.types.name` (of the system type), `sys.columns.max_length` (-1 for `(max)`),
    /// `precision` and `scale`. Refuses unknown types naming the column.
    pub fn parse(
        column: &str,
        type_name: &str,
        max_length: i16,
        precision: u8,
        scale: u8,
    ) -> Result<SqlType, SyncError> {
        Ok(match type_name.to_ascii_lowercase().as_str() {
            "bit" => SqlType::Bit,
            "tinyint" => SqlType::TinyInt,
            "smallint" => SqlType::SmallInt,
            "int" => SqlType::Int,
            "bigint" => SqlType::BigInt,
            "decimal" | "numeric" => SqlType::Decimal { precision, scale },
            "money" => SqlType::Money,
            "smallmoney" => SqlType::SmallMoney,
            "real" => SqlType::Real,
            "float" => SqlType::Float,
            "char" | "varchar" | "nchar" | "nvarchar" | "sysname" => SqlType::Text { lob: max_length == -1 },
            "text" | "ntext" => SqlType::Text { lob: true },
            "binary" | "varbinary" | "timestamp" | "rowversion" => SqlType::Bytes { lob: max_length == -1 },
            "image" => SqlType::Bytes { lob: true },
            "date" => SqlType::Date,
            "time" => SqlType::Time { scale },
            "datetime" => SqlType::DateTime,
            "smalldatetime" => SqlType::SmallDateTime,
            "datetime2" => SqlType::DateTime2 { scale },
            "datetimeoffset" => SqlType::DateTimeOffset { scale },
            "uniqueidentifier" => SqlType::UniqueIdentifier,
            "xml" => SqlType::Xml,
            "sql_variant" => SqlType::SqlVariant,
            "hierarchyid" | "geometry" | "geography" => SqlType::Clr,
            other => {
                return Err(SyncError::source_err(format!(
                    "column {column} has type {other}, which rtsync cannot read from SQL Server; leave the column out of the capture instance (@captured_column_list) or change its type"
                )));
            }
        })
    }

    /// The Arrow type rows carry (see the module's table).
    pub fn arrow_type(self) -> DataType {
        match self {
            SqlType::Bit => DataType::Boolean,
            SqlType::TinyInt | SqlType::SmallInt => DataType::Int16,
            SqlType::Int => DataType::Int32,
            SqlType::BigInt => DataType::Int64,
            SqlType::Decimal { precision, scale } => DataType::Decimal128(precision, scale as i8),
            SqlType::Money => DataType::Decimal128(19, 4),
            SqlType::SmallMoney => DataType::Decimal128(10, 4),
            SqlType::Real => DataType::Float32,
            SqlType::Float => DataType::Float64,
            SqlType::Text { .. } | SqlType::UniqueIdentifier | SqlType::Xml | SqlType::SqlVariant => DataType::Utf8,
            SqlType::Time { .. } => DataType::Utf8,
            SqlType::Bytes { .. } | SqlType::Clr => DataType::Binary,
            SqlType::Date => DataType::Date32,
            SqlType::DateTime | SqlType::SmallDateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::DateTime2 { scale } if scale <= 6 => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::DateTime2 { .. } => DataType::Utf8,
            SqlType::DateTimeOffset { scale } if scale <= 6 => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            SqlType::DateTimeOffset { .. } => DataType::Utf8,
        }
    }

    /// Whether CDC reports this column as NULL in an update that did not change it.
    pub fn is_lob(self) -> bool {
        matches!(self, SqlType::Text { lob: true } | SqlType::Bytes { lob: true } | SqlType::Xml)
    }

    /// The select-list expression that reads `column` so that tiberius decodes it losslessly.
    pub fn select_expr(self, column: &str) -> String {
        let q = quote_ident(column);
        match self {
            SqlType::Money => format!("CAST({q} AS decimal(19,4)) AS {q}"),
            SqlType::SmallMoney => format!("CAST({q} AS decimal(10,4)) AS {q}"),
            SqlType::SqlVariant => format!("CAST({q} AS nvarchar(4000)) AS {q}"),
            SqlType::Clr => format!("CAST({q} AS varbinary(max)) AS {q}"),
            _ => q,
        }
    }
}

/// One column's Arrow builder.
pub enum ColBuilder {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, u8),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date32(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
}

impl ColBuilder {
    pub fn new(ty: SqlType, capacity: usize) -> ColBuilder {
        match ty.arrow_type() {
            DataType::Boolean => ColBuilder::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Int16 => ColBuilder::Int16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => ColBuilder::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => ColBuilder::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float32 => ColBuilder::Float32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => ColBuilder::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Decimal128(p, s) => ColBuilder::Decimal(Decimal128Builder::with_capacity(capacity), p, s as u8),
            DataType::Binary => ColBuilder::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            DataType::Date32 => ColBuilder::Date32(Date32Builder::with_capacity(capacity)),
            DataType::Timestamp(_, tz) => {
                ColBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity), tz)
            }
            _ => ColBuilder::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    pub fn append_null(&mut self) {
        match self {
            ColBuilder::Boolean(b) => b.append_null(),
            ColBuilder::Int16(b) => b.append_null(),
            ColBuilder::Int32(b) => b.append_null(),
            ColBuilder::Int64(b) => b.append_null(),
            ColBuilder::Float32(b) => b.append_null(),
            ColBuilder::Float64(b) => b.append_null(),
            ColBuilder::Decimal(b, _, _) => b.append_null(),
            ColBuilder::Utf8(b) => b.append_null(),
            ColBuilder::Binary(b) => b.append_null(),
            ColBuilder::Date32(b) => b.append_null(),
            ColBuilder::Timestamp(b, _) => b.append_null(),
        }
    }

    /// Appends one value of a column of type `ty`; an error text names what did not fit.
    pub fn append(&mut self, ty: SqlType, value: &ColumnData<'_>) -> Result<(), String> {
        if is_null(value) {
            self.append_null();
            return Ok(());
        }
        let mismatch = || format!("a {} value arrived for a column declared {ty:?}", data_name(value));
        match (self, value) {
            (ColBuilder::Boolean(b), ColumnData::Bit(Some(v))) => b.append_value(*v),
            (ColBuilder::Int16(b), ColumnData::U8(Some(v))) => b.append_value(i16::from(*v)),
            (ColBuilder::Int16(b), ColumnData::I16(Some(v))) => b.append_value(*v),
            (ColBuilder::Int32(b), ColumnData::I32(Some(v))) => b.append_value(*v),
            (ColBuilder::Int64(b), ColumnData::I64(Some(v))) => b.append_value(*v),
            (ColBuilder::Float32(b), ColumnData::F32(Some(v))) => b.append_value(*v),
            (ColBuilder::Float64(b), ColumnData::F64(Some(v))) => b.append_value(*v),
            (ColBuilder::Decimal(b, p, s), ColumnData::Numeric(Some(n))) => {
                b.append_value(rescale(n.value(), n.scale(), *p, *s)?);
            }
            (ColBuilder::Utf8(b), ColumnData::String(Some(s))) => b.append_value(s),
            (ColBuilder::Utf8(b), ColumnData::Guid(Some(g))) => b.append_value(g.to_string().to_ascii_uppercase()),
            (ColBuilder::Utf8(b), ColumnData::Xml(Some(x))) => b.append_value(x.to_string()),
            (ColBuilder::Utf8(b), ColumnData::Time(Some(t))) => b.append_value(time_text(t.increments(), t.scale())),
            (ColBuilder::Utf8(b), ColumnData::DateTime2(Some(dt))) => {
                let micros = date_micros(dt.date().days());
                b.append_value(datetime_text(micros, dt.time().increments(), dt.time().scale()));
            }
            (ColBuilder::Utf8(b), ColumnData::DateTimeOffset(Some(dto))) => {
                // The datetime2 part is UTC; SQL Server prints the local time and the offset.
                let dt = dto.datetime2();
                let scale = dt.time().scale();
                let per_minute = 60 * 10u64.pow(u32::from(scale));
                let offset = i64::from(dto.offset());
                let day_incr = 1440 * per_minute as i64;
                let mut days = i64::from(dt.date().days());
                let mut incr = dt.time().increments() as i64 + offset * per_minute as i64;
                if incr < 0 {
                    incr += day_incr;
                    days -= 1;
                } else if incr >= day_incr {
                    incr -= day_incr;
                    days += 1;
                }
                let (sign, off) = if offset < 0 { ('-', -offset) } else { ('+', offset) };
                let text = datetime_text((days - DAYS_0001_TO_1970) * MICROS_PER_DAY, incr as u64, scale);
                b.append_value(format!("{text} {sign}{:02}:{:02}", off / 60, off % 60));
            }
            (ColBuilder::Binary(b), ColumnData::Binary(Some(v))) => b.append_value(v),
            (ColBuilder::Date32(b), ColumnData::Date(Some(d))) => {
                b.append_value((i64::from(d.days()) - DAYS_0001_TO_1970) as i32);
            }
            (ColBuilder::Timestamp(b, _), ColumnData::DateTime(Some(dt))) => {
                // 1/300 s ticks, rounded to the millisecond as SQL Server shows them.
                let millis = (i64::from(dt.seconds_fragments()) * 10 + 1) / 3;
                b.append_value((i64::from(dt.days()) - DAYS_1900_TO_1970) * MICROS_PER_DAY + millis * 1000);
            }
            (ColBuilder::Timestamp(b, _), ColumnData::SmallDateTime(Some(dt))) => {
                b.append_value(
                    (i64::from(dt.days()) - DAYS_1900_TO_1970) * MICROS_PER_DAY
                        + i64::from(dt.seconds_fragments()) * 60_000_000,
                );
            }
            (ColBuilder::Timestamp(b, _), ColumnData::DateTime2(Some(dt))) => {
                b.append_value(date_micros(dt.date().days()) + time_micros(dt.time().increments(), dt.time().scale())?);
            }
            (ColBuilder::Timestamp(b, _), ColumnData::DateTimeOffset(Some(dto))) => {
                let dt = dto.datetime2();
                b.append_value(date_micros(dt.date().days()) + time_micros(dt.time().increments(), dt.time().scale())?);
            }
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    pub fn finish(&mut self) -> Result<ArrayRef, SyncError> {
        Ok(match self {
            ColBuilder::Boolean(b) => Arc::new(b.finish()),
            ColBuilder::Int16(b) => Arc::new(b.finish()),
            ColBuilder::Int32(b) => Arc::new(b.finish()),
            ColBuilder::Int64(b) => Arc::new(b.finish()),
            ColBuilder::Float32(b) => Arc::new(b.finish()),
            ColBuilder::Float64(b) => Arc::new(b.finish()),
            ColBuilder::Decimal(b, p, s) => Arc::new(b.finish().with_precision_and_scale(*p, *s as i8)?),
            ColBuilder::Utf8(b) => Arc::new(b.finish()),
            ColBuilder::Binary(b) => Arc::new(b.finish()),
            ColBuilder::Date32(b) => Arc::new(b.finish()),
            ColBuilder::Timestamp(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
        })
    }
}

fn is_null(value: &ColumnData<'_>) -> bool {
    match value {
        ColumnData::U8(v) => v.is_none(),
        ColumnData::I16(v) => v.is_none(),
        ColumnData::I32(v) => v.is_none(),
        ColumnData::I64(v) => v.is_none(),
        ColumnData::F32(v) => v.is_none(),
        ColumnData::F64(v) => v.is_none(),
        ColumnData::Bit(v) => v.is_none(),
        ColumnData::String(v) => v.is_none(),
        ColumnData::Guid(v) => v.is_none(),
        ColumnData::Binary(v) => v.is_none(),
        ColumnData::Numeric(v) => v.is_none(),
        ColumnData::Xml(v) => v.is_none(),
        ColumnData::DateTime(v) => v.is_none(),
        ColumnData::SmallDateTime(v) => v.is_none(),
        ColumnData::Time(v) => v.is_none(),
        ColumnData::Date(v) => v.is_none(),
        ColumnData::DateTime2(v) => v.is_none(),
        ColumnData::DateTimeOffset(v) => v.is_none(),
    }
}

fn data_name(value: &ColumnData<'_>) -> &'static str {
    match value {
        ColumnData::U8(_) => "tinyint",
        ColumnData::I16(_) => "smallint",
        ColumnData::I32(_) => "int",
        ColumnData::I64(_) => "bigint",
        ColumnData::F32(_) => "real",
        ColumnData::F64(_) => "float",
        ColumnData::Bit(_) => "bit",
        ColumnData::String(_) => "string",
        ColumnData::Guid(_) => "uniqueidentifier",
        ColumnData::Binary(_) => "binary",
        ColumnData::Numeric(_) => "decimal",
        ColumnData::Xml(_) => "xml",
        ColumnData::DateTime(_) => "datetime",
        ColumnData::SmallDateTime(_) => "smalldatetime",
        ColumnData::Time(_) => "time",
        ColumnData::Date(_) => "date",
        ColumnData::DateTime2(_) => "datetime2",
        ColumnData::DateTimeOffset(_) => "datetimeoffset",
    }
}

/// A decimal's unscaled value at scale `from`, at the column's scale `to`; refuses a value that
/// would lose digits or exceed the precision.
fn rescale(value: i128, from: u8, precision: u8, to: u8) -> Result<i128, String> {
    let v = if from == to {
        value
    } else if from < to {
        value.checked_mul(10i128.pow(u32::from(to - from))).ok_or("a decimal value overflows")?
    } else {
        let f = 10i128.pow(u32::from(from - to));
        if value % f != 0 {
            return Err(format!("decimal value {value}e-{from} has more than {to} fractional digits"));
        }
        value / f
    };
    if v.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
        return Err(format!("decimal value {value}e-{from} does not fit decimal({precision},{to})"));
    }
    Ok(v)
}

fn date_micros(days_since_0001: u32) -> i64 {
    (i64::from(days_since_0001) - DAYS_0001_TO_1970) * MICROS_PER_DAY
}

/// A `time` of `increments` 10^-scale seconds, in microseconds (scale ≤ 6: exact).
fn time_micros(increments: u64, scale: u8) -> Result<i64, String> {
    if scale > 6 {
        return Err(format!("a time of scale {scale} does not fit microseconds"));
    }
    Ok((increments * 10u64.pow(u32::from(6 - scale))) as i64)
}

/// `HH:MM:SS` plus `scale` fractional digits, as SQL Server prints `time(scale)`.
pub fn time_text(increments: u64, scale: u8) -> String {
    let per_sec = 10u64.pow(u32::from(scale));
    let secs = increments / per_sec;
    let frac = increments % per_sec;
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if scale > 0 {
        s.push_str(&format!(".{frac:0width$}", width = usize::from(scale)));
    }
    s
}

/// `YYYY-MM-DD HH:MM:SS.fff…` for a day (microseconds since 1970 at midnight) and a time.
fn datetime_text(day_micros: i64, increments: u64, scale: u8) -> String {
    let (y, m, d) = civil_from_days(day_micros.div_euclid(MICROS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02} {}", time_text(increments, scale))
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::borrow::Cow;

    use rtsync_core::arrow::array::{
        Array, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
        Int16Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use tiberius::numeric::Numeric;
    use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
    use tiberius::xml::XmlData;

    use super::*;

    /// Converts `values` of a column of type `ty` and returns the Arrow array.
    fn convert(ty: SqlType, values: &[ColumnData<'_>]) -> ArrayRef {
        let mut b = ColBuilder::new(ty, values.len());
        for v in values {
            b.append(ty, v).unwrap();
        }
        let a = b.finish().unwrap();
        assert_eq!(a.len(), values.len());
        a
    }

    fn t(name: &str, max_length: i16, precision: u8, scale: u8) -> SqlType {
        SqlType::parse("c", name, max_length, precision, scale).unwrap()
    }

    /// Days since 0001-01-01 of a civil date (the inverse of the server's `date`).
    fn days0001(y: i64, m: u32, d: u32) -> u32 {
        let y2 = if m <= 2 { y - 1 } else { y };
        let era = y2.div_euclid(400);
        let yoe = y2 - era * 400;
        let mp = i64::from((m + 9) % 12);
        let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        (era * 146_097 + doe - 719_468 + DAYS_0001_TO_1970) as u32
    }

    #[test]
    fn integers_and_bit() {
        let a = convert(
            t("bit", 1, 1, 0),
            &[ColumnData::Bit(Some(true)), ColumnData::Bit(None), ColumnData::Bit(Some(false))],
        );
        let a = a.as_any().downcast_ref::<BooleanArray>().unwrap();
        assert!(a.value(0) && a.is_null(1) && !a.value(2));
        let a =
            convert(t("tinyint", 1, 3, 0), &[ColumnData::U8(Some(255)), ColumnData::U8(Some(0)), ColumnData::U8(None)]);
        let a = a.as_any().downcast_ref::<Int16Array>().unwrap();
        assert_eq!((a.value(0), a.value(1), a.is_null(2)), (255, 0, true));
        let a = convert(t("smallint", 2, 5, 0), &[ColumnData::I16(Some(i16::MIN)), ColumnData::I16(Some(i16::MAX))]);
        let a = a.as_any().downcast_ref::<Int16Array>().unwrap();
        assert_eq!((a.value(0), a.value(1)), (i16::MIN, i16::MAX));
        let a = convert(t("int", 4, 10, 0), &[ColumnData::I32(Some(i32::MIN)), ColumnData::I32(None)]);
        let a = a.as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!((a.value(0), a.is_null(1)), (i32::MIN, true));
        let a = convert(t("bigint", 8, 19, 0), &[ColumnData::I64(Some(i64::MAX)), ColumnData::I64(Some(i64::MIN))]);
        let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!((a.value(0), a.value(1)), (i64::MAX, i64::MIN));
    }

    #[test]
    fn decimals_and_money_are_exact() {
        let ty = t("decimal", 17, 38, 10);
        assert_eq!(ty.arrow_type(), DataType::Decimal128(38, 10));
        let max = 10i128.pow(38) - 1;
        let a = convert(
            ty,
            &[
                ColumnData::Numeric(Some(Numeric::new_with_scale(max, 10))),
                ColumnData::Numeric(Some(Numeric::new_with_scale(-max, 10))),
                ColumnData::Numeric(Some(Numeric::new_with_scale(-5, 1))), // -0.5 at scale 1
                ColumnData::Numeric(None),
            ],
        );
        let a = a.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!((a.value(0), a.value(1), a.value(2), a.is_null(3)), (max, -max, -5 * 10i128.pow(9), true));
        assert_eq!(a.value_as_string(0), "9999999999999999999999999999.9999999999");
        // money arrives as decimal(19,4) through the select list's CAST.
        let ty = t("money", 8, 19, 4);
        assert_eq!(ty.arrow_type(), DataType::Decimal128(19, 4));
        assert_eq!(ty.select_expr("price"), "CAST([price] AS decimal(19,4)) AS [price]");
        let a = convert(ty, &[ColumnData::Numeric(Some(Numeric::new_with_scale(-9_223_372_036_854_775_808, 4)))]);
        assert_eq!(a.as_any().downcast_ref::<Decimal128Array>().unwrap().value_as_string(0), "-922337203685477.5808");
        let ty = t("smallmoney", 4, 10, 4);
        assert_eq!(ty.arrow_type(), DataType::Decimal128(10, 4));
        assert_eq!(ty.select_expr("p"), "CAST([p] AS decimal(10,4)) AS [p]");
        let a = convert(ty, &[ColumnData::Numeric(Some(Numeric::new_with_scale(2_147_483_647, 4)))]);
        assert_eq!(a.as_any().downcast_ref::<Decimal128Array>().unwrap().value_as_string(0), "214748.3647");
        // Digits that would be lost are an error, never a rounding.
        let mut b = ColBuilder::new(t("decimal", 5, 5, 1), 1);
        assert!(b.append(t("decimal", 5, 5, 1), &ColumnData::Numeric(Some(Numeric::new_with_scale(123, 2)))).is_err());
        assert!(
            b.append(t("decimal", 5, 5, 1), &ColumnData::Numeric(Some(Numeric::new_with_scale(123_456, 1)))).is_err()
        );
    }

    #[test]
    fn floats_keep_their_bits() {
        let a = convert(t("real", 4, 24, 0), &[ColumnData::F32(Some(f32::MIN_POSITIVE)), ColumnData::F32(Some(-0.1))]);
        let a = a.as_any().downcast_ref::<Float32Array>().unwrap();
        assert_eq!((a.value(0).to_bits(), a.value(1)), (f32::MIN_POSITIVE.to_bits(), -0.1f32));
        let a = convert(t("float", 8, 53, 0), &[ColumnData::F64(Some(1.0e308)), ColumnData::F64(Some(-0.0))]);
        let a = a.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!((a.value(0), a.value(1).to_bits()), (1.0e308, (-0.0f64).to_bits()));
    }

    #[test]
    fn strings_text_xml_guid_and_variant() {
        for (name, max_length) in
            [("char", 10), ("varchar", -1), ("nchar", 20), ("nvarchar", -1), ("text", 16), ("ntext", 16)]
        {
            let ty = t(name, max_length, 0, 0);
            assert_eq!(ty.arrow_type(), DataType::Utf8, "{name}");
            let a = convert(
                ty,
                &[
                    ColumnData::String(Some(Cow::Borrowed("zß水🦀"))),
                    ColumnData::String(Some(Cow::Borrowed(""))),
                    ColumnData::String(None),
                ],
            );
            let a = a.as_any().downcast_ref::<StringArray>().unwrap();
            assert_eq!((a.value(0), a.value(1), a.is_null(2)), ("zß水🦀", "", true), "{name}");
        }
        assert!(t("nvarchar", -1, 0, 0).is_lob() && t("text", 16, 0, 0).is_lob() && t("ntext", 16, 0, 0).is_lob());
        assert!(!t("nvarchar", 100, 0, 0).is_lob() && !t("char", 10, 0, 0).is_lob());
        let xml = XmlData::new("<a b=\"1\">x</a>");
        let a = convert(t("xml", -1, 0, 0), &[ColumnData::Xml(Some(Cow::Owned(xml)))]);
        assert_eq!(a.as_string::<i32>().value(0), "<a b=\"1\">x</a>");
        assert!(t("xml", -1, 0, 0).is_lob());
        let g = tiberius::Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").unwrap();
        let a = convert(t("uniqueidentifier", 16, 0, 0), &[ColumnData::Guid(Some(g)), ColumnData::Guid(None)]);
        let a = a.as_string::<i32>();
        assert_eq!((a.value(0), a.is_null(1)), ("6F9619FF-8B86-D011-B42D-00C04FC964FF", true));
        let ty = t("sql_variant", 8016, 0, 0);
        assert_eq!(ty.select_expr("v"), "CAST([v] AS nvarchar(4000)) AS [v]");
        let a = convert(ty, &[ColumnData::String(Some(Cow::Borrowed("42")))]);
        assert_eq!(a.as_string::<i32>().value(0), "42");
    }

    #[test]
    fn binaries_rowversion_and_clr_types() {
        for (name, max_length) in [("binary", 4), ("varbinary", -1), ("image", 16), ("timestamp", 8), ("rowversion", 8)]
        {
            let ty = t(name, max_length, 0, 0);
            assert_eq!(ty.arrow_type(), DataType::Binary);
            let a = convert(
                ty,
                &[
                    ColumnData::Binary(Some(Cow::Borrowed(&[0, 1, 0xFF]))),
                    ColumnData::Binary(Some(Cow::Borrowed(&[]))),
                    ColumnData::Binary(None),
                ],
            );
            let a = a.as_any().downcast_ref::<BinaryArray>().unwrap();
            assert_eq!((a.value(0), a.value(1), a.is_null(2)), (&[0u8, 1, 0xFF][..], &[][..], true), "{name}");
        }
        assert!(t("varbinary", -1, 0, 0).is_lob() && t("image", 16, 0, 0).is_lob() && !t("binary", 4, 0, 0).is_lob());
        for name in ["hierarchyid", "geometry", "geography"] {
            let ty = t(name, -1, 0, 0);
            assert_eq!(
                (ty.arrow_type(), ty.select_expr("g")),
                (DataType::Binary, "CAST([g] AS varbinary(max)) AS [g]".into())
            );
        }
        let err = SqlType::parse("v", "vector", 8, 0, 0).unwrap_err();
        assert!(err.to_string().contains("column v has type vector"), "{err}");
    }

    #[test]
    fn date_and_time() {
        let a = convert(
            t("date", 3, 10, 0),
            &[
                ColumnData::Date(Some(Date::new(0))),
                ColumnData::Date(Some(Date::new(days0001(9999, 12, 31)))),
                ColumnData::Date(Some(Date::new(days0001(1970, 1, 1)))),
            ],
        );
        let a = a.as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!((a.value(0), a.value(1), a.value(2)), (-719_162, 2_932_896, 0));
        for (scale, incr, text) in [
            (0u8, 0u64, "00:00:00"),
            (0, 86_399, "23:59:59"),
            (3, 45_296_007, "12:34:56.007"),
            (7, 863_999_999_999, "23:59:59.9999999"),
            (7, 1, "00:00:00.0000001"),
        ] {
            let ty = t("time", 5, 16, scale);
            assert_eq!(ty.arrow_type(), DataType::Utf8);
            let a = convert(ty, &[ColumnData::Time(Some(Time::new(incr, scale)))]);
            assert_eq!(a.as_string::<i32>().value(0), text);
        }
    }

    #[test]
    fn datetime_family() {
        let ts = |a: ArrayRef| a.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap().value(0);
        // datetime: 1/300 s ticks, shown by SQL Server as .000/.003/.007.
        let ty = t("datetime", 8, 23, 3);
        assert_eq!(ty.arrow_type(), DataType::Timestamp(TimeUnit::Microsecond, None));
        assert_eq!(ts(convert(ty, &[ColumnData::DateTime(Some(DateTime::new(25_567, 1)))])), 3_000);
        assert_eq!(ts(convert(ty, &[ColumnData::DateTime(Some(DateTime::new(25_567, 2)))])), 7_000);
        assert_eq!(
            ts(convert(ty, &[ColumnData::DateTime(Some(DateTime::new(0, 25_919_999)))])),
            -2_208_988_800_000_000 + 86_399_997_000
        );
        // 1753-01-01, the smallest datetime.
        assert_eq!(ts(convert(ty, &[ColumnData::DateTime(Some(DateTime::new(-53_690, 0)))])), -6_847_804_800_000_000);
        let ty = t("smalldatetime", 4, 16, 0);
        assert_eq!(
            ts(convert(ty, &[ColumnData::SmallDateTime(Some(SmallDateTime::new(25_568, 61)))])),
            86_400_000_000 + 3_660_000_000
        );
        // datetime2(0..6): microseconds.
        let day = days0001(2024, 2, 29);
        for (scale, incr, micros) in [(0u8, 1u64, 1_000_000i64), (3, 1, 1_000), (6, 123_456, 123_456)] {
            let ty = t("datetime2", 8, 27, scale);
            assert_eq!(ty.arrow_type(), DataType::Timestamp(TimeUnit::Microsecond, None));
            let v = ColumnData::DateTime2(Some(DateTime2::new(Date::new(day), Time::new(incr, scale))));
            assert_eq!(ts(convert(ty, &[v])), 1_709_164_800_000_000 + micros);
        }
        // datetime2(7): text with all seven digits.
        let ty = t("datetime2", 8, 27, 7);
        assert_eq!(ty.arrow_type(), DataType::Utf8);
        let v = ColumnData::DateTime2(Some(DateTime2::new(Date::new(day), Time::new(1_234_567, 7))));
        assert_eq!(convert(ty, &[v]).as_string::<i32>().value(0), "2024-02-29 00:00:00.1234567");
        let v = ColumnData::DateTime2(Some(DateTime2::new(Date::new(0), Time::new(0, 7))));
        assert_eq!(convert(ty, &[v]).as_string::<i32>().value(0), "0001-01-01 00:00:00.0000000");
        // datetimeoffset(0..6): the UTC instant.
        let ty = t("datetimeoffset", 10, 30, 6);
        assert_eq!(ty.arrow_type(), DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())));
        let v = ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            DateTime2::new(Date::new(day), Time::new(5, 6)),
            -480,
        )));
        let a = convert(ty, &[v]);
        assert_eq!(ts(a.clone()), 1_709_164_800_000_005);
        // datetimeoffset(7): local time and offset, crossing midnight both ways.
        let ty = t("datetimeoffset", 10, 34, 7);
        let v = ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            DateTime2::new(Date::new(day), Time::new(1, 7)),
            -480,
        )));
        assert_eq!(convert(ty, &[v]).as_string::<i32>().value(0), "2024-02-28 16:00:00.0000001 -08:00");
        let v = ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            DateTime2::new(Date::new(day), Time::new(863_999_999_999, 7)),
            330,
        )));
        assert_eq!(convert(ty, &[v]).as_string::<i32>().value(0), "2024-03-01 05:29:59.9999999 +05:30");
        let v = ColumnData::DateTimeOffset(None);
        assert!(convert(ty, &[v]).is_null(0));
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_an_error() {
        let ty = t("int", 4, 10, 0);
        let mut b = ColBuilder::new(ty, 1);
        let err = b.append(ty, &ColumnData::String(Some(Cow::Borrowed("1")))).unwrap_err();
        assert!(err.contains("string value arrived"), "{err}");
    }
}
