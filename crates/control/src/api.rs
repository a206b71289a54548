//! The HTTP JSON API (reference: `docs/api.md`). Every route maps to one [`Control`] method;
//! errors answer `{"error": {"code", "message"}}` with the status of their [`crate::error::Code`].

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::error::{Code, Error, Result};
use crate::guard::Guard;
use crate::http::{Handler, Request, Response};
use crate::model::{ConfigPatch, CreateDataSource, CreateFolder, CreateTask, CreateVCluster, VacuumRequest};
use crate::service::Control;
use crate::{meta, metrics, preview};

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
            ("GET", ["metrics"]) => match metrics::render(&self.control).await {
                Ok(text) => Response::text(200, "text/plain; version=0.0.4", text),
                Err(e) => Response::error(&e),
            },
            ("GET", ["health"]) => health(),
            (m, _) => Response::error(&Error::not_found(format!(
                "no route {m} /{} on the metrics port: it serves GET /metrics",
                path.join("/")
            ))),
        }
    }
}

fn health() -> Response {
    Response::json(200, &serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn body<T: DeserializeOwned>(req: &Request) -> Result<T> {
    let bytes: &[u8] = if req.body.is_empty() { b"{}" } else { &req.body };
    serde_json::from_slice(bytes).map_err(|e| Error::bad_request(format!("request body: {e}")))
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
            // The daemon serves only once the catalog is open and the deployed tasks resumed;
            // a worker of a shared catalog is ready while its lease rounds reach the catalog
            // and it is not shutting down.
            ("GET", ["ready"]) => match &c.cluster {
                Some(cluster) if !cluster.is_ready() => Response::json(
                    503,
                    &serde_json::json!({"status": "not ready", "reason": "the worker cannot reach the catalog, or is shutting down"}),
                ),
                _ => Response::json(200, &serde_json::json!({"status": "ready"})),
            },
            ("GET", [] | ["ui", ..]) => Response::text(200, "text/html; charset=utf-8", UI.to_string()),
            ("GET", ["metrics"]) => match metrics::render(c).await {
                Ok(text) => Response::text(200, "text/plain; version=0.0.4", text),
                Err(e) => Response::error(&e),
            },
            _ if path.len() >= 2 && path[..2] == API_PREFIX => self.route_v1(m, &path[2..], req).await,
            _ => Response::error(&Error::not_found(format!(
                "no route {m} /{} (the API is under /api/v1, see docs/api.md)",
                path.join("/")
            ))),
        }
    }

    async fn route_v1(&self, m: &str, path: &[&str], req: &Request) -> Response {
        let c = &self.control;
        match (m, path) {
            // data sources
            ("GET", ["datasource-types"]) => ok(Ok(crate::connectors::types())),
            ("GET", ["datasources"]) => ok(c.datasources(req.query("type")).await),
            ("POST", ["datasources"]) => match body::<CreateDataSource>(req) {
                Ok(b) => created(c.create_datasource(b).await),
                Err(e) => Response::error(&e),
            },
            ("GET", ["datasources", ds]) => ok(c.datasource(ds).await),
            ("DELETE", ["datasources", ds]) => no_content(c.delete_datasource(ds).await),
            ("POST", ["datasources", ds, "test"]) => ok(c.test_datasource(ds, req.query("object")).await),
            ("GET", ["datasources", ds, "tables", schema, table]) => ok(c.table_info(ds, schema, table).await),
            ("POST", ["datasources", ds, "tables", schema, table, "upgrade"]) => {
                ok(c.upgrade_table(ds, schema, table).await)
            }
            ("POST", ["datasources", ds, "tables", schema, table, "optimize"]) => {
                ok(c.optimize_table(ds, schema, table).await)
            }
            ("POST", ["datasources", ds, "tables", schema, table, "vacuum"]) => match body::<VacuumRequest>(req) {
                Ok(b) => ok(c.vacuum_table(ds, schema, table, b).await),
                Err(e) => Response::error(&e),
            },
            ("GET", ["datasources", ds, "namespaces"]) => ok(c.namespaces(ds).await),
            ("GET", ["datasources", ds, "namespaces", ns, "objects"]) => ok(c.objects(ds, ns).await),
            ("GET", ["datasources", ds, "namespaces", ns, "objects", obj]) => {
                let sample = match int_query(req, "sample") {
                    Ok(s) => s.map_or(meta::DEFAULT_SAMPLE, |s| s.max(1) as usize),
                    Err(e) => return Response::error(&e),
                };
                ok(c.object_detail(ds, ns, obj, sample).await)
            }
            ("GET", ["workers"]) => ok(c.workers().await),
            // alert rules and their alerts
            ("GET", ["alerts"]) => ok(c.alerts().await),
            ("POST", ["alerts"]) => match body::<crate::alerts::CreateAlert>(req) {
                Ok(b) => created(c.create_alert(b).await),
                Err(e) => Response::error(&e),
            },
            ("GET", ["alerts", name]) => ok(c.alert(name).await),
            ("DELETE", ["alerts", name]) => no_content(c.delete_alert(name).await),
            ("POST", ["alerts", name, "test"]) => ok(c.test_alert(name).await),
            ("GET", ["alert-events"]) => ok(c.alert_events(req.query("state") == Some("firing")).await),
            // vclusters and folders
            ("GET", ["vclusters"]) => ok(c.vclusters().await),
            ("POST", ["vclusters"]) => match body::<CreateVCluster>(req) {
                Ok(b) => created(c.create_vcluster(b).await),
                Err(e) => Response::error(&e),
            },
            ("GET", ["vclusters", name]) => ok(c.vcluster(name).await),
            ("DELETE", ["vclusters", name]) => no_content(c.delete_vcluster(name).await),
            ("GET", ["folders"]) => ok(c.folders().await),
            ("POST", ["folders"]) => match body::<CreateFolder>(req) {
                Ok(b) => created(c.create_folder(b).await),
                Err(e) => Response::error(&e),
            },
            ("DELETE", ["folders", name]) => no_content(c.delete_folder(name).await),
            // tasks
            ("GET", ["tasks"]) => ok(c.tasks(req.query("folder")).await),
            ("POST", ["tasks"]) => match body::<CreateTask>(req) {
                Ok(b) => created(c.create_task(b).await),
                Err(e) => Response::error(&e),
            },
            ("GET", ["tasks", name]) => ok(c.task_detail(name).await),
            ("DELETE", ["tasks", name]) => no_content(c.delete_task(name).await),
            ("PATCH", ["tasks", name, "config"]) => match body::<ConfigPatch>(req) {
                Ok(patch) => ok(c.configure(name, patch).await),
                Err(e) => Response::error(&e),
            },
            ("GET", ["tasks", name, "versions"]) => ok(c.versions(name).await),
            ("POST", ["tasks", name, "preview"]) => {
                let limit = match int_query(req, "limit") {
                    Ok(l) => l.map_or(preview::DEFAULT_LIMIT, |l| l.max(1) as usize),
                    Err(e) => return Response::error(&e),
                };
                ok(c.preview(name, limit).await)
            }
            ("POST", ["tasks", name, "verify"]) => ok(c.verify(name).await),
            ("POST", ["tasks", name, "deploy"]) => ok(c.deploy(name).await),
            ("POST", ["tasks", name, "stop"]) => ok(c.stop(name).await),
            ("POST", ["tasks", name, "start"]) => ok(c.start(name).await),
            ("POST", ["tasks", name, "undeploy"]) => ok(c.undeploy(name).await),
            ("GET", ["tasks", name, "runs"]) => ok(c.runs(name).await),
            // runs and attempts
            ("GET", ["runs"]) => match req.query("task") {
                Some(t) => ok(c.runs(t).await),
                None => Response::error(&Error::bad_request("GET /api/v1/runs needs ?task=NAME")),
            },
            ("GET", ["runs", id]) => match parse_id(id, "run id") {
                Ok(id) => ok(c.run_detail(id).await),
                Err(e) => Response::error(&e),
            },
            ("GET", ["runs", id, "log"]) => {
                match parse_id(id, "run id").and_then(|id| Ok((id, int_query(req, "attempt")?))) {
                    Ok((id, a)) => ok(c.attempt_log(id, a).await),
                    Err(e) => Response::error(&e),
                }
            }
            ("GET", ["runs", id, "attempts", n, "log"]) => {
                match parse_id(id, "run id").and_then(|id| Ok((id, parse_id(n, "attempt")?))) {
                    Ok((id, n)) => ok(c.attempt_log(id, Some(n)).await),
                    Err(e) => Response::error(&e),
                }
            }
            _ => {
                Response::error(&Error::not_found(format!("no route {m} /api/v1/{} (see docs/api.md)", path.join("/"))))
            }
        }
    }
}
