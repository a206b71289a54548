//! Browsing a Lakehouse root: its schemas (the directories under the root), the Delta tables
//! in a schema, and a table's columns. What `meta namespaces|objects|detail` shows for a
//! Lakehouse data source.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rtsync_core::{ErrorKind, SchemaSummary, SyncError, SyncResult};

use crate::LakehouseSinkConfig;
use crate::read::load_table;

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

fn local_dir(root: &str) -> SyncResult<PathBuf> {
    let dir = local_root(root).ok_or_else(|| {
        SyncError::config(format!("lakehouse root {root}: browsing works on local roots only in this build"))
    })?;
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| {
            SyncError::with_source(ErrorKind::Sink, format!("creating lakehouse root {}", dir.display()), e)
        })?;
    }
    Ok(dir)
}

fn subdirs(dir: &Path) -> SyncResult<Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SyncError::with_source(ErrorKind::Sink, format!("listing {}", dir.display()), e))?;
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !n.starts_with('_'))
        .collect();
    out.sort();
    Ok(out)
}

fn is_table(dir: &Path) -> bool {
    dir.join("_delta_log").is_dir()
}

/// The schemas under `root`, with how many Delta tables each holds.
pub async fn list_schemas(root: &str, _storage_options: &HashMap<String, String>) -> SyncResult<Vec<SchemaSummary>> {
    let dir = local_dir(root)?;
    let mut out = Vec::new();
    for name in subdirs(&dir)? {
        let schema = dir.join(&name);
        let tables = subdirs(&schema)?.into_iter().filter(|t| is_table(&schema.join(t))).count();
        out.push(SchemaSummary { name, tables: tables as i64 });
    }
    Ok(out)
}

/// The Delta tables of `schema`; None when the schema does not exist.
pub async fn list_tables(
    root: &str,
    storage_options: &HashMap<String, String>,
    schema: &str,
) -> SyncResult<Option<Vec<TableSummary>>> {
    let dir = local_dir(root)?.join(schema);
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for name in subdirs(&dir)? {
        if !is_table(&dir.join(&name)) {
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
    let path = local_dir(root)?.join(schema).join(table);
    if !is_table(&path) {
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
