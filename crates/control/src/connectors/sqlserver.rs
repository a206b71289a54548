//! SQL Server (also Azure SQL Database / Managed Instance and RDS SQL Server): data sources
//! take `url` (`mssql://user:password@host:1433/database` or an ADO.NET connection string)
//! plus optional `user`, `password`, `encrypt`, `trustServerCertificate` and `aad_token`;
//! namespaces are schemas, objects their tables. A task mirrors one table from its CDC capture
//! instance. CDC itself is configured by the DBA: rtsync creates nothing on the server, and
//! undeploy leaves the CDC configuration alone.

use async_trait::async_trait;
use rtsync_core::SyncResult;
use rtsync_core::verify::TableVerifier;
use rtsync_source_sqlserver::{SqlServerSource, SqlServerSourceConfig, browse};

use super::{Connector, DsType, Props, SourceSpec, TaskSource, URL, checked, refuse_columns};
use crate::error::{Error, Result};
use crate::model::{DataSource, MetaDetail, MetaObject, Namespace, Preview, TaskConfig};
use crate::runner::{RunOptions, run_table_source};
use crate::spec::TaskSpec;

pub struct SqlServer;

const DEFAULT_SCHEMA: &str = "dbo";
const EXAMPLE: &str = "mssql://user:password@host:1433/database";

/// The source configuration for `schema.table` of a SQL Server data source.
fn config(ds: &DataSource, schema: &str, table: &str) -> Result<SqlServerSourceConfig> {
    Ok(config_of(&ds.properties, schema, table))
}

fn config_of(p: &Props, schema: &str, table: &str) -> SqlServerSourceConfig {
    let mut cfg = SqlServerSourceConfig::new(p.get(URL).cloned().unwrap_or_default(), schema, table);
    cfg.user = p.get("user").cloned();
    cfg.password = p.get("password").cloned();
    cfg.encrypt = p.get("encrypt").cloned();
    cfg.aad_token = p.get("aad_token").cloned();
    if let Some(t) = p.get("trustServerCertificate").or_else(|| p.get("trust_server_certificate")) {
        cfg.trust_server_certificate = Some(matches!(t.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1"));
    }
    cfg
}

/// `schema.table`, or `table` in schema `dbo`.
fn split_table(object: &str) -> (&str, &str) {
    object.split_once('.').unwrap_or((DEFAULT_SCHEMA, object))
}

#[async_trait]
impl Connector for SqlServer {
    fn label(&self) -> &'static str {
        "SQL Server"
    }

    fn validate(&self, ds_type: DsType, props: &Props) -> Result<()> {
        let url = props.get(URL).map(|s| s.trim()).unwrap_or("");
        if url.is_empty() {
            return Err(Error::bad_request(format!("a {ds_type} data source needs url (e.g. --set url={EXAMPLE})")));
        }
        if !url.contains("://")
            && url.split(';').any(|kv| {
                let k = kv.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
                k == "password" || k == "pwd"
            })
        {
            // The daemon redacts passwords in URLs, not inside ADO connection strings.
            return Err(Error::bad_request(
                "url: leave the password out of an ADO connection string and set it as a secret: --set password=…",
            ));
        }
        config_of(props, DEFAULT_SCHEMA, "t").connection().map_err(|e| Error::bad_request(e.to_string()))?;
        Ok(())
    }

    fn check_task(&self, ds: &DataSource, cfg: &TaskConfig) -> Result<()> {
        refuse_columns(ds, cfg)
    }

    fn source_spec(&self, ds: &DataSource, _task: &str, cfg: &TaskConfig, table: &str) -> Result<SourceSpec> {
        refuse_columns(ds, cfg)?;
        let schema = cfg.source_schema.as_deref().unwrap_or(DEFAULT_SCHEMA);
        Ok(SourceSpec::Sqlserver(config(ds, schema, table)?))
    }

    async fn test(&self, ds: &DataSource, object: Option<&str>) -> Result<String> {
        let Some(object) = object else {
            return Err(Error::bad_request(
                "the SQL Server check runs against a table: add --object SCHEMA.TABLE (it checks the connection, credentials, CDC on the database and the table, SNAPSHOT isolation, permissions and the key)",
            ));
        };
        let (schema, table) = split_table(object);
        checked(SqlServerSource::new(format!("test-{}", ds.name), config(ds, schema, table)?)?).await?;
        Ok(format!(
            "connected to SQL Server; table {schema}.{table} is ready for CDC (CDC on, capture instance, SNAPSHOT isolation, permissions)"
        ))
    }

    async fn namespaces(&self, ds: &DataSource) -> Result<Vec<Namespace>> {
        let schemas = browse::list_schemas(&config(ds, DEFAULT_SCHEMA, "")?).await?;
        Ok(schemas.into_iter().map(|s| Namespace { name: s.name, objects: Some(s.tables) }).collect())
    }

    async fn objects(&self, ds: &DataSource, namespace: &str) -> Result<Vec<MetaObject>> {
        let tables = browse::list_tables(&config(ds, namespace, "")?, namespace).await?;
        Ok(tables
            .into_iter()
            .map(|t| MetaObject {
                detail: Some(if t.cdc {
                    "CDC on".to_string()
                } else {
                    "CDC off: EXEC sys.sp_cdc_enable_table first".to_string()
                }),
                name: t.name,
                kind: "table".into(),
                primary_key: t.primary_key,
                estimated_rows: t.estimated_rows,
                ..Default::default()
            })
            .collect())
    }

    async fn detail(&self, ds: &DataSource, namespace: &str, object: &str, _sample: usize) -> Result<MetaDetail> {
        let t = browse::table_detail(&config(ds, namespace, object)?, namespace, object).await?;
        let note = match (t.cdc, t.primary_key.is_empty()) {
            (false, _) => format!(
                "CDC is off for this table: EXEC sys.sp_cdc_enable_table @source_schema = N'{namespace}', @source_name = N'{object}', @role_name = NULL"
            ),
            (true, true) => "no primary key: rows are identified by the capture instance's unique index".to_string(),
            (true, false) => "upserted by the primary key".to_string(),
        };
        super::table_detail(ds, namespace, object, t.columns, t.primary_key, note)
    }
}

#[async_trait]
impl TaskSource for SqlServerSourceConfig {
    fn validate(&self) -> SyncResult<()> {
        SqlServerSourceConfig::validate(self)
    }

    fn is_table(&self) -> bool {
        true
    }

    async fn run(&self, spec: &TaskSpec, opts: &RunOptions) -> SyncResult<()> {
        run_table_source(spec, opts, SqlServerSource::new(&spec.name, self.clone())?).await
    }

    async fn preview(&self, _spec: &TaskSpec, limit: usize) -> Result<Preview> {
        let batch = browse::sample_rows(self, limit).await?;
        crate::preview::table_preview(&batch, format!("{}.{}", self.schema, self.table))
    }

    async fn verifier(&self, spec: &TaskSpec) -> Result<(Box<dyn TableVerifier>, String)> {
        let v = rtsync_source_sqlserver::verify::SqlServerVerifier::connect(self, &spec.name).await?;
        Ok((Box::new(v), format!("{}.{}", self.schema, self.table)))
    }

    /// CDC belongs to the DBA: nothing is dropped.
    async fn cleanup(&self, _app_id: &str) -> String {
        "; the table's CDC configuration on SQL Server was left as it is (it belongs to the DBA: EXEC sys.sp_cdc_disable_table to remove it)".to_string()
    }
}
