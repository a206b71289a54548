//! `task preview`: reads a sample from the source and maps it, writing nothing, so that the
//! column mapping (JSONPath included) can be checked before deploying.
//!
//! A PostgreSQL or MySQL task maps every column as it is; its preview reads the first rows in
//! key order with the connector's snapshot query and types (no slot, no binlog connection).
//!
//! A Kafka task reads from its start offset under a throw-away consumer group; nothing is
//! acknowledged, so no offsets are committed anywhere and the task's own group and Delta
//! checkpoint are untouched. Each source's connector reads (see [`crate::connectors`]).

use rtsync_core::ColumnMapping;
use rtsync_core::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use rtsync_core::arrow::datatypes::{DataType, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type};
use rtsync_core::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value};

use crate::TaskSpec;
use crate::error::Result;
use crate::model::{Preview, PreviewColumn, PreviewRejected};

pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 1_000;

pub async fn preview(spec: &TaskSpec, limit: usize) -> Result<Preview> {
    let limit = limit.clamp(1, MAX_LIMIT);
    rtsync_mapping::compile(&spec.columns).map_err(|e| e.context_prefix("columns"))?;
    spec.source.source().preview(spec, limit).await
}

/// Source records mapped by the task's mapping: the rows they become and the ones the mapping
/// rejects. `columns` are the target columns as the user sees them; `empty_note` explains an
/// empty read.
pub(crate) fn mapped_preview(
    mapping: &dyn ColumnMapping,
    columns: Vec<PreviewColumn>,
    batches: &[RecordBatch],
    empty_note: String,
) -> Result<Preview> {
    let mut out_rows = Vec::new();
    let mut rejected = Vec::new();
    let mut read_count = 0i64;
    for batch in batches {
        read_count += batch.num_rows() as i64;
        let mapped = mapping.map(batch)?;
        for i in 0..mapped.rows.num_rows() {
            let mut obj = Map::new();
            for (field, col) in mapped.rows.schema().fields().iter().zip(mapped.rows.columns()) {
                obj.insert(field.name().clone(), cell(col, i));
            }
            out_rows.push(obj);
        }
        for r in mapped.rejected {
            rejected.push(PreviewRejected { at: locate(batch, r.row), reason: r.reason });
        }
    }
    Ok(Preview {
        columns,
        rows: out_rows,
        rejected,
        messages_read: read_count,
        note: (read_count == 0).then_some(empty_note),
        table: None,
    })
}

/// A table source maps every column as it is: the preview shows the first rows in key order
/// as the snapshot reads them, with the Delta type each column takes.
pub(crate) fn table_preview(batch: &RecordBatch, table: String) -> Result<Preview> {
    let delta: std::collections::HashMap<String, String> =
        rtsync_sink_lakehouse::delta_types(&batch.schema())?.into_iter().collect();
    let keep: Vec<usize> =
        (0..batch.num_columns()).filter(|&i| delta.contains_key(batch.schema().field(i).name())).collect();
    let batch = batch.project(&keep).map_err(|e| crate::error::Error::internal(e.to_string()))?;
    let columns = batch
        .schema()
        .fields()
        .iter()
        .map(|f| PreviewColumn { name: f.name().clone(), ty: delta.get(f.name()).cloned().unwrap_or_default() })
        .collect();
    let rows = (0..batch.num_rows())
        .map(|i| {
            let mut obj = Map::new();
            for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
                obj.insert(field.name().clone(), cell(col, i));
            }
            obj
        })
        .collect();
    let note = (batch.num_rows() == 0).then(|| format!("table {table} is empty"));
    Ok(Preview {
        columns,
        rows,
        rejected: Vec::new(),
        messages_read: batch.num_rows() as i64,
        note,
        table: Some(table),
    })
}

/// "partition 0 offset 42".
fn locate(batch: &RecordBatch, row: usize) -> String {
    let p = batch.column_by_name("partition").and_then(|c| c.as_primitive_opt::<Int32Type>()).map(|a| a.value(row));
    let o = batch.column_by_name("offset").and_then(|c| c.as_primitive_opt::<Int64Type>()).map(|a| a.value(row));
    match (p, o) {
        (Some(p), Some(o)) => format!("partition {p} offset {o}"),
        _ => format!("row {row}"),
    }
}

/// One Arrow value as JSON: numbers and booleans as such, everything else as its text.
pub fn cell(col: &ArrayRef, i: usize) -> Value {
    if col.is_null(i) {
        return Value::Null;
    }
    match col.data_type() {
        DataType::Boolean => Value::Bool(col.as_boolean().value(i)),
        DataType::Int8 => Value::from(col.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => Value::from(col.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => Value::from(col.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(i)),
        DataType::Float64 => {
            let v = col.as_primitive::<Float64Type>().value(i);
            serde_json::Number::from_f64(v).map(Value::Number).unwrap_or_else(|| Value::String(v.to_string()))
        }
        DataType::Utf8 => Value::String(col.as_string::<i32>().value(i).to_string()),
        _ => match ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default()) {
            Ok(f) => Value::String(f.value(i).to_string()),
            Err(_) => Value::String(format!("<{}>", col.data_type())),
        },
    }
}
