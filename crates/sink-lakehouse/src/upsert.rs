//! Upsert mode: the CDC sources' change batches applied so the table mirrors the source table.
//!
//! Every commit is one Delta transaction. The batches written since the last commit are
//! unified to one schema (columns that appeared later are NULL in earlier rows), collapsed to
//! the LAST operation per primary key (a row inserted, updated twice and deleted within one
//! commit is one delete), and applied with one MERGE:
//!
//! ```text
//! MERGE INTO target t USING changes s ON t.k = s.k
//!   WHEN MATCHED AND s.__op = 'd' THEN DELETE
//!   WHEN MATCHED THEN UPDATE SET every column
//!   WHEN NOT MATCHED AND s.__op <> 'd' THEN INSERT every column
//! ```
//!
//! A commit made only of snapshot reads (`r`) is appended instead: a snapshot emits each key
//! once (resumed snapshots continue after the last committed key), so no MERGE is needed, and
//! the initial copy of a large table runs at append speed. A MERGE that changes nothing still
//! records the checkpoint in a commit of its own.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array, new_null_array};
use deltalake::arrow::compute::{concat_batches, take};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::row::{RowConverter, SortField};
use deltalake::datafusion::logical_expr::when;
use deltalake::datafusion::prelude::{Column, Expr, SessionContext, lit};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::{DeltaTable, DeltaTableError};
use rtsync_core::{ErrorKind, OP_COLUMN, SyncError, SyncResult, UNCHANGED_COLUMN};

use crate::UNCHANGED_PREFIX;

/// The union of the batches' schemas, by column name in order of first appearance; a column
/// that appears later is nullable.
pub(crate) fn unify(batches: &[RecordBatch]) -> SyncResult<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    if batches.iter().all(|b| b.schema() == first.schema()) {
        return Ok(batches.to_vec());
    }
    let mut fields: Vec<Field> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for b in batches {
        for f in b.schema().fields() {
            match index.get(f.name()) {
                Some(&i) => {
                    if fields[i].data_type() != f.data_type() {
                        return Err(SyncError::sink(format!(
                            "column {:?} changed type from {} to {} at the source; rtsync does not change column types of the target",
                            f.name(),
                            fields[i].data_type(),
                            f.data_type()
                        )));
                    }
                }
                None => {
                    index.insert(f.name().clone(), fields.len());
                    fields.push(f.as_ref().clone().with_nullable(true));
                }
            }
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    batches
        .iter()
        .map(|b| {
            let columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| {
                    b.column_by_name(f.name()).cloned().unwrap_or_else(|| new_null_array(f.data_type(), b.num_rows()))
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).map_err(SyncError::from)
        })
        .collect()
}

/// The last row per key, in source order of those last rows. A column the last row marks as
/// unchanged (`__unchanged_<col>`) takes the value of the key's latest earlier row that did
/// send it, so an insert followed by a TOAST-unchanged update in one commit keeps the value.
pub(crate) fn collapse(batch: &RecordBatch, keys: &[String]) -> SyncResult<RecordBatch> {
    let key_columns: Vec<ArrayRef> = keys
        .iter()
        .map(|k| {
            batch
                .column_by_name(k)
                .cloned()
                .ok_or_else(|| SyncError::sink(format!("the change rows have no primary-key column {k:?}")))
        })
        .collect::<SyncResult<_>>()?;
    let converter = RowConverter::new(key_columns.iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
    let rows = converter.convert_columns(&key_columns)?;
    let schema = batch.schema();
    // (data column index, mask column) for every masked column
    let masks: Vec<(usize, BooleanArray)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let mask = batch.column_by_name(&format!("{UNCHANGED_PREFIX}{}", f.name()))?;
            Some((i, mask.as_boolean_opt()?.clone()))
        })
        .collect();
    // per key: its last row, and per masked column the last row that sent a value
    let mut last: HashMap<&[u8], (u32, Vec<Option<u32>>)> = HashMap::with_capacity(batch.num_rows());
    for (i, row) in rows.iter().enumerate() {
        let entry = last.entry(row.data()).or_insert_with(|| (0, vec![None; masks.len()]));
        entry.0 = i as u32;
        for (m, (_, mask)) in masks.iter().enumerate() {
            if !(mask.is_valid(i) && mask.value(i)) {
                entry.1[m] = Some(i as u32);
            }
        }
    }
    if last.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    let mut keep: Vec<(u32, Vec<Option<u32>>)> = last.into_values().collect();
    keep.sort_unstable_by_key(|k| k.0);
    let plain = UInt32Array::from(keep.iter().map(|k| k.0).collect::<Vec<_>>());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (i, f) in schema.fields().iter().enumerate() {
        // a data column with a mask, or the mask itself, takes rows from the last row that sent it
        let masked = masks.iter().position(|(c, _)| *c == i).or_else(|| {
            f.name()
                .strip_prefix(UNCHANGED_PREFIX)
                .and_then(|data| masks.iter().position(|(c, _)| schema.field(*c).name() == data))
        });
        let column = match masked {
            Some(m) => {
                let idx = UInt32Array::from(keep.iter().map(|k| k.1[m].unwrap_or(k.0)).collect::<Vec<_>>());
                take(batch.column(i), &idx, None)?
            }
            None => take(batch.column(i), &plain, None)?,
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// True when every row is a snapshot read.
pub(crate) fn only_reads(batch: &RecordBatch) -> bool {
    match batch.column_by_name(OP_COLUMN) {
        Some(ops) => {
            let ops = ops.as_string::<i32>();
            ops.null_count() == 0 && ops.iter().all(|op| op == Some("r"))
        }
        None => false,
    }
}

/// Turns the source's `__unchanged` list column into one `__unchanged_<col>` Boolean mask per
/// column that is ever listed, which is what the collapse and the MERGE work with.
pub(crate) fn expand_unchanged(batch: &RecordBatch) -> SyncResult<RecordBatch> {
    let Some(list) = batch.column_by_name(UNCHANGED_COLUMN) else {
        return Ok(batch.clone());
    };
    let list = list
        .as_list_opt::<i32>()
        .ok_or_else(|| SyncError::internal(format!("{UNCHANGED_COLUMN} must be a list of column names")))?;
    let schema = batch.schema();
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        if f.name() == UNCHANGED_COLUMN {
            continue;
        }
        fields.push(f.as_ref().clone());
        columns.push(c.clone());
    }
    let data: Vec<String> = fields.iter().map(|f| f.name().clone()).filter(|n| n != OP_COLUMN).collect();
    for name in data {
        let mut any = false;
        let mask: BooleanArray = (0..batch.num_rows())
            .map(|i| {
                let hit = list.is_valid(i)
                    && list
                        .value(i)
                        .as_string_opt::<i32>()
                        .is_some_and(|names| names.iter().any(|n| n == Some(name.as_str())));
                any |= hit;
                Some(hit)
            })
            .collect();
        if any {
            fields.push(Field::new(format!("{UNCHANGED_PREFIX}{name}"), DataType::Boolean, true));
            columns.push(Arc::new(mask));
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// The change rows of one commit, ready to apply.
pub(crate) struct Prepared {
    /// Collapsed to the last row per key; none of them a truncate.
    pub rows: RecordBatch,
    /// A truncate came before `rows`: every target row they do not touch is deleted.
    pub truncate: bool,
}

/// All buffered change batches as one collapsed batch.
pub(crate) fn prepare(batches: &[RecordBatch], keys: &[String]) -> SyncResult<Option<Prepared>> {
    let expanded: Vec<RecordBatch> = batches.iter().map(expand_unchanged).collect::<SyncResult<_>>()?;
    let unified = unify(&expanded)?;
    let Some(first) = unified.first() else {
        return Ok(None);
    };
    let all = concat_batches(&first.schema(), &unified)?;
    let Some(ops) = all.column_by_name(OP_COLUMN) else {
        return Err(SyncError::new(
            ErrorKind::Internal,
            format!("upsert mode needs the {OP_COLUMN} column in every change batch"),
        ));
    };
    let ops = ops.as_string_opt::<i32>().ok_or_else(|| SyncError::internal(format!("{OP_COLUMN} must be text")))?;
    // Only what follows the last truncate matters.
    let last_truncate = (0..ops.len()).rev().find(|&i| ops.is_valid(i) && ops.value(i) == "t");
    let (all, truncate) = match last_truncate {
        Some(t) => (all.slice(t + 1, all.num_rows() - t - 1), true),
        None => (all, false),
    };
    Ok(Some(Prepared { rows: collapse(&all, keys)?, truncate }))
}

/// The batch without the op column and unchanged masks, for appends.
pub(crate) fn without_op(batch: &RecordBatch) -> SyncResult<RecordBatch> {
    let keep: Vec<usize> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() != OP_COLUMN && !f.name().starts_with(UNCHANGED_PREFIX))
        .map(|(i, _)| i)
        .collect();
    Ok(batch.project(&keep)?)
}

/// Applies collapsed change rows with one MERGE carrying `properties` (txn + checkpoint).
/// Returns the table after the merge; its version is unchanged when nothing changed (Delta
/// then makes no commit, and the caller records the checkpoint on its own).
pub(crate) async fn merge(
    table: DeltaTable,
    changes: RecordBatch,
    keys: &[String],
    truncate: bool,
    properties: CommitProperties,
) -> Result<DeltaTable, DeltaTableError> {
    let column = |rel: &str, name: &str| Expr::Column(Column::new(Some(rel), name));
    let data_columns: Vec<String> = changes
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != OP_COLUMN && !n.starts_with(UNCHANGED_PREFIX))
        .collect();
    let masked: Vec<(String, String)> = data_columns
        .iter()
        .filter_map(|c| {
            let mask = format!("{UNCHANGED_PREFIX}{c}");
            changes.column_by_name(&mask).map(|_| (c.clone(), mask))
        })
        .collect();
    let Some(on) = keys.iter().map(|k| column("t", k).eq(column("s", k))).reduce(|a, b| a.and(b)) else {
        return Err(DeltaTableError::Generic("upsert without key columns".into()));
    };
    let source = SessionContext::new().read_batch(changes)?;
    let is_delete = column("s", OP_COLUMN).eq(lit("d"));
    let builder = table
        .merge(source, on)
        .with_source_alias("s")
        .with_target_alias("t")
        .with_merge_schema(true)
        .with_commit_properties(properties)
        .when_matched_delete(|d| d.predicate(is_delete.clone()))?
        .when_matched_update(|u| {
            data_columns.iter().fold(u, |u, c| {
                // A value the source did not send (TOAST) keeps what the table holds.
                let value = match masked.iter().find(|(col, _)| col == c) {
                    Some((_, mask)) => when(column("s", mask).is_true(), column("t", c))
                        .otherwise(column("s", c))
                        .unwrap_or_else(|_| column("s", c)),
                    None => column("s", c),
                };
                u.update(c.as_str(), value)
            })
        })?
        .when_not_matched_insert(|i| {
            data_columns
                .iter()
                .fold(i.predicate(column("s", OP_COLUMN).not_eq(lit("d"))), |i, c| i.set(c.as_str(), column("s", c)))
        })?;
    // After a truncate, every row the changes do not touch is gone: same transaction.
    let builder = if truncate { builder.when_not_matched_by_source_delete(|d| d)? } else { builder };
    let (table, _metrics) = builder.await?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::DataType;

    use super::*;

    fn changes(ids: &[i64], ops: &[&str], vals: &[&str]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("v", DataType::Utf8, true),
                Field::new(OP_COLUMN, DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(vals.to_vec())),
                Arc::new(StringArray::from(ops.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn collapse_keeps_the_last_op_per_key_in_order() {
        let b = changes(&[1, 2, 1, 3, 2, 1], &["c", "c", "u", "c", "d", "u"], &["a", "b", "a2", "c", "b", "a3"]);
        let out = collapse(&b, &["id".to_string()]).unwrap();
        let ids: Vec<i64> = out.column(0).as_primitive::<deltalake::arrow::datatypes::Int64Type>().values().to_vec();
        let ops: Vec<&str> = out.column(2).as_string::<i32>().iter().map(|o| o.unwrap()).collect();
        let vals: Vec<&str> = out.column(1).as_string::<i32>().iter().map(|o| o.unwrap()).collect();
        assert_eq!(ids, vec![3, 2, 1]);
        assert_eq!(ops, vec!["c", "d", "u"]);
        assert_eq!(vals, vec!["c", "b", "a3"]);
    }

    #[test]
    fn unify_null_fills_columns_that_appeared_later() {
        let a = changes(&[1], &["c"], &["x"]);
        let wide = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("v", DataType::Utf8, true),
                Field::new(OP_COLUMN, DataType::Utf8, false),
                Field::new("extra", DataType::Int64, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![2])),
                Arc::new(StringArray::from(vec!["y"])),
                Arc::new(StringArray::from(vec!["c"])),
                Arc::new(Int64Array::from(vec![7])),
            ],
        )
        .unwrap();
        let out = prepare(&[a, wide], &["id".to_string()]).unwrap().unwrap().rows;
        assert_eq!(out.num_rows(), 2);
        let extra = out.column_by_name("extra").unwrap();
        assert!(extra.is_null(0));
        assert_eq!(extra.as_primitive::<deltalake::arrow::datatypes::Int64Type>().value(1), 7);
        assert!(only_reads(&changes(&[1, 2], &["r", "r"], &["a", "b"])));
        assert!(!only_reads(&changes(&[1, 2], &["r", "u"], &["a", "b"])));
        assert_eq!(without_op(&out).unwrap().num_columns(), 3);
    }
}
