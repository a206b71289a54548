//! Lakehouse: the target of every task. A data source has a `root` (a local directory or an
//! object-store URI); its other properties are object-store options. Namespaces are the
//! schemas under the root, objects the Delta tables in them.

use async_trait::async_trait;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, browse};

use super::{Connector, DsType, Props, SourceSpec};
use crate::error::{Error, Result};
use crate::model::{DataSource, MetaColumn, MetaDetail, MetaObject, Namespace, TaskConfig};

pub struct Lakehouse;

pub const ROOT: &str = "root";

/// The properties of a Lakehouse data source at `root`.
pub fn props(root: &str) -> Props {
    [(ROOT.to_string(), root.to_string())].into_iter().collect()
}

/// Where a Lakehouse data source's root is, as the sink takes it.
pub fn root(ds: &DataSource) -> Result<String> {
    if ds.ds_type != super::TARGET_TYPE {
        return Err(Error::bad_request(format!(
            "data source {} is {}, not lakehouse: the target must be a lakehouse data source",
            ds.name, ds.ds_type
        )));
    }
    ds.properties
        .get(ROOT)
        .cloned()
        .ok_or_else(|| Error::bad_request(format!("lakehouse data source {} has no root", ds.name)))
}

fn storage_options(ds: &DataSource) -> std::collections::HashMap<String, String> {
    ds.properties.iter().filter(|(k, _)| k.as_str() != ROOT).map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn sink_config(ds: &DataSource, schema: &str, table: &str) -> Result<LakehouseSinkConfig> {
    let mut cfg = LakehouseSinkConfig::new(root(ds)?, schema, table);
    cfg.storage_options = storage_options(ds);
    Ok(cfg)
}

fn not_a_source(ds: &DataSource) -> Error {
    Error::bad_request(format!(
        "data source {:?} is a lakehouse: it can be the target (--sink), not the source",
        ds.name
    ))
}

#[async_trait]
impl Connector for Lakehouse {
    fn label(&self) -> &'static str {
        "Lakehouse"
    }

    fn is_source(&self) -> bool {
        false
    }

    fn validate(&self, _ds_type: DsType, props: &Props) -> Result<()> {
        if props.get(ROOT).is_none_or(|r| r.trim().is_empty()) {
            return Err(Error::bad_request("a lakehouse data source needs root (a directory or an object-store URI)"));
        }
        Ok(())
    }

    fn check_task(&self, ds: &DataSource, _cfg: &TaskConfig) -> Result<()> {
        Err(not_a_source(ds))
    }

    fn source_spec(&self, ds: &DataSource, _task: &str, _cfg: &TaskConfig, _table: &str) -> Result<SourceSpec> {
        Err(not_a_source(ds))
    }

    async fn test(&self, ds: &DataSource, _object: Option<&str>) -> Result<String> {
        let root = root(ds)?;
        let Some(dir) = browse::local_root(&root) else {
            let schemas = browse::list_schemas(&root, &storage_options(ds)).await?;
            return Ok(format!(
                "lakehouse root {root} is reachable with these credentials: {} schema(s); writing is checked when a task first commits",
                schemas.len()
            ));
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::bad_request(format!("cannot create the lakehouse root {}: {e}", dir.display())))?;
        let probe = dir.join(".rtsync-write-test");
        std::fs::write(&probe, b"ok")
            .map_err(|e| Error::bad_request(format!("cannot write in the lakehouse root {}: {e}", dir.display())))?;
        let _ = std::fs::remove_file(&probe);
        Ok(format!("lakehouse root {} is writable", dir.display()))
    }

    async fn namespaces(&self, ds: &DataSource) -> Result<Vec<Namespace>> {
        let schemas = browse::list_schemas(&root(ds)?, &storage_options(ds)).await?;
        Ok(schemas.into_iter().map(|s| Namespace { name: s.name, objects: Some(s.tables) }).collect())
    }

    async fn objects(&self, ds: &DataSource, namespace: &str) -> Result<Vec<MetaObject>> {
        let root = root(ds)?;
        let tables = browse::list_tables(&root, &storage_options(ds), namespace).await?.ok_or_else(|| {
            Error::not_found(format!("schema {namespace:?} does not exist in lakehouse {} ({root})", ds.name))
        })?;
        Ok(tables
            .into_iter()
            .map(|t| MetaObject {
                detail: Some(match t.version {
                    Ok(v) => format!("version {v}"),
                    Err(e) => format!("unreadable: {e}"),
                }),
                name: t.name,
                kind: "table".into(),
                ..Default::default()
            })
            .collect())
    }

    async fn detail(&self, ds: &DataSource, namespace: &str, object: &str, _sample: usize) -> Result<MetaDetail> {
        let root = root(ds)?;
        let table = browse::table_detail(&root, &storage_options(ds), namespace, object).await?.ok_or_else(|| {
            Error::not_found(format!("table {namespace}.{object} does not exist in lakehouse {} ({root})", ds.name))
        })?;
        Ok(MetaDetail {
            datasource: ds.name.clone(),
            namespace: namespace.to_string(),
            object: object.to_string(),
            kind: "table".into(),
            columns: table
                .columns
                .into_iter()
                .map(|c| MetaColumn { name: c.name, ty: c.delta_type, nullable: c.nullable, ..Default::default() })
                .collect(),
            note: table.version.map(|v| format!("Delta table at {}, version {v}", table.location)),
            ..Default::default()
        })
    }
}
