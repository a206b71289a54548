//! PostgreSQL, and its Aurora and PolarDB flavours: data sources take `url` plus optional
//! `user` and `password`; namespaces are schemas, objects their tables. A task mirrors one
//! table through logical replication (a slot and a publication rtsync creates, dropped on
//! undeploy).

use async_trait::async_trait;
use rtsync_core::SyncResult;
use rtsync_core::verify::TableVerifier;
use rtsync_source_postgres::{PostgresSource, PostgresSourceConfig, browse};

use super::{Connector, DsType, Props, SourceSpec, TaskSource, URL, checked, refuse_columns, validate_url};
use crate::error::Result;
use crate::model::{DataSource, MetaDetail, MetaObject, Namespace, Preview, TaskConfig};
use crate::runner::{RunOptions, run_table_source};
use crate::spec::TaskSpec;

pub struct Postgres;

const DEFAULT_SCHEMA: &str = "public";

/// The source configuration for `schema.table` of a PostgreSQL-family data source.
fn config(ds: &DataSource, schema: &str, table: &str) -> PostgresSourceConfig {
    let url = ds.properties.get(URL).cloned().unwrap_or_default();
    let mut cfg = PostgresSourceConfig::new(url, schema, table);
    cfg.user = ds.properties.get("user").cloned();
    cfg.password = ds.properties.get("password").cloned();
    cfg
}

/// `schema.table`, or `table` in schema `public`.
fn split_table(object: &str) -> (&str, &str) {
    object.split_once('.').unwrap_or((DEFAULT_SCHEMA, object))
}

#[async_trait]
impl Connector for Postgres {
    fn label(&self) -> &'static str {
        "PostgreSQL"
    }

    fn validate(&self, ds_type: DsType, props: &Props) -> Result<()> {
        validate_url(ds_type, props, &["postgres", "postgresql"], "postgres://host:5432/db")
    }

    fn check_task(&self, ds: &DataSource, cfg: &TaskConfig) -> Result<()> {
        refuse_columns(ds, cfg)
    }

    fn source_spec(&self, ds: &DataSource, _task: &str, cfg: &TaskConfig, table: &str) -> Result<SourceSpec> {
        refuse_columns(ds, cfg)?;
        let schema = cfg.source_schema.as_deref().unwrap_or(DEFAULT_SCHEMA);
        Ok(SourceSpec::Postgresql(config(ds, schema, table)))
    }

    async fn test(&self, ds: &DataSource, object: Option<&str>) -> Result<String> {
        let Some(object) = object else {
            let version = browse::check_server(&config(ds, DEFAULT_SCHEMA, "")).await?;
            return Ok(format!(
                "connected to {version}: credentials, wal_level logical and the replication privilege are ready; add --object SCHEMA.TABLE to check a table too (it exists, its key or replica identity)"
            ));
        };
        let (schema, table) = split_table(object);
        checked(PostgresSource::new(format!("test-{}", ds.name), config(ds, schema, table))?).await?;
        Ok(format!(
            "connected to PostgreSQL; table {schema}.{table} is ready for CDC (wal_level logical, replication privilege, key)"
        ))
    }

    async fn namespaces(&self, ds: &DataSource) -> Result<Vec<Namespace>> {
        let schemas = browse::list_schemas(&config(ds, DEFAULT_SCHEMA, "")).await?;
        Ok(schemas.into_iter().map(|s| Namespace { name: s.name, objects: Some(s.tables) }).collect())
    }

    async fn objects(&self, ds: &DataSource, namespace: &str) -> Result<Vec<MetaObject>> {
        let tables = browse::list_tables(&config(ds, namespace, ""), namespace).await?;
        Ok(tables
            .into_iter()
            .map(|t| {
                let detail = match (t.primary_key.is_empty(), t.replica_identity.as_str()) {
                    (true, "full") => Some(
                        "no primary key: replica identity full, the target is its change log (_rtsync_op)".to_string(),
                    ),
                    (true, "index") => Some("replica identity index: merged by that index".to_string()),
                    (true, _) => Some("no primary key: updates and deletes cannot be identified".to_string()),
                    (false, _) => None,
                };
                MetaObject {
                    name: t.name,
                    kind: t.kind,
                    primary_key: t.primary_key,
                    estimated_rows: t.estimated_rows,
                    detail,
                    ..Default::default()
                }
            })
            .collect())
    }

    async fn detail(&self, ds: &DataSource, namespace: &str, object: &str, _sample: usize) -> Result<MetaDetail> {
        let t = browse::table_detail(&config(ds, namespace, object), namespace, object).await?;
        let note = match (t.has_primary_key, t.key.is_empty()) {
            (true, _) => "upserted by the primary key".to_string(),
            (false, false) => "upserted by the replica identity index".to_string(),
            (false, true) if t.replica_identity == "full" => {
                "no primary key, replica identity full: the target is the table's change log, each row with its operation in _rtsync_op".to_string()
            }
            (false, true) => format!(
                "no primary key and replica identity {}: a task cannot identify updates and deletes; add a primary key or ALTER TABLE … REPLICA IDENTITY FULL",
                t.replica_identity
            ),
        };
        super::table_detail(ds, namespace, object, t.columns, t.key, note)
    }
}

#[async_trait]
impl TaskSource for PostgresSourceConfig {
    fn validate(&self) -> SyncResult<()> {
        PostgresSourceConfig::validate(self)
    }

    fn is_table(&self) -> bool {
        true
    }

    async fn run(&self, spec: &TaskSpec, opts: &RunOptions) -> SyncResult<()> {
        run_table_source(spec, opts, PostgresSource::new(&spec.name, self.clone())?).await
    }

    async fn preview(&self, _spec: &TaskSpec, limit: usize) -> Result<Preview> {
        let batch = browse::sample_rows(self, limit).await?;
        crate::preview::table_preview(&batch, format!("{}.{}", self.schema, self.table))
    }

    async fn verifier(&self, spec: &TaskSpec) -> Result<(Box<dyn TableVerifier>, String)> {
        let v = rtsync_source_postgres::verify::verifier(self, &spec.name).await?;
        Ok((Box::new(v), format!("{}.{}", self.schema, self.table)))
    }

    /// Drops the task's replication slot (and the publication rtsync created), so the server
    /// stops retaining WAL for it.
    async fn cleanup(&self, app_id: &str) -> String {
        match rtsync_source_postgres::drop_replication_objects(self, app_id).await {
            Ok(_) => format!("; replication slot {} dropped", self.slot_name(app_id)),
            Err(e) => format!(
                "; the replication slot {} could not be dropped ({}): drop it by hand, or the server keeps WAL for it",
                self.slot_name(app_id),
                e.report()
            ),
        }
    }
}
