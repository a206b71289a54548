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

use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray, UInt32Array, new_null_array};
use deltalake::arrow::compute::{cast, concat_batches, interleave, take};
use deltalake::arrow::datatypes::DataType;
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::row::{RowConverter, SortField};
use deltalake::datafusion::common::JoinType;
use deltalake::datafusion::logical_expr::when;
use deltalake::datafusion::prelude::{Column, Expr, SessionContext, lit};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::{DeltaTable, DeltaTableError};
use rtsync_core::{
    BEFORE_KEY_PREFIX, ErrorKind, OP_COLUMN, SyncError, SyncResult, UNCHANGED_COLUMN, before_key_column,
};

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

/// Where the value a change row did not send comes from, for one masked column of a
/// collapsed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carried {
    /// Row `i` of the commit's changes sent it.
    Row(u32),
    /// The table, at the key that row `i` names: its key columns (`old: false`) or its
    /// `__before_<k>` old-key columns (`old: true`, the key changed since).
    Table { row: u32, old: bool },
}

/// What one key ends as in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Row `i` of the changes, as it is (its op decides).
    Row(u32),
    /// A delete of the OLD key of row `i`, a key-changing update.
    OldKeyDeleted(u32),
}

impl Last {
    /// Output order: source order, an old key's delete just before the new row.
    fn order(self) -> (u32, u8) {
        match self {
            Last::OldKeyDeleted(i) => (i, 0),
            Last::Row(i) => (i, 1),
        }
    }
}

/// A value of a collapsed row that only the table holds, under another key than the row's
/// own (a key change carried it): row `row`'s column `column` takes the value of column
/// `column` at the table row whose key is `lookup` of [`Collapsed::lookup_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Carry {
    pub row: u32,
    pub column: usize,
    pub lookup: u32,
}

/// The change rows of one commit collapsed to one row per key.
#[derive(Debug, Clone)]
pub(crate) struct Collapsed {
    /// The last row per key (deletes of old keys included), in source order; masked columns
    /// that only the table holds are NULL with their mask set.
    pub rows: RecordBatch,
    /// Values to fetch from the table under another key before applying `rows`.
    pub carries: Vec<Carry>,
    /// The keys to fetch (key columns only), indexed by [`Carry::lookup`].
    pub lookup_keys: Option<RecordBatch>,
}

/// The last row per key, in source order of those last rows, following the change-row
/// contract (`rtsync_core::batch`):
///
/// * a row with `__before_<k>` columns set moved its key: the old key ends as a delete, the
///   new key as this row;
/// * a column the row marks as unchanged (`__unchanged_<col>`) takes the value the key's row
///   held before it: the latest earlier row of the key in this commit that sent it, else what
///   the old key's row had (followed through any chain of key changes), else the table's value.
///   Table values under the row's own key are kept by the MERGE; those under another key are
///   returned as [`Carry`]s for the caller to fetch.
pub(crate) fn collapse(batch: &RecordBatch, keys: &[String]) -> SyncResult<Collapsed> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| SyncError::sink(format!("the change rows have no primary-key column {name:?}")))
    };
    let key_columns: Vec<ArrayRef> = keys.iter().map(|k| column(k)).collect::<SyncResult<_>>()?;
    let fields: Vec<SortField> = key_columns.iter().map(|c| SortField::new(c.data_type().clone())).collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(&key_columns)?;
    // The old keys, when some row of the commit changed its key.
    let before_columns: Option<Vec<ArrayRef>> =
        match keys.iter().map(|k| batch.column_by_name(&before_key_column(k))).collect::<Option<Vec<_>>>() {
            Some(cols) => Some(
                cols.into_iter()
                    .zip(&key_columns)
                    .map(|(b, k)| if b.data_type() == k.data_type() { Ok(b.clone()) } else { cast(b, k.data_type()) })
                    .collect::<Result<_, _>>()?,
            ),
            None => {
                if keys.iter().any(|k| batch.column_by_name(&before_key_column(k)).is_some()) {
                    return Err(SyncError::internal("a key-changing row must carry every key column's old value"));
                }
                None
            }
        };
    let before_rows = match &before_columns {
        Some(cols) => Some(converter.convert_columns(cols)?),
        None => None,
    };
    let moved = |i: usize| before_columns.as_ref().is_some_and(|cols| cols.iter().all(|c| c.is_valid(i)));
    let schema = batch.schema();
    // (data column index, mask) for every masked column
    let masks: Vec<(usize, BooleanArray)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let mask = batch.column_by_name(&format!("{UNCHANGED_PREFIX}{}", f.name()))?;
            Some((i, mask.as_boolean_opt()?.clone()))
        })
        .collect();
    let sent = |m: usize, i: usize| {
        let mask = &masks[m].1;
        !(mask.is_valid(i) && mask.value(i))
    };
    let ops = batch.column_by_name(OP_COLUMN).and_then(|c| c.as_string_opt::<i32>().cloned());

    // per key: how it ends, and per masked column where its value comes from
    let mut state: HashMap<&[u8], (Last, Vec<Carried>)> = HashMap::with_capacity(batch.num_rows());
    for (i, row) in rows.iter().enumerate() {
        let at = i as u32;
        let old_key = match &before_rows {
            Some(before) if moved(i) && before.row(i).data() != row.data() => Some(before.row(i)),
            _ => None,
        };
        if let Some(old) = old_key {
            let (_, from) = state
                .remove(old.data())
                .unwrap_or_else(|| (Last::Row(at), vec![Carried::Table { row: at, old: true }; masks.len()]));
            let carried = (0..masks.len()).map(|m| if sent(m, i) { Carried::Row(at) } else { from[m] }).collect();
            state.insert(old.data(), (Last::OldKeyDeleted(at), Vec::new()));
            state.insert(row.data(), (Last::Row(at), carried));
            continue;
        }
        let deleted_before = |last: &Last| match last {
            Last::OldKeyDeleted(_) => true,
            Last::Row(j) => ops.as_ref().is_some_and(|o| o.is_valid(*j as usize) && o.value(*j as usize) == "d"),
        };
        match state.get_mut(row.data()) {
            Some((last, carried)) => {
                let was_deleted = deleted_before(last);
                *last = Last::Row(at);
                for (m, c) in carried.iter_mut().enumerate() {
                    if sent(m, i) || was_deleted {
                        *c = Carried::Row(at);
                    }
                }
                carried.resize(masks.len(), Carried::Row(at));
            }
            None => {
                let carried = (0..masks.len())
                    .map(|m| if sent(m, i) { Carried::Row(at) } else { Carried::Table { row: at, old: false } })
                    .collect();
                state.insert(row.data(), (Last::Row(at), carried));
            }
        }
    }
    // a stored value lies under the output row `i`'s own key when the row it was looked up
    // for has the same key (`old`: that row's old key never is, the key moved)
    let at_own_key = |i: u32, row: u32, old: bool| !old && rows.row(i as usize) == rows.row(row as usize);
    let all_plain = state.len() == batch.num_rows()
        && before_columns.is_none()
        && state.values().all(|(last, carried)| {
            matches!(last, Last::Row(i) if carried.iter().all(|c| match c {
                Carried::Row(j) => j == i,
                Carried::Table { row, old } => at_own_key(*i, *row, *old),
            }))
        });
    if all_plain {
        return Ok(Collapsed { rows: batch.clone(), carries: Vec::new(), lookup_keys: None });
    }
    let mut keep: Vec<(Last, Vec<Carried>)> = state.into_values().collect();
    keep.sort_unstable_by_key(|k| k.0.order());

    // row indices: the row itself, or NULL for an old key's delete (only its key matters)
    let own = UInt32Array::from(
        keep.iter()
            .map(|(last, _)| match last {
                Last::Row(i) => Some(*i),
                Last::OldKeyDeleted(_) => None,
            })
            .collect::<Vec<_>>(),
    );
    let mut carries = Vec::new();
    let mut lookups: Vec<(usize, usize)> = Vec::new();
    let mut lookup_index: HashMap<(u32, bool), u32> = HashMap::new();
    let mut out_fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut out: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (c, f) in schema.fields().iter().enumerate() {
        let name = f.name();
        if name.starts_with(BEFORE_KEY_PREFIX) {
            continue;
        }
        let array: ArrayRef = if let Some(k) = keys.iter().position(|k| k == name) {
            // a key column: an old key's delete takes the old key
            let sources: Vec<&dyn Array> = match &before_columns {
                Some(before) => vec![key_columns[k].as_ref(), before[k].as_ref()],
                None => vec![key_columns[k].as_ref()],
            };
            let picks: Vec<(usize, usize)> = keep
                .iter()
                .map(|(last, _)| match last {
                    Last::Row(i) => (0, *i as usize),
                    Last::OldKeyDeleted(i) => (1, *i as usize),
                })
                .collect();
            interleave(&sources, &picks)?
        } else if name == OP_COLUMN {
            let ops = ops.as_ref().ok_or_else(|| SyncError::internal(format!("upsert needs {OP_COLUMN}")))?;
            Arc::new(StringArray::from(
                keep.iter()
                    .map(|(last, _)| match last {
                        Last::Row(i) => ops.is_valid(*i as usize).then(|| ops.value(*i as usize).to_string()),
                        Last::OldKeyDeleted(_) => Some("d".to_string()),
                    })
                    .collect::<Vec<_>>(),
            ))
        } else if let Some(m) = masks.iter().position(|(d, _)| *d == c) {
            // a masked data column: the value from the row that last sent it; NULL when only
            // the table holds it
            let idx = UInt32Array::from(
                keep.iter()
                    .enumerate()
                    .map(|(r, (last, carried))| match (last, carried.get(m)) {
                        (Last::Row(_), Some(Carried::Row(j))) => Some(*j),
                        (Last::Row(i), Some(Carried::Table { row, old })) => {
                            // under the row's own key the MERGE keeps the stored value; under
                            // any other key (the row moved since) it is fetched
                            if !at_own_key(*i, *row, *old) {
                                let next = lookup_index.len() as u32;
                                let lookup = *lookup_index.entry((*row, *old)).or_insert_with(|| {
                                    lookups.push((usize::from(*old), *row as usize));
                                    next
                                });
                                carries.push(Carry { row: r as u32, column: out.len(), lookup });
                            }
                            None
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            );
            take(batch.column(c), &idx, None)?
        } else if let Some(m) = name
            .strip_prefix(UNCHANGED_PREFIX)
            .and_then(|data| masks.iter().position(|(d, _)| schema.field(*d).name() == data))
        {
            // the mask: set where only the table holds the value
            Arc::new(BooleanArray::from(
                keep.iter()
                    .map(|(last, carried)| {
                        Some(matches!(last, Last::Row(_)) && matches!(carried.get(m), Some(Carried::Table { .. })))
                    })
                    .collect::<Vec<_>>(),
            ))
        } else {
            take(batch.column(c), &own, None)?
        };
        out_fields.push(f.as_ref().clone().with_nullable(true));
        out.push(array);
    }
    let lookup_keys = if lookups.is_empty() {
        None
    } else {
        let columns: Vec<ArrayRef> = keys
            .iter()
            .enumerate()
            .map(|(k, _)| {
                let sources: Vec<&dyn Array> = match &before_columns {
                    Some(before) => vec![key_columns[k].as_ref(), before[k].as_ref()],
                    None => vec![key_columns[k].as_ref()],
                };
                interleave(&sources, &lookups)
            })
            .collect::<Result<_, _>>()?;
        let fields: Vec<Field> =
            keys.iter().zip(&columns).map(|(k, c)| Field::new(k, c.data_type().clone(), true)).collect();
        Some(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
    };
    Ok(Collapsed { rows: RecordBatch::try_new(Arc::new(Schema::new(out_fields)), out)?, carries, lookup_keys })
}

/// Fills the carried values: `found` holds, for some of the lookup keys, the table's row (the
/// key columns and the carried columns by name). A carried value the table does not have
/// stays masked, so the MERGE keeps whatever the row's own key holds.
pub(crate) fn apply_carries(collapsed: Collapsed, keys: &[String], found: &[RecordBatch]) -> SyncResult<RecordBatch> {
    let Collapsed { rows, carries, lookup_keys } = collapsed;
    let Some(lookup_keys) = lookup_keys else {
        return Ok(rows);
    };
    if carries.is_empty() {
        return Ok(rows);
    }
    let schema = rows.schema();
    // lookup key → (batch, row) in `found`
    let converter =
        RowConverter::new(lookup_keys.columns().iter().map(|c| SortField::new(c.data_type().clone())).collect())?;
    let wanted = converter.convert_columns(lookup_keys.columns())?;
    let mut located: HashMap<Vec<u8>, (usize, usize)> = HashMap::new();
    for (b, batch) in found.iter().enumerate() {
        let cols: Vec<ArrayRef> = keys
            .iter()
            .zip(lookup_keys.columns())
            .map(|(k, want)| {
                let c =
                    batch.column_by_name(k).ok_or_else(|| SyncError::internal(format!("the lookup lost key {k}")))?;
                if c.data_type() == want.data_type() { Ok(c.clone()) } else { Ok(cast(c, want.data_type())?) }
            })
            .collect::<SyncResult<_>>()?;
        let got = converter.convert_columns(&cols)?;
        for (r, row) in got.iter().enumerate() {
            located.insert(row.data().to_vec(), (b, r));
        }
    }
    let mut columns: Vec<ArrayRef> = rows.columns().to_vec();
    // per column: (collapsed row, its value's place in `found`)
    type Hits = Vec<(u32, (usize, usize))>;
    let mut by_column: HashMap<usize, Hits> = HashMap::new();
    for carry in &carries {
        if let Some(&at) = located.get(wanted.row(carry.lookup as usize).data()) {
            by_column.entry(carry.column).or_default().push((carry.row, at));
        }
    }
    for (c, hits) in by_column {
        let name = schema.field(c).name().clone();
        let data_type = schema.field(c).data_type().clone();
        // source 0: the collapsed column; 1..: the found batches' column, cast to its type
        let mut sources: Vec<ArrayRef> = vec![columns[c].clone()];
        for batch in found {
            let col =
                batch.column_by_name(&name).cloned().unwrap_or_else(|| new_null_array(&data_type, batch.num_rows()));
            sources.push(if col.data_type() == &data_type { col } else { cast(&col, &data_type)? });
        }
        let mut picks: Vec<(usize, usize)> = (0..rows.num_rows()).map(|r| (0, r)).collect();
        for (r, (b, at)) in &hits {
            picks[*r as usize] = (b + 1, *at);
        }
        let refs: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
        columns[c] = interleave(&refs, &picks)?;
        let mask_name = format!("{UNCHANGED_PREFIX}{name}");
        if let Some(m) = schema.fields().iter().position(|f| f.name() == &mask_name) {
            let mut mask: Vec<Option<bool>> = columns[m].as_boolean().iter().collect();
            for (r, _) in &hits {
                mask[*r as usize] = Some(false);
            }
            columns[m] = Arc::new(BooleanArray::from(mask));
        }
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The table's rows at the lookup keys of `collapsed` (key columns and the carried columns the
/// table has), read with one semi-join. Called only when a key change left a value that only
/// the table holds under the old key, which is rare: the read scans the table.
pub(crate) async fn fetch_carried(
    table: &DeltaTable,
    collapsed: &Collapsed,
    keys: &[String],
) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let Some(lookup) = &collapsed.lookup_keys else {
        return Ok(Vec::new());
    };
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    let stored: Vec<String> = provider.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut wanted: Vec<String> = keys.to_vec();
    for carry in &collapsed.carries {
        let name = collapsed.rows.schema().field(carry.column).name().clone();
        if stored.contains(&name) && !wanted.contains(&name) {
            wanted.push(name);
        }
    }
    let probe_names: Vec<String> = keys.iter().map(|k| format!("__lookup_{k}")).collect();
    let probe = RecordBatch::try_new(
        Arc::new(Schema::new(
            lookup
                .schema()
                .fields()
                .iter()
                .zip(&probe_names)
                .map(|(f, n)| f.as_ref().clone().with_name(n))
                .collect::<Vec<_>>(),
        )),
        lookup.columns().to_vec(),
    )?;
    let target = ctx.read_table(provider)?.select_columns(&wanted.iter().map(String::as_str).collect::<Vec<_>>())?;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let probe_refs: Vec<&str> = probe_names.iter().map(String::as_str).collect();
    let found = target.join(ctx.read_batch(probe)?, JoinType::LeftSemi, &key_refs, &probe_refs, None)?;
    Ok(found.collect().await?)
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
    pub rows: Collapsed,
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
    let mut rows = collapse(&all, keys)?;
    if truncate {
        // the table's rows are gone: nothing can be carried from them
        rows.carries.clear();
        rows.lookup_keys = None;
    }
    Ok(Some(Prepared { rows, truncate }))
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
        let out = collapse(&b, &["id".to_string()]).unwrap().rows;
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
        let out = prepare(&[a, wide], &["id".to_string()]).unwrap().unwrap().rows.rows;
        assert_eq!(out.num_rows(), 2);
        let extra = out.column_by_name("extra").unwrap();
        assert!(extra.is_null(0));
        assert_eq!(extra.as_primitive::<deltalake::arrow::datatypes::Int64Type>().value(1), 7);
        assert!(only_reads(&changes(&[1, 2], &["r", "r"], &["a", "b"])));
        assert!(!only_reads(&changes(&[1, 2], &["r", "u"], &["a", "b"])));
        assert_eq!(without_op(&out).unwrap().num_columns(), 3);
    }
}
