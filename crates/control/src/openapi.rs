//! The API's OpenAPI 3.1 document (`GET /api/v1/openapi.json`), generated from the code: each
//! route's handler in [`crate::api`] carries a `#[utoipa::path]` with its parameters, body and
//! answers, and the bodies' schemas come from the `ToSchema` derives on the types the handlers
//! exchange. `docs/api.md` is the prose reference; a test checks it names every path here.
//!
//! Answers every operation may give besides its own are added here, in one place: `400` (the
//! request could not be read), `401` (the daemon has a token; not for the probes and the web
//! UI's page), `403` (the guard refused where the request came from), `415` (a write without a
//! JSON `Content-Type`) and `500` (a bug or a broken catalog).

use std::collections::BTreeMap;

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::api;

/// The name of the bearer token scheme in the document.
pub const BEARER: &str = "bearer";

/// The paths that answer without the token: the probes and the web UI's page.
pub const OPEN_PATHS: [&str; 3] = ["/health", "/ready", "/"];

/// A target column of a task's mapping (`rtsync_mapping::ColumnSpec`, whose crate does not
/// depend on the schema generator): its name, the expression that computes it, its type.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = ColumnSpec)]
#[allow(dead_code)]
pub struct ColumnSpecSchema {
    /// The target column's name.
    name: String,
    /// A JSONPath over the message value (`$.customer.id`), or a built-in field (`key`,
    /// `value`, `timestamp`, `partition`, `offset`, `headers`).
    expr: String,
    /// `string`, `boolean`, `int`, `bigint`, `double`, `decimal(P,S)`, `date`, `timestamp`,
    /// `json`, `binary` (case-insensitive).
    #[serde(rename = "type")]
    ty: String,
}

/// What happens to a record that cannot be decoded or cast (`rtsync_core::ErrorPolicy`).
#[derive(serde::Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ErrorPolicy)]
#[allow(dead_code)]
pub enum ErrorPolicySchema {
    /// Stop the task with an error naming the record.
    Fail,
    /// Write the raw record and the reason to the `<table>__dlq` table, count it, go on.
    DeadLetter,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rtsync daemon API",
        description = "The HTTP JSON API of `rtsync serve`; the `rtsync` CLI is a client of exactly this API. Reference and conventions: docs/api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        api::health,
        api::ready,
        api::metrics,
        api::web_ui,
        api::openapi_document,
        api::datasource_types,
        api::list_datasources,
        api::create_datasource,
        api::show_datasource,
        api::delete_datasource,
        api::test_datasource,
        api::table_info,
        api::upgrade_table,
        api::optimize_table,
        api::vacuum_table,
        api::namespaces,
        api::objects,
        api::object_detail,
        api::workers,
        api::list_alerts,
        api::create_alert,
        api::show_alert,
        api::delete_alert,
        api::test_alert,
        api::alert_events,
        api::list_vclusters,
        api::create_vcluster,
        api::show_vcluster,
        api::delete_vcluster,
        api::list_folders,
        api::create_folder,
        api::delete_folder,
        api::list_tasks,
        api::create_task,
        api::show_task,
        api::delete_task,
        api::configure_task,
        api::task_versions,
        api::preview_task,
        api::verify_task,
        api::deploy_task,
        api::stop_task,
        api::start_task,
        api::undeploy_task,
        api::task_runs,
        api::list_runs,
        api::show_run,
        api::run_log,
        api::attempt_log,
    ),
    components(schemas(crate::http::ErrorBody, crate::error::Error, crate::error::Code)),
    modifiers(&CommonAnswers),
    tags(
        (name = "service", description = "Probes, metrics, the web UI and this document"),
        (name = "datasources", description = "Data sources, their metadata and their Delta tables"),
        (name = "alerts", description = "Alert rules and the alerts they raised"),
        (name = "clusters", description = "VClusters, folders and workers"),
        (name = "tasks", description = "Tasks and their lifecycle"),
        (name = "runs", description = "Runs, attempts and their logs"),
    )
)]
pub struct ApiDoc;

/// The document, built once per call (it is small and asked for rarely).
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// Adds the bearer token scheme, and the answers every operation may give.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Required when the daemon was started with a token (`RTSYNC_TOKEN` or `--token-file`): `Authorization: Bearer <token>`. Without a token the daemon serves loopback addresses only.",
                    ))
                    .build(),
            ),
        );
        // A daemon without a token needs none: the requirement lists the scheme or nothing.
        doc.security = Some(vec![SecurityRequirement::new::<_, _, &str>(BEARER, []), SecurityRequirement::default()]);
        for (path, item) in doc.paths.paths.iter_mut() {
            let open = OPEN_PATHS.contains(&path.as_str());
            for (method, op) in operations(item) {
                if open {
                    op.security = Some(vec![SecurityRequirement::default()]);
                }
                let write = matches!(method, "post" | "patch" | "delete");
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_answer(description).into());
                };
                add(
                    "400",
                    "The request could not be read (a malformed head, a bad Content-Length, a body that is not the JSON described).",
                );
                if !open {
                    add("401", "The daemon requires a token and the request has none, or a wrong one.");
                }
                if path != "/health" && path != "/ready" {
                    add(
                        "403",
                        "The request came from somewhere the daemon does not serve: a foreign Host, or another site's page (Origin, Sec-Fetch-Site).",
                    );
                }
                if write {
                    add("415", "The body is not declared as JSON: send Content-Type: application/json.");
                }
                add("500", "A bug or a broken catalog.");
            }
        }
    }
}

fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("post", item.post.as_mut()),
        ("patch", item.patch.as_mut()),
        ("delete", item.delete.as_mut()),
        ("put", item.put.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// An error answer: `{"error": {"code", "message"}}`.
pub fn error_answer(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build()
}

/// The document's paths with the methods each answers (upper case), for the router's
/// `405 Method Not Allowed` and for the tests.
pub fn methods_by_path() -> BTreeMap<String, Vec<&'static str>> {
    let mut doc = document();
    doc.paths
        .paths
        .iter_mut()
        .map(|(path, item)| {
            let methods = operations(item).into_iter().map(|(m, _)| upper(m)).collect();
            (path.clone(), methods)
        })
        .collect()
}

fn upper(method: &str) -> &'static str {
    match method {
        "get" => "GET",
        "post" => "POST",
        "patch" => "PATCH",
        "delete" => "DELETE",
        _ => "PUT",
    }
}

/// Whether `segments` (a request's decoded path) matches the template `/a/{x}/b`.
pub fn template_matches(template: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    parts.len() == segments.len()
        && parts.iter().zip(segments).all(|(p, s)| (p.starts_with('{') && p.ends_with('}')) || p == s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_operation_answering_errors_as_error_bodies() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["components"]["securitySchemes"][BEARER]["scheme"], "bearer");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/api/v1/tasks/{name}/config"), "{:?}", paths.keys());
        let mut operations = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                if !["get", "post", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                operations += 1;
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path} documents no success: {responses:?}"
                );
                assert_eq!(
                    responses["500"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path}"
                );
                assert!(op["operationId"].is_string(), "{method} {path} has no operationId");
            }
        }
        assert_eq!(operations, 49);
        // Every schema a reference names is in the document.
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "{name} is referenced but not in components.schemas");
        }
    }

    #[test]
    fn the_mirrored_schemas_match_what_serde_writes() {
        let doc = serde_json::to_value(document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let column = serde_json::to_value(rtsync_mapping::ColumnSpec::new("id", "$.id", "bigint")).unwrap();
        let mut written: Vec<&str> = column.as_object().unwrap().keys().map(String::as_str).collect();
        let mut documented: Vec<&str> =
            schemas["ColumnSpec"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        written.sort();
        documented.sort();
        assert_eq!(written, documented);
        let policies: Vec<serde_json::Value> = [rtsync_core::ErrorPolicy::Fail, rtsync_core::ErrorPolicy::DeadLetter]
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        assert_eq!(schemas["ErrorPolicy"]["enum"], serde_json::Value::Array(policies));
    }

    #[test]
    fn templates_match_whole_segments() {
        assert!(template_matches("/api/v1/tasks/{name}", &["api", "v1", "tasks", "x"]));
        assert!(!template_matches("/api/v1/tasks/{name}", &["api", "v1", "tasks"]));
        assert!(!template_matches("/api/v1/tasks/{name}", &["api", "v1", "runs", "x"]));
        assert!(template_matches("/", &[]));
    }
}
