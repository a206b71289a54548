//! The HTTP JSON API (reference: `docs/api.md`). Every route maps to one [`Control`] method;
//! errors answer `{"error": {"code", "message"}}` with the status of their [`crate::error::Code`].

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::alerts::{AlertDetail, AlertEvent, AlertRule, AlertTestResult, CreateAlert};
use crate::connectors::TypeInfo;
use crate::error::{Code, Error, Result};
use crate::guard::Guard;
use crate::http::ErrorBody;
use crate::http::{Handler, Request, Response};
use crate::model::{
    ActionResult, AttemptLog, ConfigPatch, CreateDataSource, CreateFolder, CreateTask, CreateVCluster, DataSource,
    Folder, MetaDetail, MetaObject, Namespace, OptimizeResult, Preview, Run, RunDetail, TableInfo, Task, TaskDetail,
    TestResult, VCluster, VacuumRequest, VacuumResult, Version, Worker,
};
use crate::service::Control;
use crate::verify::VerifyReport;
use crate::{meta, metrics, openapi, preview};

pub const API_PREFIX: [&str; 2] = ["api", "v1"];

pub struct Api {
    pub control: Arc<Control>,
    /// When set, every request but the probes (`GET /health`, `GET /ready`) and the web UI's
    /// page must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Refuses foreign `Host`s, other sites' pages and non-JSON writes; checked first.
    pub guard: Guard,
}

/// The metrics listener (`serve --metrics-listen`): `/metrics` and `/health` only, without
/// the token, for a scraper inside the cluster.
pub struct MetricsOnly {
    pub control: Arc<Control>,
}

impl Handler for MetricsOnly {
    async fn handle(&self, req: Request) -> Response {
        let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
        match (req.method.as_str(), path.as_slice()) {
            ("GET", ["metrics"]) => metrics(&self.control).await,
            ("GET", ["health"]) => health(),
            (m, _) => Response::error(&Error::not_found(format!(
                "no route {m} /{} on the metrics port: it serves GET /metrics",
                path.join("/")
            ))),
        }
    }
}

/// `GET /health`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    /// The daemon's version.
    pub version: String,
}

/// `GET /ready`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: String,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request's JSON body; an empty body is `{}` (the defaults, where the body has them).
fn body<T: DeserializeOwned>(req: &Request) -> Result<T> {
    let bytes: &[u8] = if req.body.is_empty() { b"{}" } else { &req.body };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::bad_request(format!("request body: {e}")))?;
    // serde would also fill a struct from an array of its fields in order: only objects are bodies.
    if !value.is_object() {
        return Err(Error::bad_request(format!(
            "request body: expected a JSON object, got {}",
            match value {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Null => "null",
                _ => "a boolean",
            }
        )));
    }
    serde_json::from_value(value).map_err(|e| Error::bad_request(format!("request body: {e}")))
}

/// The web UI: one page over this API (tasks with status, throughput and freshness charts,
/// the column mapping with JSONPath computed columns and a live preview, runs and attempt logs,
/// data sources with metadata browsing, vclusters).
const UI: &str = include_str!("ui.html");

fn ok<T: serde::Serialize>(value: Result<T>) -> Response {
    match value {
        Ok(v) => Response::json(200, &v),
        Err(e) => Response::error(&e),
    }
}

fn created<T: serde::Serialize>(value: Result<T>) -> Response {
    match value {
        Ok(v) => Response::json(201, &v),
        Err(e) => Response::error(&e),
    }
}

fn no_content(value: Result<()>) -> Response {
    match value {
        Ok(()) => Response::empty(204),
        Err(e) => Response::error(&e),
    }
}

fn int_query(req: &Request, key: &str) -> Result<Option<i64>> {
    req.query(key)
        .map(|v| {
            v.parse::<i64>().map_err(|_| Error::bad_request(format!("query parameter {key}={v:?} is not a number")))
        })
        .transpose()
}

fn parse_id(text: &str, what: &str) -> Result<i64> {
    text.parse().map_err(|_| Error::bad_request(format!("{what} {text:?} is not a number")))
}

impl Handler for Api {
    async fn handle(&self, req: Request) -> Response {
        let started = std::time::Instant::now();
        let mut response = match self.guard.preflight(&req) {
            Some(answer) => answer,
            None => match self.guard.check(&req) {
                Ok(()) => self.route(&req).await,
                // A write to a path that does not take this method changes nothing: the router
                // answers it (405 with Allow, or 404) rather than the body-type check.
                Err(e) if e.code == Code::UnsupportedMediaType && !documented(&req) => self.route(&req).await,
                Err(e) => {
                    tracing::warn!(method = %req.method, path = %req.path.join("/"), reason = %e, "request refused");
                    Response::error(&e)
                }
            },
        };
        response.headers.extend(self.guard.cors_headers(&req));
        tracing::debug!(method = %req.method, path = %req.path.join("/"), status = response.status, ms = started.elapsed().as_millis() as u64, "api request");
        response
    }
}

impl Api {
    async fn route(&self, req: &Request) -> Response {
        let c = &self.control;
        let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
        let m = req.method.as_str();
        let open = m == "GET" && matches!(path.as_slice(), ["health"] | ["ready"] | [] | ["ui", ..]);
        if let Some(token) = &self.token
            && !open
        {
            match &req.bearer {
                Some(given) if same_secret(given, token) => {}
                Some(_) => {
                    return Response::error(&Error::new(Code::Unauthorized, "the token is wrong for this daemon"));
                }
                None => {
                    return Response::error(&Error::new(
                        Code::Unauthorized,
                        "this daemon requires a token: pass --token or set RTSYNC_TOKEN (HTTP: Authorization: Bearer <token>)",
                    ));
                }
            }
        }
        match (m, path.as_slice()) {
            ("GET", ["health"]) => health(),
            ("GET", ["ready"]) => ready(c),
            ("GET", [] | ["ui", ..]) => web_ui(),
            ("GET", ["metrics"]) => metrics(c).await,
            _ if path.len() >= 2 && path[..2] == API_PREFIX => self.route_v1(m, &path[2..], req).await,
            _ => no_route(m, &path),
        }
    }

    async fn route_v1(&self, m: &str, path: &[&str], req: &Request) -> Response {
        let c = &self.control;
        match (m, path) {
            ("GET", ["openapi.json"]) => openapi_document(),
            // data sources
            ("GET", ["datasource-types"]) => datasource_types(),
            ("GET", ["datasources"]) => list_datasources(c, req).await,
            ("POST", ["datasources"]) => create_datasource(c, req).await,
            ("GET", ["datasources", name]) => show_datasource(c, name).await,
            ("DELETE", ["datasources", name]) => delete_datasource(c, name).await,
            ("POST", ["datasources", name, "test"]) => test_datasource(c, req, name).await,
            ("GET", ["datasources", ds, "tables", schema, table]) => table_info(c, ds, schema, table).await,
            ("POST", ["datasources", ds, "tables", schema, table, "upgrade"]) => {
                upgrade_table(c, ds, schema, table).await
            }
            ("POST", ["datasources", ds, "tables", schema, table, "optimize"]) => {
                optimize_table(c, ds, schema, table).await
            }
            ("POST", ["datasources", ds, "tables", schema, table, "vacuum"]) => {
                vacuum_table(c, req, ds, schema, table).await
            }
            ("GET", ["datasources", ds, "namespaces"]) => namespaces(c, ds).await,
            ("GET", ["datasources", ds, "namespaces", ns, "objects"]) => objects(c, ds, ns).await,
            ("GET", ["datasources", ds, "namespaces", ns, "objects", object]) => {
                object_detail(c, req, ds, ns, object).await
            }
            ("GET", ["workers"]) => workers(c).await,
            // alert rules and their alerts
            ("GET", ["alerts"]) => list_alerts(c).await,
            ("POST", ["alerts"]) => create_alert(c, req).await,
            ("GET", ["alerts", name]) => show_alert(c, name).await,
            ("DELETE", ["alerts", name]) => delete_alert(c, name).await,
            ("POST", ["alerts", name, "test"]) => test_alert(c, name).await,
            ("GET", ["alert-events"]) => alert_events(c, req).await,
            // vclusters and folders
            ("GET", ["vclusters"]) => list_vclusters(c).await,
            ("POST", ["vclusters"]) => create_vcluster(c, req).await,
            ("GET", ["vclusters", name]) => show_vcluster(c, name).await,
            ("DELETE", ["vclusters", name]) => delete_vcluster(c, name).await,
            ("GET", ["folders"]) => list_folders(c).await,
            ("POST", ["folders"]) => create_folder(c, req).await,
            ("DELETE", ["folders", name]) => delete_folder(c, name).await,
            // tasks
            ("GET", ["tasks"]) => list_tasks(c, req).await,
            ("POST", ["tasks"]) => create_task(c, req).await,
            ("GET", ["tasks", name]) => show_task(c, name).await,
            ("DELETE", ["tasks", name]) => delete_task(c, name).await,
            ("PATCH", ["tasks", name, "config"]) => configure_task(c, req, name).await,
            ("GET", ["tasks", name, "versions"]) => task_versions(c, name).await,
            ("POST", ["tasks", name, "preview"]) => preview_task(c, req, name).await,
            ("POST", ["tasks", name, "verify"]) => verify_task(c, name).await,
            ("POST", ["tasks", name, "deploy"]) => deploy_task(c, name).await,
            ("POST", ["tasks", name, "stop"]) => stop_task(c, name).await,
            ("POST", ["tasks", name, "start"]) => start_task(c, name).await,
            ("POST", ["tasks", name, "undeploy"]) => undeploy_task(c, name).await,
            ("GET", ["tasks", name, "runs"]) => task_runs(c, name).await,
            // runs and attempts
            ("GET", ["runs"]) => list_runs(c, req).await,
            ("GET", ["runs", id]) => show_run(c, id).await,
            ("GET", ["runs", id, "log"]) => run_log(c, req, id).await,
            ("GET", ["runs", id, "attempts", n, "log"]) => attempt_log(c, id, n).await,
            _ => {
                let full: Vec<&str> = API_PREFIX.iter().copied().chain(path.iter().copied()).collect();
                no_route(m, &full)
            }
        }
    }
}

/// No route for the request: `405` with `Allow` when the path exists (as the OpenAPI document
/// says), else `404`.
/// The document's paths and their methods.
static METHODS: std::sync::LazyLock<std::collections::BTreeMap<String, Vec<&'static str>>> =
    std::sync::LazyLock::new(openapi::methods_by_path);

/// Whether the OpenAPI document has the request's method on its path.
fn documented(req: &Request) -> bool {
    let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
    METHODS
        .iter()
        .any(|(template, methods)| openapi::template_matches(template, &path) && methods.contains(&req.method.as_str()))
}

fn no_route(method: &str, path: &[&str]) -> Response {
    let shown = format!("/{}", path.join("/"));
    let allowed: Vec<&str> = METHODS
        .iter()
        .filter(|(template, _)| openapi::template_matches(template, path))
        .flat_map(|(_, methods)| methods.iter().copied())
        .collect();
    if allowed.is_empty() || (path.first() == Some(&"ui")) {
        return Response::error(&Error::not_found(format!(
            "no route {method} {shown} (the API is under /api/v1, see docs/api.md and GET /api/v1/openapi.json)"
        )));
    }
    let mut allowed = allowed;
    allowed.sort_unstable();
    allowed.dedup();
    let list = allowed.join(", ");
    let mut answer = Response::error(&Error::new(
        Code::MethodNotAllowed,
        format!("{shown} does not answer {method}; it answers {list}"),
    ));
    answer.headers.push(("Allow", list));
    answer
}

// ---------------------------------------------------------------------------------------------
// The operations. Each handler's `#[utoipa::path]` is its entry in the OpenAPI document
// (`crate::openapi`); answers every operation may give (400, 401, 403, 415, 500) are added there.
// ---------------------------------------------------------------------------------------------

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The daemon answers", body = Health)))]
pub(crate) fn health() -> Response {
    Response::json(200, &Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// Readiness: the catalog is open and the deployed tasks resumed; a worker of a shared catalog
/// is ready while its lease rounds reach the catalog and it is not shutting down.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "The worker cannot reach the catalog, or is shutting down", body = Readiness),
    ))]
pub(crate) fn ready(c: &Control) -> Response {
    match &c.cluster {
        Some(cluster) if !cluster.is_ready() => Response::json(
            503,
            &Readiness {
                status: "not ready".into(),
                reason: Some("the worker cannot reach the catalog, or is shutting down".into()),
            },
        ),
        _ => Response::json(200, &Readiness { status: "ready".into(), reason: None }),
    }
}

/// Prometheus metrics (text format 0.0.4), one series per task.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(c: &Control) -> Response {
    match metrics::render(c).await {
        Ok(text) => Response::text(200, "text/plain; version=0.0.4", text),
        Err(e) => Response::error(&e),
    }
}

/// The web UI: one HTML page over this API (also under `/ui/…`).
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "The web UI's page", body = String, content_type = "text/html")))]
pub(crate) fn web_ui() -> Response {
    Response::text(200, "text/html; charset=utf-8", UI.to_string())
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
pub(crate) fn openapi_document() -> Response {
    Response::json(200, &openapi::document())
}

/// The data source types, from the connector registry.
#[utoipa::path(get, path = "/api/v1/datasource-types", tag = "datasources",
    responses((status = 200, description = "Every type", body = Vec<TypeInfo>)))]
pub(crate) fn datasource_types() -> Response {
    ok(Ok(crate::connectors::types()))
}

/// The data sources (secrets shown as `***`).
#[utoipa::path(get, path = "/api/v1/datasources", tag = "datasources",
    params(("type" = Option<String>, Query, description = "Only this type (a name or a ds_type number)")),
    responses(
        (status = 200, description = "The data sources", body = Vec<DataSource>),
        (status = 400, description = "Unknown type", body = ErrorBody),
    ))]
pub(crate) async fn list_datasources(c: &Control, req: &Request) -> Response {
    ok(c.datasources(req.query("type")).await)
}

/// Creates a data source.
#[utoipa::path(post, path = "/api/v1/datasources", tag = "datasources",
    request_body = CreateDataSource,
    responses(
        (status = 201, description = "Created", body = DataSource),
        (status = 400, description = "Invalid name, unknown type, a property missing or refused", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub(crate) async fn create_datasource(c: &Control, req: &Request) -> Response {
    match body::<CreateDataSource>(req) {
        Ok(b) => created(c.create_datasource(b).await),
        Err(e) => Response::error(&e),
    }
}

/// One data source (secrets shown as `***`).
#[utoipa::path(get, path = "/api/v1/datasources/{name}", tag = "datasources",
    params(("name" = String, Path, description = "The data source")),
    responses(
        (status = 200, description = "The data source", body = DataSource),
        (status = 404, description = "No such data source", body = ErrorBody),
    ))]
pub(crate) async fn show_datasource(c: &Control, name: &str) -> Response {
    ok(c.datasource(name).await)
}

/// Deletes a data source.
#[utoipa::path(delete, path = "/api/v1/datasources/{name}", tag = "datasources",
    params(("name" = String, Path, description = "The data source")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such data source", body = ErrorBody),
        (status = 409, description = "A task's draft or deployed version uses it", body = ErrorBody),
    ))]
pub(crate) async fn delete_datasource(c: &Control, name: &str) -> Response {
    no_content(c.delete_datasource(name).await)
}

/// Connects to a data source and says what is ready, or what is wrong.
#[utoipa::path(post, path = "/api/v1/datasources/{name}/test", tag = "datasources",
    params(
        ("name" = String, Path, description = "The data source"),
        ("object" = Option<String>, Query, description = "A topic, or `SCHEMA.TABLE`: run the connector's pre-flight check on it"),
    ),
    responses(
        (status = 200, description = "What was checked; `ok` false when something is wrong", body = TestResult),
        (status = 400, description = "The object is not valid for this kind, or the kind has no connector in this build", body = ErrorBody),
        (status = 404, description = "No such data source", body = ErrorBody),
        (status = 503, description = "The data source cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn test_datasource(c: &Control, req: &Request, name: &str) -> Response {
    ok(c.test_datasource(name, req.query("object")).await)
}

/// A Delta table's health.
#[utoipa::path(get, path = "/api/v1/datasources/{ds}/tables/{schema}/{table}", tag = "datasources",
    params(
        ("ds" = String, Path, description = "A Lakehouse data source", example = "lakehouse"),
        ("schema" = String, Path, description = "The table's schema", example = "public"),
        ("table" = String, Path, description = "The table", example = "orders"),
    ),
    responses(
        (status = 200, description = "The table's files, size and maintenance", body = TableInfo),
        (status = 400, description = "The data source is not a Lakehouse, or a name is not valid", body = ErrorBody),
        (status = 404, description = "No such data source or table", body = ErrorBody),
        (status = 503, description = "The storage cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn table_info(c: &Control, ds: &str, schema: &str, table: &str) -> Response {
    ok(c.table_info(ds, schema, table).await)
}

/// Turns on deletion vectors (merge-on-read) for a table.
#[utoipa::path(post, path = "/api/v1/datasources/{ds}/tables/{schema}/{table}/upgrade", tag = "datasources",
    params(
        ("ds" = String, Path, description = "A Lakehouse data source", example = "lakehouse"),
        ("schema" = String, Path, description = "The table's schema", example = "public"),
        ("table" = String, Path, description = "The table", example = "orders"),
    ),
    responses(
        (status = 200, description = "The table afterwards", body = TableInfo),
        (status = 400, description = "The data source is not a Lakehouse, or a name is not valid", body = ErrorBody),
        (status = 404, description = "No such data source or table", body = ErrorBody),
        (status = 409, description = "A running task writes the table", body = ErrorBody),
        (status = 503, description = "The storage cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn upgrade_table(c: &Control, ds: &str, schema: &str, table: &str) -> Response {
    ok(c.upgrade_table(ds, schema, table).await)
}

/// Compacts a table's small files.
#[utoipa::path(post, path = "/api/v1/datasources/{ds}/tables/{schema}/{table}/optimize", tag = "datasources",
    params(
        ("ds" = String, Path, description = "A Lakehouse data source", example = "lakehouse"),
        ("schema" = String, Path, description = "The table's schema", example = "public"),
        ("table" = String, Path, description = "The table", example = "orders"),
    ),
    responses(
        (status = 200, description = "What the compaction did", body = OptimizeResult),
        (status = 400, description = "The data source is not a Lakehouse, or a name is not valid", body = ErrorBody),
        (status = 404, description = "No such data source or table", body = ErrorBody),
        (status = 409, description = "The table changed during the compaction", body = ErrorBody),
        (status = 503, description = "The storage cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn optimize_table(c: &Control, ds: &str, schema: &str, table: &str) -> Response {
    ok(c.optimize_table(ds, schema, table).await)
}

/// Deletes the files a table no longer references, older than the retention.
#[utoipa::path(post, path = "/api/v1/datasources/{ds}/tables/{schema}/{table}/vacuum", tag = "datasources",
    params(
        ("ds" = String, Path, description = "A Lakehouse data source", example = "lakehouse"),
        ("schema" = String, Path, description = "The table's schema", example = "public"),
        ("table" = String, Path, description = "The table", example = "orders"),
    ),
    request_body(content = VacuumRequest, description = "Options; an empty body takes the defaults"),
    responses(
        (status = 200, description = "The files deleted (or that would be, with dry_run)", body = VacuumResult),
        (status = 400, description = "Not a Lakehouse, a name is not valid, or a bad retention", body = ErrorBody),
        (status = 404, description = "No such data source or table", body = ErrorBody),
        (status = 503, description = "The storage cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn vacuum_table(c: &Control, req: &Request, ds: &str, schema: &str, table: &str) -> Response {
    match body::<VacuumRequest>(req) {
        Ok(b) => ok(c.vacuum_table(ds, schema, table, b).await),
        Err(e) => Response::error(&e),
    }
}

/// A data source's namespaces (Kafka: `default`; databases: schemas or databases).
#[utoipa::path(get, path = "/api/v1/datasources/{ds}/namespaces", tag = "datasources",
    params(("ds" = String, Path, description = "The data source", example = "lakehouse")),
    responses(
        (status = 200, description = "The namespaces", body = Vec<Namespace>),
        (status = 400, description = "The kind has no connector in this build", body = ErrorBody),
        (status = 404, description = "No such data source", body = ErrorBody),
        (status = 503, description = "The data source cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn namespaces(c: &Control, ds: &str) -> Response {
    ok(c.namespaces(ds).await)
}

/// The topics or tables of a namespace.
#[utoipa::path(get, path = "/api/v1/datasources/{ds}/namespaces/{ns}/objects", tag = "datasources",
    params(
        ("ds" = String, Path, description = "The data source", example = "lakehouse"),
        ("ns" = String, Path, description = "The namespace", example = "public"),
    ),
    responses(
        (status = 200, description = "The objects", body = Vec<MetaObject>),
        (status = 400, description = "Not a namespace of this kind, or the kind has no connector in this build", body = ErrorBody),
        (status = 404, description = "No such data source or namespace", body = ErrorBody),
        (status = 503, description = "The data source cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn objects(c: &Control, ds: &str, ns: &str) -> Response {
    ok(c.objects(ds, ns).await)
}

/// A topic's inferred fields or a table's columns.
#[utoipa::path(get, path = "/api/v1/datasources/{ds}/namespaces/{ns}/objects/{object}", tag = "datasources",
    params(
        ("ds" = String, Path, description = "The data source", example = "lakehouse"),
        ("ns" = String, Path, description = "The namespace", example = "public"),
        ("object" = String, Path, description = "The topic or table", example = "orders"),
        ("sample" = Option<i64>, Query, description = "Kafka: how many of the newest messages to infer fields from (default 100)"),
    ),
    responses(
        (status = 200, description = "The object's columns", body = MetaDetail),
        (status = 400, description = "A bad sample, or the kind has no connector in this build", body = ErrorBody),
        (status = 404, description = "No such data source, namespace or object", body = ErrorBody),
        (status = 503, description = "The data source cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn object_detail(c: &Control, req: &Request, ds: &str, ns: &str, object: &str) -> Response {
    let sample = match int_query(req, "sample") {
        Ok(s) => s.map_or(meta::DEFAULT_SAMPLE, |s| s.max(1) as usize),
        Err(e) => return Response::error(&e),
    };
    ok(c.object_detail(ds, ns, object, sample).await)
}

/// The `rtsync serve` processes of the catalog.
#[utoipa::path(get, path = "/api/v1/workers", tag = "clusters",
    responses((status = 200, description = "The workers", body = Vec<Worker>)))]
pub(crate) async fn workers(c: &Control) -> Response {
    ok(c.workers().await)
}

/// The alert rules (secrets shown as `***`).
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    responses((status = 200, description = "The rules", body = Vec<AlertRule>)))]
pub(crate) async fn list_alerts(c: &Control) -> Response {
    ok(c.alerts().await)
}

/// Creates an alert rule.
#[utoipa::path(post, path = "/api/v1/alerts", tag = "alerts",
    request_body = CreateAlert,
    responses(
        (status = 201, description = "Created", body = AlertRule),
        (status = 400, description = "A bad name, condition, duration, scope or URL", body = ErrorBody),
        (status = 404, description = "No such task, folder or vcluster", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub(crate) async fn create_alert(c: &Control, req: &Request) -> Response {
    match body::<CreateAlert>(req) {
        Ok(b) => created(c.create_alert(b).await),
        Err(e) => Response::error(&e),
    }
}

/// A rule and its last 100 alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alerts/{name}", tag = "alerts",
    params(("name" = String, Path, description = "The rule")),
    responses(
        (status = 200, description = "The rule and its alerts", body = AlertDetail),
        (status = 404, description = "No such rule", body = ErrorBody),
    ))]
pub(crate) async fn show_alert(c: &Control, name: &str) -> Response {
    ok(c.alert(name).await)
}

/// Deletes a rule and its alerts' history.
#[utoipa::path(delete, path = "/api/v1/alerts/{name}", tag = "alerts",
    params(("name" = String, Path, description = "The rule")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such rule", body = ErrorBody),
    ))]
pub(crate) async fn delete_alert(c: &Control, name: &str) -> Response {
    no_content(c.delete_alert(name).await)
}

/// Sends a test notification to the rule's webhook (or logs it).
#[utoipa::path(post, path = "/api/v1/alerts/{name}/test", tag = "alerts",
    params(("name" = String, Path, description = "The rule")),
    responses(
        (status = 200, description = "What the webhook answered", body = AlertTestResult),
        (status = 404, description = "No such rule", body = ErrorBody),
        (status = 503, description = "The webhook did not take it", body = ErrorBody),
    ))]
pub(crate) async fn test_alert(c: &Control, name: &str) -> Response {
    ok(c.test_alert(name).await)
}

/// Alerts, newest first.
#[utoipa::path(get, path = "/api/v1/alert-events", tag = "alerts",
    params(("state" = Option<String>, Query, description = "`firing`: only the alerts that fire now")),
    responses((status = 200, description = "The alerts", body = Vec<AlertEvent>)))]
pub(crate) async fn alert_events(c: &Control, req: &Request) -> Response {
    ok(c.alert_events(req.query("state") == Some("firing")).await)
}

/// The vclusters, with their slot usage.
#[utoipa::path(get, path = "/api/v1/vclusters", tag = "clusters",
    responses((status = 200, description = "The vclusters", body = Vec<VCluster>)))]
pub(crate) async fn list_vclusters(c: &Control) -> Response {
    ok(c.vclusters().await)
}

/// Creates a vcluster.
#[utoipa::path(post, path = "/api/v1/vclusters", tag = "clusters",
    request_body = CreateVCluster,
    responses(
        (status = 201, description = "Created", body = VCluster),
        (status = 400, description = "A bad name, type or slot count", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub(crate) async fn create_vcluster(c: &Control, req: &Request) -> Response {
    match body::<CreateVCluster>(req) {
        Ok(b) => created(c.create_vcluster(b).await),
        Err(e) => Response::error(&e),
    }
}

/// One vcluster.
#[utoipa::path(get, path = "/api/v1/vclusters/{name}", tag = "clusters",
    params(("name" = String, Path, description = "The vcluster")),
    responses(
        (status = 200, description = "The vcluster", body = VCluster),
        (status = 404, description = "No such vcluster", body = ErrorBody),
    ))]
pub(crate) async fn show_vcluster(c: &Control, name: &str) -> Response {
    ok(c.vcluster(name).await)
}

/// Deletes a vcluster.
#[utoipa::path(delete, path = "/api/v1/vclusters/{name}", tag = "clusters",
    params(("name" = String, Path, description = "The vcluster")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such vcluster", body = ErrorBody),
        (status = 409, description = "Tasks run on it", body = ErrorBody),
    ))]
pub(crate) async fn delete_vcluster(c: &Control, name: &str) -> Response {
    no_content(c.delete_vcluster(name).await)
}

/// The folders, with their task counts.
#[utoipa::path(get, path = "/api/v1/folders", tag = "clusters",
    responses((status = 200, description = "The folders", body = Vec<Folder>)))]
pub(crate) async fn list_folders(c: &Control) -> Response {
    ok(c.folders().await)
}

/// Creates a folder.
#[utoipa::path(post, path = "/api/v1/folders", tag = "clusters",
    request_body = CreateFolder,
    responses(
        (status = 201, description = "Created", body = Folder),
        (status = 400, description = "A bad name", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub(crate) async fn create_folder(c: &Control, req: &Request) -> Response {
    match body::<CreateFolder>(req) {
        Ok(b) => created(c.create_folder(b).await),
        Err(e) => Response::error(&e),
    }
}

/// Deletes a folder.
#[utoipa::path(delete, path = "/api/v1/folders/{name}", tag = "clusters",
    params(("name" = String, Path, description = "The folder")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such folder", body = ErrorBody),
        (status = 409, description = "It holds tasks", body = ErrorBody),
    ))]
pub(crate) async fn delete_folder(c: &Control, name: &str) -> Response {
    no_content(c.delete_folder(name).await)
}

/// The tasks.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks",
    params(("folder" = Option<String>, Query, description = "Only the tasks of this folder")),
    responses(
        (status = 200, description = "The tasks", body = Vec<Task>),
        (status = 404, description = "No such folder", body = ErrorBody),
    ))]
pub(crate) async fn list_tasks(c: &Control, req: &Request) -> Response {
    ok(c.tasks(req.query("folder")).await)
}

/// Creates a task (its draft is empty: configure it next).
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks",
    request_body = CreateTask,
    responses(
        (status = 201, description = "Created", body = Task),
        (status = 400, description = "A bad name, or a task type rtsync does not run", body = ErrorBody),
        (status = 404, description = "No such folder", body = ErrorBody),
        (status = 409, description = "The name is taken, or the vcluster is missing or not SYNC", body = ErrorBody),
    ))]
pub(crate) async fn create_task(c: &Control, req: &Request) -> Response {
    match body::<CreateTask>(req) {
        Ok(b) => created(c.create_task(b).await),
        Err(e) => Response::error(&e),
    }
}

/// A task, its deployed version and its live status.
#[utoipa::path(get, path = "/api/v1/tasks/{name}", tag = "tasks",
    params(("name" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "The task", body = TaskDetail),
        (status = 404, description = "No such task", body = ErrorBody),
    ))]
pub(crate) async fn show_task(c: &Control, name: &str) -> Response {
    ok(c.task_detail(name).await)
}

/// Deletes a task that is not deployed.
#[utoipa::path(delete, path = "/api/v1/tasks/{name}", tag = "tasks",
    params(("name" = String, Path, description = "The task")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "It is deployed", body = ErrorBody),
    ))]
pub(crate) async fn delete_task(c: &Control, name: &str) -> Response {
    no_content(c.delete_task(name).await)
}

/// Changes the task's draft; validated before it is saved (`{}` re-validates it as it is).
#[utoipa::path(patch, path = "/api/v1/tasks/{name}/config", tag = "tasks",
    params(("name" = String, Path, description = "The task")),
    request_body = ConfigPatch,
    responses(
        (status = 200, description = "The task with its new draft", body = Task),
        (status = 400, description = "A field is not valid: a column that does not compile, a data source of the wrong role, a bad start offset", body = ErrorBody),
        (status = 404, description = "No such task, data source or vcluster", body = ErrorBody),
        (status = 409, description = "The vcluster cannot take the task", body = ErrorBody),
    ))]
pub(crate) async fn configure_task(c: &Control, req: &Request, name: &str) -> Response {
    match body::<ConfigPatch>(req) {
        Ok(patch) => ok(c.configure(name, patch).await),
        Err(e) => Response::error(&e),
    }
}

/// The task's published versions.
#[utoipa::path(get, path = "/api/v1/tasks/{name}/versions", tag = "tasks",
    params(("name" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "The versions", body = Vec<Version>),
        (status = 404, description = "No such task", body = ErrorBody),
    ))]
pub(crate) async fn task_versions(c: &Control, name: &str) -> Response {
    ok(c.versions(name).await)
}

/// The draft's mapping applied to the first messages or rows of its source.
#[utoipa::path(post, path = "/api/v1/tasks/{name}/preview", tag = "tasks",
    params(
        ("name" = String, Path, description = "The task"),
        ("limit" = Option<i64>, Query, description = "Rows to show (default 10, at most 1000)"),
    ),
    responses(
        (status = 200, description = "Mapped rows and rejected records", body = Preview),
        (status = 400, description = "The draft is incomplete or not valid, or a bad limit", body = ErrorBody),
        (status = 404, description = "No such task, data source, topic or table", body = ErrorBody),
        (status = 503, description = "The source cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn preview_task(c: &Control, req: &Request, name: &str) -> Response {
    let limit = match int_query(req, "limit") {
        Ok(l) => l.map_or(preview::DEFAULT_LIMIT, |l| l.max(1) as usize),
        Err(e) => return Response::error(&e),
    };
    ok(c.preview(name, limit).await)
}

/// Compares a database task's source table with its Delta table.
#[utoipa::path(post, path = "/api/v1/tasks/{name}/verify", tag = "tasks",
    params(("name" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "The comparison (whether or not the tables are equal)", body = VerifyReport),
        (status = 400, description = "A Kafka task, or not deployed", body = ErrorBody),
        (status = 404, description = "No such task, or its table does not exist yet", body = ErrorBody),
        (status = 409, description = "The task is not deployed", body = ErrorBody),
        (status = 503, description = "The source or the storage cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn verify_task(c: &Control, name: &str) -> Response {
    ok(c.verify(name).await)
}

/// Publishes the draft as the next version and starts a run.
#[utoipa::path(post, path = "/api/v1/tasks/{name}/deploy", tag = "tasks",
    params(("name" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "What happened, and the task afterwards", body = ActionResult),
        (status = 400, description = "The draft is incomplete or not valid", body = ErrorBody),
        (status = 404, description = "No such task or data source", body = ErrorBody),
        (status = 409, description = "No SYNC vcluster or no free slot, or running with the same draft", body = ErrorBody),
        (status = 503, description = "The catalog cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn deploy_task(c: &Control, name: &str) -> Response {
    ok(c.deploy(name).await)
}

/// Commits what the task holds and ends the run; the position is kept.
#[utoipa::path(post, path = "/api/v1/tasks/{name}/stop", tag = "tasks",
    params(("name" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "What happened, and the task afterwards", body = ActionResult),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "Not deployed, or not running", body = ErrorBody),
    ))]
pub(crate) async fn stop_task(c: &Control, name: &str) -> Response {
    ok(c.stop(name).await)
}

/// Starts a new run of the deployed version of a stopped or failed task.
#[utoipa::path(post, path = "/api/v1/tasks/{name}/start", tag = "tasks",
    params(("name" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "What happened, and the task afterwards", body = ActionResult),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "Not deployed, already running, or no free slot", body = ErrorBody),
        (status = 503, description = "The catalog cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn start_task(c: &Control, name: &str) -> Response {
    ok(c.start(name).await)
}

/// Stops the task, ends the run and forgets the position.
#[utoipa::path(post, path = "/api/v1/tasks/{name}/undeploy", tag = "tasks",
    params(("name" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "What happened, and the task afterwards", body = ActionResult),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "Not deployed", body = ErrorBody),
        (status = 503, description = "The source (a PostgreSQL slot to drop) cannot be reached", body = ErrorBody),
    ))]
pub(crate) async fn undeploy_task(c: &Control, name: &str) -> Response {
    ok(c.undeploy(name).await)
}

/// The task's runs, newest first.
#[utoipa::path(get, path = "/api/v1/tasks/{name}/runs", tag = "runs",
    params(("name" = String, Path, description = "The task")),
    responses(
        (status = 200, description = "The runs", body = Vec<Run>),
        (status = 404, description = "No such task", body = ErrorBody),
    ))]
pub(crate) async fn task_runs(c: &Control, name: &str) -> Response {
    ok(c.runs(name).await)
}

/// A task's runs, newest first.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs",
    params(("task" = String, Query, description = "The task")),
    responses(
        (status = 200, description = "The runs", body = Vec<Run>),
        (status = 400, description = "No task named", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
    ))]
pub(crate) async fn list_runs(c: &Control, req: &Request) -> Response {
    match req.query("task") {
        Some(t) => ok(c.runs(t).await),
        None => Response::error(&Error::bad_request("GET /api/v1/runs needs ?task=NAME")),
    }
}

/// A run and its attempts.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "The run")),
    responses(
        (status = 200, description = "The run and its attempts", body = RunDetail),
        (status = 400, description = "The id is not a number", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
    ))]
pub(crate) async fn show_run(c: &Control, id: &str) -> Response {
    match parse_id(id, "run id") {
        Ok(id) => ok(c.run_detail(id).await),
        Err(e) => Response::error(&e),
    }
}

/// An attempt's log (default: the run's last attempt).
#[utoipa::path(get, path = "/api/v1/runs/{id}/log", tag = "runs",
    params(
        ("id" = i64, Path, description = "The run"),
        ("attempt" = Option<i64>, Query, description = "The attempt (default: the last)"),
    ),
    responses(
        (status = 200, description = "The attempt and its log lines", body = AttemptLog),
        (status = 400, description = "The id or attempt is not a number", body = ErrorBody),
        (status = 404, description = "No such run or attempt", body = ErrorBody),
    ))]
pub(crate) async fn run_log(c: &Control, req: &Request, id: &str) -> Response {
    match parse_id(id, "run id").and_then(|id| Ok((id, int_query(req, "attempt")?))) {
        Ok((id, a)) => ok(c.attempt_log(id, a).await),
        Err(e) => Response::error(&e),
    }
}

/// Attempt `n`'s log.
#[utoipa::path(get, path = "/api/v1/runs/{id}/attempts/{n}/log", tag = "runs",
    params(
        ("id" = i64, Path, description = "The run"),
        ("n" = i64, Path, description = "The attempt"),
    ),
    responses(
        (status = 200, description = "The attempt and its log lines", body = AttemptLog),
        (status = 400, description = "The id or attempt is not a number", body = ErrorBody),
        (status = 404, description = "No such run or attempt", body = ErrorBody),
    ))]
pub(crate) async fn attempt_log(c: &Control, id: &str, n: &str) -> Response {
    match parse_id(id, "run id").and_then(|id| Ok((id, parse_id(n, "attempt")?))) {
        Ok((id, n)) => ok(c.attempt_log(id, Some(n)).await),
        Err(e) => Response::error(&e),
    }
}
