//! The seed's MCP path, end to end: an MCP client talks to `rtsync mcp` over stdio (JSON-RPC,
//! one message per line), which drives a running daemon; steps 1-8 of the seed's workflow with
//! the seed's tool names against the real broker, then the Delta table is checked row by row.

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use daemon_support::Daemon;
use rtsync_core::arrow::array::AsArray;
use rtsync_core::arrow::datatypes::Int64Type;
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};
use serde_json::{Value, json};

struct Mcp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: i64,
}

impl Mcp {
    fn start(server: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtsync"))
            .args(["mcp", "--server", server])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Mcp { child, stdin, stdout, next_id: 1 }
    }

    fn send(&mut self, msg: &Value) {
        writeln!(self.stdin, "{msg}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON-RPC ({e}): {line:?}"));
        assert_eq!(answer["jsonrpc"], "2.0");
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }

    /// Calls a tool; returns (isError, the structured result or the error text).
    fn call(&mut self, tool: &str, args: Value) -> (bool, Value) {
        let answer = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let result = &answer["result"];
        let is_error = result["isError"].as_bool().unwrap_or_else(|| panic!("{tool}: {answer}"));
        let text = result["content"][0]["text"].as_str().unwrap().to_string();
        if is_error {
            return (true, Value::String(text));
        }
        (false, serde_json::from_str(&text).unwrap())
    }

    fn ok(&mut self, tool: &str, args: Value) -> Value {
        let (is_error, v) = self.call(tool, args.clone());
        assert!(!is_error, "{tool} {args}: {v}");
        v
    }

    fn err(&mut self, tool: &str, args: Value) -> String {
        let (is_error, v) = self.call(tool, args.clone());
        assert!(is_error, "{tool} {args} should fail: {v}");
        v.as_str().unwrap().to_string()
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_workflow_through_mcp_tools() {
    let servers = bootstrap();
    let topic = unique("mcp_orders");
    create_topic(&servers, &topic, 2).await;
    let producer = producer(&servers);
    for i in 0..120i64 {
        let value = format!("{{\"id\":{i},\"data\":{{\"code\":\"C{i}\"}},\"amount\":{}.5}}", i * 3);
        send(&producer, &topic, (i % 2) as i32, &i.to_string(), Some(value.as_bytes()), None);
    }
    flush(&producer);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let mut mcp = Mcp::start(&d.url);

    let init = mcp.request(
        "initialize",
        json!({"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}),
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
    assert_eq!(init["result"]["serverInfo"]["name"], "rtsync");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    mcp.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let tools = mcp.request("tools/list", json!({}));
    let names: Vec<&str> =
        tools["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    for seed_tool in [
        "list_data_sources",
        "create_task",
        "save_integration_task",
        "publish_task",
        "get_task_detail",
        "list_task_run",
        "list_executions",
        "get_execution_log",
        "list_folders",
        "list_namespaces",
        "list_metadata_objects",
        "get_metadata_detail",
        "LH_show_object_list",
    ] {
        assert!(names.contains(&seed_tool), "{seed_tool} missing from {names:?}");
    }
    assert!(names.contains(&"verify_task"), "{names:?}");
    for alert_tool in ["list_alerts", "list_alert_events", "create_alert", "get_alert", "delete_alert", "test_alert"] {
        assert!(names.contains(&alert_tool), "{alert_tool} missing from {names:?}");
    }
    for t in tools["result"]["tools"].as_array().unwrap() {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
    }
    let unknown = mcp.request("tools/call", json!({"name": "drop_everything", "arguments": {}}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    let no_method = mcp.request("no/such", json!({}));
    assert_eq!(no_method["error"]["code"], -32601, "{no_method}");

    // Step 1: a SYNC vcluster.
    let vcs = mcp.ok("LH_show_object_list", json!({"object_type": "VCLUSTERS"}));
    assert!(vcs.as_array().unwrap().iter().any(|v| v["vcluster_type"] == "SYNC"), "{vcs}");

    // Step 2: data sources (the Kafka one is created through MCP too).
    mcp.ok(
        "create_data_source",
        json!({"datasource_name": "orders_kafka", "ds_type": 2, "properties": {"bootstrap.servers": servers}}),
    );
    let kafkas = mcp.ok("list_data_sources", json!({"ds_type": 2}));
    assert_eq!(kafkas.as_array().unwrap().len(), 1);
    assert_eq!(kafkas[0]["name"], "orders_kafka");
    let lakes = mcp.ok("list_data_sources", json!({"ds_type": 1}));
    assert_eq!(lakes[0]["name"], "lakehouse");
    let tested = mcp.ok("test_data_source", json!({"datasource_name": "orders_kafka", "object": topic}));
    assert_eq!(tested["ok"], true, "{tested}");

    // Step 3: explore.
    let ns = mcp.ok("list_namespaces", json!({"datasource_name": "orders_kafka"}));
    assert_eq!(ns[0]["name"], "default");
    let objects = mcp.ok("list_metadata_objects", json!({"datasource_name": "orders_kafka", "namespace": "default"}));
    let ours = objects.as_array().unwrap().iter().find(|o| o["name"] == topic.as_str()).expect("topic listed");
    assert_eq!(ours["partitions"], 2);
    let detail = mcp.ok(
        "get_metadata_detail",
        json!({"datasource_name": "orders_kafka", "namespace": "default", "object": topic, "sample": 20}),
    );
    let code = detail["columns"].as_array().unwrap().iter().find(|c| c["path"] == "$.data.code").unwrap();
    assert_eq!(code["type"], "string");

    // Step 4: create the task in a folder chosen by id.
    let folders = mcp.ok("list_folders", json!({}));
    let folder_id = folders[0]["id"].clone();
    let refused = mcp.err("create_task", json!({"task_name": "batch_one", "task_type": 10}));
    assert!(refused.to_lowercase().contains("batch"), "{refused}");
    let created = mcp
        .ok("create_task", json!({"task_name": "rt_sync_kafka_orders", "task_type": 14, "data_folder_id": folder_id}));
    let task_id = created["task_id"].clone();
    assert!(task_id.as_i64().unwrap() > 0, "{created}");
    assert!(created["studio_url"].as_str().unwrap().contains("/ui/#/tasks/rt_sync_kafka_orders"), "{created}");

    // Step 5/6: configure with JSONPath computed columns; a wrong ds_type is named.
    let mismatch = mcp.err(
        "save_integration_task",
        json!({"task_id": task_id, "source_datasource_name": "orders_kafka", "source_ds_type": 5}),
    );
    assert!(mismatch.contains("ds_type 2"), "{mismatch}");
    let bad_path = mcp.err(
        "save_integration_task",
        json!({"task_id": task_id, "columns": [{"name": "x", "expr": "$.[", "type": "string"}]}),
    );
    assert!(bad_path.contains("--column") || bad_path.contains("JSONPath"), "{bad_path}");
    mcp.ok(
        "save_integration_task",
        json!({
            "task_id": task_id,
            "source_datasource_name": "orders_kafka",
            "source_schema": "default",
            "source_table": topic,
            "source_ds_type": 2,
            "sink_datasource_name": "lakehouse",
            "sink_schema": "public",
            "sink_table": "mcp_orders",
            "sink_ds_type": 1,
            "start_offset": "earliest",
            "columns": [
                {"name": "id", "expr": "$.id", "type": "bigint"},
                {"name": "code", "expr": "$.data.code", "type": "string"},
                {"name": "amount", "expr": "$.amount", "type": "decimal(12,2)"},
                {"name": "offset", "expr": "offset", "type": "bigint"}
            ]
        }),
    );
    let preview = mcp.ok("preview_task", json!({"task_id": task_id, "limit": 5}));
    assert_eq!(preview["rows"].as_array().unwrap().len(), 5, "{preview}");
    assert!(preview["rows"][0]["code"].as_str().unwrap().starts_with('C'), "{preview}");
    // verify_task compares a table source with its target; a topic has no table.
    let refused = mcp.err("verify_task", json!({"task_id": task_id}));
    assert!(refused.contains("Kafka topic") && refused.contains("append-only"), "{refused}");

    // Step 7: publish.
    let detail = mcp.ok("get_task_detail", json!({"task_id": task_id}));
    assert_eq!(detail["task"]["state"], "draft");
    mcp.ok("publish_task", json!({"task_id": task_id, "task_version": 0}));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let detail = mcp.ok("get_task_detail", json!({"task_name": "rt_sync_kafka_orders"}));
        if detail["status"]["rows_synced"].as_i64().unwrap_or(0) >= 120 {
            assert_eq!(detail["task"]["state"], "running");
            break;
        }
        assert!(Instant::now() < deadline, "not synced: {detail}\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(300));
    }

    // Step 8: runs, executions and their logs; stop, then undeploy.
    let runs = mcp.ok("list_task_run", json!({"task_id": task_id}));
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let run_id = runs[0]["id"].as_i64().unwrap();
    let executions = mcp.ok("list_executions", json!({"task_id": task_id}));
    assert_eq!(executions[0]["attempts"].as_array().unwrap().len(), 1, "{executions}");
    let log = mcp.ok("get_execution_log", json!({"run_id": run_id, "attempt": 1}));
    assert_eq!(log["run_id"], run_id);
    assert!(!log["lines"].as_array().unwrap().is_empty(), "{log}");
    let missing = mcp.err("get_execution_log", json!({"run_id": 99999}));
    assert!(missing.contains("99999"), "{missing}");
    mcp.ok("stop_task", json!({"task_id": task_id}));
    let detail = mcp.ok("get_task_detail", json!({"task_id": task_id}));
    assert_eq!(detail["task"]["state"], "stopped");

    // Alert rules through the tools: created over the task, listed, shown, refused, deleted.
    let task = detail["task"]["name"].as_str().unwrap().to_string();
    let rule = mcp.ok("create_alert", json!({"name": "mcp_lag", "task_name": task, "when": "lag>100", "for": "1m"}));
    assert_eq!(
        (rule["scope_kind"].as_str(), rule["condition"].as_str(), rule["for_secs"].as_i64()),
        (Some("task"), Some("lag>100"), Some(60))
    );
    assert_eq!(mcp.ok("list_alerts", json!({}))[0]["name"], "mcp_lag");
    assert_eq!(mcp.ok("get_alert", json!({"name": "mcp_lag"}))["events"], json!([]));
    assert_eq!(mcp.ok("list_alert_events", json!({})), json!([]), "a stopped task with no lag fires nothing");
    let bad = mcp.err("create_alert", json!({"name": "x", "task_name": task, "when": "lag>"}));
    assert!(bad.contains("expected failed"), "{bad}");
    assert!(mcp.ok("test_alert", json!({"name": "mcp_lag"}))["message"].as_str().unwrap().contains("log only"));
    mcp.ok("delete_alert", json!({"name": "mcp_lag"}));
    assert_eq!(mcp.ok("list_alerts", json!({})), json!([]));

    let table = LakehouseSinkConfig::new(dir.path().join("data/lakehouse").to_str().unwrap(), "public", "mcp_orders");
    let batches = query_table(&table, "SELECT id, code, CAST(amount AS VARCHAR) FROM t ORDER BY id").await.unwrap();
    let mut seen = 0i64;
    for b in &batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let codes = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            assert_eq!(ids.value(i), seen, "ids 0..120 once each");
            assert_eq!(codes.value(i), format!("C{seen}"));
            let amount = b.column(2).as_string_opt::<i32>().map(|a| a.value(i).to_string()).unwrap_or_default();
            assert_eq!(amount, format!("{}.50", seen * 3));
            seen += 1;
        }
    }
    assert_eq!(seen, 120);

    mcp.ok("undeploy_task", json!({"task_id": task_id}));
    let detail = mcp.ok("get_task_detail", json!({"task_id": task_id}));
    assert_eq!(detail["task"]["state"], "draft");
}
