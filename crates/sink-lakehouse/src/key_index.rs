//! The key index of a merge-on-read table: primary key → (data file, row position) of the
//! key's row, in an embedded on-disk store (redb), so its size is bounded by disk, not RAM.
//!
//! **What it holds.** `keys`: the key's Arrow row-format bytes → (file id, row); `files` and
//! `paths`: file id ↔ path of every indexed data file; `meta`: the Delta version and table id it
//! describes, the key columns and the encoding.
//!
//! **Never trusted, always validated.** An entry is a hint: the merge-on-read commit uses it
//! only when its file is still active in the snapshot and its row is not in the file's
//! deletion vector. A stale entry (the file left the table, or the row was deleted) means the
//! key has no row. So removes and deletion vectors need no index update at all.
//!
//! **Catching up** ([`KeyIndex::sync`]): every active file whose path the index does not know
//! is read (its key columns only) and its live rows are entered; paths no longer active are
//! forgotten. A data file's rows never change (a path is written once), so this covers
//! compactions, purges, snapshot appends and files added by other writers alike, and a missing
//! index (a task moved to another machine) is the same thing from nothing: a rebuild, with
//! progress logged. Each file's entries and its path commit together, so a crash in the middle
//! loses nothing the next sync does not redo.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::array::ArrayRef;
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field};
use deltalake::arrow::row::{RowConverter, Rows, SortField};
use object_store::ObjectStore;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use roaring::RoaringTreemap;
use rtsync_core::{ErrorKind, SyncError, SyncResult};

use crate::mor::{ActiveFile, DvCache, read_columns};

const KEYS: TableDefinition<&[u8], (u32, u64)> = TableDefinition::new("keys");
const FILES: TableDefinition<&str, u32> = TableDefinition::new("files");
const PATHS: TableDefinition<u32, &str> = TableDefinition::new("paths");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Bumped when the key encoding changes (the Arrow row format is not stable across Arrow
/// major versions): an index of another format is rebuilt.
const FORMAT: &str = "arrow-row-59/1";
/// A rebuild logs its progress every this many files.
const PROGRESS_EVERY: usize = 16;

fn index_error(context: &str, e: impl Into<redb::Error>) -> SyncError {
    SyncError::with_source(ErrorKind::Sink, format!("key index: {context}"), e.into())
}

/// Encodes key columns as the bytes the index is keyed by.
pub(crate) struct KeyCodec {
    names: Vec<String>,
    types: Vec<DataType>,
    converter: RowConverter,
}

impl KeyCodec {
    /// `types`: the table's type of each key column (both the change rows and the files are
    /// cast to it, so a key reads the same from either side).
    pub(crate) fn new(names: Vec<String>, types: Vec<DataType>) -> SyncResult<Self> {
        let converter = RowConverter::new(types.iter().map(|t| SortField::new(t.clone())).collect())?;
        Ok(Self { names, types, converter })
    }

    pub(crate) fn fields(&self) -> Vec<Field> {
        self.names.iter().zip(&self.types).map(|(n, t)| Field::new(n, t.clone(), true)).collect()
    }

    /// `columns` in key order, of any type castable to the table's.
    pub(crate) fn encode(&self, columns: &[ArrayRef]) -> SyncResult<Rows> {
        let cast: Vec<ArrayRef> = columns
            .iter()
            .zip(&self.types)
            .map(|(c, t)| if c.data_type() == t { Ok(c.clone()) } else { cast(c, t) })
            .collect::<Result<_, _>>()?;
        Ok(self.converter.convert_columns(&cast)?)
    }

    fn describe(&self) -> String {
        self.names.iter().zip(&self.types).map(|(n, t)| format!("{n}:{t}")).collect::<Vec<_>>().join(",")
    }
}

/// What one sync did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncReport {
    pub files_read: usize,
    pub keys_added: u64,
    pub files_forgotten: usize,
}

pub(crate) struct KeyIndex {
    db: Database,
    path: PathBuf,
    /// A private index (the shared one was in use): deleted when dropped.
    temporary: bool,
}

impl Drop for KeyIndex {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The key index's page cache. redb's default (1 GiB) held a 10M-key index in memory whole
/// (the task at 0.9 GiB RSS); lookups past the cache are served from the OS page cache.
const KEY_INDEX_CACHE_BYTES: usize = 64 * 1024 * 1024;

fn index_database(path: &FsPath) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(KEY_INDEX_CACHE_BYTES).create(path)
}

impl KeyIndex {
    /// Opens (or creates) the index file at `path`; an unreadable file is replaced by an empty
    /// one (rebuilt by the next sync).
    pub(crate) fn open(path: &FsPath) -> SyncResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                SyncError::with_source(
                    ErrorKind::Config,
                    format!("creating the key index directory {}", dir.display()),
                    e,
                )
            })?;
        }
        let db = match index_database(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                // Another copy of the task in this process holds it (a zombie about to be
                // fenced, or an attempt not yet dropped): this copy builds a private one.
                let private = path.with_extension(format!("{}.tmp.redb", uuid::Uuid::new_v4()));
                tracing::warn!(index = %path.display(), private = %private.display(), "key index in use by another copy of the task; building a private one");
                let db = index_database(&private).map_err(|e| index_error("creating", e))?;
                return Ok(Self { db, path: private, temporary: true });
            }
            Err(e) => {
                tracing::warn!(index = %path.display(), error = %e, "key index unreadable, rebuilding it");
                std::fs::remove_file(path).map_err(|e| {
                    SyncError::with_source(
                        ErrorKind::Sink,
                        format!("removing the broken key index {}", path.display()),
                        e,
                    )
                })?;
                index_database(path).map_err(|e| index_error("creating", e))?
            }
        };
        Ok(Self { db, path: path.to_path_buf(), temporary: false })
    }

    pub(crate) fn path(&self) -> &FsPath {
        &self.path
    }

    fn meta(&self, key: &str) -> SyncResult<Option<String>> {
        let read = self.db.begin_read().map_err(|e| index_error("reading", e))?;
        let table = match read.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(index_error("reading", e)),
        };
        Ok(table.get(key).map_err(|e| index_error("reading", e))?.map(|v| v.value().to_string()))
    }

    /// The Delta version the index describes.
    pub(crate) fn version(&self) -> SyncResult<Option<u64>> {
        Ok(self.meta("version")?.and_then(|v| v.parse().ok()))
    }

    /// The indexed row of each key (None: not indexed); not yet validated against a snapshot.
    pub(crate) fn lookup(&self, keys: &Rows) -> SyncResult<Vec<Option<(String, u64)>>> {
        let read = self.db.begin_read().map_err(|e| index_error("reading", e))?;
        let (entries, paths) = match (read.open_table(KEYS), read.open_table(PATHS)) {
            (Ok(k), Ok(p)) => (k, p),
            _ => return Ok(vec![None; keys.num_rows()]),
        };
        let mut names: HashMap<u32, Option<String>> = HashMap::new();
        let mut out = Vec::with_capacity(keys.num_rows());
        for key in keys.iter() {
            let Some(hit) = entries.get(key.data()).map_err(|e| index_error("reading", e))? else {
                out.push(None);
                continue;
            };
            let (file, row) = hit.value();
            let path = match names.get(&file) {
                Some(p) => p.clone(),
                None => {
                    let p = paths.get(file).map_err(|e| index_error("reading", e))?.map(|p| p.value().to_string());
                    names.insert(file, p.clone());
                    p
                }
            };
            out.push(path.map(|p| (p, row)));
        }
        Ok(out)
    }

    /// Enters the rows of a file this sink just wrote (its keys in file order) and the version
    /// that added it.
    pub(crate) fn add_file(&self, path: &str, keys: &Rows, deleted: Option<&RoaringTreemap>) -> SyncResult<u64> {
        let mut write = self.db.begin_write().map_err(|e| index_error("writing", e))?;
        // losing the tail of non-durable commits in a crash is fine: sync redoes them
        write.set_durability(Durability::None).map_err(|e| index_error("writing", e))?;
        let added;
        {
            let mut files = write.open_table(FILES).map_err(|e| index_error("writing", e))?;
            if files.get(path).map_err(|e| index_error("writing", e))?.is_some() {
                return Ok(0);
            }
            let mut meta = write.open_table(META).map_err(|e| index_error("writing", e))?;
            let id: u32 = meta
                .get("next_file")
                .map_err(|e| index_error("writing", e))?
                .and_then(|v| v.value().parse().ok())
                .unwrap_or(0);
            meta.insert("next_file", (id + 1).to_string().as_str()).map_err(|e| index_error("writing", e))?;
            files.insert(path, id).map_err(|e| index_error("writing", e))?;
            let mut paths = write.open_table(PATHS).map_err(|e| index_error("writing", e))?;
            paths.insert(id, path).map_err(|e| index_error("writing", e))?;
            let mut entries = write.open_table(KEYS).map_err(|e| index_error("writing", e))?;
            let mut n = 0u64;
            for (row, key) in keys.iter().enumerate() {
                if deleted.is_some_and(|d| d.contains(row as u64)) {
                    continue;
                }
                entries.insert(key.data(), (id, row as u64)).map_err(|e| index_error("writing", e))?;
                n += 1;
            }
            added = n;
        }
        write.commit().map_err(|e| index_error("committing", e))?;
        Ok(added)
    }

    /// Records the Delta version (and table id) the index now describes.
    pub(crate) fn set_version(&self, version: u64, durable: bool) -> SyncResult<()> {
        let mut write = self.db.begin_write().map_err(|e| index_error("writing", e))?;
        if !durable {
            write.set_durability(Durability::None).map_err(|e| index_error("writing", e))?;
        }
        {
            let mut meta = write.open_table(META).map_err(|e| index_error("writing", e))?;
            meta.insert("version", version.to_string().as_str()).map_err(|e| index_error("writing", e))?;
        }
        write.commit().map_err(|e| index_error("committing", e))
    }

    /// Empties the index when it describes another table, other key columns or another
    /// encoding (it is then rebuilt by the sync).
    fn reset_unless(&self, table_id: &str, codec: &KeyCodec) -> SyncResult<bool> {
        let wanted = [("table_id", table_id.to_string()), ("keys", codec.describe()), ("format", FORMAT.to_string())];
        let mut same = true;
        for (k, v) in &wanted {
            same &= self.meta(k)?.as_deref() == Some(v.as_str());
        }
        if same {
            return Ok(false);
        }
        let write = self.db.begin_write().map_err(|e| index_error("writing", e))?;
        write.delete_table(KEYS).map_err(|e| index_error("clearing", e))?;
        write.delete_table(FILES).map_err(|e| index_error("clearing", e))?;
        write.delete_table(PATHS).map_err(|e| index_error("clearing", e))?;
        write.delete_table(META).map_err(|e| index_error("clearing", e))?;
        {
            let mut meta = write.open_table(META).map_err(|e| index_error("writing", e))?;
            for (k, v) in &wanted {
                meta.insert(*k, v.as_str()).map_err(|e| index_error("writing", e))?;
            }
        }
        write.commit().map_err(|e| index_error("committing", e))?;
        Ok(true)
    }

    /// Brings the index to the snapshot whose active files are `active` (version `version`
    /// of table `table_id`): reads the key columns of every active file it does not know,
    /// forgets the paths that left.
    pub(crate) async fn sync(
        &self,
        store: &Arc<dyn ObjectStore>,
        table_id: &str,
        version: u64,
        active: &HashMap<String, ActiveFile>,
        codec: &KeyCodec,
        dvs: &mut DvCache,
    ) -> SyncResult<SyncReport> {
        let reset = self.reset_unless(table_id, codec)?;
        if !reset && self.version()? == Some(version) {
            return Ok(SyncReport::default());
        }
        let known: HashMap<String, u32> = {
            let read = self.db.begin_read().map_err(|e| index_error("reading", e))?;
            match read.open_table(FILES) {
                Ok(files) => files
                    .iter()
                    .map_err(|e| index_error("reading", e))?
                    .map(|entry| entry.map(|(p, id)| (p.value().to_string(), id.value())))
                    .collect::<Result<_, _>>()
                    .map_err(|e| index_error("reading", e))?,
                Err(redb::TableError::TableDoesNotExist(_)) => HashMap::new(),
                Err(e) => return Err(index_error("reading", e)),
            }
        };
        let mut report = SyncReport::default();
        let gone: Vec<(&String, &u32)> = known.iter().filter(|(p, _)| !active.contains_key(*p)).collect();
        if !gone.is_empty() {
            let mut write = self.db.begin_write().map_err(|e| index_error("writing", e))?;
            write.set_durability(Durability::None).map_err(|e| index_error("writing", e))?;
            {
                let mut files = write.open_table(FILES).map_err(|e| index_error("writing", e))?;
                let mut paths = write.open_table(PATHS).map_err(|e| index_error("writing", e))?;
                for (p, id) in &gone {
                    files.remove(p.as_str()).map_err(|e| index_error("writing", e))?;
                    paths.remove(**id).map_err(|e| index_error("writing", e))?;
                }
            }
            write.commit().map_err(|e| index_error("committing", e))?;
            report.files_forgotten = gone.len();
        }
        let new: Vec<&ActiveFile> = active.values().filter(|f| !known.contains_key(&f.path)).collect();
        let started = Instant::now();
        let big = new.len() > PROGRESS_EVERY;
        if big {
            tracing::info!(index = %self.path.display(), files = new.len(), version, "building the key index");
        }
        let fields = codec.fields();
        for (n, file) in new.iter().enumerate() {
            let batch = read_columns(store, file, &fields, None).await?;
            let rows = codec.encode(batch.columns())?;
            let dv = dvs.get(store, file).await?;
            report.keys_added += self.add_file(&file.path, &rows, dv.as_deref())?;
            report.files_read += 1;
            if big && (n + 1) % PROGRESS_EVERY == 0 {
                tracing::info!(
                    index = %self.path.display(),
                    files = n + 1,
                    of = new.len(),
                    keys = report.keys_added,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "building the key index"
                );
            }
        }
        self.set_version(version, big || reset)?;
        if big {
            tracing::info!(
                index = %self.path.display(),
                files = report.files_read,
                keys = report.keys_added,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "key index built"
            );
        }
        Ok(report)
    }
}
