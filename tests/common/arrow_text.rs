//! Arrow cells as the canonical text of `delta_cells.py` (integers in decimal, booleans
//! `true`/`false`, floats as Python's `repr` of the double, decimals plain with every scale
//! digit, binary as lowercase hex, dates ISO 8601, timestamps as Python's `isoformat()` with
//! `+00:00` when the column has a time zone), so rows built from a source's values compare
//! with what the independent reader read from Delta.
//!
//! Included with `#[path = "common/arrow_text.rs"] mod arrow_text;`. Floats print alike in
//! both languages when they need no exponent (|x| in [1e-4, 1e16)), which the workloads keep.

#![allow(dead_code)]

use chrono::{DateTime, NaiveDate};
use rtsync_core::arrow::array::{Array, ArrayRef, AsArray};
use rtsync_core::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};

/// The canonical text of `array[i]`, None for NULL.
pub fn cell(array: &ArrayRef, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Boolean => array.as_boolean().value(i).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(i).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Float32 => format!("{:?}", f64::from(array.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => format!("{:?}", array.as_primitive::<Float64Type>().value(i)),
        DataType::Decimal128(_, scale) => decimal(array.as_primitive::<Decimal128Type>().value(i), *scale as u32),
        DataType::Utf8 => array.as_string::<i32>().value(i).to_string(),
        DataType::Binary => array.as_binary::<i32>().value(i).iter().map(|b| format!("{b:02x}")).collect(),
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(i);
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            (epoch + chrono::Duration::days(i64::from(days))).format("%Y-%m-%d").to_string()
        }
        DataType::Timestamp(_, tz) => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(i);
            let t = DateTime::from_timestamp_micros(micros).unwrap_or_default().naive_utc();
            let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            if micros.rem_euclid(1_000_000) != 0 {
                s.push_str(&format!(".{:06}", micros.rem_euclid(1_000_000)));
            }
            if tz.is_some() {
                s.push_str("+00:00");
            }
            s
        }
        other => panic!("no canonical text for Arrow type {other}"),
    })
}

/// `value` at `scale` digits, plain.
fn decimal(value: i128, scale: u32) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{abs}");
    }
    let f = 10u128.pow(scale);
    format!("{sign}{}.{:0width$}", abs / f, abs % f, width = scale as usize)
}
