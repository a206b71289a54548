//! MySQL, MariaDB, and the Aurora and PolarDB MySQL flavours: data sources take `url` plus
//! optional `user` and `password`; namespaces are databases, objects their tables. A task
//! mirrors one table from the binlog (ROW format); nothing is created on the server.

use async_trait::async_trait;
use rtsync_core::SyncResult;
use rtsync_core::verify::TableVerifier;
use rtsync_source_mysql::{MySqlSource, MySqlSourceConfig, browse};

use super::{Connector, DsType, Props, SourceSpec, TaskSource, URL, checked, refuse_columns, validate_url};
use crate::error::{Error, Result};
use crate::model::{DataSource, MetaDetail, MetaObject, Namespace, Preview, TaskConfig};
use crate::runner::{RunOptions, run_table_source};
use crate::spec::TaskSpec;

pub struct MySql;

/// The source configuration for `database.table` of a MySQL-family data source.
fn config(ds: &DataSource, database: &str, table: &str) -> MySqlSourceConfig {
    let url = ds.properties.get(URL).cloned().unwrap_or_default();
    let mut cfg = MySqlSourceConfig::new(url, database, table);
    cfg.user = ds.properties.get("user").cloned();
    cfg.password = ds.properties.get("password").cloned();
    cfg
}

#[async_trait]
impl Connector for MySql {
    fn label(&self) -> &'static str {
        "MySQL"
    }

    fn validate(&self, ds_type: DsType, props: &Props) -> Result<()> {
        validate_url(ds_type, props, &["mysql", "mariadb"], "mysql://host:3306/db")
    }

    fn check_task(&self, ds: &DataSource, cfg: &TaskConfig) -> Result<()> {
        refuse_columns(ds, cfg)
    }

    fn source_spec(&self, ds: &DataSource, task: &str, cfg: &TaskConfig, table: &str) -> Result<SourceSpec> {
        refuse_columns(ds, cfg)?;
        let database = cfg.source_schema.as_deref().ok_or_else(|| {
            Error::bad_request(format!("task {task:?}: a MySQL source needs --source-schema DATABASE"))
        })?;
        Ok(SourceSpec::Mysql(config(ds, database, table)))
    }

    async fn test(&self, ds: &DataSource, object: Option<&str>) -> Result<String> {
        let Some(object) = object else {
            let server = browse::check_server(&config(ds, "", "")).await?;
            return Ok(format!(
                "connected to {server}: credentials, the binlog settings (on, ROW, FULL row image) and the replication privileges are ready; add --object DATABASE.TABLE to check a table too (it exists, its key, SELECT on it)"
            ));
        };
        let Some((database, table)) = object.split_once('.') else {
            return Err(Error::bad_request(format!("--object {object:?}: name the table as DATABASE.TABLE")));
        };
        checked(MySqlSource::new(format!("test-{}", ds.name), config(ds, database, table))?).await?;
        Ok(format!("connected to MySQL; table {database}.{table} is ready for CDC (binlog, privileges)"))
    }

    async fn namespaces(&self, ds: &DataSource) -> Result<Vec<Namespace>> {
        let schemas = browse::list_schemas(&config(ds, "", "")).await?;
        Ok(schemas.into_iter().map(|s| Namespace { name: s.name, objects: Some(s.tables) }).collect())
    }

    async fn objects(&self, ds: &DataSource, namespace: &str) -> Result<Vec<MetaObject>> {
        let tables = browse::list_tables(&config(ds, namespace, ""), namespace).await?;
        Ok(tables
            .into_iter()
            .map(|t| MetaObject {
                detail: if t.primary_key.is_empty() {
                    Some("no primary key: rtsync syncs MySQL tables that have one".to_string())
                } else {
                    t.engine.map(|e| format!("engine {e}"))
                },
                name: t.name,
                kind: "table".into(),
                primary_key: t.primary_key,
                estimated_rows: t.estimated_rows,
                ..Default::default()
            })
            .collect())
    }

    async fn detail(&self, ds: &DataSource, namespace: &str, object: &str, _sample: usize) -> Result<MetaDetail> {
        let t = browse::table_detail(&config(ds, namespace, object), namespace, object).await?;
        let note = if t.primary_key.is_empty() {
            format!(
                "no primary key: rtsync mirrors MySQL rows by key; ALTER TABLE {namespace}.{object} ADD PRIMARY KEY (…)"
            )
        } else {
            "upserted by the primary key".to_string()
        };
        super::table_detail(ds, namespace, object, t.columns, t.primary_key, note)
    }
}

#[async_trait]
impl TaskSource for MySqlSourceConfig {
    fn validate(&self) -> SyncResult<()> {
        MySqlSourceConfig::validate(self)
    }

    fn is_table(&self) -> bool {
        true
    }

    async fn run(&self, spec: &TaskSpec, opts: &RunOptions) -> SyncResult<()> {
        run_table_source(spec, opts, MySqlSource::new(&spec.name, self.clone())?).await
    }

    async fn preview(&self, _spec: &TaskSpec, limit: usize) -> Result<Preview> {
        let batch = browse::sample_rows(self, limit).await?;
        crate::preview::table_preview(&batch, format!("{}.{}", self.schema, self.table))
    }

    async fn verifier(&self, _spec: &TaskSpec) -> Result<(Box<dyn TableVerifier>, String)> {
        let v = rtsync_source_mysql::verify::verifier(self).await?;
        Ok((Box::new(v), format!("{}.{}", self.schema, self.table)))
    }
}
