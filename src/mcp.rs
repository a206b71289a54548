//! `rtsync mcp`: a Model Context Protocol server on stdio, the seed's "MCP tools" path.
//!
//! It speaks JSON-RPC 2.0, one message per line (the MCP stdio transport), and answers
//! `initialize`, `ping`, `tools/list` and `tools/call`. Every tool is a client of the daemon's
//! HTTP API (`--server`), so what an agent does through MCP is exactly what the CLI does: the
//! same checks, the same messages. The tool names are the seed document's (`list_data_sources`,
//! `create_task`, `save_integration_task`, `publish_task`, `get_task_detail`, `list_task_run`,
//! `list_executions`, `get_execution_log`, `list_folders`, `list_namespaces`,
//! `list_metadata_objects`, `get_metadata_detail`, `LH_show_object_list`), plus the operations
//! the seed leaves to its UI (`stop_task`, `start_task`, `undeploy_task`, `preview_task`, …).
//! Tasks are named by `task_id` (as the seed does) or `task_name`.
//!
//! A tool that fails answers a result with `isError: true` and the daemon's one-line reason,
//! so the agent can read and act on it; protocol errors (unknown method, bad JSON) are JSON-RPC
//! errors. Nothing but protocol messages is written to stdout; logs go to stderr.

use rtsync_control::http::client;
use serde_json::{Map, Value, json};
use std::io::{BufRead, Write};

/// The daemon the tools call.
struct Daemon {
    url: String,
    token: Option<String>,
}

/// Protocol revisions this server speaks, newest first.
const PROTOCOL_VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

/// Serves MCP on stdin/stdout until stdin closes.
pub async fn serve(server: String, token: Option<String>) -> std::io::Result<()> {
    let server = Daemon { url: server, token };
    // stdin is read on a thread of its own (a blocking read must not hold a runtime worker).
    let (tx, mut lines) = tokio::sync::mpsc::channel::<std::io::Result<String>>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    let mut out = std::io::stdout();
    while let Some(line) = lines.recv().await {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Array(batch)) => {
                let mut answers = Vec::new();
                for msg in batch {
                    answers.extend(handle(&server, msg).await);
                }
                (!answers.is_empty()).then_some(Value::Array(answers))
            }
            Ok(msg) => handle(&server, msg).await,
            Err(e) => Some(rpc_error(Value::Null, -32700, &format!("parse error: {e}"))),
        };
        if let Some(answer) = answer {
            let mut text = answer.to_string();
            text.push('\n');
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(())
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// One JSON-RPC message; notifications (no id) get no answer.
async fn handle(server: &Daemon, msg: Value) -> Option<Value> {
    let id = msg.get("id").cloned();
    let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let id = id?;
    let result = match method.as_str() {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(PROTOCOL_VERSIONS[0]);
            let version = PROTOCOL_VERSIONS.iter().find(|v| **v == asked).copied().unwrap_or(PROTOCOL_VERSIONS[0]);
            json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "rtsync", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "Real-time sync tasks (task_type 14): one Kafka topic or MySQL/PostgreSQL table into one Lakehouse (Delta) table. Workflow: LH_show_object_list VCLUSTERS (a SYNC vcluster) → list_data_sources → list_namespaces / list_metadata_objects / get_metadata_detail → create_task → save_integration_task → preview_task → publish_task → get_task_detail / list_task_run / list_executions / get_execution_log."
            })
        }
        "ping" => json!({}),
        "tools/list" => json!({"tools": tools()}),
        "tools/call" => {
            let Some(name) = params.get("name").and_then(Value::as_str) else {
                return Some(rpc_error(id, -32602, "tools/call needs params.name"));
            };
            let args = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
            if !tools().iter().any(|t| t["name"] == name) {
                return Some(rpc_error(id, -32602, &format!("unknown tool {name:?}; tools/list names them")));
            }
            match call_tool(server, name, &args).await {
                Ok(value) => json!({
                    "content": [{"type": "text", "text": serde_json::to_string_pretty(&value).unwrap_or_default()}],
                    "structuredContent": if value.is_object() { value.clone() } else { json!({"result": value}) },
                    "isError": false
                }),
                Err(message) => json!({"content": [{"type": "text", "text": message}], "isError": true}),
            }
        }
        "" => return Some(rpc_error(id, -32600, "invalid request: no method")),
        other => return Some(rpc_error(id, -32601, &format!("method not found: {other}"))),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// A tool's input schema from `(name, JSON type, description)` and the required names.
fn input(props: &[(&str, &str, &str)], required: &[&str]) -> Value {
    let mut p = Map::new();
    for (name, ty, description) in props {
        let schema = match *ty {
            "id" => json!({"type": ["integer", "string"], "description": description}),
            "strings" => json!({"type": "array", "items": {"type": "string"}, "description": description}),
            "columns" => json!({
                "type": "array",
                "description": description,
                "items": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "expr": {"type": "string", "description": "JSONPath over the message value ($.data.code) or a built-in field (key, value, timestamp, partition, offset, headers)"},
                    "type": {"type": "string", "description": "string, int, bigint, double, boolean, decimal(p,s), date, timestamp, json"}
                }, "required": ["name", "expr", "type"]}
            }),
            ty => json!({"type": ty, "description": description}),
        };
        p.insert(name.to_string(), schema);
    }
    json!({"type": "object", "properties": p, "required": required})
}

const TASK_REF: [(&str, &str, &str); 2] = [
    ("task_id", "id", "the task's id (from create_task or get_task_detail)"),
    ("task_name", "string", "the task's name, instead of task_id"),
];

fn with_task(extra: &[(&'static str, &'static str, &'static str)]) -> Vec<(&'static str, &'static str, &'static str)> {
    TASK_REF.iter().chain(extra.iter()).copied().collect()
}

fn tool(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "description": description, "inputSchema": schema})
}

fn tools() -> Vec<Value> {
    vec![
        tool(
            "LH_show_object_list",
            "List lakehouse objects: object_type VCLUSTERS (filter vcluster_type SYNC for real-time tasks), SCHEMAS, TABLES (of schema), FOLDERS or DATASOURCES.",
            input(
                &[
                    ("object_type", "string", "VCLUSTERS, SCHEMAS, TABLES, FOLDERS or DATASOURCES"),
                    ("schema", "string", "for TABLES: the lakehouse schema"),
                    ("datasource_name", "string", "for SCHEMAS/TABLES: the lakehouse data source (default lakehouse)"),
                ],
                &["object_type"],
            ),
        ),
        tool(
            "list_data_sources",
            "List configured data sources; ds_type filters (2 Kafka, 5 MySQL, 7 PostgreSQL, 8 SQL Server, 39 Aurora MySQL, 40 Aurora PostgreSQL, 19 PolarDB MySQL, 48 PolarDB PostgreSQL, 1 Lakehouse). Passwords are never returned.",
            input(&[("ds_type", "id", "type number or name")], &[]),
        ),
        tool(
            "create_data_source",
            "Create a data source. Kafka takes librdkafka properties (bootstrap.servers, security.protocol, …); databases take url plus optional user and password; lakehouse takes root.",
            input(
                &[
                    ("datasource_name", "string", "a new name"),
                    ("ds_type", "id", "type number or name"),
                    ("properties", "object", "key/value properties"),
                ],
                &["datasource_name", "ds_type", "properties"],
            ),
        ),
        tool(
            "test_data_source",
            "Connect to a data source and say what is wrong; with object (a topic, or SCHEMA.TABLE) run the task's pre-flight checks on it.",
            input(
                &[("datasource_name", "string", ""), ("object", "string", "topic or SCHEMA.TABLE")],
                &["datasource_name"],
            ),
        ),
        tool(
            "list_namespaces",
            "A data source's namespaces: databases/schemas (Kafka: the one namespace 'default'; Lakehouse: schemas).",
            input(&[("datasource_name", "string", "")], &["datasource_name"]),
        ),
        tool(
            "list_metadata_objects",
            "Tables or topics under a namespace, with primary keys and row estimates (tables) or partitions and offsets (topics).",
            input(&[("datasource_name", "string", ""), ("namespace", "string", "")], &["datasource_name", "namespace"]),
        ),
        tool(
            "get_metadata_detail",
            "Column structure of a table (source type → Delta type, nullability, primary key) or a topic (fields inferred from sampled JSON with ready JSONPath columns).",
            input(
                &[
                    ("datasource_name", "string", ""),
                    ("namespace", "string", ""),
                    ("object", "string", "table or topic"),
                    ("sample", "integer", "Kafka: messages to sample (default 100)"),
                ],
                &["datasource_name", "namespace", "object"],
            ),
        ),
        tool(
            "get_table_info",
            "Health of a Delta table of a lakehouse data source: version, active files, size, small files, last compaction, last vacuum, last log checkpoint.",
            input(
                &[
                    ("datasource_name", "string", "a lakehouse data source"),
                    ("schema", "string", "default public"),
                    ("table", "string", ""),
                ],
                &["datasource_name", "table"],
            ),
        ),
        tool(
            "optimize_table",
            "Compact a Delta table's small files now (a separate commit with dataChange=false; safe while a task writes it).",
            input(
                &[
                    ("datasource_name", "string", "a lakehouse data source"),
                    ("schema", "string", "default public"),
                    ("table", "string", ""),
                ],
                &["datasource_name", "table"],
            ),
        ),
        tool(
            "vacuum_table",
            "Delete a Delta table's data files that left it more than the retention ago (default 7d); dry_run lists them only.",
            input(
                &[
                    ("datasource_name", "string", "a lakehouse data source"),
                    ("schema", "string", "default public"),
                    ("table", "string", ""),
                    ("dry_run", "boolean", "only list the files"),
                    ("retention", "string", "e.g. 7d, 12h"),
                ],
                &["datasource_name", "table"],
            ),
        ),
        tool("list_folders", "Folders that group tasks (data_folder_id for create_task).", input(&[], &[])),
        tool(
            "create_task",
            "Create a real-time sync task (task_type 14). Returns task_id and studio_url (the task's page in the rtsync web UI).",
            input(
                &[
                    ("task_name", "string", "e.g. rt_sync_kafka_orders"),
                    ("task_type", "id", "14 (REALTIME); batch and multi-table sync are not this product"),
                    ("data_folder_id", "id", "folder id from list_folders (default: the default folder)"),
                    ("folder_name", "string", "folder name, instead of data_folder_id"),
                    ("vcluster", "string", "SYNC vcluster name (default: default)"),
                ],
                &["task_name"],
            ),
        ),
        tool(
            "save_integration_task",
            "Configure a task's source and sink. With no columns the mapping comes from the source (Kafka: key, value, timestamp, partition, offset, headers; a table: every column). The target table is created on deploy if missing.",
            input(
                &with_task(&[
                    ("source_datasource_name", "string", ""),
                    ("source_schema", "string", "database/schema; Kafka: default"),
                    ("source_table", "string", "table or topic"),
                    ("source_ds_type", "id", "checked against the data source's type"),
                    ("sink_datasource_name", "string", "default lakehouse"),
                    ("sink_schema", "string", "default public"),
                    ("sink_table", "string", "default: the source table's name"),
                    ("sink_ds_type", "id", "1 (Lakehouse)"),
                    ("start_offset", "string", "Kafka: earliest, latest, offsets:P=O,…, timestamp:MS"),
                    ("columns", "columns", "Kafka JSONPath computed columns"),
                    ("error_policy", "string", "fail or dead_letter"),
                    (
                        "format",
                        "string",
                        "Kafka message format: json (default), avro, protobuf, debezium-json, debezium-avro; avro, protobuf and debezium-avro need schema.registry.url on the data source",
                    ),
                    (
                        "key_columns",
                        "strings",
                        "Kafka change events: the key columns (default: the message key's fields)",
                    ),
                    (
                        "json_fields",
                        "strings",
                        "Kafka registry formats: fields landing as JSON text; * for every nested field",
                    ),
                ]),
                &[],
            ),
        ),
        tool(
            "preview_task",
            "Read a sample from the task's source and show the mapped rows, writing nothing (check JSONPath columns before publishing).",
            input(&with_task(&[("limit", "integer", "rows, default 10")]), &[]),
        ),
        tool(
            "verify_task",
            "Compare a PostgreSQL/MySQL task's source table with its Delta table: row counts and per-key-range checksums on both sides, then the keys that differ (missing in lake, extra in lake, values differ with the columns), re-checked once the task has caught up. Kafka tasks are refused.",
            input(&with_task(&[]), &[]),
        ),
        tool(
            "publish_task",
            "Deploy the task's current configuration as a new version and start it; it runs continuously (no test runs).",
            input(
                &with_task(&[(
                    "task_version",
                    "integer",
                    "optional: the version get_task_detail showed; refused when older than the deployed one",
                )]),
                &[],
            ),
        ),
        tool(
            "get_task_detail",
            "Task status, deployed version, position, lag, rows synced, rows/s, freshness and last error.",
            input(&with_task(&[]), &[]),
        ),
        tool("stop_task", "Stop a running task; it keeps its position.", input(&with_task(&[]), &[])),
        tool("start_task", "Start a stopped task from its position.", input(&with_task(&[]), &[])),
        tool(
            "undeploy_task",
            "Stop the task and forget its position (a PostgreSQL task's slot and publication are dropped).",
            input(&with_task(&[]), &[]),
        ),
        tool("list_task_run", "A task's runs (deploy/start → stop), newest first.", input(&with_task(&[]), &[])),
        tool(
            "list_executions",
            "Executions (attempts) of a run, or of every run of a task: each restart after a failure is one attempt.",
            input(&with_task(&[("run_id", "integer", "")]), &[]),
        ),
        tool(
            "get_execution_log",
            "The log of one execution (attempt) of a run: the error that ended it names its cause.",
            input(&[("run_id", "integer", ""), ("attempt", "integer", "default: the last")], &["run_id"]),
        ),
        tool(
            "create_vcluster",
            "Create a virtual cluster; real-time tasks need vcluster_type SYNC with free slots.",
            input(
                &[
                    ("name", "string", ""),
                    ("vcluster_type", "string", "SYNC"),
                    ("slots", "integer", "tasks it runs at once"),
                ],
                &["name"],
            ),
        ),
        tool("list_alerts", "Alert rules, with how many of their alerts fire now.", input(&[], &[])),
        tool(
            "list_alert_events",
            "Alerts of every rule, newest first: firing ones, or the history too with all=true.",
            input(&[("all", "boolean", "include resolved alerts")], &[]),
        ),
        tool(
            "create_alert",
            "Create an alert rule over one task, or every task of a folder or vcluster (give one of task_name, folder, vcluster). It fires (a log line, and a POST to webhook signed with secret) when the condition holds for the grace period, and notifies again when it resolves.",
            input(
                &[
                    ("name", "string", ""),
                    ("task_name", "string", "one task"),
                    ("folder", "string", "every task of this folder"),
                    ("vcluster", "string", "every task of this vcluster"),
                    (
                        "when",
                        "string",
                        "failed, freshness>30s, lag>100000 (the source's unit), no-data>10m, retries>3, dlq-rate>10",
                    ),
                    ("for", "string", "grace period, e.g. 1m"),
                    ("webhook", "string", "http(s) URL the JSON notifications are POSTed to"),
                    ("secret", "string", "HMAC-SHA256 key of the X-Rtsync-Signature header"),
                ],
                &["name", "when"],
            ),
        ),
        tool("get_alert", "An alert rule and its recent alerts.", input(&[("name", "string", "")], &["name"])),
        tool("delete_alert", "Delete an alert rule and its history.", input(&[("name", "string", "")], &["name"])),
        tool(
            "test_alert",
            "Send a test notification through the rule's webhook now.",
            input(&[("name", "string", "")], &["name"]),
        ),
    ]
}

/// One request to the daemon; the error is its one-line reason.
async fn api(
    server: &Daemon,
    method: &str,
    path: &[&str],
    query: &[(&str, String)],
    body: Option<Value>,
) -> Result<Value, String> {
    let body = body.map(|b| b.to_string().into_bytes());
    let (status, bytes) =
        client::call(&server.url, server.token.as_deref(), method, path, query, body).await.map_err(|e| e.message)?;
    let value: Value =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    if (200..300).contains(&status) {
        return Ok(value);
    }
    Err(value["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("the daemon answered {status}: {}", String::from_utf8_lossy(&bytes).trim())))
}

fn arg_str(args: &Value, key: &str) -> Option<String> {
    match args.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn need(args: &Value, key: &str) -> Result<String, String> {
    arg_str(args, key).ok_or_else(|| format!("argument {key} is required"))
}

/// The task's name from `task_name` or `task_id`.
async fn task_name(server: &Daemon, args: &Value) -> Result<String, String> {
    if let Some(name) = arg_str(args, "task_name") {
        return Ok(name);
    }
    let id = need(args, "task_id").map_err(|_| "argument task_id (or task_name) is required".to_string())?;
    let tasks = api(server, "GET", &["api", "v1", "tasks"], &[], None).await?;
    tasks
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            (t["id"].as_i64().is_some() && t["id"].as_i64() == id.parse().ok())
                || t["name"].as_str() == Some(id.as_str())
        })
        .and_then(|t| t["name"].as_str().map(str::to_string))
        .ok_or_else(|| format!("no task has id {id}; get_task_detail or list the folder's tasks"))
}

/// The data source's type number, to check a `*_ds_type` argument against.
async fn check_ds_type(server: &Daemon, ds: &str, expected: Option<String>, role: &str) -> Result<(), String> {
    let Some(expected) = expected else { return Ok(()) };
    let found = api(server, "GET", &["api", "v1", "datasources", ds], &[], None).await?;
    let (number, name) = (found["ds_type"].to_string(), found["type"].as_str().unwrap_or_default().to_string());
    if expected == number || expected.eq_ignore_ascii_case(&name) {
        return Ok(());
    }
    Err(format!("{role}_ds_type {expected} does not match data source {ds}, which is {name} (ds_type {number})"))
}

async fn call_tool(server: &Daemon, name: &str, args: &Value) -> Result<Value, String> {
    let v1 =
        |rest: &[&str]| -> Vec<String> { ["api", "v1"].iter().chain(rest.iter()).map(|s| s.to_string()).collect() };
    let get = |path: Vec<String>, query: Vec<(&'static str, String)>| async move {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        api(server, "GET", &p, &query, None).await
    };
    let post = |path: Vec<String>, query: Vec<(&'static str, String)>, body: Option<Value>| async move {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        api(server, "POST", &p, &query, body).await
    };
    match name {
        "LH_show_object_list" => {
            let kind = need(args, "object_type")?.to_ascii_uppercase();
            let lake = arg_str(args, "datasource_name").unwrap_or_else(|| "lakehouse".into());
            match kind.trim_end_matches('S') {
                "VCLUSTER" => get(v1(&["vclusters"]), vec![]).await,
                "FOLDER" => get(v1(&["folders"]), vec![]).await,
                "DATASOURCE" => get(v1(&["datasources"]), vec![]).await,
                "SCHEMA" => get(v1(&["datasources", &lake, "namespaces"]), vec![]).await,
                "TABLE" => {
                    let schema = arg_str(args, "schema").unwrap_or_else(|| "public".into());
                    get(v1(&["datasources", &lake, "namespaces", &schema, "objects"]), vec![]).await
                }
                _ => Err(format!("object_type {kind:?}: use VCLUSTERS, SCHEMAS, TABLES, FOLDERS or DATASOURCES")),
            }
        }
        "list_data_sources" => {
            let q = arg_str(args, "ds_type").map(|t| vec![("type", t)]).unwrap_or_default();
            get(v1(&["datasources"]), q).await
        }
        "create_data_source" => {
            let body = json!({
                "name": need(args, "datasource_name")?,
                "type": need(args, "ds_type")?,
                "properties": args.get("properties").cloned().unwrap_or_else(|| json!({})),
            });
            post(v1(&["datasources"]), vec![], Some(body)).await
        }
        "test_data_source" => {
            let q = arg_str(args, "object").map(|o| vec![("object", o)]).unwrap_or_default();
            post(v1(&["datasources", &need(args, "datasource_name")?, "test"]), q, None).await
        }
        "list_namespaces" => get(v1(&["datasources", &need(args, "datasource_name")?, "namespaces"]), vec![]).await,
        "list_metadata_objects" => {
            let (ds, ns) = (need(args, "datasource_name")?, need(args, "namespace")?);
            get(v1(&["datasources", &ds, "namespaces", &ns, "objects"]), vec![]).await
        }
        "get_metadata_detail" => {
            let (ds, ns, obj) = (need(args, "datasource_name")?, need(args, "namespace")?, need(args, "object")?);
            let q = arg_str(args, "sample").map(|s| vec![("sample", s)]).unwrap_or_default();
            get(v1(&["datasources", &ds, "namespaces", &ns, "objects", &obj]), q).await
        }
        "get_table_info" | "optimize_table" | "vacuum_table" => {
            let ds = need(args, "datasource_name")?;
            let table = need(args, "table")?;
            let schema = arg_str(args, "schema").unwrap_or_else(|| "public".into());
            match name {
                "get_table_info" => get(v1(&["datasources", &ds, "tables", &schema, &table]), vec![]).await,
                "optimize_table" => {
                    post(v1(&["datasources", &ds, "tables", &schema, &table, "optimize"]), vec![], None).await
                }
                _ => {
                    let body = json!({
                        "dry_run": args.get("dry_run").and_then(Value::as_bool).unwrap_or(false),
                        "retention": arg_str(args, "retention"),
                    });
                    post(v1(&["datasources", &ds, "tables", &schema, &table, "vacuum"]), vec![], Some(body)).await
                }
            }
        }
        "list_folders" => get(v1(&["folders"]), vec![]).await,
        "create_task" => {
            let folder = match (arg_str(args, "folder_name"), arg_str(args, "data_folder_id")) {
                (Some(f), _) => Some(f),
                (None, Some(id)) => {
                    let folders = get(v1(&["folders"]), vec![]).await?;
                    let found = folders
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|f| f["id"].as_i64().is_some() && f["id"].as_i64() == id.parse().ok());
                    Some(
                        found
                            .and_then(|f| f["name"].as_str().map(str::to_string))
                            .ok_or_else(|| format!("no folder has id {id}; list_folders names them"))?,
                    )
                }
                (None, None) => None,
            };
            let mut body = json!({
                "name": need(args, "task_name")?,
                "type": arg_str(args, "task_type").unwrap_or_else(|| "14".into()),
            });
            if let Some(f) = folder {
                body["folder"] = json!(f);
            }
            if let Some(v) = arg_str(args, "vcluster") {
                body["vcluster"] = json!(v);
            }
            let task = post(v1(&["tasks"]), vec![], Some(body)).await?;
            let name = task["name"].as_str().unwrap_or_default().to_string();
            Ok(json!({
                "task_id": task["id"],
                "task_name": name,
                "task_type": task["task_type"],
                "folder": task["folder"],
                "vcluster": task["vcluster"],
                "studio_url": format!("{}/ui/#/tasks/{}", server.url.trim_end_matches('/'), name),
            }))
        }
        "save_integration_task" => {
            let task = task_name(server, args).await?;
            let mut patch = Map::new();
            if let Some(ds) = arg_str(args, "source_datasource_name") {
                check_ds_type(server, &ds, arg_str(args, "source_ds_type"), "source").await?;
                patch.insert("source".into(), json!(ds));
            }
            if let Some(ds) = arg_str(args, "sink_datasource_name") {
                check_ds_type(server, &ds, arg_str(args, "sink_ds_type"), "sink").await?;
                patch.insert("sink".into(), json!(ds));
            }
            for (arg, field) in [
                ("source_schema", "source_schema"),
                ("source_table", "source_table"),
                ("sink_schema", "sink_schema"),
                ("sink_table", "sink_table"),
                ("start_offset", "start_offset"),
                ("error_policy", "error_policy"),
                ("format", "format"),
            ] {
                if let Some(v) = arg_str(args, arg) {
                    patch.insert(field.into(), json!(v));
                }
            }
            for field in ["columns", "key_columns", "json_fields"] {
                if let Some(v) = args.get(field).filter(|c| !c.is_null()) {
                    patch.insert(field.into(), v.clone());
                }
            }
            let path = v1(&["tasks", &task, "config"]);
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            api(server, "PATCH", &p, &[], Some(Value::Object(patch))).await
        }
        "preview_task" => {
            let task = task_name(server, args).await?;
            let q = vec![("limit", arg_str(args, "limit").unwrap_or_else(|| "10".into()))];
            post(v1(&["tasks", &task, "preview"]), q, None).await
        }
        "verify_task" => {
            let task = task_name(server, args).await?;
            post(v1(&["tasks", &task, "verify"]), vec![], None).await
        }
        "publish_task" => {
            let task = task_name(server, args).await?;
            if let Some(expected) = arg_str(args, "task_version") {
                let detail = get(v1(&["tasks", &task]), vec![]).await?;
                let deployed = detail["task"]["deployed_version"].as_i64().unwrap_or(0);
                if expected.parse::<i64>().map_err(|_| format!("task_version {expected:?} is not a number"))? < deployed
                {
                    return Err(format!(
                        "task_version {expected} is stale: task {task} is already at deployed version {deployed} (get_task_detail)"
                    ));
                }
            }
            post(v1(&["tasks", &task, "deploy"]), vec![], None).await
        }
        "get_task_detail" => get(v1(&["tasks", &task_name(server, args).await?]), vec![]).await,
        "stop_task" => post(v1(&["tasks", &task_name(server, args).await?, "stop"]), vec![], None).await,
        "start_task" => post(v1(&["tasks", &task_name(server, args).await?, "start"]), vec![], None).await,
        "undeploy_task" => post(v1(&["tasks", &task_name(server, args).await?, "undeploy"]), vec![], None).await,
        "list_task_run" => get(v1(&["runs"]), vec![("task", task_name(server, args).await?)]).await,
        "list_executions" => {
            if let Some(run) = arg_str(args, "run_id") {
                return get(v1(&["runs", &run]), vec![]).await;
            }
            let task = task_name(server, args).await?;
            let runs = get(v1(&["runs"]), vec![("task", task)]).await?;
            let mut out = Vec::new();
            for run in runs.as_array().into_iter().flatten() {
                out.push(get(v1(&["runs", &run["id"].to_string()]), vec![]).await?);
            }
            Ok(Value::Array(out))
        }
        "get_execution_log" => {
            let run = need(args, "run_id")?;
            let q = arg_str(args, "attempt").map(|a| vec![("attempt", a)]).unwrap_or_default();
            get(v1(&["runs", &run, "log"]), q).await
        }
        "create_vcluster" => {
            let body = json!({
                "name": need(args, "name")?,
                "type": arg_str(args, "vcluster_type").unwrap_or_else(|| "SYNC".into()),
                "slots": args.get("slots").and_then(Value::as_i64).unwrap_or(4),
            });
            post(v1(&["vclusters"]), vec![], Some(body)).await
        }
        "list_alerts" => get(v1(&["alerts"]), vec![]).await,
        "list_alert_events" => {
            let all = args.get("all").and_then(Value::as_bool).unwrap_or(false);
            get(v1(&["alert-events"]), if all { vec![] } else { vec![("state", "firing".to_string())] }).await
        }
        "create_alert" => {
            let mut body = json!({"name": need(args, "name")?, "when": need(args, "when")?});
            for (arg, field) in [
                ("task_name", "task"),
                ("folder", "folder"),
                ("vcluster", "vcluster"),
                ("for", "for"),
                ("webhook", "webhook"),
                ("secret", "secret"),
            ] {
                if let Some(v) = arg_str(args, arg) {
                    body[field] = Value::String(v);
                }
            }
            post(v1(&["alerts"]), vec![], Some(body)).await
        }
        "get_alert" => get(v1(&["alerts", &need(args, "name")?]), vec![]).await,
        "delete_alert" => {
            let name = need(args, "name")?;
            api(server, "DELETE", &["api", "v1", "alerts", &name], &[], None).await?;
            Ok(json!({"deleted": name}))
        }
        "test_alert" => post(v1(&["alerts", &need(args, "name")?, "test"]), vec![], Some(json!({}))).await,
        other => Err(format!("unknown tool {other:?}")),
    }
}
