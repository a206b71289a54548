//! Merge-on-read upserts: a commit costs O(changes), not O(table).
//!
//! Copy-on-write (the MERGE of [`crate::upsert`]) rewrites every file holding a changed key;
//! random updates touch nearly every file, so each commit rewrites nearly the whole table.
//! Merge-on-read leaves existing files as they are and marks the replaced rows in Delta
//! deletion vectors ([`crate::dv`]). Per commit:
//!
//! 1. the change rows are collapsed to the last operation per key, as for a MERGE;
//! 2. every collapsed key (old keys of key changes included: they end as deletes) is looked
//!    up in the [`KeyIndex`] → (file, row), and the hit validated against the snapshot: the
//!    file is active and the row is not in its deletion vector;
//! 3. values the row does not carry (PostgreSQL TOAST-unchanged columns, values carried across
//!    a key change) are read from the stored row at that position: only the needed columns
//!    and row groups of that one Parquet file;
//! 4. the new row versions (everything but deletes) are written as new Parquet files;
//! 5. for every existing file that lost rows: `Remove` (the old `Add`, its old DV) + `Add` (the
//!    same path, DV = old ∪ new positions, the exact `numRecords`, stats kept with
//!    `tightBounds: false`); a file whose every row is gone is only removed. The bitmaps of
//!    one commit go into one DV file;
//! 6. all of it, the new files, a schema change if columns were added, and the task's `txn`
//!    are ONE Delta commit. It is made with no automatic rebase: when anything committed
//!    since the snapshot (a compaction, a twin), it fails and the caller fences and starts
//!    over on the new snapshot, because the conflict checker does not see a `dataChange =
//!    false` rewrite of a file whose DV this commit replaces.
//!
//! A truncate removes every active file and adds the rows that follow it. The index learns the
//! written file after the commit; a crash in between is caught up by the next sync.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::DeltaTableError;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, new_null_array};
use deltalake::arrow::compute::{cast, concat_batches, filter_record_batch, take};
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, DeletionVectorDescriptor, MetadataExt, Remove, StructType};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::RowSelection;
// `ParquetObjectReader` is deprecated in parquet 59 but is what the delta crate itself reads with
use deltalake::DeltaTable;
#[allow(deprecated)]
use deltalake::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use roaring::RoaringTreemap;
use rtsync_core::{ErrorKind, OP_COLUMN, SyncError, SyncResult};

use crate::dv::{self, DvFile};
use crate::key_index::{KeyCodec, KeyIndex};
use crate::upsert::{Carry, Collapsed, apply_carries, without_op};
use crate::{UNCHANGED_PREFIX, classify};

/// One active data file of the snapshot.
#[derive(Debug, Clone)]
pub(crate) struct ActiveFile {
    pub path: String,
    object_path: Path,
    pub size: i64,
    modification_time: i64,
    stats: Option<String>,
    partition_values: HashMap<String, Option<String>>,
    pub dv: Option<DeletionVectorDescriptor>,
    /// Physical rows (deleted ones included).
    pub num_records: Option<u64>,
}

impl ActiveFile {
    pub(crate) fn remove(&self, now: i64) -> Remove {
        Remove {
            path: self.path.clone(),
            data_change: true,
            deletion_timestamp: Some(now),
            extended_file_metadata: Some(true),
            partition_values: Some(self.partition_values.clone()),
            size: Some(self.size),
            deletion_vector: self.dv.clone(),
            tags: None,
            base_row_id: None,
            default_row_commit_version: None,
        }
    }

    /// The same file with another deletion vector: its min/max still hold but are no longer
    /// tight.
    fn with_dv(&self, dv: DeletionVectorDescriptor) -> Add {
        let stats = self.stats.as_deref().map(|s| match serde_json::from_str::<serde_json::Value>(s) {
            Ok(serde_json::Value::Object(mut stats)) => {
                stats.insert("tightBounds".into(), serde_json::Value::Bool(false));
                serde_json::Value::Object(stats).to_string()
            }
            _ => s.to_string(),
        });
        Add {
            path: self.path.clone(),
            partition_values: self.partition_values.clone(),
            size: self.size,
            modification_time: self.modification_time,
            data_change: true,
            stats,
            tags: None,
            deletion_vector: Some(dv),
            base_row_id: None,
            default_row_commit_version: None,
            clustering_provider: None,
        }
    }
}

/// The active files of `table`'s snapshot, by path.
pub(crate) fn active_files(table: &DeltaTable) -> Result<HashMap<String, ActiveFile>, DeltaTableError> {
    let snapshot = table.snapshot()?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| {
            let file = ActiveFile {
                path: f.path().to_string(),
                object_path: f.object_store_path(),
                size: f.size(),
                modification_time: f.modification_time(),
                stats: f.stats(),
                partition_values: f.partition_values_map(),
                dv: f.deletion_vector_descriptor(),
                num_records: f.num_records().map(|n| n as u64),
            };
            (file.path.clone(), file)
        })
        .collect())
}

/// Deletion vectors read so far, by file (a file's DV changes with every commit touching it).
#[derive(Default)]
pub(crate) struct DvCache {
    loaded: HashMap<String, (DeletionVectorDescriptor, Arc<RoaringTreemap>)>,
}

impl DvCache {
    pub(crate) async fn get(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        file: &ActiveFile,
    ) -> SyncResult<Option<Arc<RoaringTreemap>>> {
        let Some(descriptor) = &file.dv else {
            return Ok(None);
        };
        if let Some((d, bitmap)) = self.loaded.get(&file.path)
            && d == descriptor
        {
            return Ok(Some(bitmap.clone()));
        }
        let bitmap = Arc::new(dv::read(store, descriptor).await?);
        self.loaded.insert(file.path.clone(), (descriptor.clone(), bitmap.clone()));
        Ok(Some(bitmap))
    }

    /// A DV this sink just committed (so the next commit does not read it back).
    fn insert(&mut self, path: String, descriptor: DeletionVectorDescriptor, bitmap: RoaringTreemap) {
        self.loaded.insert(path, (descriptor, Arc::new(bitmap)));
    }

    fn retain_active(&mut self, active: &HashMap<String, ActiveFile>) {
        self.loaded.retain(|p, _| active.contains_key(p));
    }
}

/// Columns `fields` (by name, cast to their types; NULL where the file lacks one) of `file`,
/// at the sorted, distinct positions `rows` (all rows when None). Only the row groups
/// holding those positions are read.
#[allow(deprecated)]
pub(crate) async fn read_columns(
    store: &Arc<dyn ObjectStore>,
    file: &ActiveFile,
    fields: &[Field],
    rows: Option<&[u64]>,
) -> SyncResult<RecordBatch> {
    let read_err = |e: deltalake::parquet::errors::ParquetError| {
        SyncError::with_source(ErrorKind::Transient, format!("reading data file {}", file.path), e)
    };
    let reader =
        ParquetObjectReader::new(store.clone(), file.object_path.clone()).with_file_size(file.size.max(0) as u64);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(read_err)?;
    let stored = builder.schema().clone();
    let roots: Vec<usize> = fields.iter().filter_map(|f| stored.index_of(f.name()).ok()).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut builder = builder.with_projection(mask);
    if let Some(rows) = rows {
        let mut groups = Vec::new();
        let mut ranges = Vec::with_capacity(rows.len());
        let (mut start, mut selected, mut i) = (0u64, 0usize, 0usize);
        for (g, group) in builder.metadata().row_groups().iter().enumerate() {
            let end = start + group.num_rows().max(0) as u64;
            let first = i;
            while i < rows.len() && rows[i] < end {
                i += 1;
            }
            if i > first {
                groups.push(g);
                ranges.extend(rows[first..i].iter().map(|&r| {
                    let at = selected + (r - start) as usize;
                    at..at + 1
                }));
                selected += (end - start) as usize;
            }
            start = end;
        }
        builder = builder
            .with_row_groups(groups)
            .with_row_selection(RowSelection::from_consecutive_ranges(ranges.into_iter(), selected));
    }
    let stream = builder.build().map_err(read_err)?;
    let projected = stream.schema().clone();
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(read_err)?;
    let all = concat_batches(&projected, &batches)?;
    let columns: Vec<ArrayRef> = fields
        .iter()
        .map(|f| match all.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), all.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    let schema: SchemaRef = Arc::new(Schema::new(fields.to_vec()));
    Ok(RecordBatch::try_new_with_options(
        schema,
        columns,
        &deltalake::arrow::array::RecordBatchOptions::new().with_row_count(Some(all.num_rows())),
    )?)
}

/// What one merge-on-read commit did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applied {
    pub version: u64,
    /// Bytes of new data files and the DV file.
    pub bytes: u64,
}

/// The merge-on-read state of one sink: its key index and the DVs it has read.
pub(crate) struct MergeOnRead {
    index: KeyIndex,
    dvs: DvCache,
}

/// Where each key's live row is, when it has one.
type Located = Vec<Option<(String, u64)>>;

impl MergeOnRead {
    pub(crate) fn new(index: KeyIndex) -> Self {
        Self { index, dvs: DvCache::default() }
    }

    pub(crate) fn index_path(&self) -> &std::path::Path {
        self.index.path()
    }

    /// The key codec of `table`: the table's type of each key column.
    fn codec(table: &DeltaTable, keys: &[String]) -> SyncResult<KeyCodec> {
        let schema = table.snapshot().map_err(|e| classify(e, "reading the table schema"))?.snapshot().arrow_schema();
        let types = keys
            .iter()
            .map(|k| {
                schema
                    .field_with_name(k)
                    .map(|f| f.data_type().clone())
                    .map_err(|_| SyncError::sink(format!("the table has no primary-key column {k:?}")))
            })
            .collect::<SyncResult<_>>()?;
        KeyCodec::new(keys.to_vec(), types)
    }

    /// Brings the key index up to `table`'s version (reading the key columns of files it has
    /// not seen); on open, this is the catch-up or the rebuild.
    pub(crate) async fn sync(&mut self, table: &DeltaTable, keys: &[String]) -> SyncResult<()> {
        let active = active_files(table).map_err(|e| classify(e, "listing the table's files"))?;
        self.sync_with(table, keys, &active).await
    }

    async fn sync_with(
        &mut self,
        table: &DeltaTable,
        keys: &[String],
        active: &HashMap<String, ActiveFile>,
    ) -> SyncResult<()> {
        let Some(version) = table.version() else {
            return Ok(());
        };
        let snapshot = table.snapshot().map_err(|e| classify(e, "reading the snapshot"))?;
        let table_id = snapshot.metadata().id().to_string();
        let codec = Self::codec(table, keys)?;
        let store = table.log_store().object_store(None);
        self.dvs.retain_active(active);
        let report = self.index.sync(&store, &table_id, version, active, &codec, &mut self.dvs).await?;
        if report.files_read > 0 || report.files_forgotten > 0 {
            tracing::debug!(
                index = %self.index.path().display(),
                files_read = report.files_read,
                keys_added = report.keys_added,
                files_forgotten = report.files_forgotten,
                version,
                "key index caught up"
            );
        }
        Ok(())
    }

    /// The live row of each key, validated against the snapshot's files and their DVs.
    async fn locate(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        active: &HashMap<String, ActiveFile>,
        codec: &KeyCodec,
        key_columns: &[ArrayRef],
    ) -> SyncResult<Located> {
        let keys = codec.encode(key_columns)?;
        let mut out = Vec::with_capacity(keys.num_rows());
        for hit in self.index.lookup(&keys)? {
            let live = match hit.as_ref().and_then(|(path, _)| active.get(path)) {
                Some(file) => {
                    let row = hit.as_ref().map_or(0, |(_, r)| *r);
                    let deleted = self.dvs.get(store, file).await?;
                    (!deleted.is_some_and(|d| d.contains(row))).then(|| (file.path.clone(), row))
                }
                None => None,
            };
            out.push(live);
        }
        Ok(out)
    }

    /// The stored rows at `at` (columns `fields`), one batch per file.
    async fn read_located(
        store: &Arc<dyn ObjectStore>,
        active: &HashMap<String, ActiveFile>,
        at: &Located,
        fields: &[Field],
    ) -> SyncResult<Vec<RecordBatch>> {
        let mut by_file: HashMap<&str, Vec<u64>> = HashMap::new();
        for (path, row) in at.iter().flatten() {
            by_file.entry(path.as_str()).or_default().push(*row);
        }
        let mut found = Vec::with_capacity(by_file.len());
        for (path, mut rows) in by_file {
            rows.sort_unstable();
            rows.dedup();
            let file = active.get(path).ok_or_else(|| SyncError::internal(format!("{path} left the snapshot")))?;
            found.push(read_columns(store, file, fields, Some(&rows)).await?);
        }
        Ok(found)
    }

    /// Applies one commit's collapsed changes (`truncate`: a truncate came first) in one Delta
    /// commit carrying `properties`. The outer error is a failure before the commit; the inner
    /// one is the commit's own (the caller tries again when it lost to maintenance).
    pub(crate) async fn apply(
        &mut self,
        table: &DeltaTable,
        collapsed: &Collapsed,
        truncate: bool,
        keys: &[String],
        mut writer: RecordBatchWriter,
        properties: CommitProperties,
    ) -> SyncResult<Result<Applied, DeltaTableError>> {
        let location = table.table_url().to_string();
        let active = active_files(table).map_err(|e| classify(e, &format!("listing the files of {location}")))?;
        let store = table.log_store().object_store(None);
        let codec = Self::codec(table, keys)?;
        let mut rows = collapsed.rows.clone();
        // per existing file: the positions of rows this commit replaces or deletes
        let mut replaced: HashMap<String, RoaringTreemap> = HashMap::new();
        if truncate {
            replaced.extend(active.keys().map(|p| (p.clone(), RoaringTreemap::new())));
        } else {
            self.sync_with(table, keys, &active).await?;
            let key_columns = key_columns(&rows, keys)?;
            let located = self.locate(&store, &active, &codec, &key_columns).await?;
            for (path, row) in located.iter().flatten() {
                replaced.entry(path.clone()).or_default().insert(*row);
            }
            // values a key change carried from the old key's stored row
            if let Some(lookup) = &collapsed.lookup_keys
                && !collapsed.carries.is_empty()
            {
                let at = self.locate(&store, &active, &codec, lookup.columns()).await?;
                let fields = stored_fields(&rows, keys, collapsed.carries.iter().map(|c| c.column));
                let found = Self::read_located(&store, &active, &at, &fields).await?;
                rows = apply_carries(collapsed.clone(), keys, &found)?;
            }
            // values the source did not send, kept from the key's stored row
            rows = self.keep_unchanged(&store, &active, rows, keys, &located).await?;
        }
        let live = live_rows(&rows)?;
        let written_keys = if live.num_rows() > 0 {
            let live_keys = key_columns(&live, keys)?;
            if let Err(e) = writer.write_with_mode(live, WriteMode::MergeSchema).await {
                return Err(classify(e, &format!("writing data files of {location}")));
            }
            Some(codec.encode(&live_keys)?)
        } else {
            None
        };
        let adds = writer.flush().await.map_err(|e| classify(e, &format!("writing data files of {location}")))?;
        let mut bytes: u64 = adds.iter().map(|a| a.size.max(0) as u64).sum();

        let now = chrono::Utc::now().timestamp_millis();
        let mut dv_file = DvFile::new();
        let mut new_dvs = Vec::new();
        let mut actions: Vec<Action> = Vec::with_capacity(adds.len() + 2 * replaced.len() + 1);
        for (path, positions) in replaced {
            let file = active.get(&path).ok_or_else(|| SyncError::internal(format!("{path} left the snapshot")))?;
            actions.push(Action::Remove(file.remove(now)));
            if truncate {
                continue;
            }
            let mut deleted = self.dvs.get(&store, file).await?.map(|d| (*d).clone()).unwrap_or_default();
            deleted |= positions;
            if file.num_records.is_some_and(|n| deleted.len() >= n) {
                continue; // every row is gone: the file leaves the table
            }
            let dv = dv_file.push(&deleted)?;
            actions.push(Action::Add(file.with_dv(dv.clone())));
            new_dvs.push((path, dv, deleted));
        }
        let snapshot = table.snapshot().map_err(|e| classify(e, &format!("reading the snapshot of {location}")))?;
        // columns the source added: the writer merged them into its schema
        let written: StructType = writer.arrow_schema().as_ref().try_into_kernel().map_err(|e| {
            SyncError::with_source(ErrorKind::Sink, "the change rows have a type Delta cannot store", e)
        })?;
        let current = snapshot.schema();
        if written.fields().any(|f| current.field(f.name()).is_none()) {
            let metadata = MetadataExt::with_schema(snapshot.metadata().clone(), &written)
                .map_err(|e| SyncError::with_source(ErrorKind::Sink, format!("adding columns to {location}"), e))?;
            actions.push(Action::Metadata(metadata));
        }
        let new_files: Vec<(String, Option<u64>)> =
            adds.iter().map(|a| (a.path.clone(), stats_num_records(a.stats.as_deref()))).collect();
        actions.extend(adds.into_iter().map(Action::Add));
        if !dv_file.is_empty() {
            bytes += dv_file.write(&store).await?;
        }
        let operation = DeltaOperation::Merge {
            predicate: None,
            merge_predicate: Some(keys.iter().map(|k| format!("t.{k} = s.{k}")).collect::<Vec<_>>().join(" AND ")),
            matched_predicates: Vec::new(),
            not_matched_predicates: Vec::new(),
            not_matched_by_source_predicates: Vec::new(),
        };
        let committed = CommitBuilder::from(properties)
            .with_max_retries(0)
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), operation)
            .await;
        let version = match committed {
            Ok(done) => done.version(),
            Err(e) => return Ok(Err(e)),
        };
        for (path, descriptor, bitmap) in new_dvs {
            self.dvs.insert(path, descriptor, bitmap);
        }
        // The index learns the file just written (its rows are the live rows, in order);
        // several files (the target size was reached) are read by the next sync instead.
        if let ([(path, count)], Some(keys)) = (new_files.as_slice(), &written_keys)
            && *count == Some(keys.num_rows() as u64)
        {
            self.index.add_file(path, keys, None)?;
            self.index.set_version(version, false)?;
        } else if new_files.is_empty() {
            self.index.set_version(version, false)?;
        }
        Ok(Ok(Applied { version, bytes }))
    }

    /// Fills the masked values of rows whose key has a stored row, from that row.
    async fn keep_unchanged(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        active: &HashMap<String, ActiveFile>,
        rows: RecordBatch,
        keys: &[String],
        located: &Located,
    ) -> SyncResult<RecordBatch> {
        let schema = rows.schema();
        // (data column, mask)
        let masked: Vec<(usize, BooleanArray)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let mask = rows.column_by_name(&format!("{UNCHANGED_PREFIX}{}", f.name()))?;
                Some((i, mask.as_boolean_opt()?.clone()))
            })
            .collect();
        if masked.is_empty() {
            return Ok(rows);
        }
        let ops = rows.column_by_name(OP_COLUMN).and_then(|c| c.as_string_opt::<i32>().cloned());
        let is_delete = |r: usize| ops.as_ref().is_some_and(|o| o.is_valid(r) && o.value(r) == "d");
        let mut needing: Vec<u32> = Vec::new();
        let mut carries: Vec<Carry> = Vec::new();
        for (r, at) in located.iter().enumerate().take(rows.num_rows()) {
            if is_delete(r) || at.is_none() {
                continue;
            }
            let lookup = needing.len() as u32;
            let mut any = false;
            for (c, mask) in &masked {
                if mask.is_valid(r) && mask.value(r) {
                    carries.push(Carry { row: r as u32, column: *c, lookup });
                    any = true;
                }
            }
            if any {
                needing.push(r as u32);
            }
        }
        if needing.is_empty() {
            return Ok(rows);
        }
        let index = deltalake::arrow::array::UInt32Array::from(needing.clone());
        let lookup_columns: Vec<ArrayRef> =
            key_columns(&rows, keys)?.iter().map(|c| take(c.as_ref(), &index, None)).collect::<Result<_, _>>()?;
        let lookup_fields: Vec<Field> =
            keys.iter().zip(&lookup_columns).map(|(k, c)| Field::new(k, c.data_type().clone(), true)).collect();
        let lookup_keys = RecordBatch::try_new(Arc::new(Schema::new(lookup_fields)), lookup_columns)?;
        let at: Located = needing.iter().map(|&r| located[r as usize].clone()).collect();
        let fields = stored_fields(&rows, keys, masked.iter().map(|(c, _)| *c));
        let found = Self::read_located(store, active, &at, &fields).await?;
        apply_carries(Collapsed { rows, carries, lookup_keys: Some(lookup_keys) }, keys, &found)
    }
}

/// The key columns of `rows`, in key order.
fn key_columns(rows: &RecordBatch, keys: &[String]) -> SyncResult<Vec<ArrayRef>> {
    keys.iter()
        .map(|k| {
            rows.column_by_name(k)
                .cloned()
                .ok_or_else(|| SyncError::sink(format!("the change rows have no primary-key column {k:?}")))
        })
        .collect()
}

/// The key columns and the data columns `columns` of `rows`, as fields to read from the table.
fn stored_fields(rows: &RecordBatch, keys: &[String], columns: impl Iterator<Item = usize>) -> Vec<Field> {
    let schema = rows.schema();
    let mut fields: Vec<Field> = Vec::new();
    let names = keys.iter().filter_map(|k| schema.index_of(k).ok()).chain(columns);
    for c in names {
        let f = schema.field(c);
        if !fields.iter().any(|g| g.name() == f.name()) {
            fields.push(Field::new(f.name(), f.data_type().clone(), true));
        }
    }
    fields
}

/// The rows that stay in the table (not deletes), as the table takes them.
fn live_rows(rows: &RecordBatch) -> SyncResult<RecordBatch> {
    let keep: BooleanArray = match rows.column_by_name(OP_COLUMN).and_then(|c| c.as_string_opt::<i32>()) {
        Some(ops) => ops.iter().map(|op| Some(op != Some("d"))).collect(),
        None => return Err(SyncError::internal(format!("upsert needs {OP_COLUMN}"))),
    };
    without_op(&filter_record_batch(rows, &keep)?)
}

/// `numRecords` of an Add's stats.
fn stats_num_records(stats: Option<&str>) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(stats?).ok()?.get("numRecords")?.as_u64()
}
