//! Browsing a Lakehouse root, local or on an object store: its schemas (the "directories"
//! under the root), the Delta tables in a schema, and a table's columns. What `meta
//! namespaces|objects|detail` shows for a Lakehouse data source. Everything is read through
//! the root's object store with the data source's storage options.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use deltalake::Path as ObjectPath;
use object_store::ObjectStore;
use rtsync_core::{ErrorKind, SchemaSummary, SyncError, SyncResult};

use crate::read::load_table;
use crate::{LakehouseSinkConfig, classify};

/// A Delta table of a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSummary {
    pub name: String,
    /// The table's latest version, or why it could not be read.
    pub version: Result<u64, String>,
}

/// A Delta table's columns, as its schema declares them.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaColumn {
    pub name: String,
    /// The Delta type as Delta spells it (`long`, `decimal(12,2)`, `timestamp`).
    pub delta_type: String,
    pub nullable: bool,
}

/// A Delta table: where it is, its version and columns.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDetail {
    pub location: String,
    pub version: Option<u64>,
    pub columns: Vec<DeltaColumn>,
}

/// The local directory of a Lakehouse root, when it is one.
pub fn local_root(root: &str) -> Option<PathBuf> {
    if let Some(path) = root.strip_prefix("file://") {
        return Some(path.into());
    }
    (!root.contains("://")).then(|| root.into())
}

/// The object store at `root` (a local directory is created when missing).
fn root_store(root: &str, storage_options: &HashMap<String, String>) -> SyncResult<Arc<dyn ObjectStore>> {
    if let Some(dir) = local_root(root)
        && !dir.exists()
    {
        std::fs::create_dir_all(&dir).map_err(|e| {
            SyncError::with_source(ErrorKind::Sink, format!("creating lakehouse root {}", dir.display()), e)
        })?;
    }
    crate::register_object_stores();
    let url =
        deltalake::ensure_table_uri(root).map_err(|e| classify(e, &format!("resolving lakehouse root {root}")))?;
    let store = deltalake::DeltaTableBuilder::from_url(url)
        .and_then(|b| b.with_storage_options(storage_options.clone()).build_storage())
        .map_err(|e| classify(e, &format!("opening lakehouse root {root}")))?;
    Ok(store.object_store(None))
}

/// The names of the "directories" under `prefix` (none: the root), without hidden ones.
async fn subdirs(store: &dyn ObjectStore, root: &str, prefix: Option<&str>) -> SyncResult<Vec<String>> {
    let path = prefix.map(ObjectPath::from);
    let listed = store.list_with_delimiter(path.as_ref()).await.map_err(|e| {
        classify(e.into(), &format!("listing {root}{}", prefix.map(|p| format!("/{p}")).unwrap_or_default()))
    })?;
    let mut out: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
        .collect();
    out.sort();
    Ok(out)
}

/// Whether `schema/table` under the root holds a Delta log.
async fn is_table(store: &dyn ObjectStore, schema: &str, table: &str) -> SyncResult<bool> {
    let path = ObjectPath::from(format!("{schema}/{table}"));
    let listed = store
        .list_with_delimiter(Some(&path))
        .await
        .map_err(|e| classify(e.into(), &format!("listing {schema}/{table}")))?;
    Ok(listed.common_prefixes.iter().any(|p| p.filename() == Some("_delta_log")))
}

/// The schemas under `root`, with how many Delta tables each holds.
pub async fn list_schemas(root: &str, storage_options: &HashMap<String, String>) -> SyncResult<Vec<SchemaSummary>> {
    let store = root_store(root, storage_options)?;
    let mut out = Vec::new();
    for name in subdirs(store.as_ref(), root, None).await? {
        let mut tables = 0;
        for t in subdirs(store.as_ref(), root, Some(&name)).await? {
            tables += i64::from(is_table(store.as_ref(), &name, &t).await?);
        }
        out.push(SchemaSummary { name, tables });
    }
    Ok(out)
}

/// The Delta tables of `schema`; None when the schema does not exist.
pub async fn list_tables(
    root: &str,
    storage_options: &HashMap<String, String>,
    schema: &str,
) -> SyncResult<Option<Vec<TableSummary>>> {
    let store = root_store(root, storage_options)?;
    let names = subdirs(store.as_ref(), root, Some(schema)).await?;
    if names.is_empty() && !subdirs(store.as_ref(), root, None).await?.iter().any(|s| s == schema) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for name in names {
        if !is_table(store.as_ref(), schema, &name).await? {
            continue;
        }
        let config = table_config(root, storage_options, schema, &name);
        let version = match load_table(&config, None).await {
            Ok(t) => t.version().ok_or_else(|| "no version".to_string()),
            Err(e) => Err(e.report()),
        };
        out.push(TableSummary { name, version });
    }
    Ok(Some(out))
}

/// A table's columns and version; None when there is no Delta table there.
pub async fn table_detail(
    root: &str,
    storage_options: &HashMap<String, String>,
    schema: &str,
    table: &str,
) -> SyncResult<Option<TableDetail>> {
    let store = root_store(root, storage_options)?;
    if !is_table(store.as_ref(), schema, table).await? {
        return Ok(None);
    }
    let config = table_config(root, storage_options, schema, table);
    let loaded = load_table(&config, None).await?;
    let location = config.table_location();
    let snapshot = loaded
        .snapshot()
        .map_err(|e| SyncError::with_source(ErrorKind::Sink, format!("reading table {location}"), e))?;
    let columns = snapshot
        .schema()
        .fields()
        .map(|f| DeltaColumn {
            name: f.name().clone(),
            delta_type: f.data_type().to_string(),
            nullable: f.is_nullable(),
        })
        .collect();
    Ok(Some(TableDetail { location, version: loaded.version(), columns }))
}

fn table_config(
    root: &str,
    storage_options: &HashMap<String, String>,
    schema: &str,
    table: &str,
) -> LakehouseSinkConfig {
    let mut config = LakehouseSinkConfig::new(root, schema, table);
    config.storage_options = storage_options.clone();
    config
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_roots_are_recognised() {
        assert_eq!(local_root("/data/lake"), Some(PathBuf::from("/data/lake")));
        assert_eq!(local_root("file:///data/lake"), Some(PathBuf::from("/data/lake")));
        assert_eq!(local_root("s3://bucket/lake"), None);
    }
}
