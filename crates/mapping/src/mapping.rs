//! [`compile`] and the [`KafkaJsonMapping`] it returns: Kafka source rows to target rows.
//!
//! Everything that can be checked without data is checked by [`compile`]: names, types, paths,
//! which built-in field may be cast to which type. [`KafkaJsonMapping::map`] then goes row by
//! row, because one row's JSON is read once for all of its columns, and appends each column's
//! value straight into that column's Arrow builder. A row that fails (value not UTF-8 or not
//! JSON, a value that cannot be cast) gets nulls in the builders it had not reached, is listed
//! in [`MappedBatch::rejected`], and is dropped by one filter over the finished arrays (only
//! when something was rejected), so the common path never copies a column twice.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::compute::FilterBuilder;
use arrow::datatypes::{Field as ArrowField, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::query::js_path_process;
use rtsync_core::json::push_string;
use rtsync_core::{ColumnMapping, ErrorKind, MappedBatch, OP_COLUMN, Rejected, SyncError, SyncResult, kafka};

use crate::column::{Builder, CastError, shown};
use crate::expr::{Expr, ExprError, Field};
use crate::json::PathTrie;
use crate::node::Node;
use crate::spec::{ColumnSpec, ColumnType};

/// The target columns of a task that configures none: every built-in field of the message.
pub fn default_columns() -> Vec<ColumnSpec> {
    vec![
        ColumnSpec::new("key", kafka::KEY, "string"),
        ColumnSpec::new("value", kafka::VALUE, "string"),
        ColumnSpec::new("timestamp", kafka::TIMESTAMP, "timestamp"),
        ColumnSpec::new("partition", kafka::PARTITION, "int"),
        ColumnSpec::new("offset", kafka::OFFSET, "bigint"),
        ColumnSpec::new("headers", kafka::HEADERS, "string"),
    ]
}

/// Checks `columns` and compiles them into a mapping; no columns means [`default_columns`].
///
/// Fails with a [`ErrorKind::Config`] error naming the column: empty, reserved or duplicate
/// (case-insensitive) name, unknown type, an `expr` that is neither a JSONPath nor a built-in
/// field, an invalid JSONPath (the parser's reason as the cause), or a built-in field cast to a
/// type it cannot hold.
pub fn compile(columns: &[ColumnSpec]) -> SyncResult<KafkaJsonMapping> {
    if columns.is_empty() {
        return compile_columns(&default_columns());
    }
    compile_columns(columns)
}

fn compile_columns(specs: &[ColumnSpec]) -> SyncResult<KafkaJsonMapping> {
    let mut columns = Vec::with_capacity(specs.len());
    let mut simple_paths = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let name = spec.name.as_str();
        if name.trim().is_empty() {
            return Err(SyncError::config(format!("columns[{i}]: name is empty")));
        }
        if name == OP_COLUMN {
            return Err(SyncError::config(format!("column {name:?}: the name is reserved for the operation column")));
        }
        if let Some(earlier) = specs[..i].iter().find(|s| s.name.eq_ignore_ascii_case(name)) {
            return Err(SyncError::config(format!(
                "column {name:?}: duplicate name (column {:?} has the same name, ignoring case)",
                earlier.name
            )));
        }
        let ty: ColumnType = spec.ty.parse().map_err(|e: SyncError| e.context_prefix(format!("column {name:?}")))?;
        let source = match Expr::parse(&spec.expr) {
            Ok(Expr::Field(field)) => {
                check_field_type(field, ty).map_err(|e| e.context_prefix(format!("column {name:?}")))?;
                Source::Field(field)
            }
            Ok(Expr::Simple(steps)) => {
                simple_paths.push(steps);
                Source::Simple { slot: simple_paths.len() - 1 }
            }
            Ok(Expr::Complex { query, multi }) => Source::Complex { query, multi },
            Err(ExprError::Unknown) => {
                return Err(SyncError::config(format!(
                    "column {name:?}: expr {:?} is neither a JSONPath (starting with \"$\") nor a built-in field ({})",
                    spec.expr,
                    kafka::BUILTIN_FIELDS.join(", ")
                )));
            }
            Err(ExprError::Path(err)) => {
                return Err(SyncError::with_source(
                    ErrorKind::Config,
                    format!("column {name:?}: invalid JSONPath {:?}", spec.expr),
                    err,
                ));
            }
        };
        columns.push(Column { name: spec.name.clone(), ty, expr: spec.expr.clone(), source });
    }

    let paths: Vec<&[_]> = simple_paths.iter().map(Vec::as_slice).collect();
    let (trie, slot_of_path) = PathTrie::new(&paths);
    for column in &mut columns {
        if let Source::Simple { slot } = &mut column.source {
            *slot = slot_of_path[*slot];
        }
    }
    let fields: Vec<ArrowField> = columns
        .iter()
        .map(|c| {
            let never_null = matches!(c.source, Source::Field(Field::Partition | Field::Offset));
            ArrowField::new(c.name.as_str(), c.ty.data_type(), !never_null)
        })
        .collect();
    let has_simple = !simple_paths.is_empty();
    let has_complex = columns.iter().any(|c| matches!(c.source, Source::Complex { .. }));
    let mut reads = [false; 6];
    for (i, field) in Field::ALL.into_iter().enumerate() {
        // The value is always read: it is what a rejected row carries as its raw record.
        reads[i] = field == Field::Value || columns.iter().any(|c| matches!(c.source, Source::Field(f) if f == field));
    }
    Ok(KafkaJsonMapping { schema: Arc::new(Schema::new(fields)), columns, trie, has_simple, has_complex, reads })
}

/// The types a built-in field can be cast to (key, value: any, as the content of a string).
fn check_field_type(field: Field, ty: ColumnType) -> SyncResult<()> {
    let allowed: &[ColumnType] = match field {
        Field::Key | Field::Value => return Ok(()),
        Field::Timestamp => &[ColumnType::Timestamp, ColumnType::BigInt, ColumnType::Date, ColumnType::String],
        Field::Partition => &[ColumnType::Int, ColumnType::BigInt, ColumnType::String],
        Field::Offset => &[ColumnType::BigInt, ColumnType::String],
        Field::Headers => &[ColumnType::String, ColumnType::Json],
    };
    if allowed.contains(&ty) {
        return Ok(());
    }
    let names: Vec<String> = allowed.iter().map(ToString::to_string).collect();
    Err(SyncError::config(format!("built-in field {} cannot be typed {ty}; use {}", field.name(), names.join(", "))))
}

/// A compiled column.
#[derive(Debug)]
struct Column {
    name: String,
    ty: ColumnType,
    /// The expression as configured, quoted in rejection reasons.
    expr: String,
    source: Source,
}

#[derive(Debug)]
enum Source {
    Field(Field),
    /// Served by the trie: the raw text of the value is in this slot.
    Simple {
        slot: usize,
    },
    Complex {
        query: JpQuery,
        multi: bool,
    },
}

/// Kafka JSON messages to typed target columns; see the crate documentation.
#[derive(Debug)]
pub struct KafkaJsonMapping {
    schema: SchemaRef,
    columns: Vec<Column>,
    trie: PathTrie,
    has_simple: bool,
    has_complex: bool,
    /// Which source columns `map` reads, indexed like [`Field::ALL`].
    reads: [bool; 6],
}

/// The source columns of one batch, those the mapping reads.
struct Inputs<'b> {
    key: Option<&'b BinaryArray>,
    value: Option<&'b BinaryArray>,
    timestamp: Option<&'b TimestampMillisecondArray>,
    partition: Option<&'b Int32Array>,
    offset: Option<&'b Int64Array>,
    headers: Option<&'b StringArray>,
}

/// The column `name` of `batch` as an array of type `A`, if `wanted`.
fn input<'b, A: Array + 'static>(batch: &'b RecordBatch, name: &str, wanted: bool) -> SyncResult<Option<&'b A>> {
    if !wanted {
        return Ok(None);
    }
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| SyncError::internal(format!("the source batch has no column {name:?}")))?;
    let typed = column.as_any().downcast_ref::<A>().ok_or_else(|| {
        SyncError::internal(format!(
            "the source batch's column {name:?} has type {}; kafka_source_schema() says {}",
            column.data_type(),
            kafka::kafka_source_schema().field_with_name(name).map(|f| f.data_type().to_string()).unwrap_or_default()
        ))
    })?;
    Ok(Some(typed))
}

impl<'b> Inputs<'b> {
    fn resolve(batch: &'b RecordBatch, reads: &[bool; 6]) -> SyncResult<Self> {
        Ok(Inputs {
            key: input(batch, kafka::KEY, reads[0])?,
            value: input(batch, kafka::VALUE, reads[1])?,
            timestamp: input(batch, kafka::TIMESTAMP, reads[2])?,
            partition: input(batch, kafka::PARTITION, reads[3])?,
            offset: input(batch, kafka::OFFSET, reads[4])?,
            headers: input(batch, kafka::HEADERS, reads[5])?,
        })
    }

    fn value(&self, row: usize) -> Option<&'b [u8]> {
        binary(self.value, row)
    }
}

fn binary(array: Option<&BinaryArray>, row: usize) -> Option<&[u8]> {
    array.filter(|a| a.is_valid(row)).map(|a| a.value(row))
}

fn primitive<T: arrow::datatypes::ArrowPrimitiveType>(
    array: Option<&arrow::array::PrimitiveArray<T>>,
    row: usize,
) -> Option<T::Native> {
    array.filter(|a| a.is_valid(row)).map(|a| a.value(row))
}

/// Buffers reused for every row of one batch.
struct Scratch<'b> {
    /// Per simple path, the raw text of its value in the current row (borrowed from the
    /// message, owned only for a string with escapes).
    slots: Vec<Option<Cow<'b, str>>>,
    /// Decoded strings.
    text: String,
    /// A complex path's matches as one JSON array.
    matches: String,
}

/// Why a row was dropped, and how many columns had already received its value.
struct RowError {
    appended: usize,
    reason: String,
}

impl RowError {
    fn whole_row(reason: String) -> Self {
        RowError { appended: 0, reason }
    }
}

impl KafkaJsonMapping {
    /// Maps one row into the builders; on error, builders from `appended` on are untouched.
    fn map_row<'b>(
        &self,
        row: usize,
        inputs: &Inputs<'b>,
        builders: &mut [Builder],
        scratch: &mut Scratch<'b>,
    ) -> Result<(), RowError> {
        // A tombstone (no value) has no JSON: every path column is NULL.
        let mut doc = None;
        if (self.has_simple || self.has_complex)
            && let Some(bytes) = inputs.value(row)
        {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| RowError::whole_row(format!("value is not valid UTF-8: {e}")))?;
            if self.has_simple {
                self.trie
                    .extract(text, &mut scratch.slots)
                    .map_err(|e| RowError::whole_row(format!("value is not valid JSON: {e}")))?;
            }
            doc = Some(text);
        }
        let root = match doc {
            Some(text) if self.has_complex => {
                Some(Node::parse(text).map_err(|e| RowError::whole_row(format!("value is not valid JSON: {e}")))?)
            }
            _ => None,
        };

        for (i, (column, builder)) in self.columns.iter().zip(builders.iter_mut()).enumerate() {
            let result = match &column.source {
                Source::Simple { slot } => match scratch.slots[*slot].as_deref().filter(|_| doc.is_some()) {
                    Some(raw) => builder.append_json(raw, &mut scratch.text).map_err(|e| e.describe(raw, column.ty)),
                    None => {
                        builder.append_null();
                        Ok(())
                    }
                },
                Source::Complex { query, multi } => match &root {
                    Some(root) => append_matches(builder, column.ty, query, *multi, root, scratch),
                    None => {
                        builder.append_null();
                        Ok(())
                    }
                },
                Source::Field(field) => append_field(builder, column.ty, *field, inputs, row),
            };
            if let Err(problem) = result {
                let at = if matches!(column.source, Source::Field(_)) { "from" } else { "at" };
                let reason = format!("column {:?} ({}) {at} {}: {problem}", column.name, column.ty, column.expr);
                return Err(RowError { appended: i, reason });
            }
        }
        Ok(())
    }
}

/// Evaluates a complex path on `root` and appends its result. A path that can match several
/// values gives `string`/`json` columns a JSON array of all matches; other types take exactly
/// one match. No match is NULL.
fn append_matches(
    builder: &mut Builder,
    ty: ColumnType,
    query: &JpQuery,
    multi: bool,
    root: &Node<'_>,
    scratch: &mut Scratch<'_>,
) -> Result<(), String> {
    let matches = js_path_process(query, root).map_err(|e| format!("the path could not be evaluated: {e}"))?;
    let raw = match matches.as_slice() {
        [] => {
            builder.append_null();
            return Ok(());
        }
        all if multi && matches!(ty, ColumnType::String | ColumnType::Json) => {
            scratch.matches.clear();
            scratch.matches.push('[');
            for (i, m) in all.iter().enumerate() {
                if i > 0 {
                    scratch.matches.push(',');
                }
                scratch.matches.push_str(m.val.raw());
            }
            scratch.matches.push(']');
            scratch.matches.as_str()
        }
        [one] => one.val.raw(),
        several => return Err(format!("the path matched {} values; a column of type {ty} takes one", several.len())),
    };
    builder.append_json(raw, &mut scratch.text).map_err(|e| e.describe(raw, ty))
}

/// Appends a built-in field of row `row`.
fn append_field(
    builder: &mut Builder,
    ty: ColumnType,
    field: Field,
    inputs: &Inputs<'_>,
    row: usize,
) -> Result<(), String> {
    let text = |bytes: Option<&[u8]>, builder: &mut Builder| -> Result<(), String> {
        let Some(bytes) = bytes else {
            builder.append_null();
            return Ok(());
        };
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not valid UTF-8: {e}"))?;
        builder.append_str(text).map_err(|e| {
            let mut quoted = String::with_capacity(text.len().min(128) + 2);
            push_string(&mut quoted, &shown(text));
            e.describe(&quoted, ty)
        })
    };
    let describe = |e: CastError, v: String| e.describe(&v, ty);
    match field {
        Field::Key => text(binary(inputs.key, row), builder),
        Field::Value => text(binary(inputs.value, row), builder),
        Field::Headers => {
            let headers = inputs.headers.filter(|a| a.is_valid(row)).map(|a| a.value(row).as_bytes());
            text(headers, builder)
        }
        Field::Timestamp => match primitive(inputs.timestamp, row) {
            Some(millis) => builder.append_timestamp_millis(millis).map_err(|e| describe(e, millis.to_string())),
            None => {
                builder.append_null();
                Ok(())
            }
        },
        Field::Partition => match primitive(inputs.partition, row) {
            Some(p) => builder.append_integer(i64::from(p)).map_err(|e| describe(e, p.to_string())),
            None => {
                builder.append_null();
                Ok(())
            }
        },
        Field::Offset => match primitive(inputs.offset, row) {
            Some(o) => builder.append_integer(o).map_err(|e| describe(e, o.to_string())),
            None => {
                builder.append_null();
                Ok(())
            }
        },
    }
}

impl ColumnMapping for KafkaJsonMapping {
    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn input_schema(&self) -> Option<SchemaRef> {
        Some(kafka::kafka_source_schema())
    }

    fn map(&self, input: &RecordBatch) -> SyncResult<MappedBatch> {
        let rows = input.num_rows();
        let inputs = Inputs::resolve(input, &self.reads)?;
        let mut builders = self.columns.iter().map(|c| Builder::new(c.ty, rows)).collect::<Result<Vec<_>, _>>()?;
        let mut scratch = Scratch { slots: vec![None; self.trie.slots()], text: String::new(), matches: String::new() };
        let mut rejected = Vec::new();
        let mut keep: Option<Vec<bool>> = None;
        for row in 0..rows {
            if let Err(err) = self.map_row(row, &inputs, &mut builders, &mut scratch) {
                for builder in &mut builders[err.appended..] {
                    builder.append_null();
                }
                keep.get_or_insert_with(|| vec![true; rows])[row] = false;
                rejected.push(Rejected { row, reason: err.reason, raw: inputs.value(row).map(<[u8]>::to_vec) });
            }
        }
        let mut arrays: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
        // Filter before building the batch: a rejected row holds nulls even in columns the
        // schema declares non-nullable (partition, offset).
        if let Some(keep) = keep {
            let keep = FilterBuilder::new(&BooleanArray::from(keep)).optimize().build();
            arrays = arrays.iter().map(|a| keep.filter(a)).collect::<Result<_, _>>()?;
        }
        let rows = RecordBatch::try_new(self.schema.clone(), arrays)?;
        Ok(MappedBatch { rows, rejected })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use arrow::array::{AsArray, BinaryBuilder};
    use arrow::datatypes::{
        DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    };

    use super::*;

    /// A source batch: one row per value, keys `k<i>`, timestamps `1_700_000_000_000 + i`,
    /// partition 3, offsets `100 + i`, no headers.
    fn batch(values: &[Option<&[u8]>]) -> RecordBatch {
        let mut keys = BinaryBuilder::new();
        let mut vals = BinaryBuilder::new();
        for (i, v) in values.iter().enumerate() {
            keys.append_value(format!("k{i}"));
            vals.append_option(*v);
        }
        let n = values.len() as i64;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(keys.finish()),
            Arc::new(vals.finish()),
            Arc::new(
                TimestampMillisecondArray::from_iter_values((0..n).map(|i| 1_700_000_000_000 + i)).with_timezone("UTC"),
            ),
            Arc::new(Int32Array::from(vec![3; values.len()])),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| 100 + i))),
            Arc::new(StringArray::from(vec![None::<&str>; values.len()])),
        ];
        RecordBatch::try_new(kafka::kafka_source_schema(), columns).unwrap()
    }

    fn json_batch(values: &[Option<&str>]) -> RecordBatch {
        let bytes: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
        batch(&bytes)
    }

    fn mapping(columns: &[(&str, &str, &str)]) -> KafkaJsonMapping {
        let specs: Vec<ColumnSpec> = columns.iter().map(|(n, e, t)| ColumnSpec::new(*n, *e, *t)).collect();
        compile(&specs).unwrap()
    }

    fn compile_err(columns: &[(&str, &str, &str)]) -> SyncError {
        let specs: Vec<ColumnSpec> = columns.iter().map(|(n, e, t)| ColumnSpec::new(*n, *e, *t)).collect();
        compile(&specs).unwrap_err()
    }

    fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
        let a = batch.column_by_name(column).unwrap().as_string::<i32>();
        a.iter().map(|v| v.map(str::to_string)).collect()
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    const ORDER: &str = r#"{"id": 9223372036854775807, "type": "order_created",
        "customer": {"name": "Zoë \u00e9\ud83d\ude00 🎉", "address": {"city": "Zürich"}},
        "items": [{"sku": "SKU-1", "qty": 2, "price": 19.99}, {"sku": "SKU-2", "qty": 1, "price": 5.5}],
        "amount": 12345678901234567.89, "paid": true, "created_at": "2026-11-25T12:30:00.123+01:00",
        "coupon": null}"#;

    fn order_mapping() -> KafkaJsonMapping {
        mapping(&[
            ("id", "$.id", "bigint"),
            ("customer", "$.customer.name", "string"),
            ("city", "$.customer.address.city", "string"),
            ("sku", "$.items[1].sku", "string"),
            ("price", "$.items[0].price", "double"),
            ("amount", "$.amount", "decimal(19,2)"),
            ("created_at", "$.created_at", "timestamp"),
            ("paid", "$.paid", "boolean"),
            ("coupon", "$.coupon", "string"),
            ("missing", "$.customer.phone", "string"),
            ("customer_json", "$.customer.address", "json"),
        ])
    }

    #[test]
    fn maps_nested_paths_into_typed_columns() {
        let m = order_mapping();
        let out = m.map(&json_batch(&[Some(ORDER)])).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let rows = &out.rows;
        assert_eq!(rows.schema(), m.output_schema());
        assert_eq!(rows.num_rows(), 1);
        assert_eq!(rows.column(0).as_primitive::<Int64Type>().value(0), i64::MAX);
        assert_eq!(strings(rows, "customer"), vec![some("Zoë é😀 🎉")]);
        assert_eq!(strings(rows, "city"), vec![some("Zürich")]);
        assert_eq!(strings(rows, "sku"), vec![some("SKU-2")]);
        assert_eq!(rows.column(4).as_primitive::<Float64Type>().value(0), 19.99);
        let amount = rows.column(5).as_primitive::<Decimal128Type>();
        assert_eq!(amount.value(0), 1_234_567_890_123_456_789);
        assert_eq!(amount.value_as_string(0), "12345678901234567.89");
        // 12:30:00.123 at +01:00 is 11:30:00.123 UTC.
        assert_eq!(rows.column(6).as_primitive::<TimestampMicrosecondType>().value(0), 1_795_606_200_123_000);
        assert!(rows.column(7).as_boolean().value(0));
        assert_eq!(strings(rows, "coupon"), vec![None], "JSON null is NULL");
        assert_eq!(strings(rows, "missing"), vec![None], "a missing path is NULL");
        assert_eq!(strings(rows, "customer_json"), vec![some(r#"{"city": "Zürich"}"#)]);
    }

    #[test]
    fn output_schema_has_the_configured_types() {
        let schema = order_mapping().output_schema();
        let types: Vec<(&str, DataType)> =
            schema.fields().iter().map(|f| (f.name().as_str(), f.data_type().clone())).collect();
        assert_eq!(types[0], ("id", DataType::Int64));
        assert_eq!(types[5], ("amount", DataType::Decimal128(19, 2)));
        assert_eq!(types[6], ("created_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))));
        assert_eq!(types[10], ("customer_json", DataType::Utf8));
        assert!(schema.fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn rejects_bad_rows_and_keeps_the_others_in_order() {
        let m = mapping(&[("id", "$.id", "bigint"), ("amount", "$.amount", "decimal(18,2)")]);
        let input = batch(&[
            Some(br#"{"id": 1, "amount": 1.5}"#),
            Some(br#"{"id": 2, "amount": "abc"}"#),
            Some(br#"{"id": 3, "amount": 2}"#),
            Some(br#"{"id": 4, "amount": 1, "x": tru}"#),
            Some(b"{\"id\": 5, \"amount\": \"\xff\"}"),
            Some(br#"{"id": 9223372036854775808}"#),
            None,
            Some(br#"{"id": 8, "amount": 1234567890123456789}"#),
            Some(br#"{"id": 9} {"id": 10}"#),
            Some(b""),
        ]);
        let out = m.map(&input).unwrap();
        let reasons: Vec<(usize, &str)> = out.rejected.iter().map(|r| (r.row, r.reason.as_str())).collect();
        assert_eq!(
            reasons,
            vec![
                (1, r#"column "amount" (decimal(18,2)) at $.amount: value "abc" is not a decimal"#),
                (
                    3,
                    "value is not valid JSON: Invalid literal (`true`, `false`, or a `null`) while parsing at line 1 column 32"
                ),
                (4, "value is not valid UTF-8: invalid utf-8 sequence of 1 bytes from index 21"),
                (5, r#"column "id" (bigint) at $.id: value 9223372036854775808 is out of range for bigint"#),
                (
                    7,
                    r#"column "amount" (decimal(18,2)) at $.amount: value 1234567890123456789 is out of range for decimal(18,2)"#
                ),
                (8, "value is not valid JSON: trailing characters after the JSON value"),
                (9, "value is not valid JSON: EOF while parsing at line 1 column 1"),
            ]
        );
        assert_eq!(out.rejected[0].raw.as_deref(), Some(br#"{"id": 2, "amount": "abc"}"#.as_slice()));
        assert_eq!(out.rejected[2].raw.as_deref(), Some(b"{\"id\": 5, \"amount\": \"\xff\"}".as_slice()));
        let ids: Vec<Option<i64>> = out.rows.column(0).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(ids, vec![Some(1), Some(3), None]);
        let amounts: Vec<Option<i128>> = out.rows.column(1).as_primitive::<Decimal128Type>().iter().collect();
        assert_eq!(amounts, vec![Some(150), Some(200), None]);
    }

    #[test]
    fn tombstones_are_null_in_path_columns_not_rejected() {
        let m = mapping(&[("id", "$.id", "bigint"), ("all", "$..id", "json"), ("offset", "offset", "bigint")]);
        let out = m.map(&json_batch(&[None, Some(r#"{"id": 1}"#)])).unwrap();
        assert!(out.rejected.is_empty());
        let ids: Vec<Option<i64>> = out.rows.column(0).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(ids, vec![None, Some(1)]);
        assert_eq!(strings(&out.rows, "all"), vec![None, some("[1]")]);
        let offsets: Vec<Option<i64>> = out.rows.column(2).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(offsets, vec![Some(100), Some(101)]);
    }

    #[test]
    fn big_integers_and_exact_decimals() {
        let m = mapping(&[("b", "$.n", "bigint"), ("d", "$.n", "decimal(20,0)")]);
        let out = m
            .map(&json_batch(&[Some(r#"{"n": 9223372036854775807}"#), Some(r#"{"n": 9223372036854775808}"#)]))
            .unwrap();
        assert_eq!(out.rows.column(0).as_primitive::<Int64Type>().value(0), i64::MAX);
        assert_eq!(out.rows.column(1).as_primitive::<Decimal128Type>().value(0), 9_223_372_036_854_775_807);
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(
            out.rejected[0].reason,
            r#"column "b" (bigint) at $.n: value 9223372036854775808 is out of range for bigint"#
        );

        let m = mapping(&[("d", "$.n", "decimal(20,0)")]);
        let out = m.map(&json_batch(&[Some(r#"{"n": 9223372036854775808}"#)])).unwrap();
        assert_eq!(out.rows.column(0).as_primitive::<Decimal128Type>().value(0), 9_223_372_036_854_775_808);
    }

    #[test]
    fn complex_paths_give_json_arrays_or_one_value() {
        let m = mapping(&[
            ("skus", "$.items[*].sku", "string"),
            ("prices", "$..price", "json"),
            ("last_qty", "$.items[-1].qty", "int"),
            ("big_qty", "$.items[?@.qty > 1].qty", "int"),
            ("first", "$.items[0].sku", "string"),
        ]);
        let out = m.map(&json_batch(&[Some(ORDER), Some(r#"{"items": []}"#)])).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        assert_eq!(strings(&out.rows, "skus"), vec![some(r#"["SKU-1","SKU-2"]"#), None]);
        assert_eq!(strings(&out.rows, "prices"), vec![some("[19.99,5.5]"), None]);
        let last: Vec<Option<i32>> = out.rows.column(2).as_primitive::<Int32Type>().iter().collect();
        assert_eq!(last, vec![Some(1), None]);
        let big: Vec<Option<i32>> = out.rows.column(3).as_primitive::<Int32Type>().iter().collect();
        assert_eq!(big, vec![Some(2), None]);
        assert_eq!(strings(&out.rows, "first"), vec![some("SKU-1"), None]);

        // One match of a wildcard is still an array for string and json columns.
        let one = m.map(&json_batch(&[Some(r#"{"items": [{"sku": "a\u00e9"}]}"#)])).unwrap();
        assert_eq!(strings(&one.rows, "skus"), vec![some(r#"["a\u00e9"]"#)]);
    }

    #[test]
    fn several_matches_for_a_scalar_column_are_rejected() {
        let m = mapping(&[("qty", "$.items[*].qty", "int")]);
        let out = m.map(&json_batch(&[Some(ORDER), Some(r#"{"items": [{"qty": 4}]}"#)])).unwrap();
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].row, 0);
        assert_eq!(
            out.rejected[0].reason,
            r#"column "qty" (int) at $.items[*].qty: the path matched 2 values; a column of type int takes one"#
        );
        assert_eq!(out.rows.column(0).as_primitive::<Int32Type>().value(0), 4);
    }

    #[test]
    fn complex_decimals_are_exact_too() {
        let m = mapping(&[("amount", "$..amount", "decimal(19,2)")]);
        let out = m.map(&json_batch(&[Some(r#"{"x": {"amount": 12345678901234567.89}}"#)])).unwrap();
        assert_eq!(out.rows.column(0).as_primitive::<Decimal128Type>().value(0), 1_234_567_890_123_456_789);
    }

    #[test]
    fn default_mapping_copies_the_built_in_fields() {
        let m = compile(&[]).unwrap();
        let schema = m.output_schema();
        let fields: Vec<(&str, &DataType, bool)> =
            schema.fields().iter().map(|f| (f.name().as_str(), f.data_type(), f.is_nullable())).collect();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            fields,
            vec![
                ("key", &DataType::Utf8, true),
                ("value", &DataType::Utf8, true),
                ("timestamp", &ts, true),
                ("partition", &DataType::Int32, false),
                ("offset", &DataType::Int64, false),
                ("headers", &DataType::Utf8, true),
            ]
        );
        assert_eq!(m.input_schema(), Some(kafka::kafka_source_schema()));

        let mut keys = BinaryBuilder::new();
        keys.append_value("k1");
        keys.append_null();
        keys.append_value(b"\xc3\x28");
        let mut values = BinaryBuilder::new();
        values.append_value("not json at all");
        values.append_null();
        values.append_value("{}");
        let input = RecordBatch::try_new(
            kafka::kafka_source_schema(),
            vec![
                Arc::new(keys.finish()),
                Arc::new(values.finish()),
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), None, Some(0)]).with_timezone("UTC"),
                ),
                Arc::new(Int32Array::from(vec![0, 1, 2])),
                Arc::new(Int64Array::from(vec![10, 11, 12])),
                Arc::new(StringArray::from(vec![Some(r#"{"h":"v"}"#), None, None])),
            ],
        )
        .unwrap();
        let out = m.map(&input).unwrap();
        assert_eq!(out.rejected.len(), 1);
        assert_eq!(out.rejected[0].row, 2);
        assert_eq!(
            out.rejected[0].reason,
            r#"column "key" (string) from key: not valid UTF-8: invalid utf-8 sequence of 1 bytes from index 0"#
        );
        assert_eq!(out.rejected[0].raw.as_deref(), Some(b"{}".as_slice()));
        let rows = &out.rows;
        assert_eq!(strings(rows, "key"), vec![some("k1"), None]);
        assert_eq!(strings(rows, "value"), vec![some("not json at all"), None]);
        let ts: Vec<Option<i64>> = rows.column(2).as_primitive::<TimestampMicrosecondType>().iter().collect();
        assert_eq!(ts, vec![Some(1_700_000_000_123_000), None]);
        let partitions: Vec<Option<i32>> = rows.column(3).as_primitive::<Int32Type>().iter().collect();
        assert_eq!(partitions, vec![Some(0), Some(1)]);
        let offsets: Vec<Option<i64>> = rows.column(4).as_primitive::<Int64Type>().iter().collect();
        assert_eq!(offsets, vec![Some(10), Some(11)]);
        assert_eq!(strings(rows, "headers"), vec![some(r#"{"h":"v"}"#), None]);
    }

    #[test]
    fn built_in_fields_cast_like_strings() {
        let m = mapping(&[
            ("k", "key", "json"),
            ("v", "value", "json"),
            ("day", "timestamp", "date"),
            ("ts", "timestamp", "string"),
            ("p", "partition", "string"),
        ]);
        let out = m.map(&json_batch(&[Some(" [1, 2] "), Some("{oops")])).unwrap();
        assert_eq!(out.rejected.len(), 2);
        assert!(out.rejected[0].reason.starts_with(r#"column "k" (json) from key: value "k0" is not valid JSON: "#));
        assert_eq!(out.rows.num_rows(), 0);

        let m = mapping(&[
            ("v", "value", "json"),
            ("day", "timestamp", "date"),
            ("ts", "timestamp", "string"),
            ("p", "partition", "string"),
        ]);
        let out = m.map(&json_batch(&[Some(" [1, 2] "), Some("{oops")])).unwrap();
        assert_eq!(out.rejected.len(), 1);
        assert!(
            out.rejected[0].reason.starts_with(r#"column "v" (json) from value: value "{oops" is not valid JSON: "#)
        );
        assert_eq!(strings(&out.rows, "v"), vec![some("[1, 2]")]);
        assert_eq!(out.rows.column(1).as_primitive::<Date32Type>().value(0), 19_675);
        assert_eq!(strings(&out.rows, "ts"), vec![some("2023-11-14T22:13:20.000Z")]);
        assert_eq!(strings(&out.rows, "p"), vec![some("3")]);

        let m = mapping(&[("n", "key", "bigint")]);
        let out = m.map(&json_batch(&[Some("{}")])).unwrap();
        assert_eq!(out.rejected[0].reason, r#"column "n" (bigint) from key: value "k0" is not an integer"#);
    }

    #[test]
    fn compile_names_the_offending_column() {
        let err = compile_err(&[("code", "$.data..[", "string")]);
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(err.to_string(), r#"column "code": invalid JSONPath "$.data..[""#);
        assert!(err.report().starts_with(r#"column "code": invalid JSONPath "$.data..[": "#), "{}", err.report());

        let err = compile_err(&[("id", "$.id", "varchar")]);
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(
            err.to_string(),
            format!(r#"column "id": unknown type "varchar"; expected one of {}"#, crate::TYPE_NAMES)
        );
        assert_eq!(
            compile_err(&[("id", "$.id", "bigint"), ("ID", "$.x", "string")]).to_string(),
            r#"column "ID": duplicate name (column "id" has the same name, ignoring case)"#
        );
        assert_eq!(compile_err(&[("a", "$.a", "int"), (" ", "$.b", "int")]).to_string(), "columns[1]: name is empty");
        assert_eq!(
            compile_err(&[("id", "id", "bigint")]).to_string(),
            r#"column "id": expr "id" is neither a JSONPath (starting with "$") nor a built-in field (key, value, timestamp, partition, offset, headers)"#
        );
        assert_eq!(
            compile_err(&[("o", "offset", "int")]).to_string(),
            r#"column "o": built-in field offset cannot be typed int; use bigint, string"#
        );
        assert_eq!(
            compile_err(&[("__op", "$.op", "string")]).to_string(),
            r#"column "__op": the name is reserved for the operation column"#
        );
        assert_eq!(
            compile_err(&[("d", "$.d", "decimal(40,2)")]).to_string(),
            r#"column "d": type "decimal(40,2)": expected decimal(p,s) with 1 <= p <= 38 and 0 <= s <= p"#
        );
    }

    #[test]
    fn a_batch_without_the_source_columns_is_an_internal_error() {
        let m = mapping(&[("id", "$.id", "bigint")]);
        let schema = Arc::new(Schema::new(vec![ArrowField::new("value", DataType::Utf8, true)]));
        let input = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["{}"]))]).unwrap();
        let err = m.map(&input).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(
            err.to_string(),
            r#"the source batch's column "value" has type Utf8; kafka_source_schema() says Binary"#
        );
    }

    #[test]
    fn an_empty_batch_maps_to_an_empty_batch() {
        let out = order_mapping().map(&json_batch(&[])).unwrap();
        assert_eq!(out.rows.num_rows(), 0);
        assert_eq!(out.rows.num_columns(), 11);
    }
}
