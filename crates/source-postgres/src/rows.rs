//! Assembling change batches: one Arrow builder per column, plus `__op` and, when a batch
//! needs them, `__unchanged` (unchanged TOAST values) and `__before_<key>` (the old key of a
//! key-changing update), as `rtsync_core::batch` defines them.

use std::sync::Arc;

use rtsync_core::arrow::array::{Array, ArrayRef, Int64Array, Int64Builder, ListBuilder, StringBuilder};
use rtsync_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::{OP_COLUMN, SyncResult, before_key_column};

use crate::catalog::ColumnInfo;
use crate::types::ColumnBuilder;

/// The reserved column listing, per row, the columns whose value the source did not send
/// because an UPDATE left a TOASTed value unchanged: `List<Utf8>` of column names, NULL when
/// every column carries its value. The listed columns hold NULL in the row; a sink applying
/// the row must keep the value it already has for them. Present only in batches that need it.
pub const UNCHANGED_COLUMN: &str = "__unchanged";

/// The operation code of a truncate row: every row of the target written before it is gone.
/// The row's columns are all NULL.
pub const TRUNCATE_OP: &str = "t";

/// The Arrow fields of the table's columns, in source order, all nullable (deletes carry only
/// the key; unchanged TOAST values are NULL).
pub(crate) fn table_fields(columns: &[ColumnInfo]) -> Vec<Field> {
    columns.iter().map(|c| Field::new(&c.name, c.kind.arrow_type(), true)).collect()
}

/// The schema of emitted rows: the table's columns and `__op`.
pub(crate) fn row_schema(columns: &[ColumnInfo]) -> SchemaRef {
    let mut fields = table_fields(columns);
    fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

pub(crate) struct RowsBuilder {
    columns: Vec<ColumnInfo>,
    builders: Vec<ColumnBuilder>,
    ops: StringBuilder,
    /// Created by the first unchanged value of a batch, back-filled with NULLs.
    unchanged: Option<ListBuilder<StringBuilder>>,
    /// Names of the current row's unchanged columns.
    row_unchanged: Vec<usize>,
    /// Per key column of a key-changing update: (column, builder of its old values). Created
    /// by the first key change of a batch, back-filled with NULLs.
    before: Vec<(usize, ColumnBuilder)>,
    event_ms: Int64Builder,
    has_event_ms: bool,
    rows: usize,
    bytes: u64,
    schema: SchemaRef,
    capacity: usize,
}

impl RowsBuilder {
    pub fn new(columns: Vec<ColumnInfo>, capacity: usize) -> Self {
        let builders = columns.iter().map(|c| ColumnBuilder::new(&c.kind, capacity)).collect();
        let schema = row_schema(&columns);
        Self {
            columns,
            builders,
            ops: StringBuilder::with_capacity(capacity, capacity),
            unchanged: None,
            row_unchanged: Vec::new(),
            before: Vec::new(),
            event_ms: Int64Builder::with_capacity(capacity),
            has_event_ms: false,
            rows: 0,
            bytes: 0,
            schema,
            capacity,
        }
    }

    pub fn columns(&self) -> &[ColumnInfo] {
        &self.columns
    }

    /// The schema of the batches (without `__unchanged`).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn add_bytes(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// A column that appeared at the source: rows already buffered get NULL.
    pub fn add_column(&mut self, column: ColumnInfo) -> usize {
        let mut b = ColumnBuilder::new(&column.kind, self.capacity);
        b.append_nulls(self.rows);
        self.builders.push(b);
        self.columns.push(column);
        self.schema = row_schema(&self.columns);
        self.columns.len() - 1
    }

    /// Sets column `i` of the current row from its text output.
    pub fn push_text(&mut self, i: usize, text: &str) -> Result<(), &'static str> {
        self.builders[i].append_text(text)
    }

    pub fn push_null(&mut self, i: usize) {
        self.builders[i].append_null();
    }

    /// Column `i` of the current row was not sent (unchanged TOAST): NULL, and listed.
    pub fn push_unchanged(&mut self, i: usize) {
        self.builders[i].append_null();
        self.row_unchanged.push(i);
    }

    /// The current row changes the key: column `i`'s OLD value, from its text output.
    pub fn push_before_text(&mut self, i: usize, text: Option<&str>) -> Result<(), &'static str> {
        let at = match self.before.iter().position(|(c, _)| *c == i) {
            Some(at) => at,
            None => {
                let mut b = ColumnBuilder::new(&self.columns[i].kind, self.capacity);
                b.append_nulls(self.rows);
                self.before.push((i, b));
                self.before.len() - 1
            }
        };
        let b = &mut self.before[at].1;
        match text {
            Some(t) => b.append_text(t),
            None => {
                b.append_null();
                Ok(())
            }
        }
    }

    /// Ends the current row: columns not set are NULL.
    pub fn finish_row(&mut self, op: &str, event_ms: Option<i64>) {
        for b in self.builders.iter_mut().chain(self.before.iter_mut().map(|(_, b)| b)) {
            if b.len() == self.rows {
                b.append_null();
            }
        }
        self.ops.append_value(op);
        if !self.row_unchanged.is_empty() && self.unchanged.is_none() {
            let mut list = ListBuilder::new(StringBuilder::new());
            for _ in 0..self.rows {
                list.append_null();
            }
            self.unchanged = Some(list);
        }
        if let Some(list) = &mut self.unchanged {
            if self.row_unchanged.is_empty() {
                list.append_null();
            } else {
                for &i in &self.row_unchanged {
                    list.values().append_value(&self.columns[i].name);
                }
                list.append(true);
            }
        }
        self.row_unchanged.clear();
        self.has_event_ms |= event_ms.is_some();
        self.event_ms.append_option(event_ms);
        self.rows += 1;
    }

    /// The rows so far as one batch (plus per-row event times and source bytes); the builder
    /// is left empty with the same columns.
    pub fn finish(&mut self) -> SyncResult<(RecordBatch, Option<Int64Array>, u64)> {
        let mut arrays: Vec<ArrayRef> = self.builders.iter_mut().map(ColumnBuilder::finish).collect();
        arrays.push(Arc::new(self.ops.finish()));
        let schema = if self.unchanged.is_none() && self.before.is_empty() {
            self.schema.clone()
        } else {
            let mut fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            if let Some(mut list) = self.unchanged.take() {
                let array = list.finish();
                fields.push(Field::new(UNCHANGED_COLUMN, array.data_type().clone(), true));
                arrays.push(Arc::new(array));
            }
            for (i, mut b) in std::mem::take(&mut self.before) {
                let array = b.finish();
                fields.push(Field::new(before_key_column(&self.columns[i].name), array.data_type().clone(), true));
                arrays.push(array);
            }
            Arc::new(Schema::new(fields))
        };
        let batch = RecordBatch::try_new(schema, arrays)?;
        let times = self.event_ms.finish();
        let times = std::mem::take(&mut self.has_event_ms).then_some(times);
        self.rows = 0;
        Ok((batch, times, std::mem::take(&mut self.bytes)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::types::ValueKind;
    use rtsync_core::arrow::array::{Array, AsArray};
    use rtsync_core::arrow::datatypes::Int32Type;

    fn col(name: &str, kind: ValueKind) -> ColumnInfo {
        ColumnInfo { name: name.into(), type_oid: 0, typmod: -1, type_name: String::new(), kind }
    }

    #[test]
    fn builds_rows_with_ops_unchanged_and_new_columns() {
        let mut b = RowsBuilder::new(vec![col("id", ValueKind::Int32), col("doc", ValueKind::Text)], 4);
        b.push_text(0, "1").unwrap();
        b.push_text(1, "big").unwrap();
        b.finish_row("c", Some(10));
        b.push_text(0, "1").unwrap();
        b.push_unchanged(1);
        b.finish_row("u", Some(11));
        let extra = b.add_column(col("extra", ValueKind::Int32));
        b.push_text(0, "2").unwrap();
        b.push_text(extra, "7").unwrap();
        b.finish_row("c", Some(12));
        let (batch, times, _) = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 3);
        let schema = batch.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["id", "doc", "extra", OP_COLUMN, UNCHANGED_COLUMN]);
        let ops: Vec<_> = batch.column(3).as_string::<i32>().iter().flatten().collect();
        assert_eq!(ops, vec!["c", "u", "c"]);
        let unchanged = batch.column(4).as_list::<i32>();
        assert!(unchanged.is_null(0) && unchanged.is_valid(1) && unchanged.is_null(2));
        assert_eq!(unchanged.value(1).as_string::<i32>().value(0), "doc");
        assert!(batch.column(1).is_null(1));
        let extra = batch.column(2).as_primitive::<Int32Type>();
        assert!(extra.is_null(0) && extra.is_null(1));
        assert_eq!(extra.value(2), 7);
        assert_eq!(times.unwrap().values().to_vec(), vec![10, 11, 12]);
        // The next batch has no unchanged values: no __unchanged column.
        b.push_text(0, "3").unwrap();
        b.finish_row("d", None);
        let (batch, times, _) = b.finish().unwrap();
        assert_eq!(batch.num_columns(), 4);
        assert!(times.is_none());
    }
}
