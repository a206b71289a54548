//! Values into Arrow builders: binlog row images (bytes as the server logged them) and
//! snapshot rows (binary-protocol values), both into the same column builders so the two
//! paths cannot disagree on a type.
//!
//! The binlog path walks a row image with one precomputed [`Wire`] per column and appends
//! straight into the builders: no per-row `Vec`, no per-value allocation except JSON and
//! non-UTF-8 text (mysql_common's `BinlogRow` would build a `Column` per value and a
//! `Value` per cell, about six times slower).

use std::io;
use std::sync::Arc;

use mysql_async::Value;
use mysql_async::consts::ColumnType;
use mysql_common::binlog::decimal::Decimal;
use mysql_common::binlog::jsonb;
use mysql_common::binlog::misc::my_time_packed_from_binary;
use mysql_common::io::ParseBuf;
use rtsync_core::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Array, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use rtsync_core::arrow::datatypes::{DataType, SchemaRef};
use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::{Op, SyncError, SyncResult, civil, json};

use crate::schema::{Charset, ColumnKind, ColumnSpec, batch_schema};

// ---------------------------------------------------------------------------------------
// builders

/// One Arrow builder per column, typed by [`ColumnKind::arrow_type`].
pub(crate) enum ColBuilder {
    Boolean(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date32(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
}

impl ColBuilder {
    fn new(data_type: &DataType, rows: usize) -> SyncResult<Self> {
        Ok(match data_type {
            DataType::Boolean => ColBuilder::Boolean(BooleanBuilder::with_capacity(rows)),
            DataType::Int8 => ColBuilder::Int8(Int8Builder::with_capacity(rows)),
            DataType::Int16 => ColBuilder::Int16(Int16Builder::with_capacity(rows)),
            DataType::Int32 => ColBuilder::Int32(Int32Builder::with_capacity(rows)),
            DataType::Int64 => ColBuilder::Int64(Int64Builder::with_capacity(rows)),
            DataType::Float32 => ColBuilder::Float32(Float32Builder::with_capacity(rows)),
            DataType::Float64 => ColBuilder::Float64(Float64Builder::with_capacity(rows)),
            DataType::Decimal128(p, s) => {
                ColBuilder::Decimal(Decimal128Builder::with_capacity(rows).with_precision_and_scale(*p, *s)?, *p, *s)
            }
            DataType::Utf8 => ColBuilder::Utf8(StringBuilder::with_capacity(rows, rows * 16)),
            DataType::Binary => ColBuilder::Binary(BinaryBuilder::with_capacity(rows, rows * 16)),
            DataType::Date32 => ColBuilder::Date32(Date32Builder::with_capacity(rows)),
            DataType::Timestamp(_, tz) => {
                let b = TimestampMicrosecondBuilder::with_capacity(rows);
                let tz: Option<Arc<str>> = tz.as_ref().map(|t| Arc::from(t.as_ref()));
                ColBuilder::Timestamp(b, tz)
            }
            other => return Err(SyncError::internal(format!("no builder for Arrow type {other}"))),
        })
    }

    fn append_null(&mut self) {
        match self {
            ColBuilder::Boolean(b) => b.append_null(),
            ColBuilder::Int8(b) => b.append_null(),
            ColBuilder::Int16(b) => b.append_null(),
            ColBuilder::Int32(b) => b.append_null(),
            ColBuilder::Int64(b) => b.append_null(),
            ColBuilder::Float32(b) => b.append_null(),
            ColBuilder::Float64(b) => b.append_null(),
            ColBuilder::Decimal(b, ..) => b.append_null(),
            ColBuilder::Utf8(b) => b.append_null(),
            ColBuilder::Binary(b) => b.append_null(),
            ColBuilder::Date32(b) => b.append_null(),
            ColBuilder::Timestamp(b, _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> SyncResult<ArrayRef> {
        Ok(match self {
            ColBuilder::Boolean(b) => Arc::new(b.finish()),
            ColBuilder::Int8(b) => Arc::new(b.finish()),
            ColBuilder::Int16(b) => Arc::new(b.finish()),
            ColBuilder::Int32(b) => Arc::new(b.finish()),
            ColBuilder::Int64(b) => Arc::new(b.finish()),
            ColBuilder::Float32(b) => Arc::new(b.finish()),
            ColBuilder::Float64(b) => Arc::new(b.finish()),
            ColBuilder::Decimal(b, p, s) => Arc::new(b.finish().with_precision_and_scale(*p, *s)?),
            ColBuilder::Utf8(b) => Arc::new(b.finish()),
            ColBuilder::Binary(b) => Arc::new(b.finish()),
            ColBuilder::Date32(b) => Arc::new(b.finish()),
            ColBuilder::Timestamp(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
        })
    }

    fn approx_bytes(&self) -> usize {
        match self {
            ColBuilder::Utf8(b) => b.values_slice().len(),
            ColBuilder::Binary(b) => b.values_slice().len(),
            _ => 0,
        }
    }
}

/// Rows of one schema, with their op codes and event times, until they become a batch.
pub(crate) struct RowsBuilder {
    pub(crate) columns: Arc<[ColumnSpec]>,
    schema: SchemaRef,
    cols: Vec<ColBuilder>,
    ops: StringBuilder,
    times: Int64Builder,
    with_times: bool,
    rows: usize,
    capacity: usize,
    /// Source bytes of the rows (row-image bytes, or the snapshot's value bytes).
    pub(crate) source_bytes: u64,
}

impl RowsBuilder {
    pub(crate) fn new(columns: Arc<[ColumnSpec]>, capacity: usize) -> SyncResult<Self> {
        let schema = batch_schema(&columns);
        let cols =
            columns.iter().map(|c| ColBuilder::new(&c.kind.arrow_type(), capacity)).collect::<SyncResult<Vec<_>>>()?;
        Ok(Self {
            columns,
            schema,
            cols,
            ops: StringBuilder::with_capacity(capacity, capacity),
            times: Int64Builder::with_capacity(capacity),
            with_times: false,
            rows: 0,
            capacity,
            source_bytes: 0,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Rough memory held by variable-width values.
    pub(crate) fn approx_bytes(&self) -> usize {
        self.cols.iter().map(ColBuilder::approx_bytes).sum::<usize>() + self.rows * self.cols.len() * 8
    }

    fn end_row(&mut self, op: Op, time_ms: Option<i64>) {
        self.ops.append_value(op.code());
        match time_ms {
            Some(t) => {
                self.with_times = true;
                self.times.append_value(t);
            }
            None => self.times.append_null(),
        }
        self.rows += 1;
    }

    /// Appends a truncate marker: every column NULL, `__op = 't'`.
    pub(crate) fn push_truncate(&mut self, time_ms: Option<i64>) {
        for col in &mut self.cols {
            col.append_null();
        }
        self.end_row(Op::Truncate, time_ms);
    }

    /// Appends one snapshot row (binary-protocol values in column order).
    pub(crate) fn push_values(&mut self, values: Vec<Value>, op: Op) -> SyncResult<()> {
        if values.len() != self.cols.len() {
            return Err(SyncError::internal(format!(
                "a snapshot row has {} values for {} columns",
                values.len(),
                self.cols.len()
            )));
        }
        for ((value, col), spec) in values.into_iter().zip(self.cols.iter_mut()).zip(self.columns.iter()) {
            if let Value::Bytes(b) = &value {
                self.source_bytes += b.len() as u64;
            } else {
                self.source_bytes += 8;
            }
            push_value(&spec.kind, value, col).map_err(|e| e.context_prefix(format!("column {:?}", spec.name)))?;
        }
        self.end_row(op, None);
        Ok(())
    }

    /// Appends one binlog row image: `present` marks the columns in the image (FULL: all),
    /// `image` starts at its NULL bitmap. Returns the bytes consumed.
    pub(crate) fn push_image(
        &mut self,
        wires: &[Wire],
        present: &[u8],
        image: &[u8],
        op: Op,
        time_ms: Option<i64>,
    ) -> SyncResult<usize> {
        let mut cur = Cursor::new(image);
        let n_present = count_bits(present, wires.len());
        let nulls = cur.take(n_present.div_ceil(8))?;
        let mut k = 0;
        for (i, (wire, col)) in wires.iter().zip(self.cols.iter_mut()).enumerate() {
            if !bit(present, i) {
                col.append_null();
                continue;
            }
            let is_null = bit(nulls, k);
            k += 1;
            if is_null {
                col.append_null();
                continue;
            }
            let kind = &self.columns[i].kind;
            decode_wire(wire, kind, &mut cur, col)
                .map_err(|e| e.context_prefix(format!("column {:?}", self.columns[i].name)))?;
        }
        self.source_bytes += cur.pos as u64;
        self.end_row(op, time_ms);
        Ok(cur.pos)
    }

    /// Finishes the rows into a batch when the builder is not reused (a snapshot chunk).
    pub(crate) fn into_batch(mut self) -> SyncResult<(RecordBatch, u64)> {
        self.capacity = 0;
        let (batch, _, bytes) = self.finish()?;
        Ok((batch, bytes))
    }

    /// Finishes the rows so far into a batch and per-row event times; the builder is empty
    /// afterwards and keeps its schema.
    pub(crate) fn finish(&mut self) -> SyncResult<(RecordBatch, Option<Int64Array>, u64)> {
        let mut arrays = self.cols.iter_mut().map(ColBuilder::finish).collect::<SyncResult<Vec<_>>>()?;
        arrays.push(Arc::new(self.ops.finish()));
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        let times = self.times.finish();
        let times = self.with_times.then_some(times);
        let bytes = self.source_bytes;
        self.rows = 0;
        self.with_times = false;
        self.source_bytes = 0;
        // Builders shrink to nothing after finish(); give them their capacity back.
        let columns = self.columns.clone();
        *self = RowsBuilder::new(columns, self.capacity)?;
        Ok((batch, times, bytes))
    }
}

/// Where one value sits in a row image: `(start, end)`, None when NULL or absent.
pub(crate) type Span = Option<(usize, usize)>;

/// Walks one row image without building anything: the spans (start, end) of the listed
/// columns (None when NULL or absent) and the image length.
pub(crate) fn image_spans(
    wires: &[Wire],
    present: &[u8],
    image: &[u8],
    want: &[usize],
) -> SyncResult<(Vec<Span>, usize)> {
    let mut cur = Cursor::new(image);
    let n_present = count_bits(present, wires.len());
    let nulls = cur.take(n_present.div_ceil(8))?;
    let mut spans = vec![None; want.len()];
    let mut k = 0;
    for (i, wire) in wires.iter().enumerate() {
        if !bit(present, i) {
            continue;
        }
        let is_null = bit(nulls, k);
        k += 1;
        if is_null {
            continue;
        }
        let start = cur.pos;
        skip_wire(wire, &mut cur)?;
        if let Some(slot) = want.iter().position(|&w| w == i) {
            spans[slot] = Some((start, cur.pos));
        }
    }
    Ok((spans, cur.pos))
}

fn count_bits(bitmap: &[u8], n: usize) -> usize {
    (0..n).filter(|&i| bit(bitmap, i)).count()
}

#[inline]
fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

// ---------------------------------------------------------------------------------------
// binlog values

pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> SyncResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(truncated)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn uint_le(&mut self, n: usize) -> SyncResult<u64> {
        let s = self.take(n)?;
        Ok(s.iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    #[inline]
    fn uint_be(&mut self, n: usize) -> SyncResult<u64> {
        let s = self.take(n)?;
        Ok(s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
}

fn truncated() -> SyncError {
    SyncError::data("a binlog row image ends early (truncated or undecodable event)")
}

/// How one column's value is laid out in a row image, from the TABLE_MAP type and metadata.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Wire {
    Tiny,
    Short,
    Int24,
    Long,
    LongLong,
    Float,
    Double,
    NewDecimal {
        precision: u8,
        scale: u8,
    },
    Year,
    Date,
    TimeOld,
    Time2 {
        fsp: u8,
    },
    DateTimeOld,
    DateTime2 {
        fsp: u8,
    },
    TimestampOld,
    Timestamp2 {
        fsp: u8,
    },
    Bit {
        bytes: usize,
    },
    Enum {
        bytes: usize,
    },
    Set {
        bytes: usize,
    },
    /// CHAR/BINARY: a 1- or 2-byte length prefix.
    String {
        prefix: usize,
    },
    VarString {
        prefix: usize,
    },
    /// BLOB/TEXT/GEOMETRY/VECTOR: `prefix` bytes of length.
    Blob {
        prefix: usize,
    },
    Json {
        prefix: usize,
    },
}

impl Wire {
    /// From the real column type (ENUM/SET resolved) and its TABLE_MAP metadata.
    pub(crate) fn from_table_map(ty: ColumnType, meta: &[u8]) -> Result<Wire, String> {
        use ColumnType::*;
        let m = |i: usize| meta.get(i).copied().ok_or_else(|| format!("{ty:?} without metadata"));
        Ok(match ty {
            MYSQL_TYPE_TINY => Wire::Tiny,
            MYSQL_TYPE_SHORT => Wire::Short,
            MYSQL_TYPE_INT24 => Wire::Int24,
            MYSQL_TYPE_LONG => Wire::Long,
            MYSQL_TYPE_LONGLONG => Wire::LongLong,
            MYSQL_TYPE_FLOAT => Wire::Float,
            MYSQL_TYPE_DOUBLE => Wire::Double,
            MYSQL_TYPE_NEWDECIMAL => Wire::NewDecimal { precision: m(0)?, scale: m(1)? },
            MYSQL_TYPE_YEAR => Wire::Year,
            MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => Wire::Date,
            MYSQL_TYPE_TIME => Wire::TimeOld,
            MYSQL_TYPE_TIME2 => Wire::Time2 { fsp: m(0)? },
            MYSQL_TYPE_DATETIME => Wire::DateTimeOld,
            MYSQL_TYPE_DATETIME2 => Wire::DateTime2 { fsp: m(0)? },
            MYSQL_TYPE_TIMESTAMP => Wire::TimestampOld,
            MYSQL_TYPE_TIMESTAMP2 => Wire::Timestamp2 { fsp: m(0)? },
            MYSQL_TYPE_BIT => {
                let (bits, bytes) = (m(0)? as usize, m(1)? as usize);
                Wire::Bit { bytes: bytes + usize::from(bits > 0) }
            }
            MYSQL_TYPE_ENUM => Wire::Enum { bytes: m(1)? as usize },
            MYSQL_TYPE_SET => Wire::Set { bytes: m(1)? as usize },
            MYSQL_TYPE_STRING => Wire::String { prefix: if string_max_len(meta)? < 256 { 1 } else { 2 } },
            MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
                let max = u16::from_le_bytes([m(0)?, m(1)?]);
                Wire::VarString { prefix: if max < 256 { 1 } else { 2 } }
            }
            MYSQL_TYPE_TINY_BLOB
            | MYSQL_TYPE_MEDIUM_BLOB
            | MYSQL_TYPE_LONG_BLOB
            | MYSQL_TYPE_BLOB
            | MYSQL_TYPE_GEOMETRY
            | MYSQL_TYPE_VECTOR => Wire::Blob { prefix: m(0)? as usize },
            MYSQL_TYPE_JSON => Wire::Json { prefix: m(0)? as usize },
            other => return Err(format!("binlog column type {other:?} is not supported")),
        })
    }

    /// Does this wire layout fit the column kind the catalog gives? (A mismatch means the
    /// catalog describes another version of the table than the binlog event.)
    pub(crate) fn fits(&self, kind: &ColumnKind) -> bool {
        use ColumnKind as K;
        match self {
            Wire::Tiny => matches!(kind, K::Int { bytes: 1, .. }),
            Wire::Short => matches!(kind, K::Int { bytes: 2, .. }),
            Wire::Int24 => matches!(kind, K::Int { bytes: 3, .. }),
            Wire::Long => matches!(kind, K::Int { bytes: 4, .. }),
            Wire::LongLong => matches!(kind, K::Int { bytes: 8, .. }),
            Wire::Float => matches!(kind, K::Float),
            Wire::Double => matches!(kind, K::Double),
            Wire::NewDecimal { precision, scale } => {
                matches!(kind, K::Decimal { precision: p, scale: s } if p == precision && s == scale)
            }
            Wire::Year => matches!(kind, K::Year),
            Wire::Date => matches!(kind, K::Date),
            Wire::TimeOld | Wire::Time2 { .. } => matches!(kind, K::Time),
            Wire::DateTimeOld | Wire::DateTime2 { .. } => matches!(kind, K::DateTime),
            Wire::TimestampOld | Wire::Timestamp2 { .. } => matches!(kind, K::Timestamp),
            Wire::Bit { .. } => matches!(kind, K::Bit { .. }),
            Wire::Enum { .. } => matches!(kind, K::Enum { .. }),
            Wire::Set { .. } => matches!(kind, K::Set { .. }),
            Wire::String { .. } | Wire::VarString { .. } => matches!(kind, K::Text { .. } | K::Binary { .. }),
            Wire::Blob { .. } => matches!(kind, K::Text { .. } | K::Binary { .. } | K::Geometry),
            Wire::Json { .. } => matches!(kind, K::Json),
        }
    }
}

/// CHAR/BINARY metadata packs the real type and the max byte length (see MySQL bug #37426).
pub(crate) fn string_max_len(meta: &[u8]) -> Result<usize, String> {
    let (b0, b1) = match meta {
        [a, b, ..] => (*a as usize, *b as usize),
        _ => return Err("CHAR column without metadata".into()),
    };
    Ok(if (b0 & 0x30) != 0x30 { b1 | (((b0 & 0x30) ^ 0x30) << 4) } else { b1 })
}

fn frac_bytes(fsp: u8) -> usize {
    usize::from(fsp).div_ceil(2)
}

/// Moves past one value.
fn skip_wire(wire: &Wire, cur: &mut Cursor<'_>) -> SyncResult<()> {
    let n = match wire {
        Wire::Tiny | Wire::Year => 1,
        Wire::Short => 2,
        Wire::Int24 | Wire::Date | Wire::TimeOld => 3,
        Wire::Long | Wire::Float | Wire::TimestampOld => 4,
        Wire::LongLong | Wire::Double | Wire::DateTimeOld => 8,
        Wire::NewDecimal { precision, scale } => decimal_bin_size(*precision, *scale),
        Wire::Time2 { fsp } => 3 + frac_bytes(*fsp),
        Wire::DateTime2 { fsp } => 5 + frac_bytes(*fsp),
        Wire::Timestamp2 { fsp } => 4 + frac_bytes(*fsp),
        Wire::Bit { bytes } | Wire::Enum { bytes } | Wire::Set { bytes } => *bytes,
        Wire::String { prefix } | Wire::VarString { prefix } | Wire::Blob { prefix } | Wire::Json { prefix } => {
            cur.uint_le(*prefix)? as usize
        }
    };
    cur.take(n)?;
    Ok(())
}

fn mismatch(wire: &Wire) -> SyncError {
    SyncError::internal(format!("binlog value layout {wire:?} does not match its column builder"))
}

/// Decodes one non-NULL value into `col`.
fn decode_wire(wire: &Wire, kind: &ColumnKind, cur: &mut Cursor<'_>, col: &mut ColBuilder) -> SyncResult<()> {
    let unsigned = matches!(kind, ColumnKind::Int { unsigned: true, .. });
    match (wire, col) {
        (Wire::Tiny, ColBuilder::Int8(b)) => b.append_value(cur.take(1)?[0] as i8),
        (Wire::Tiny, ColBuilder::Int16(b)) => b.append_value(cur.take(1)?[0] as i16),
        (Wire::Short, ColBuilder::Int16(b)) => b.append_value(cur.uint_le(2)? as u16 as i16),
        (Wire::Short, ColBuilder::Int32(b)) => b.append_value(cur.uint_le(2)? as i32),
        (Wire::Int24, ColBuilder::Int32(b)) => {
            let v = cur.uint_le(3)? as u32;
            b.append_value(if unsigned { v as i32 } else { ((v << 8) as i32) >> 8 })
        }
        (Wire::Long, ColBuilder::Int32(b)) => b.append_value(cur.uint_le(4)? as u32 as i32),
        (Wire::Long, ColBuilder::Int64(b)) => b.append_value(cur.uint_le(4)? as i64),
        (Wire::LongLong, ColBuilder::Int64(b)) => b.append_value(cur.uint_le(8)? as i64),
        (Wire::LongLong, ColBuilder::Decimal(b, ..)) => b.append_value(i128::from(cur.uint_le(8)?)),
        (Wire::Float, ColBuilder::Float32(b)) => b.append_value(f32::from_bits(cur.uint_le(4)? as u32)),
        (Wire::Double, ColBuilder::Float64(b)) => b.append_value(f64::from_bits(cur.uint_le(8)?)),
        (Wire::NewDecimal { precision, scale }, ColBuilder::Decimal(b, ..)) => {
            let bytes = cur.take(decimal_bin_size(*precision, *scale))?;
            b.append_value(decimal_from_bin(bytes, *precision, *scale)?)
        }
        (Wire::NewDecimal { precision, scale }, ColBuilder::Utf8(b)) => {
            let bytes = cur.take(decimal_bin_size(*precision, *scale))?;
            let d = Decimal::read_bin(bytes, *precision as usize, *scale as usize, false)
                .map_err(|e| SyncError::with_source(rtsync_core::ErrorKind::Data, "undecodable decimal", e))?;
            b.append_value(d.to_string())
        }
        (Wire::Year, ColBuilder::Int16(b)) => {
            let y = cur.take(1)?[0];
            b.append_value(if y == 0 { 0 } else { 1900 + i16::from(y) })
        }
        (Wire::Date, ColBuilder::Date32(b)) => {
            let v = cur.uint_le(3)? as u32;
            b.append_option(date_days(v >> 9, (v >> 5) & 15, v & 31))
        }
        (Wire::TimeOld, ColBuilder::Int64(b)) => {
            let v = cur.uint_le(3)? as u32;
            let v = ((v << 8) as i32) >> 8;
            let a = i64::from(v.unsigned_abs());
            let us = ((a / 10_000) * 3600 + (a / 100 % 100) * 60 + a % 100) * 1_000_000;
            b.append_value(if v < 0 { -us } else { us })
        }
        (Wire::Time2 { fsp }, ColBuilder::Int64(b)) => {
            let bytes = cur.take(3 + frac_bytes(*fsp))?;
            let packed = my_time_packed_from_binary(bytes, u32::from(*fsp)).map_err(|_| truncated())?;
            b.append_value(time_packed_to_micros(packed))
        }
        (Wire::DateTimeOld, ColBuilder::Timestamp(b, _)) => {
            let v = cur.uint_le(8)?;
            let (d, t) = (v / 1_000_000, v % 1_000_000);
            b.append_option(datetime_micros(
                (d / 10_000) as u32,
                (d / 100 % 100) as u32,
                (d % 100) as u32,
                (t / 10_000) as u32,
                (t / 100 % 100) as u32,
                (t % 100) as u32,
                0,
            ))
        }
        (Wire::DateTime2 { fsp }, ColBuilder::Timestamp(b, _)) => {
            let int = cur.uint_be(5)? as i64 - 0x80_0000_0000;
            let frac = read_frac(cur, *fsp)?;
            let ymd = int >> 17;
            let ym = ymd >> 5;
            let hms = int & 0x1FFFF;
            b.append_option(datetime_micros(
                (ym / 13) as u32,
                (ym % 13) as u32,
                (ymd & 31) as u32,
                (hms >> 12) as u32,
                ((hms >> 6) & 63) as u32,
                (hms & 63) as u32,
                frac as u32,
            ))
        }
        (Wire::TimestampOld, ColBuilder::Timestamp(b, _)) => {
            let s = cur.uint_le(4)? as i64;
            b.append_option((s != 0).then_some(s * 1_000_000))
        }
        (Wire::Timestamp2 { fsp }, ColBuilder::Timestamp(b, _)) => {
            let s = cur.uint_be(4)? as i64;
            let frac = read_frac(cur, *fsp)?;
            b.append_option((s != 0 || frac != 0).then_some(s * 1_000_000 + frac))
        }
        (Wire::Bit { bytes }, ColBuilder::Boolean(b)) => b.append_value(cur.take(*bytes)?.iter().any(|x| *x != 0)),
        (Wire::Bit { bytes }, ColBuilder::Binary(b)) => b.append_value(cur.take(*bytes)?),
        (Wire::Enum { bytes }, ColBuilder::Utf8(b)) => {
            let idx = cur.uint_le(*bytes)? as usize;
            let ColumnKind::Enum { names } = kind else { return Err(mismatch(wire)) };
            match idx {
                0 => b.append_value(""),
                i => b.append_value(
                    names
                        .get(i - 1)
                        .ok_or_else(|| SyncError::data(format!("enum index {i} beyond the {} members", names.len())))?,
                ),
            }
        }
        (Wire::Set { bytes }, ColBuilder::Utf8(b)) => {
            let mask = cur.uint_le(*bytes)?;
            let ColumnKind::Set { names } = kind else { return Err(mismatch(wire)) };
            let mut s = String::new();
            for (i, name) in names.iter().enumerate().take(64) {
                if mask & (1u64 << i) != 0 {
                    if !s.is_empty() {
                        s.push(',');
                    }
                    s.push_str(name);
                }
            }
            b.append_value(s)
        }
        (Wire::String { prefix } | Wire::VarString { prefix } | Wire::Blob { prefix }, ColBuilder::Utf8(b)) => {
            let len = cur.uint_le(*prefix)? as usize;
            let bytes = cur.take(len)?;
            let ColumnKind::Text { charset } = kind else { return Err(mismatch(wire)) };
            append_text(b, bytes, charset)?
        }
        (Wire::String { prefix } | Wire::VarString { prefix } | Wire::Blob { prefix }, ColBuilder::Binary(b)) => {
            let len = cur.uint_le(*prefix)? as usize;
            let bytes = cur.take(len)?;
            match kind {
                // The binlog strips binary(n)'s trailing zero padding; SELECT returns it.
                ColumnKind::Binary { fixed: Some(n) } if bytes.len() < *n as usize => {
                    let mut padded = bytes.to_vec();
                    padded.resize(*n as usize, 0);
                    b.append_value(padded)
                }
                _ => b.append_value(bytes),
            }
        }
        (Wire::Json { prefix }, ColBuilder::Utf8(b)) => {
            let len = cur.uint_le(*prefix)? as usize;
            let bytes = cur.take(len)?;
            b.append_value(jsonb_to_text(bytes)?)
        }
        (wire, _) => return Err(mismatch(wire)),
    }
    Ok(())
}

fn read_frac(cur: &mut Cursor<'_>, fsp: u8) -> SyncResult<i64> {
    Ok(match fsp {
        1 | 2 => cur.uint_be(1)? as i64 * 10_000,
        3 | 4 => cur.uint_be(2)? as i64 * 100,
        5 | 6 => cur.uint_be(3)? as i64,
        _ => 0,
    })
}

fn time_packed_to_micros(packed: i64) -> i64 {
    let neg = packed < 0;
    let tmp = packed.abs();
    let hms = tmp >> 24;
    let frac = tmp % (1 << 24);
    let h = (hms >> 12) % (1 << 10);
    let m = (hms >> 6) % 64;
    let s = hms % 64;
    let us = ((h * 60 + m) * 60 + s) * 1_000_000 + frac;
    if neg { -us } else { us }
}

fn append_text(b: &mut StringBuilder, bytes: &[u8], charset: &Charset) -> SyncResult<()> {
    match charset {
        Charset::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => b.append_value(s),
            Err(_) => {
                return Err(SyncError::data("text is not valid UTF-8 although its column is utf8mb4/utf8mb3/ascii"));
            }
        },
        Charset::Latin1 => b.append_value(latin1_to_utf8(bytes)),
        Charset::Binary => return Err(SyncError::internal("binary text column reached the text decoder")),
        Charset::Other(name) => {
            return Err(SyncError::data(format!(
                "character set {name} cannot be decoded from the binlog; convert the column to utf8mb4"
            )));
        }
    }
    Ok(())
}

/// MySQL's latin1 is Windows-1252 (with the five undefined bytes passed through as C1).
pub(crate) fn latin1_to_utf8(bytes: &[u8]) -> String {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{02C6}',
        '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}', '\u{0090}', '\u{2018}',
        '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}',
        '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
    ];
    bytes.iter().map(|&b| if (0x80..0xA0).contains(&b) { HIGH[(b - 0x80) as usize] } else { char::from(b) }).collect()
}

// ---------------------------------------------------------------------------------------
// decimal

const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

pub(crate) fn decimal_bin_size(precision: u8, scale: u8) -> usize {
    let intg = usize::from(precision.saturating_sub(scale));
    let frac = usize::from(scale);
    (intg / 9) * 4 + DIG2BYTES[intg % 9] + (frac / 9) * 4 + DIG2BYTES[frac % 9]
}

/// MySQL's binary DECIMAL (groups of 9 digits in 4 big-endian bytes, sign in the top bit,
/// negatives stored inverted) to the unscaled i128 (precision ≤ 38).
pub(crate) fn decimal_from_bin(bytes: &[u8], precision: u8, scale: u8) -> SyncResult<i128> {
    let first = *bytes.first().ok_or_else(truncated)?;
    let negative = first & 0x80 == 0;
    let mask: u8 = if negative { 0xFF } else { 0 };
    let intg = usize::from(precision.saturating_sub(scale));
    let frac = usize::from(scale);
    let mut pos = 0usize;
    let mut acc: i128 = 0;
    let mut group = |len: usize, digits: u32, acc: &mut i128| -> SyncResult<()> {
        if len == 0 {
            return Ok(());
        }
        let chunk = bytes.get(pos..pos + len).ok_or_else(truncated)?;
        let mut v: u32 = 0;
        for (i, b) in chunk.iter().enumerate() {
            let b = if pos + i == 0 { b ^ 0x80 } else { *b };
            v = (v << 8) | u32::from(b ^ mask);
        }
        pos += len;
        *acc = acc
            .checked_mul(10i128.pow(digits))
            .and_then(|a| a.checked_add(i128::from(v)))
            .ok_or_else(|| SyncError::data("decimal value overflows its precision"))?;
        Ok(())
    };
    group(DIG2BYTES[intg % 9], (intg % 9) as u32, &mut acc)?;
    for _ in 0..intg / 9 {
        group(4, 9, &mut acc)?;
    }
    for _ in 0..frac / 9 {
        group(4, 9, &mut acc)?;
    }
    group(DIG2BYTES[frac % 9], (frac % 9) as u32, &mut acc)?;
    Ok(if negative { -acc } else { acc })
}

/// Decimal text ("-123.450") to the unscaled i128 at `scale`.
pub(crate) fn decimal_from_text(text: &str, scale: u8) -> SyncResult<i128> {
    let bad = || SyncError::data(format!("{text:?} is not a decimal"));
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    let mut acc: i128 = 0;
    let push = |d: u8, acc: &mut i128| -> SyncResult<()> {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        *acc = acc.checked_mul(10).and_then(|a| a.checked_add(i128::from(d - b'0'))).ok_or_else(bad)?;
        Ok(())
    };
    for d in int.bytes() {
        push(d, &mut acc)?;
    }
    let frac = frac.as_bytes();
    for i in 0..usize::from(scale) {
        push(frac.get(i).copied().unwrap_or(b'0'), &mut acc)?;
    }
    Ok(if neg { -acc } else { acc })
}

// ---------------------------------------------------------------------------------------
// dates

/// A calendar date, or None for MySQL's zero dates ('0000-00-00', '2024-00-01').
pub(crate) fn date_days(y: u32, m: u32, d: u32) -> Option<i32> {
    if y == 0 || m == 0 || d == 0 || m > 12 || d > 31 {
        return None;
    }
    Some(civil::days_from_civil(i64::from(y), m, d) as i32)
}

pub(crate) fn datetime_micros(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> Option<i64> {
    let days = date_days(y, mo, d)?;
    Some(
        ((i64::from(days) * 24 + i64::from(h)) * 60 + i64::from(mi)) * 60_000_000
            + i64::from(s) * 1_000_000
            + i64::from(us),
    )
}

// ---------------------------------------------------------------------------------------
// JSON

/// MySQL binary JSON to the text MySQL itself prints (`{"a": 1, "b": [true, null]}`), keys in
/// storage order. An empty value is JSON null.
pub(crate) fn jsonb_to_text(bytes: &[u8]) -> SyncResult<String> {
    if bytes.is_empty() {
        return Ok("null".to_owned());
    }
    let value: jsonb::Value<'_> = ParseBuf(bytes).parse(()).map_err(json_err)?;
    let mut out = String::with_capacity(bytes.len() + 16);
    write_json(&value, &mut out).map_err(json_err)?;
    Ok(out)
}

fn json_err(e: io::Error) -> SyncError {
    SyncError::with_source(rtsync_core::ErrorKind::Data, "undecodable binary JSON value", e)
}

fn write_json(v: &jsonb::Value<'_>, out: &mut String) -> io::Result<()> {
    use jsonb::Value as J;
    match v {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::I16(x) => out.push_str(&x.to_string()),
        J::U16(x) => out.push_str(&x.to_string()),
        J::I32(x) => out.push_str(&x.to_string()),
        J::U32(x) => out.push_str(&x.to_string()),
        J::I64(x) => out.push_str(&x.to_string()),
        J::U64(x) => out.push_str(&x.to_string()),
        J::F64(x) => out.push_str(&format_double(*x)),
        J::String(s) => json::push_string(out, &String::from_utf8_lossy(s.str_raw())),
        J::SmallArray(a) => write_array(a.iter(), out)?,
        J::LargeArray(a) => write_array(a.iter(), out)?,
        J::SmallObject(o) => write_object(o.iter(), out)?,
        J::LargeObject(o) => write_object(o.iter(), out)?,
        J::Opaque(_) => match v.clone().parse()? {
            jsonb::JsonDom::Scalar(jsonb::JsonScalar::DateTime(t)) => json::push_string(out, &format!("{t:.6}")),
            jsonb::JsonDom::Scalar(jsonb::JsonScalar::Number(jsonb::JsonNumber::Decimal(d))) => {
                out.push_str(&d.to_string())
            }
            jsonb::JsonDom::Scalar(jsonb::JsonScalar::Opaque(o)) => json::push_string(out, &o.to_string()),
            other => {
                let json: serde_json::Value = other.into();
                out.push_str(&json.to_string());
            }
        },
    }
    Ok(())
}

fn write_array<'a>(items: impl Iterator<Item = io::Result<jsonb::Value<'a>>>, out: &mut String) -> io::Result<()> {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_json(&item?, out)?;
    }
    out.push(']');
    Ok(())
}

fn write_object<'a>(
    items: impl Iterator<Item = io::Result<(jsonb::ObjectKey<'a>, jsonb::Value<'a>)>>,
    out: &mut String,
) -> io::Result<()> {
    out.push('{');
    for (i, item) in items.enumerate() {
        let (key, value) = item?;
        if i > 0 {
            out.push_str(", ");
        }
        json::push_string(out, &String::from_utf8_lossy(key.value_raw()));
        out.push_str(": ");
        write_json(&value, out)?;
    }
    out.push('}');
    Ok(())
}

/// Doubles as MySQL prints them in JSON: shortest round-trip digits, `.0` on whole numbers,
/// exponent form for very large or small magnitudes.
fn format_double(x: f64) -> String {
    if !x.is_finite() {
        return "null".to_owned();
    }
    let a = x.abs();
    if a != 0.0 && !(1e-5..1e15).contains(&a) {
        return format!("{x:e}");
    }
    let s = format!("{x}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

// ---------------------------------------------------------------------------------------
// snapshot values

/// One binary-protocol value (session time zone UTC, results in utf8mb4) into `col`.
fn push_value(kind: &ColumnKind, value: Value, col: &mut ColBuilder) -> SyncResult<()> {
    if value == Value::NULL {
        col.append_null();
        return Ok(());
    }
    let unexpected = |v: &Value| SyncError::data(format!("unexpected value {v:?} for a {kind:?} column"));
    match (col, value) {
        (ColBuilder::Int8(b), v) => b.append_value(int_of(&v).ok_or_else(|| unexpected(&v))? as i8),
        (ColBuilder::Int16(b), v) => b.append_value(int_of(&v).ok_or_else(|| unexpected(&v))? as i16),
        (ColBuilder::Int32(b), v) => b.append_value(int_of(&v).ok_or_else(|| unexpected(&v))? as i32),
        (ColBuilder::Int64(b), Value::Time(neg, d, h, m, s, us)) => {
            let micros = ((i64::from(d) * 24 + i64::from(h)) * 3600 + i64::from(m) * 60 + i64::from(s)) * 1_000_000
                + i64::from(us);
            b.append_value(if neg { -micros } else { micros })
        }
        (ColBuilder::Int64(b), v) => b.append_value(int_of(&v).ok_or_else(|| unexpected(&v))? as i64),
        (ColBuilder::Float32(b), Value::Float(f)) => b.append_value(f),
        (ColBuilder::Float32(b), Value::Double(f)) => b.append_value(f as f32),
        (ColBuilder::Float64(b), Value::Double(f)) => b.append_value(f),
        (ColBuilder::Float64(b), Value::Float(f)) => b.append_value(f64::from(f)),
        (ColBuilder::Decimal(b, _, scale), v) => match v {
            Value::UInt(u) => b.append_value(i128::from(u)),
            Value::Int(i) => b.append_value(i128::from(i)),
            Value::Bytes(t) => b.append_value(decimal_from_text(&String::from_utf8_lossy(&t), *scale as u8)?),
            v => return Err(unexpected(&v)),
        },
        (ColBuilder::Boolean(b), Value::Bytes(bytes)) => b.append_value(bytes.iter().any(|x| *x != 0)),
        (ColBuilder::Boolean(b), v) => b.append_value(int_of(&v).ok_or_else(|| unexpected(&v))? != 0),
        (ColBuilder::Utf8(b), Value::Bytes(bytes)) => match String::from_utf8(bytes) {
            Ok(s) => b.append_value(s),
            Err(_) => return Err(SyncError::data("text is not valid UTF-8 (the session asks for utf8mb4 results)")),
        },
        (ColBuilder::Utf8(b), v @ (Value::Int(_) | Value::UInt(_) | Value::Double(_) | Value::Float(_))) => {
            b.append_value(v.as_sql(true))
        }
        (ColBuilder::Binary(b), Value::Bytes(bytes)) => b.append_value(bytes),
        (ColBuilder::Date32(b), Value::Date(y, m, d, ..)) => {
            b.append_option(date_days(u32::from(y), u32::from(m), u32::from(d)))
        }
        (ColBuilder::Timestamp(b, _), Value::Date(y, mo, d, h, mi, s, us)) => b.append_option(datetime_micros(
            u32::from(y),
            u32::from(mo),
            u32::from(d),
            u32::from(h),
            u32::from(mi),
            u32::from(s),
            us,
        )),
        (_, v) => return Err(unexpected(&v)),
    }
    Ok(())
}

fn int_of(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(i128::from(*i)),
        Value::UInt(u) => Some(i128::from(*u)),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rtsync_core::arrow::array::{Array, AsArray};
    use rtsync_core::arrow::datatypes::{
        Date32Type, Decimal128Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    };

    use super::*;

    fn spec(name: &str, kind: ColumnKind) -> ColumnSpec {
        ColumnSpec { name: name.into(), kind }
    }

    /// MySQL's binary DECIMAL encoding, written out independently of the decoder.
    fn decimal_bytes(text: &str, p: usize, s: usize) -> Vec<u8> {
        let neg = text.starts_with('-');
        let t = text.trim_start_matches('-');
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let intg = p - s;
        let int = format!("{int:0>intg$}");
        let frac = format!("{frac:0<s$}");
        let mut out = Vec::new();
        let mut put = |digits: &str| {
            if digits.is_empty() {
                return;
            }
            let v: u32 = digits.parse().unwrap();
            let n = DIG2BYTES[digits.len()];
            out.extend_from_slice(&v.to_be_bytes()[4 - n..]);
        };
        let lead = intg % 9;
        put(&int[..lead]);
        for g in int.as_bytes()[lead..].chunks(9) {
            put(std::str::from_utf8(g).unwrap());
        }
        for g in frac.as_bytes().chunks(9) {
            put(std::str::from_utf8(g).unwrap());
        }
        if neg {
            out.iter_mut().for_each(|b| *b = !*b);
        }
        out[0] ^= 0x80;
        assert_eq!(out.len(), decimal_bin_size(p as u8, s as u8), "{text}");
        // mysql_common reads it back to the same number.
        let d = Decimal::read_bin(&out[..], p, s, false).unwrap().to_string();
        let norm = |x: &str| {
            x.trim_start_matches('-').trim_start_matches('0').trim_end_matches('0').trim_end_matches('.').to_owned()
        };
        assert_eq!(norm(&d), norm(text), "mysql_common decodes {text} as {d}");
        out
    }

    #[test]
    fn binary_decimals_match_mysql_common() {
        for (text, p, s, want) in [
            ("1234567890.1234", 14, 4, 12_345_678_901_234i128),
            ("-1234567890.1234", 14, 4, -12_345_678_901_234),
            ("0.0000", 14, 4, 0),
            ("-0.5", 5, 1, -5),
            ("99999999999999999999999999999999999999", 38, 0, 99_999_999_999_999_999_999_999_999_999_999_999_999),
            ("123456789012345678.123456789012", 30, 12, 123_456_789_012_345_678_123_456_789_012),
            ("-7", 1, 0, -7),
        ] {
            let bytes = decimal_bytes(text, p, s);
            assert_eq!(decimal_from_bin(&bytes, p as u8, s as u8).unwrap(), want, "{text}");
            assert_eq!(decimal_from_text(text, s as u8).unwrap(), want, "{text}");
        }
        assert_eq!(decimal_from_text("1.5", 3).unwrap(), 1500);
        assert!(decimal_from_text("1e5", 0).is_err());
    }

    #[test]
    fn dates_and_zero_dates() {
        assert_eq!(date_days(1970, 1, 1), Some(0));
        assert_eq!(date_days(2000, 3, 1), Some(11_017));
        assert_eq!(date_days(1, 1, 1), Some(-719_162));
        assert_eq!(date_days(0, 0, 0), None);
        assert_eq!(date_days(2024, 0, 5), None);
        assert_eq!(datetime_micros(2024, 2, 29, 23, 59, 59, 999_999), Some(1_709_251_199_999_999));
    }

    #[test]
    fn time2_packs_negative_and_fractional_times() {
        // -838:59:59 and 12:34:56.789 with fsp 3, encoded as MySQL does.
        let enc = |neg: bool, h: i64, m: i64, s: i64, frac_ms: i64| -> Vec<u8> {
            let int = (h << 12) | (m << 6) | s;
            let mut packed = (int << 24) + frac_ms * 1000;
            if neg {
                packed = -packed;
            }
            // fsp 3, as MySQL's my_time_packed_to_binary: the int part floors, the fraction
            // keeps the sign of the remainder in two's complement.
            let ip = (packed >> 24) + 0x80_0000;
            let frac = ((packed % (1 << 24)) / 100) as i16;
            let mut v = vec![(ip >> 16) as u8, (ip >> 8) as u8, ip as u8];
            v.extend_from_slice(&frac.to_be_bytes());
            v
        };
        let kind = ColumnKind::Time;
        for (neg, h, m, s, ms, want) in [
            (false, 12, 34, 56, 789, (12 * 3600 + 34 * 60 + 56) * 1_000_000 + 789_000),
            (true, 838, 59, 59, 0, -(838 * 3600 + 59 * 60 + 59) * 1_000_000),
            (true, 0, 0, 1, 500, -1_500_000),
        ] {
            let bytes = enc(neg, h, m, s, ms);
            let mut col = ColBuilder::new(&DataType::Int64, 1).unwrap();
            decode_wire(&Wire::Time2 { fsp: 3 }, &kind, &mut Cursor::new(&bytes), &mut col).unwrap();
            let arr = col.finish().unwrap();
            assert_eq!(arr.as_primitive::<Int64Type>().value(0), want);
        }
    }

    #[test]
    fn row_images_decode_into_typed_columns() {
        let columns: Arc<[ColumnSpec]> = vec![
            spec("id", ColumnKind::Int { bytes: 8, unsigned: true }),
            spec("small", ColumnKind::Int { bytes: 1, unsigned: true }),
            spec("m", ColumnKind::Int { bytes: 3, unsigned: false }),
            spec("name", ColumnKind::Text { charset: Charset::Utf8 }),
            spec("bin", ColumnKind::Binary { fixed: Some(4) }),
            spec("d", ColumnKind::Date),
            spec("dt", ColumnKind::DateTime),
            spec("ts", ColumnKind::Timestamp),
            spec("e", ColumnKind::Enum { names: vec!["a".to_string(), "b".to_string()].into() }),
            spec("s", ColumnKind::Set { names: vec!["x".to_string(), "y".to_string(), "z".to_string()].into() }),
            spec("y", ColumnKind::Year),
            spec("l1", ColumnKind::Text { charset: Charset::Latin1 }),
        ]
        .into();
        let wires = vec![
            Wire::LongLong,
            Wire::Tiny,
            Wire::Int24,
            Wire::VarString { prefix: 1 },
            Wire::String { prefix: 1 },
            Wire::Date,
            Wire::DateTime2 { fsp: 6 },
            Wire::Timestamp2 { fsp: 0 },
            Wire::Enum { bytes: 1 },
            Wire::Set { bytes: 1 },
            Wire::Year,
            Wire::Blob { prefix: 2 },
        ];
        let mut image = vec![0u8, 0u8]; // null bitmap: 12 columns, none NULL
        image.extend_from_slice(&u64::MAX.to_le_bytes());
        image.push(255);
        image.extend_from_slice(&[0xFE, 0xFF, 0xFF]); // -2 as int24
        image.extend_from_slice(&[3, b'a', 0xC3, 0xA9]); // "aé"
        image.extend_from_slice(&[2, 1, 2]); // binary(4) 0x0102 stripped
        let date = (2024u32 << 9) | (2 << 5) | 29;
        image.extend_from_slice(&date.to_le_bytes()[..3]);
        // datetime2(6) 2024-02-29 23:59:59.000001
        let ym = 2024i64 * 13 + 2;
        let int = (((ym << 5) | 29) << 17) | (23 << 12) | (59 << 6) | 59;
        image.extend_from_slice(&((int + 0x80_0000_0000) as u64).to_be_bytes()[3..]);
        image.extend_from_slice(&[0, 0, 1]);
        image.extend_from_slice(&1_700_000_000u32.to_be_bytes());
        image.push(2); // enum 'b'
        image.push(0b101); // set x,z
        image.push(124); // 2024
        image.extend_from_slice(&[1, 0, 0x80]); // latin1 0x80 = €
        let present = [0xFF, 0x0F];
        let mut rows = RowsBuilder::new(columns.clone(), 4).unwrap();
        let used = rows.push_image(&wires, &present, &image, Op::Create, Some(5)).unwrap();
        assert_eq!(used, image.len());
        // The same row with every column NULL.
        rows.push_image(&wires, &present, &[0xFF, 0x0F], Op::Delete, None).unwrap();
        let (batch, times, bytes) = rows.finish().unwrap();
        assert_eq!(bytes as usize, image.len() + 2);
        assert_eq!(times.unwrap().value(0), 5);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(0).as_primitive::<Decimal128Type>().value(0), i128::from(u64::MAX));
        assert_eq!(batch.column(1).as_primitive::<Int16Type>().value(0), 255);
        assert_eq!(batch.column(2).as_primitive::<Int32Type>().value(0), -2);
        assert_eq!(batch.column(3).as_string::<i32>().value(0), "aé");
        assert_eq!(batch.column(4).as_binary::<i32>().value(0), &[1, 2, 0, 0]);
        assert_eq!(batch.column(5).as_primitive::<Date32Type>().value(0), date_days(2024, 2, 29).unwrap());
        assert_eq!(batch.column(6).as_primitive::<TimestampMicrosecondType>().value(0), 1_709_251_199_000_001);
        assert_eq!(batch.column(7).as_primitive::<TimestampMicrosecondType>().value(0), 1_700_000_000_000_000);
        assert_eq!(batch.column(8).as_string::<i32>().value(0), "b");
        assert_eq!(batch.column(9).as_string::<i32>().value(0), "x,z");
        assert_eq!(batch.column(10).as_primitive::<Int16Type>().value(0), 2024);
        assert_eq!(batch.column(11).as_string::<i32>().value(0), "€");
        assert_eq!(batch.column(12).as_string::<i32>().value(1), "d");
        for c in 0..12 {
            assert!(batch.column(c).is_null(1), "column {c}");
        }
        // spans: id and name
        let (spans, len) = image_spans(&wires, &present, &image, &[0, 3]).unwrap();
        assert_eq!(len, image.len());
        assert_eq!(spans, vec![Some((2, 10)), Some((14, 18))]);
        assert!(rows.push_image(&wires, &present, &image[..20], Op::Create, None).is_err());
    }

    #[test]
    fn snapshot_values_land_in_the_same_types() {
        let columns: Arc<[ColumnSpec]> = vec![
            spec("u", ColumnKind::Int { bytes: 8, unsigned: true }),
            spec("dec", ColumnKind::Decimal { precision: 10, scale: 2 }),
            spec("t", ColumnKind::Time),
            spec("ts", ColumnKind::Timestamp),
            spec("d", ColumnKind::Date),
            spec("b", ColumnKind::Bit { bits: 1 }),
        ]
        .into();
        let mut rows = RowsBuilder::new(columns, 2).unwrap();
        rows.push_values(
            vec![
                Value::UInt(u64::MAX),
                Value::Bytes(b"-12.5".to_vec()),
                Value::Time(true, 1, 2, 3, 4, 5),
                Value::Date(2024, 1, 2, 3, 4, 5, 6),
                Value::Date(0, 0, 0, 0, 0, 0, 0),
                Value::Bytes(vec![1]),
            ],
            Op::Read,
        )
        .unwrap();
        let (batch, times, _) = rows.finish().unwrap();
        assert!(times.is_none());
        assert_eq!(batch.column(0).as_primitive::<Decimal128Type>().value(0), i128::from(u64::MAX));
        assert_eq!(batch.column(1).as_primitive::<Decimal128Type>().value(0), -1250);
        assert_eq!(batch.column(2).as_primitive::<Int64Type>().value(0), -(((26 * 3600) + 3 * 60 + 4) * 1_000_000 + 5));
        assert_eq!(
            batch.column(3).as_primitive::<TimestampMicrosecondType>().value(0),
            datetime_micros(2024, 1, 2, 3, 4, 5, 6).unwrap()
        );
        assert!(batch.column(4).is_null(0));
        assert!(batch.column(5).as_boolean().value(0));
        assert_eq!(batch.column(6).as_string::<i32>().value(0), "r");
    }

    /// MySQL binary JSON `{"a": 1, "b": [true, null], "s": "x\"y"}` built by hand, printed
    /// as MySQL prints it (keys in storage order, ", " and ": ").
    #[test]
    fn binary_json_prints_like_mysql() {
        // small object: count, size, key entries (offset, len), value entries (type, value/offset)
        let mut b = vec![0x00u8, 3, 0, 0, 0];
        b.extend_from_slice(&[25, 0, 1, 0, 26, 0, 1, 0, 27, 0, 1, 0]);
        b.extend_from_slice(&[0x05, 1, 0, 0x02, 28, 0, 0x0c, 38, 0]);
        b.extend_from_slice(b"abs");
        b.extend_from_slice(&[2, 0, 10, 0, 0x04, 1, 0, 0x04, 0, 0]); // [true, null]
        b.extend_from_slice(&[3, b'x', b'"', b'y']); // "x\"y"
        let size = (b.len() - 1) as u16;
        b[3..5].copy_from_slice(&size.to_le_bytes());
        assert_eq!(jsonb_to_text(&b).unwrap(), r#"{"a": 1, "b": [true, null], "s": "x\"y"}"#);
        assert_eq!(jsonb_to_text(&[]).unwrap(), "null");
        assert!(jsonb_to_text(&[0x00, 9, 0]).is_err());
    }

    #[test]
    fn doubles_print_like_mysql() {
        assert_eq!(format_double(3.0), "3.0");
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(-0.25), "-0.25");
        assert_eq!(format_double(1e100), "1e100");
    }

    #[test]
    fn latin1_is_cp1252() {
        assert_eq!(latin1_to_utf8(&[b'a', 0xE9, 0x80, 0x9F]), "aé€Ÿ");
    }
}
