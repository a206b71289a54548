//! The connector registry: the one place in the control plane that knows which kinds of data
//! source exist and which code serves each.
//!
//! A kind plugs in with two implementations in its own file here, on top of its connector
//! crate:
//!
//! - [`Connector`], per data source type: checks a data source's properties, builds the
//!   source part of a task's spec from a data source and a task's configuration, `datasource
//!   test`, browsing (`meta namespaces|objects|detail`) and the lag a task's status shows.
//! - [`TaskSource`], on the connector's own configuration type (one variant of
//!   [`SourceSpec`]): builds and runs the pipeline of one attempt (pre-flight check →
//!   describe → mapping → sink mode, the check run once), `task preview`, `task verify`, and
//!   the clean-up on undeploy (a PostgreSQL slot).
//!
//! Adding a source means one file here, one variant of [`SourceSpec`] and one arm in
//! [`DsType::connector`] and [`SourceSpec::source`]. Nothing else in the control plane names a
//! kind.

mod kafka;
mod lakehouse;
mod mysql;
mod postgres;
mod sqlserver;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use rtsync_core::verify::TableVerifier;
use rtsync_core::{SyncError, SyncResult};
use rtsync_sink_lakehouse::LakehouseSinkConfig;
use rtsync_source_kafka::KafkaSourceConfig;
use rtsync_source_mysql::MySqlSourceConfig;
use rtsync_source_postgres::PostgresSourceConfig;
use rtsync_source_sqlserver::SqlServerSourceConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{DataSource, MetaDetail, MetaObject, Namespace, Preview, TaskConfig};
use crate::runner::RunOptions;
use crate::spec::TaskSpec;

/// A data source's properties.
pub type Props = BTreeMap<String, String>;

/// What the control plane asks of a kind of data source. Configuration, browsing and building
/// only: reading changes is the connector crate's `Source`.
#[async_trait]
pub trait Connector: Send + Sync {
    /// How messages name the kind: `Kafka`, `PostgreSQL`.
    fn label(&self) -> &'static str;

    /// Whether its data sources can be a task's source; a Lakehouse is a target only.
    fn is_source(&self) -> bool {
        true
    }

    /// Checks a new data source's properties, naming the first problem.
    fn validate(&self, ds_type: DsType, props: &Props) -> Result<()>;

    /// Checks a task's draft against a data source of this kind, without connecting.
    fn check_task(&self, ds: &DataSource, cfg: &TaskConfig) -> Result<()>;

    /// The source part of the spec of task `task` reading `table` of `ds`.
    fn source_spec(&self, ds: &DataSource, task: &str, cfg: &TaskConfig, table: &str) -> Result<SourceSpec>;

    /// `datasource test`: connects and says what is ready, or what is wrong.
    async fn test(&self, ds: &DataSource, object: Option<&str>) -> Result<String>;

    async fn namespaces(&self, ds: &DataSource) -> Result<Vec<Namespace>>;

    async fn objects(&self, ds: &DataSource, namespace: &str) -> Result<Vec<MetaObject>>;

    async fn detail(&self, ds: &DataSource, namespace: &str, object: &str, sample: usize) -> Result<MetaDetail>;

    /// Checks a task's start offset (`--start-offset`), for kinds that take one.
    fn check_start_offset(&self, _text: &str) -> Option<Result<()>> {
        None
    }

    /// The unit [`Connector::lag`] counts in (`messages`, `WAL bytes`), for the UI's lag chart
    /// and the status; None when the kind reports no lag.
    fn lag_unit(&self) -> Option<&'static str> {
        None
    }

    /// How far the source is ahead of the task's `position`, in the source's own unit; None
    /// when the source cannot say quickly.
    async fn lag(&self, _ds: &DataSource, _cfg: &TaskConfig, _position: Option<&str>) -> Option<i64> {
        None
    }
}

/// What a task's source configuration (a [`SourceSpec`] variant) does when the task runs.
#[async_trait]
pub trait TaskSource: Send + Sync {
    /// Names the first offending field.
    fn validate(&self) -> SyncResult<()>;

    /// A table source (CDC) maps every source column as it is and upserts by the table's key;
    /// otherwise the task's column mapping applies.
    fn is_table(&self) -> bool;

    /// One attempt: opens the source, builds the mapping and the sink, and runs until
    /// shutdown or an error.
    async fn run(&self, spec: &TaskSpec, opts: &RunOptions) -> SyncResult<()>;

    /// `task preview`: a sample read and mapped, nothing written.
    async fn preview(&self, spec: &TaskSpec, limit: usize) -> Result<Preview>;

    /// `task verify`: the source table's verifier and its name.
    async fn verifier(&self, spec: &TaskSpec) -> Result<(Box<dyn TableVerifier>, String)>;

    /// On undeploy: drops what the task made on the server; a note for the user's message.
    async fn cleanup(&self, _app_id: &str) -> String {
        String::new()
    }
}

/// The source of a task spec, by `type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceSpec {
    Kafka(KafkaSourceConfig),
    /// PostgreSQL, Aurora PostgreSQL and PolarDB PostgreSQL (one connector).
    #[serde(alias = "postgres", alias = "aurora-postgresql", alias = "polardb-postgresql")]
    Postgresql(PostgresSourceConfig),
    /// MySQL, Aurora MySQL, PolarDB MySQL and MariaDB (one connector).
    #[serde(alias = "mariadb", alias = "aurora-mysql", alias = "polardb-mysql")]
    Mysql(MySqlSourceConfig),
    /// SQL Server, Azure SQL and RDS SQL Server (one connector).
    #[serde(alias = "mssql")]
    Sqlserver(SqlServerSourceConfig),
}

impl SourceSpec {
    /// The connector code for this source.
    pub fn source(&self) -> &dyn TaskSource {
        match self {
            SourceSpec::Kafka(c) => c,
            SourceSpec::Postgresql(c) => c,
            SourceSpec::Mysql(c) => c,
            SourceSpec::Sqlserver(c) => c,
        }
    }

    /// CDC sources mirror a table: every source column is mapped, upserts by primary key.
    pub fn is_table(&self) -> bool {
        self.source().is_table()
    }
}

/// The connector of `ds_type`, or why this build has none.
pub fn of(ds_type: DsType) -> Result<&'static dyn Connector> {
    ds_type.connector().ok_or_else(|| {
        let available: Vec<&str> =
            DsType::ALL.iter().filter(|t| t.connector().is_some_and(|c| c.is_source())).map(|t| t.name()).collect();
        Error::bad_request(format!(
            "the {label} connector is not available in this rtsync build yet: {ds_type} data sources can be stored and configured, but not tested, browsed, previewed or deployed; available: {available}",
            label = ds_type.label(),
            available = available.join(", ")
        ))
    })
}

/// Checks a start offset before the task's source is known: valid when a kind that takes
/// start offsets accepts it.
pub fn check_start_offset(text: &str) -> Result<()> {
    let mut first_err = None;
    for t in DsType::ALL {
        match t.connector().and_then(|c| c.check_start_offset(text)) {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The connector of a data source that must be a task's source.
pub fn source_of(ds: &DataSource) -> Result<&'static dyn Connector> {
    let c = of(ds.ds_type)?;
    if !c.is_source() {
        return Err(Error::bad_request(format!(
            "data source {:?} is a {}: it can be the target (--sink), not the source",
            ds.name, ds.ds_type
        )));
    }
    Ok(c)
}

/// A data source type as `GET /api/v1/datasource-types` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TypeInfo {
    #[serde(rename = "type")]
    pub name: String,
    pub ds_type: i64,
    pub label: String,
    /// Whether this build has its connector (a type without one can be stored only).
    pub available: bool,
    /// Whether its data sources can be a task's source (else: a target).
    pub source: bool,
    /// The unit a task's lag is in for this kind (`messages`), when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_unit: Option<String>,
}

/// Every data source type, in the registry's order.
pub fn types() -> Vec<TypeInfo> {
    DsType::ALL
        .iter()
        .map(|t| TypeInfo {
            name: t.name().to_string(),
            ds_type: t.id(),
            label: t.label().to_string(),
            available: t.connector().is_some(),
            source: t.connector().is_none_or(|c| c.is_source()),
            lag_unit: t.connector().and_then(|c| c.lag_unit()).map(str::to_string),
        })
        .collect()
}

/// The data source type tasks write to, and the one created on the first start.
pub const TARGET_TYPE: DsType = DsType::Lakehouse;

/// The properties of the target data source created on the first start.
pub fn default_target_props(root: &str) -> Props {
    lakehouse::props(root)
}

/// The sink configuration for `schema.table` of a target data source.
pub fn target_config(ds: &DataSource, schema: &str, table: &str) -> Result<LakehouseSinkConfig> {
    lakehouse::sink_config(ds, schema, table)
}

/// Checks that `ds` can be a task's target.
pub fn check_target(ds: &DataSource) -> Result<()> {
    lakehouse::root(ds).map(|_| ())
}

/// Checks a database URL: present and with one of `schemes`.
fn validate_url(ds_type: DsType, props: &Props, schemes: &[&str], example: &str) -> Result<()> {
    let Some(url) = props.get(URL).map(|s| s.trim()).filter(|s| !s.is_empty()) else {
        return Err(Error::bad_request(format!("a {ds_type} data source needs url (e.g. --set url={example})")));
    };
    let scheme = url.split("://").next().unwrap_or("").to_ascii_lowercase();
    if !url.contains("://") || !schemes.contains(&scheme.as_str()) {
        return Err(Error::bad_request(format!(
            "url {:?} is not a {ds_type} URL (e.g. {example})",
            crate::model::redact_url(url)
        )));
    }
    Ok(())
}

/// How long a status waits for a source's lag before leaving it out.
const LAG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A database table's detail: each column's source type next to the Delta type it becomes,
/// and the key rows are merged by.
fn table_detail(
    ds: &DataSource,
    namespace: &str,
    object: &str,
    columns: Vec<rtsync_core::ColumnSummary>,
    key: Vec<String>,
    note: String,
) -> Result<MetaDetail> {
    use rtsync_core::arrow::datatypes::{Field, Schema};
    let schema = std::sync::Arc::new(Schema::new(
        columns.iter().map(|c| Field::new(&c.name, c.target_type.clone(), true)).collect::<Vec<_>>(),
    ));
    let delta: std::collections::HashMap<String, String> =
        rtsync_sink_lakehouse::delta_types(&schema)?.into_iter().collect();
    Ok(MetaDetail {
        datasource: ds.name.clone(),
        namespace: namespace.to_string(),
        object: object.to_string(),
        kind: "table".into(),
        columns: columns
            .into_iter()
            .map(|c| crate::model::MetaColumn {
                ty: delta.get(&c.name).cloned().unwrap_or_else(|| c.target_type.to_string()),
                source_type: Some(c.source_type),
                nullable: c.nullable,
                name: c.name,
                ..Default::default()
            })
            .collect(),
        primary_key: key,
        note: Some(note),
        ..Default::default()
    })
}

/// A database data source's `url`.
pub const URL: &str = "url";

/// Refuses column mappings for a table source.
fn refuse_columns(ds: &DataSource, cfg: &TaskConfig) -> Result<()> {
    if cfg.columns.is_empty() {
        return Ok(());
    }
    Err(Error::bad_request(format!(
        "--column: data source {} is {}, a table source: every source column is mapped to the target as it is (new source columns are added); drop the --column arguments, or add --clear-columns",
        ds.name, ds.ds_type
    )))
}

/// Runs a connector's pre-flight check and closes it.
async fn checked<S: rtsync_core::Source>(mut source: S) -> SyncResult<()> {
    let checked = source.check().await;
    let _ = source.close().await;
    checked
}

/// Maps a connector's error for the API (one mapping for the control plane:
/// [`Error::from`]).
fn api_err(err: SyncError) -> Error {
    Error::from(err)
}

/// A data source's type, with the seed's `ds_type` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DsType {
    Lakehouse,
    Kafka,
    Mysql,
    Postgresql,
    Sqlserver,
    AuroraMysql,
    AuroraPostgresql,
    PolardbMysql,
    PolardbPostgresql,
}

impl DsType {
    pub const ALL: [DsType; 9] = [
        DsType::Lakehouse,
        DsType::Kafka,
        DsType::Mysql,
        DsType::Postgresql,
        DsType::Sqlserver,
        DsType::AuroraMysql,
        DsType::AuroraPostgresql,
        DsType::PolardbMysql,
        DsType::PolardbPostgresql,
    ];

    pub fn id(self) -> i64 {
        match self {
            DsType::Lakehouse => 1,
            DsType::Kafka => 2,
            DsType::Mysql => 5,
            DsType::Postgresql => 7,
            DsType::Sqlserver => 8,
            DsType::PolardbMysql => 19,
            DsType::AuroraMysql => 39,
            DsType::AuroraPostgresql => 40,
            DsType::PolardbPostgresql => 48,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DsType::Lakehouse => "lakehouse",
            DsType::Kafka => "kafka",
            DsType::Mysql => "mysql",
            DsType::Postgresql => "postgresql",
            DsType::Sqlserver => "sqlserver",
            DsType::AuroraMysql => "aurora-mysql",
            DsType::AuroraPostgresql => "aurora-postgresql",
            DsType::PolardbMysql => "polardb-mysql",
            DsType::PolardbPostgresql => "polardb-postgresql",
        }
    }

    pub fn from_id(id: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    /// How messages name the type's kind.
    pub fn label(self) -> &'static str {
        match self.connector() {
            Some(c) => c.label(),
            None => match self {
                DsType::Sqlserver => "SQL Server",
                other => other.name(),
            },
        }
    }

    /// The connector that serves this type: the one place a type is matched to its code.
    pub fn connector(self) -> Option<&'static dyn Connector> {
        match self {
            DsType::Lakehouse => Some(&lakehouse::Lakehouse),
            DsType::Kafka => Some(&kafka::Kafka),
            DsType::Mysql | DsType::AuroraMysql | DsType::PolardbMysql => Some(&mysql::MySql),
            DsType::Postgresql | DsType::AuroraPostgresql | DsType::PolardbPostgresql => Some(&postgres::Postgres),
            DsType::Sqlserver => Some(&sqlserver::SqlServer),
        }
    }

    fn names_list() -> String {
        Self::ALL.iter().map(|t| format!("{} ({})", t.name(), t.id())).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for DsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DsType {
    type Err = Error;

    /// A name (`kafka`, `aurora-mysql`, `aurora_mysql`, `postgres`) or a `ds_type` number.
    fn from_str(text: &str) -> Result<Self> {
        let t = text.trim().to_ascii_lowercase().replace('_', "-");
        if let Ok(id) = t.parse::<i64>() {
            return Self::from_id(id)
                .ok_or_else(|| Error::bad_request(format!("unknown ds_type {id}; known: {}", Self::names_list())));
        }
        let alias = match t.as_str() {
            "postgres" | "pg" => "postgresql",
            "mssql" | "sql-server" => "sqlserver",
            "delta" => "lakehouse",
            "aurora-pg" | "aurora-postgres" => "aurora-postgresql",
            "polardb-pg" | "polardb-postgres" => "polardb-postgresql",
            other => other,
        };
        Self::ALL.into_iter().find(|d| d.name() == alias).ok_or_else(|| {
            Error::bad_request(format!("unknown data source type {text:?}; known: {}", Self::names_list()))
        })
    }
}
