//! The daemon's HTTP API against its own OpenAPI document, fuzzed by schemathesis: every
//! operation with generated valid and invalid input, checking that nothing answers 500 or
//! crashes (a documented 503 for something unreachable is an answer), that every response
//! matches the document, and that bad input gets a 4xx with a one-line reason. Afterwards every
//! task, data source, vcluster and alert rule listed can be shown, and every task's draft still
//! validates.
//!
//! The fuzzer invents data sources and webhooks pointing anywhere, so the test runs in a network
//! namespace of its own (`unshare --net --map-root-user`) where the only interface is loopback:
//! the test re-runs itself there, starts the daemon and schemathesis inside, and checks first
//! that a public address is unreachable. The hooks (`tests/schemathesis/rtsync_hooks.py`) keep
//! generated Lakehouse roots inside the test's directory.
//!
//! Needs `schemathesis` in the test venv (`RTSYNC_PYTHON`, from `scripts/services.sh install
//! venv`), `unshare` and `ip`.

#![allow(clippy::unwrap_used)]

mod daemon_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon_support::Daemon;
use serde_json::{Value, json};

const INSIDE: &str = "RTSYNC_SCHEMATHESIS_NETNS";
const TEST: &str = "schemathesis_finds_no_failure_in_any_operation";
const TOKEN: &str = "schemathesis-test-token";
/// Test cases per operation and phase: 49 operations, about 2,600 cases in 45 s on two shared
/// cores (the figure is printed), well within the 3 minutes CI allows.
const MAX_EXAMPLES: &str = "40";

#[test]
fn schemathesis_finds_no_failure_in_any_operation() {
    if std::env::var_os(INSIDE).is_some() {
        inside_the_namespace();
        return;
    }
    let python = std::env::var("RTSYNC_PYTHON")
        .unwrap_or_else(|_| panic!("RTSYNC_PYTHON is not set: run the README's test command"));
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args(["--net", "--map-root-user", "--"])
        .arg(&exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .env("RTSYNC_PYTHON", python)
        .status()
        .expect("run unshare (util-linux)");
    assert!(status.success(), "the run inside the network namespace failed: {status}");
}

fn inside_the_namespace() {
    bring_loopback_up();
    let public: SocketAddr = "192.0.2.1:80".parse().unwrap();
    let err = TcpStream::connect_timeout(&public, Duration::from_secs(2)).expect_err("no route out of the namespace");
    println!("sandbox: connecting to {public} fails: {err}");

    let dir = tempfile::tempdir().unwrap();
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir_all(&sandbox).unwrap();
    let d = Daemon::start_with(&dir.path().join("data"), Daemon::free_port(), &[], &[("RTSYNC_TOKEN", TOKEN)]);
    let api = Api { port: d.port };

    seed(&api);
    let doc = api.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(doc.0, 200, "{}", doc.1);
    every_path_is_documented_and_routed(&api, &doc.1);

    let python = std::env::var("RTSYNC_PYTHON").unwrap();
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-report");
    let started = Instant::now();
    let out = Command::new(&python)
        .args(["-m", "schemathesis.cli", "--config-file"])
        .arg(tests.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", d.url))
        .args(["--url", &d.url])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            "17",
            "--workers",
            "2",
        ])
        .args(["--request-timeout", "60", "--no-shrink", "--suppress-health-check", "all"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        // Its cache goes beside the report, not into the source tree.
        .current_dir(report.parent().unwrap())
        .env("SCHEMATHESIS_HOOKS", "rtsync_hooks")
        .env("PYTHONPATH", &tests)
        .env("RTSYNC_FUZZ_SANDBOX", &sandbox)
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis from RTSYNC_PYTHON's venv (scripts/services.sh install venv)");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    // The summary's line after "Test cases:": "N generated, N passed".
    let cases = stdout
        .lines()
        .skip_while(|l| !l.contains("Test cases:"))
        .nth(1)
        .map_or("(no summary)".to_string(), |l| l.trim().to_string());
    println!(
        "schemathesis: {cases} test cases in {:.1}s, exit {} (junit report in {})",
        elapsed.as_secs_f64(),
        out.status,
        report.display()
    );

    // The daemon is alive and its catalog consistent.
    let health = api.call("GET", "/health", None);
    assert_eq!(health.0, 200, "the daemon stopped answering; log:\n{}", d.log_text());
    let afterwards = catalog_is_consistent(&api);
    let log = d.log_text();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    assert!(out.status.success(), "schemathesis found failures (above)");
    println!("afterwards: {afterwards}");
}

fn bring_loopback_up() {
    let ip = ["ip", "/usr/sbin/ip", "/sbin/ip"]
        .into_iter()
        .find(|p| Command::new(p).arg("-V").output().is_ok())
        .expect("iproute2's ip");
    let status = Command::new(ip).args(["link", "set", "lo", "up"]).status().unwrap();
    assert!(status.success(), "ip link set lo up");
}

/// Things for the documented examples to find: a data source of each database kind on a
/// loopback port where nothing listens, a task over one (deployed, so it has a run), an alert
/// rule on it, a vcluster and a folder.
fn seed(api: &Api) {
    let ok = |m: &str, p: &str, b: Value| {
        let (status, body) = api.call(m, p, Some(b));
        assert!((200..300).contains(&status), "{m} {p}: {status} {body}");
    };
    ok(
        "POST",
        "/api/v1/datasources",
        json!({"name": "pg", "type": "postgresql", "properties": {"url": "postgres://rtsync@127.0.0.1:1/rtsync", "password": "x"}}),
    );
    ok(
        "POST",
        "/api/v1/datasources",
        json!({"name": "kafka", "type": "kafka", "properties": {"bootstrap.servers": "127.0.0.1:1"}}),
    );
    ok("POST", "/api/v1/vclusters", json!({"name": "big", "type": "SYNC", "slots": 2}));
    ok("POST", "/api/v1/folders", json!({"name": "sales"}));
    ok("POST", "/api/v1/tasks", json!({"name": "orders", "folder": "sales"}));
    ok(
        "PATCH",
        "/api/v1/tasks/orders/config",
        json!({"source": "pg", "source_schema": "public", "source_table": "orders"}),
    );
    ok("POST", "/api/v1/alerts", json!({"name": "orders_failed", "task": "orders", "when": "failed"}));
    ok("POST", "/api/v1/tasks/orders/deploy", json!({}));
}

/// Every path of the document is in docs/api.md, and the router answers it (a request with
/// made-up names gets anything but "no route").
fn every_path_is_documented_and_routed(api: &Api, doc: &str) {
    let doc: Value = serde_json::from_str(doc).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let reference = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md")).unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        assert!(reference.contains(&format!(" {path}")), "docs/api.md does not mention {path}");
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let concrete = path
                .split('/')
                .map(|s| {
                    if s.starts_with('{') {
                        if s == "{id}" || s == "{n}" { "987654" } else { "no_such_name" }
                    } else {
                        s
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let (status, body) = api.call(&method.to_uppercase(), &concrete, Some(json!({})));
            assert!(
                !body.contains("no route") && status != 405,
                "{method} {concrete} is documented but not routed: {status} {body}"
            );
        }
    }
    println!(
        "document: {} paths, {operations} operations, each in docs/api.md and routed",
        doc["paths"].as_object().unwrap().len()
    );
}

/// Every task, data source, vcluster and alert rule listed can be shown, and every task's
/// draft validates (an empty patch re-validates it).
fn catalog_is_consistent(api: &Api) -> String {
    let mut counts = Vec::new();
    for (list, show) in [
        ("/api/v1/tasks", "/api/v1/tasks/"),
        ("/api/v1/datasources", "/api/v1/datasources/"),
        ("/api/v1/vclusters", "/api/v1/vclusters/"),
        ("/api/v1/alerts", "/api/v1/alerts/"),
    ] {
        let (status, body) = api.call("GET", list, None);
        assert_eq!(status, 200, "GET {list}: {body}");
        let items: Vec<Value> = serde_json::from_str(&body).unwrap();
        for item in &items {
            let name = item["name"].as_str().unwrap();
            let path = format!("{show}{}", encode(name));
            let (status, body) = api.call("GET", &path, None);
            assert_eq!(status, 200, "{name:?} is listed by {list} but GET {path} answers {status} {body}");
            if list == "/api/v1/tasks" {
                let (status, body) = api.call("PATCH", &format!("{path}/config"), Some(json!({})));
                assert_eq!(status, 200, "task {name:?}'s draft no longer validates: {body}");
            }
        }
        counts.push(format!("{} {}", items.len(), &list["/api/v1/".len()..]));
    }
    format!("{} listed, each shown; every task draft validates", counts.join(", "))
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Api {
    port: u16,
}

impl Api {
    /// One request with the token; a body is sent as JSON.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let status: u16 = raw.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }
}
