//! Turning change-table rows into the change-row contract's Arrow rows.

use std::sync::Arc;

use rtsync_core::arrow::array::{Array, ArrayRef, ListBuilder, StringBuilder};
use rtsync_core::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use rtsync_core::arrow::record_batch::RecordBatch;
use rtsync_core::{OP_COLUMN, Op, SyncError, SyncResult, UNCHANGED_COLUMN, before_key_column};
use tiberius::ColumnData;

use crate::position::Lsn;
use crate::sql::SqlColumn;
use crate::types::ColBuilder;

/// `__$operation` values.
pub const OP_DELETE: u8 = 1;
pub const OP_INSERT: u8 = 2;
pub const OP_UPDATE_BEFORE: u8 = 3;
pub const OP_UPDATE_AFTER: u8 = 4;

/// One row of a change table (`cdc.<ci>_CT`), its values in the capture instance's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    pub start_lsn: Lsn,
    pub seqval: Lsn,
    pub operation: u8,
    pub update_mask: Vec<u8>,
    pub values: Vec<ColumnData<'static>>,
}

/// Whether the update mask marks the captured column of 1-based `ordinal` as changed. The mask
/// is big-endian: its LAST byte holds ordinals 1..8 (bit 0 = ordinal 1).
pub fn mask_has(mask: &[u8], ordinal: usize) -> bool {
    if ordinal == 0 {
        return false;
    }
    let bit = ordinal - 1;
    let Some(byte) = mask.len().checked_sub(1 + bit / 8).and_then(|i| mask.get(i)) else {
        return false;
    };
    byte & (1 << (bit % 8)) != 0
}

/// The update mask that marks exactly `ordinals` (1-based), `len` bytes: the inverse of
/// [`mask_has`], for simulators and tests.
pub fn mask_of(ordinals: &[usize], len: usize) -> Vec<u8> {
    let mut mask = vec![0u8; len];
    for &o in ordinals {
        let bit = o - 1;
        let i = len - 1 - bit / 8;
        mask[i] |= 1 << (bit % 8);
    }
    mask
}

/// A column the rows carry, with its capture-instance ordinal (for the update mask).
#[derive(Debug, Clone, PartialEq)]
pub struct RowColumn {
    pub column: SqlColumn,
    pub ordinal: usize,
}

/// Builds one batch of rows at a time.
pub struct RowsBuilder {
    columns: Vec<RowColumn>,
    /// Indexes of the key columns in `columns`.
    key: Vec<usize>,
    builders: Vec<ColBuilder>,
    ops: StringBuilder,
    unchanged: Vec<Option<Vec<String>>>,
    before_keys: Vec<Option<Vec<ColumnData<'static>>>>,
    /// An update's before-image (operation 3) waiting for its after-image (4).
    pending_before: Option<ChangeRow>,
    rows: usize,
    bytes: u64,
}

impl RowsBuilder {
    pub fn new(columns: Vec<RowColumn>, key: &[String]) -> SyncResult<Self> {
        let key = key
            .iter()
            .map(|k| {
                columns.iter().position(|c| &c.column.name == k).ok_or_else(|| {
                    SyncError::source_err(format!(
                        "key column {k} is not among the captured columns; add it to the capture instance"
                    ))
                })
            })
            .collect::<SyncResult<Vec<_>>>()?;
        let builders = columns.iter().map(|c| ColBuilder::new(c.column.ty, 1024)).collect();
        Ok(Self {
            columns,
            key,
            builders,
            ops: StringBuilder::new(),
            unchanged: Vec::new(),
            before_keys: Vec::new(),
            pending_before: None,
            rows: 0,
            bytes: 0,
        })
    }

    pub fn columns(&self) -> &[RowColumn] {
        &self.columns
    }

    /// The schema of the rows without the contract's optional columns.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> =
            self.columns.iter().map(|c| Field::new(&c.column.name, c.column.ty.arrow_type(), true)).collect();
        fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
        Arc::new(Schema::new(fields))
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Whether an update's before-image still waits for its after-image.
    pub fn has_pending_before(&self) -> bool {
        self.pending_before.is_some()
    }

    fn append(
        &mut self,
        op: Op,
        values: &[ColumnData<'static>],
        unchanged: Option<Vec<String>>,
        before_key: Option<Vec<ColumnData<'static>>>,
    ) -> SyncResult<()> {
        if values.len() != self.columns.len() {
            return Err(SyncError::internal(format!(
                "a change row has {} values for {} columns",
                values.len(),
                self.columns.len()
            )));
        }
        for ((b, c), v) in self.builders.iter_mut().zip(&self.columns).zip(values) {
            b.append(c.column.ty, v).map_err(|e| SyncError::data(format!("column {}: {e}", c.column.name)))?;
            self.bytes += value_bytes(v);
        }
        self.ops.append_value(op.code());
        self.unchanged.push(unchanged);
        self.before_keys.push(before_key);
        self.rows += 1;
        Ok(())
    }

    /// A snapshot row.
    pub fn push_read(&mut self, values: &[ColumnData<'static>]) -> SyncResult<()> {
        self.append(Op::Read, values, None, None)
    }

    /// A truncate row (`__op = 't'`, every column NULL): the sink deletes every row before it.
    pub fn push_truncate(&mut self) {
        for b in &mut self.builders {
            b.append_null();
        }
        self.ops.append_value(Op::Truncate.code());
        self.unchanged.push(None);
        self.before_keys.push(None);
        self.rows += 1;
    }

    /// One change-table row, in the documented order. An update is the pair 3 → 4 with the
    /// same `__$seqval`: 3 is held until its 4 arrives; a 4 without its 3 or a 3 followed by
    /// anything else is an error (never silently dropped).
    pub fn push_change(&mut self, row: ChangeRow) -> SyncResult<()> {
        if let Some(before) = &self.pending_before
            && (row.operation != OP_UPDATE_AFTER || row.seqval != before.seqval || row.start_lsn != before.start_lsn)
        {
            return Err(SyncError::data(format!(
                "change table: an update's before-image (operation 3) at LSN {} seqval {} is not followed by its after-image (operation 4); found operation {} at {} seqval {}",
                before.start_lsn, before.seqval, row.operation, row.start_lsn, row.seqval
            )));
        }
        match row.operation {
            OP_DELETE => self.append(Op::Delete, &row.values, None, None),
            OP_INSERT => self.append(Op::Create, &row.values, None, None),
            OP_UPDATE_BEFORE => {
                self.pending_before = Some(row);
                Ok(())
            }
            OP_UPDATE_AFTER => {
                let Some(before) = self.pending_before.take() else {
                    return Err(SyncError::data(format!(
                        "change table: an update's after-image (operation 4) at LSN {} seqval {} has no before-image (operation 3)",
                        row.start_lsn, row.seqval
                    )));
                };
                let mut values = row.values;
                let mut unchanged = Vec::new();
                for (i, c) in self.columns.iter().enumerate() {
                    if c.column.ty.is_lob() && !mask_has(&row.update_mask, c.ordinal) {
                        values[i] = null_of(&values[i]);
                        unchanged.push(c.column.name.clone());
                    }
                }
                let key_changed = self.key.iter().any(|&k| !same_value(&before.values[k], &values[k]));
                let before_key = key_changed.then(|| self.key.iter().map(|&k| before.values[k].clone()).collect());
                self.append(Op::Update, &values, (!unchanged.is_empty()).then_some(unchanged), before_key)
            }
            other => Err(SyncError::data(format!(
                "change table: unknown __$operation {other} at LSN {} seqval {}",
                row.start_lsn, row.seqval
            ))),
        }
    }

    /// The rows so far as one batch (with `__unchanged` and `__before_<k>` only when a row
    /// needs them) and the source bytes they came from; the builder is empty afterwards.
    pub fn finish(&mut self) -> SyncResult<(RecordBatch, u64)> {
        let mut fields: Vec<Field> = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (b, c) in self.builders.iter_mut().zip(&self.columns) {
            fields.push(Field::new(&c.column.name, c.column.ty.arrow_type(), true));
            arrays.push(b.finish()?);
        }
        fields.push(Field::new(OP_COLUMN, DataType::Utf8, false));
        arrays.push(Arc::new(self.ops.finish()));
        if self.unchanged.iter().any(Option::is_some) {
            let mut list = ListBuilder::new(StringBuilder::new());
            for u in &self.unchanged {
                match u {
                    Some(names) => {
                        for n in names {
                            list.values().append_value(n);
                        }
                        list.append(true);
                    }
                    None => list.append(false),
                }
            }
            let array = list.finish();
            fields.push(Field::new(UNCHANGED_COLUMN, array.data_type().clone(), true));
            arrays.push(Arc::new(array));
        }
        if self.before_keys.iter().any(Option::is_some) {
            for (j, &k) in self.key.iter().enumerate() {
                let c = &self.columns[k].column;
                let mut b = ColBuilder::new(c.ty, self.rows);
                for before in &self.before_keys {
                    match before {
                        Some(vals) => {
                            b.append(c.ty, &vals[j]).map_err(|e| SyncError::data(format!("column {}: {e}", c.name)))?
                        }
                        None => b.append_null(),
                    }
                }
                fields.push(Field::new(before_key_column(&c.name), c.ty.arrow_type(), true));
                arrays.push(b.finish()?);
            }
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        self.unchanged.clear();
        self.before_keys.clear();
        self.rows = 0;
        Ok((batch, std::mem::take(&mut self.bytes)))
    }
}

fn null_of(v: &ColumnData<'static>) -> ColumnData<'static> {
    match v {
        ColumnData::Binary(_) => ColumnData::Binary(None),
        ColumnData::Xml(_) => ColumnData::Xml(None),
        _ => ColumnData::String(None),
    }
}

fn same_value(a: &ColumnData<'_>, b: &ColumnData<'_>) -> bool {
    a == b
}

fn value_bytes(v: &ColumnData<'_>) -> u64 {
    match v {
        ColumnData::String(Some(s)) => s.len() as u64,
        ColumnData::Binary(Some(b)) => b.len() as u64,
        ColumnData::Xml(Some(x)) => x.to_string().len() as u64,
        _ => 8,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::borrow::Cow;

    use rtsync_core::arrow::array::{Array, AsArray};
    use rtsync_core::arrow::datatypes::Int32Type;

    use super::*;
    use crate::types::SqlType;

    fn cols() -> Vec<RowColumn> {
        let c = |name: &str, ty, decl: &str, ordinal| RowColumn {
            column: SqlColumn { name: name.into(), ty, decl: decl.into() },
            ordinal,
        };
        vec![
            c("id", SqlType::Int, "int", 1),
            c("n", SqlType::Int, "int", 2),
            c("doc", SqlType::Text { lob: true }, "nvarchar(max)", 9),
        ]
    }

    fn row(lsn: u8, seq: u8, op: u8, mask: Vec<u8>, id: i32, n: i32, doc: Option<&str>) -> ChangeRow {
        let mut l = [0u8; 10];
        l[9] = lsn;
        let mut s = [0u8; 10];
        s[9] = seq;
        ChangeRow {
            start_lsn: Lsn(l),
            seqval: Lsn(s),
            operation: op,
            update_mask: mask,
            values: vec![
                ColumnData::I32(Some(id)),
                ColumnData::I32(Some(n)),
                ColumnData::String(doc.map(|d| Cow::Owned(d.to_string()))),
            ],
        }
    }

    #[test]
    fn the_update_mask_is_big_endian() {
        // Ordinal 1 is bit 0 of the LAST byte; ordinal 9 bit 0 of the one before.
        assert_eq!(mask_of(&[1], 2), vec![0x00, 0x01]);
        assert_eq!(mask_of(&[9], 2), vec![0x01, 0x00]);
        assert_eq!(mask_of(&[2, 8, 16], 2), vec![0x80, 0x82]);
        let m = [0x01, 0x02];
        assert!(mask_has(&m, 2) && mask_has(&m, 9));
        assert!(!mask_has(&m, 1) && !mask_has(&m, 10) && !mask_has(&m, 17) && !mask_has(&m, 0));
    }

    #[test]
    fn update_pairs_unchanged_lobs_and_key_changes() {
        let mut b = RowsBuilder::new(cols(), &["id".to_string()]).unwrap();
        let all = mask_of(&[1, 2, 9], 2);
        b.push_change(row(1, 1, OP_INSERT, all.clone(), 1, 10, Some("big"))).unwrap();
        // An update of n only: doc (a LOB outside the mask) arrives NULL and is unchanged.
        b.push_change(row(2, 2, OP_UPDATE_BEFORE, mask_of(&[2], 2), 1, 10, None)).unwrap();
        assert!(b.has_pending_before());
        b.push_change(row(2, 2, OP_UPDATE_AFTER, mask_of(&[2], 2), 1, 11, None)).unwrap();
        // A key change: 1 → 5, doc unchanged.
        b.push_change(row(3, 3, OP_UPDATE_BEFORE, mask_of(&[1], 2), 1, 11, None)).unwrap();
        b.push_change(row(3, 3, OP_UPDATE_AFTER, mask_of(&[1], 2), 5, 11, None)).unwrap();
        // An update that sets doc to NULL: in the mask, so NULL is the value.
        b.push_change(row(4, 4, OP_UPDATE_BEFORE, mask_of(&[9], 2), 5, 11, Some("big"))).unwrap();
        b.push_change(row(4, 4, OP_UPDATE_AFTER, mask_of(&[9], 2), 5, 11, None)).unwrap();
        b.push_change(row(5, 5, OP_DELETE, all, 5, 11, None)).unwrap();
        let (batch, _) = b.finish().unwrap();
        let ops: Vec<&str> =
            batch.column_by_name(OP_COLUMN).unwrap().as_string::<i32>().iter().map(Option::unwrap).collect();
        assert_eq!(ops, ["c", "u", "u", "u", "d"]);
        let unchanged = batch.column_by_name(UNCHANGED_COLUMN).unwrap().as_list::<i32>();
        assert!(unchanged.is_null(0) && unchanged.is_null(3) && unchanged.is_null(4));
        assert_eq!(unchanged.value(1).as_string::<i32>().value(0), "doc");
        assert_eq!(unchanged.value(2).as_string::<i32>().value(0), "doc");
        let before = batch.column_by_name("__before_id").unwrap().as_primitive::<Int32Type>();
        assert!(before.is_null(0) && before.is_null(1) && before.is_null(3));
        assert_eq!(before.value(2), 1);
        let ids = batch.column_by_name("id").unwrap().as_primitive::<Int32Type>();
        assert_eq!(ids.value(2), 5);
        let doc = batch.column_by_name("doc").unwrap().as_string::<i32>();
        assert_eq!(doc.value(0), "big");
        assert!(doc.is_null(1) && doc.is_null(3));
        // Nothing of the contract in a batch that needs none of it.
        b.push_change(row(6, 6, OP_INSERT, mask_of(&[1, 2, 9], 2), 7, 1, Some("x"))).unwrap();
        let (batch, _) = b.finish().unwrap();
        assert_eq!(batch.num_columns(), 4);
    }

    #[test]
    fn orphans_are_errors() {
        let mut b = RowsBuilder::new(cols(), &["id".to_string()]).unwrap();
        b.push_change(row(2, 2, OP_UPDATE_BEFORE, vec![0, 2], 1, 10, None)).unwrap();
        let err = b.push_change(row(2, 3, OP_INSERT, vec![0, 3], 2, 10, None)).unwrap_err();
        assert!(err.to_string().contains("not followed by its after-image"), "{err}");
        let mut b = RowsBuilder::new(cols(), &["id".to_string()]).unwrap();
        let err = b.push_change(row(2, 2, OP_UPDATE_AFTER, vec![0, 2], 1, 10, None)).unwrap_err();
        assert!(err.to_string().contains("has no before-image"), "{err}");
        assert!(RowsBuilder::new(cols(), &["nope".to_string()]).is_err());
    }
}
