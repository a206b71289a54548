//! Bad input for every command gives a clear one-line error and leaves the catalog as it was;
//! each row of the seed's troubleshooting table shows up, named, in `task show` and in the
//! attempt logs.

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::time::Duration;

use common::*;
use daemon_support::Daemon;
use serde_json::Value;

fn names(list: &Value, key: &str) -> Vec<String> {
    let mut v: Vec<String> = list.as_array().unwrap().iter().map(|x| x[key].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

fn contains(err: &str, words: &[&str]) {
    for w in words {
        assert!(err.contains(w), "{err:?} should mention {w:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_the_catalog_stays_consistent() {
    let servers = bootstrap();
    let topic = unique("de_topic");
    create_topic(&servers, &topic, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let ks = format!("bootstrap.servers={servers}");

    // Data sources.
    d.ok(&["datasource", "create", "k", "--type", "kafka", "--set", &ks, "--set", "sasl.password=hunter2"]);
    contains(&d.fail(&["datasource", "create", "k", "--type", "kafka", "--set", &ks]), &["\"k\"", "already exists"]);
    contains(
        &d.fail(&["datasource", "create", "x", "--type", "oracle", "--set", "url=x"]),
        &["unknown data source type", "kafka (2)"],
    );
    contains(&d.fail(&["datasource", "create", "x", "--type", "99"]), &["unknown ds_type 99"]);
    contains(&d.fail(&["datasource", "create", "x", "--type", "kafka"]), &["bootstrap.servers"]);
    contains(
        &d.fail(&["datasource", "create", "x", "--type", "kafka", "--set", &ks, "--set", "group.id=g"]),
        &["group.id", "rtsync sets this itself"],
    );
    contains(
        &d.fail(&["datasource", "create", "x", "--type", "mysql", "--set", "url=postgres://u:pw@h/db"]),
        &["not a mysql URL"],
    );
    contains(&d.fail(&["datasource", "create", "bad name", "--type", "kafka", "--set", &ks]), &["not valid"]);
    contains(&d.fail(&["datasource", "create", "x", "--type", "kafka", "--set", "novalue"]), &["KEY=VALUE"]);
    contains(&d.fail(&["datasource", "show", "nope"]), &["data source \"nope\" does not exist"]);
    contains(&d.fail(&["datasource", "test", "nope"]), &["does not exist"]);
    contains(&d.fail(&["datasource", "delete", "k"]), &["-y"]);
    // Secrets are stored but never returned or printed.
    let shown = d.ok(&["datasource", "show", "k", "--format", "json"]);
    assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
    assert!(!d.ok(&["datasource", "list"]).contains("hunter2"));
    d.ok(&[
        "datasource",
        "create",
        "my",
        "--type",
        "aurora-mysql",
        "--set",
        "url=mysql://h:3306/db",
        "--set",
        "password=pw",
    ]);
    // Without --object the test checks the server itself: here, that it cannot be reached.
    let untested = d.fail(&["datasource", "test", "my"]);
    contains(&untested, &["connecting to h:3306", "unreachable"]);
    assert!(!untested.contains("pw"), "{untested}");
    // Browsing connects to the server: an unknown host is named, with the password hidden.
    let unreachable = d.fail(&["meta", "namespaces", "my"]);
    contains(&unreachable, &["connecting to h:3306", "unreachable"]);
    assert!(!unreachable.contains("pw"), "{unreachable}");
    d.ok(&["datasource", "create", "mssql", "--type", "8", "--set", "url=mssql://u@h:1433/db"]);
    contains(
        &d.fail(&["datasource", "test", "mssql"]),
        &["SQL Server check runs against a table", "--object SCHEMA.TABLE"],
    );
    contains(
        &d.fail(&["datasource", "test", "k", "--object", "no_such_topic_xyz"]),
        &["no_such_topic_xyz", "does not exist"],
    );

    // Vclusters and folders.
    contains(&d.fail(&["vcluster", "create", "default", "--type", "SYNC", "--slots", "2"]), &["already exists"]);
    contains(&d.fail(&["vcluster", "create", "v0", "--type", "SYNC", "--slots", "0"]), &["at least 1 slot"]);
    contains(&d.fail(&["vcluster", "create", "v0", "--type", "GPU", "--slots", "1"]), &["unknown", "SYNC"]);
    d.ok(&["vcluster", "create", "general", "--type", "GENERAL", "--slots", "4"]);
    d.ok(&["vcluster", "create", "tiny", "--type", "SYNC", "--slots", "1"]);
    d.ok(&["folder", "create", "f"]);
    contains(&d.fail(&["folder", "create", "f"]), &["already exists"]);

    // Tasks: wrong type, unknown folder/vcluster, duplicates.
    contains(&d.fail(&["task", "create", "t", "--type", "BATCH"]), &["batch sync", "REALTIME"]);
    contains(&d.fail(&["task", "create", "t", "--type", "281"]), &["multi-table", "one REALTIME task"]);
    contains(&d.fail(&["task", "create", "t", "--type", "bogus"]), &["unknown task type"]);
    contains(&d.fail(&["task", "create", "t", "--folder", "nofolder"]), &["folder \"nofolder\" does not exist"]);
    contains(
        &d.fail(&["task", "create", "t", "--vcluster", "novc"]),
        &["no SYNC vcluster \"novc\"", "vcluster create novc --type SYNC"],
    );
    contains(&d.fail(&["task", "create", "t", "--vcluster", "general"]), &["GENERAL", "SYNC vcluster"]);
    contains(&d.fail(&["task", "create", "t.x"]), &["not valid"]);
    d.ok(&["task", "create", "t", "--type", "REALTIME", "--folder", "f", "--vcluster", "tiny"]);
    contains(&d.fail(&["task", "create", "t"]), &["already exists"]);

    // Configure: unknown data source, wrong roles, invalid JSONPath and types.
    contains(&d.fail(&["task", "configure", "nope", "--source", "k"]), &["task \"nope\" does not exist"]);
    contains(
        &d.fail(&["task", "configure", "t", "--source", "missing_ds"]),
        &["data source \"missing_ds\" does not exist"],
    );
    contains(&d.fail(&["task", "configure", "t", "--source", "lakehouse"]), &["lakehouse", "target"]);
    contains(&d.fail(&["task", "configure", "t", "--sink", "k"]), &["not lakehouse"]);
    contains(
        &d.fail(&["task", "configure", "t", "--source", "k", "--column", "bad=$.data[?(@.x:string"]),
        &["\"bad\""],
    );
    contains(
        &d.fail(&["task", "configure", "t", "--source", "k", "--column", "x=$.a:varchar"]),
        &["unknown type \"varchar\""],
    );
    contains(&d.fail(&["task", "configure", "t", "--source", "k", "--column", "noequals"]), &["name=$.json.path:type"]);
    contains(
        &d.fail(&["task", "configure", "t", "--source", "k", "--source-schema", "sales"]),
        &["namespace \"default\""],
    );
    contains(&d.fail(&["task", "configure", "t", "--start-offset", "yesterday"]), &["start_offset"]);
    contains(&d.fail(&["task", "configure", "t", "--error-policy", "ignore"]), &["error_policy"]);
    let t = &d.json(&["task", "list"])[0];
    assert!(t["draft"]["source"].is_null(), "a refused configure changes nothing: {t}");
    assert!(t["draft"]["columns"].as_array().unwrap().is_empty());

    // Lifecycle in the wrong state.
    contains(&d.fail(&["task", "deploy", "t", "-y"]), &["has no source"]);
    contains(&d.fail(&["task", "deploy", "t"]), &["-y"]);
    contains(&d.fail(&["task", "undeploy", "t", "-y"]), &["not deployed"]);
    contains(&d.fail(&["task", "stop", "t"]), &["not deployed"]);
    contains(&d.fail(&["task", "start", "t"]), &["not deployed", "task deploy t"]);
    contains(&d.fail(&["task", "preview", "nope"]), &["does not exist"]);
    d.ok(&["task", "configure", "t", "--source", "k", "--source-table", &topic, "--column", "id=$.id:bigint"]);
    d.ok(&["task", "deploy", "t", "-y"]);
    contains(
        &d.fail(&["task", "deploy", "t", "-y"]),
        &["already deployed and running as version 1", "has not changed"],
    );
    contains(&d.fail(&["task", "start", "t"]), &["already running"]);
    contains(&d.fail(&["task", "delete", "t", "-y"]), &["undeploy it first"]);
    contains(&d.fail(&["datasource", "delete", "k", "-y"]), &["used by task(s) t"]);
    contains(&d.fail(&["vcluster", "delete", "tiny", "-y"]), &["runs task(s) t"]);
    // The vcluster is full.
    d.ok(&["task", "create", "t2", "--vcluster", "tiny"]);
    d.ok(&["task", "configure", "t2", "--source", "k", "--source-table", &topic]);
    contains(&d.fail(&["task", "deploy", "t2", "-y"]), &["vcluster \"tiny\" has no free slot", "1 of 1 used by t"]);
    let t2 = d.json(&["task", "show", "t2"]);
    assert_eq!(t2["task"]["state"], "draft");
    contains(t2["task"]["last_error"].as_str().unwrap(), &["deploy refused", "no free slot"]);
    assert!(d.json(&["runs", "list", "--task", "t2"]).as_array().unwrap().is_empty());
    d.ok(&["task", "stop", "t"]);
    contains(&d.fail(&["task", "stop", "t"]), &["not running (it is stopped)"]);
    d.ok(&["task", "undeploy", "t", "-y"]);
    contains(&d.fail(&["task", "undeploy", "t", "-y"]), &["not deployed"]);

    // Runs and attempts that do not exist.
    contains(&d.fail(&["runs", "detail", "9999"]), &["run 9999 does not exist"]);
    contains(&d.fail(&["attempts", "log", "9999"]), &["run 9999 does not exist"]);
    let run = d.json(&["runs", "list", "--task", "t"])[0]["id"].as_i64().unwrap().to_string();
    contains(&d.fail(&["attempts", "log", &run, "--attempt", "7"]), &["has no attempt 7"]);
    contains(&d.fail(&["runs", "list", "--task", "nope"]), &["does not exist"]);

    // The catalog is as the successful commands left it.
    assert_eq!(names(&d.json(&["datasource", "list"]), "name"), ["k", "lakehouse", "mssql", "my"]);
    assert_eq!(names(&d.json(&["vcluster", "list"]), "name"), ["default", "general", "tiny"]);
    assert_eq!(names(&d.json(&["folder", "list"]), "name"), ["default", "f"]);
    let tasks = d.json(&["task", "list"]);
    assert_eq!(names(&tasks, "name"), ["t", "t2"]);
    assert!(tasks.as_array().unwrap().iter().all(|t| t["state"] == "draft"));
    assert_eq!(d.json(&["vcluster", "show", "tiny"])["slots_used"], 0);
    d.ok(&["task", "delete", "t2", "-y"]);
    contains(&d.fail(&["task", "show", "t2"]), &["does not exist"]);

    // An unreachable daemon is named.
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_rtsync"))
        .args(["task", "list", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!r.status.success());
    contains(&String::from_utf8_lossy(&r.stderr), &["cannot reach the rtsync daemon", "rtsync serve"]);
}

/// Each row of the seed's troubleshooting table, as the user sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn troubleshooting_rows_name_their_cause() {
    let servers = bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    d.ok(&["datasource", "create", "k", "--type", "kafka", "--set", &format!("bootstrap.servers={servers}")]);

    // Source connection failed: nothing listens there; the attempt fails (transient) and retries.
    d.ok(&[
        "datasource",
        "create",
        "down",
        "--type",
        "kafka",
        "--set",
        "bootstrap.servers=127.0.0.1:9",
        "--set",
        "socket.connection.setup.timeout.ms=1000",
    ]);
    contains(&d.fail(&["datasource", "test", "down"]), &["cannot reach Kafka at 127.0.0.1:9"]);
    d.ok(&["task", "create", "unreachable"]);
    d.ok(&["task", "configure", "unreachable", "--source", "down", "--source-table", "whatever"]);
    d.ok(&["task", "deploy", "unreachable", "-y"]);
    let show = d
        .wait_task("unreachable", Duration::from_secs(60), "a failed attempt", |v| v["task"]["last_error"].is_string());
    contains(
        show["task"]["last_error"].as_str().unwrap(),
        &["cannot reach Kafka at 127.0.0.1:9", "retrying", "network reachability"],
    );
    let run = d.json(&["runs", "list", "--task", "unreachable"])[0]["id"].as_i64().unwrap().to_string();
    let log = d.json(&["attempts", "log", &run, "--attempt", "1"]);
    assert_eq!(log["attempt"]["status"], "failed");
    assert_eq!(log["attempt"]["error_kind"], "transient");
    contains(&log["lines"].to_string(), &["cannot reach Kafka", "retrying in"]);
    d.ok(&["task", "undeploy", "unreachable", "-y"]);

    // No data consumed: the topic does not exist; the run fails and the task stays stopped.
    d.ok(&["task", "create", "missing"]);
    d.ok(&["task", "configure", "missing", "--source", "k", "--source-table", "no_such_topic_here"]);
    d.ok(&["task", "deploy", "missing", "-y"]);
    let show = d.wait_task("missing", Duration::from_secs(60), "failure", |v| v["task"]["state"] == "failed");
    contains(
        show["task"]["last_error"].as_str().unwrap(),
        &["no_such_topic_here", "does not exist", "topic/table name"],
    );
    let run = d.json(&["runs", "list", "--task", "missing"])[0].clone();
    assert_eq!(run["status"], "failed");
    let log = d.ok(&["attempts", "log", &run["id"].to_string()]);
    contains(&log, &["does not exist", "task start"]);

    // JSON parsing failed: the message and its offset are named.
    let topic = unique("de_json");
    create_topic(&servers, &topic, 1).await;
    let p = producer(&servers);
    send(&p, &topic, 0, "a", Some(b"{\"id\": 1}"), None);
    send(&p, &topic, 0, "b", Some(b"{not json"), None);
    flush(&p);
    d.ok(&["task", "create", "badjson"]);
    d.ok(&["task", "configure", "badjson", "--source", "k", "--source-table", &topic, "--column", "id=$.id:bigint"]);
    let preview = d.json(&["task", "preview", "badjson"]);
    assert_eq!(preview["rows"].as_array().unwrap().len(), 1);
    contains(&preview["rejected"][0].to_string(), &["partition 0 offset 1", "not valid JSON"]);
    d.ok(&["task", "deploy", "badjson", "-y"]);
    let show = d.wait_task("badjson", Duration::from_secs(60), "failure", |v| v["task"]["state"] == "failed");
    contains(show["task"]["last_error"].as_str().unwrap(), &["partition 0 offset 1", "not valid JSON", "JSONPath"]);
    let run = d.json(&["runs", "list", "--task", "badjson"])[0]["id"].to_string();
    contains(&d.ok(&["attempts", "log", &run]), &["offset 1", "not valid JSON"]);
    // Fixed by the dead-letter policy: deploy the changed draft, the task goes on.
    d.ok(&["task", "configure", "badjson", "--error-policy", "dead_letter"]);
    d.ok(&["task", "deploy", "badjson", "-y"]);
    let show = d.wait_task("badjson", Duration::from_secs(60), "dead letter", |v| v["status"]["dead_lettered"] == 1);
    assert_eq!(show["task"]["state"], "running");
    assert_eq!(show["deployed"]["version"], 2);

    // Target table write failed: the target's `id` column is a string, the mapping writes bigint.
    let topic2 = unique("de_sink");
    create_topic(&servers, &topic2, 1).await;
    send(&p, &topic2, 0, "a", Some(b"{\"id\": 7}"), None);
    flush(&p);
    d.ok(&["task", "create", "first"]);
    d.ok(&[
        "task",
        "configure",
        "first",
        "--source",
        "k",
        "--source-table",
        &topic2,
        "--sink-table",
        "shared",
        "--column",
        "id=$.id:string",
    ]);
    d.ok(&["task", "deploy", "first", "-y"]);
    d.wait_task("first", Duration::from_secs(60), "a commit", |v| v["status"]["rows_synced"] == 1);
    d.ok(&["task", "create", "second"]);
    d.ok(&[
        "task",
        "configure",
        "second",
        "--source",
        "k",
        "--source-table",
        &topic2,
        "--sink-table",
        "shared",
        "--column",
        "id=$.id:bigint",
    ]);
    d.ok(&["task", "deploy", "second", "-y"]);
    let show =
        d.wait_task("second", Duration::from_secs(60), "a write failure", |v| v["task"]["last_error"].is_string());
    contains(show["task"]["last_error"].as_str().unwrap(), &["public/shared", "target table"]);
}
