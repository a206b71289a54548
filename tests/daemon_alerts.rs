//! Alert rules end to end against a webhook receiver this test runs on loopback: a task
//! that fails fires a signed `failed` alert; a lag rule fires, stays firing across a daemon
//! restart without a second notification, and its resolution arrives exactly once; `alert
//! test` delivers; bad input is refused with one line.

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use daemon_support::Daemon;
use serde_json::Value;

const SECRET: &str = "s3cr3t-for-hmac";

/// One POST the receiver took: its signature header and its JSON body.
#[derive(Clone, Debug)]
struct Received {
    signature: Option<String>,
    raw: Vec<u8>,
    body: Value,
}

/// A webhook receiver on loopback that answers 200 and keeps what it got.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut length, mut signature) = (0usize, None);
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                assert!(line.starts_with("POST /hook "), "{line}");
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let (k, v) = l.split_once(':').unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => length = v.trim().parse().unwrap(),
                        "x-rtsync-signature" => signature = Some(v.trim().to_string()),
                        _ => {}
                    }
                }
                let mut raw = vec![0u8; length];
                reader.read_exact(&mut raw).unwrap();
                let body = serde_json::from_slice(&raw).unwrap();
                keep.lock().unwrap().push(Received { signature, raw, body });
                stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            }
        });
        Receiver { url, got }
    }

    fn of(&self, rule: &str, state: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.body["rule"] == rule && r.body["state"] == state)
            .cloned()
            .collect()
    }

    fn wait(&self, d: &Daemon, rule: &str, state: &str, within: Duration) -> Received {
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.of(rule, state).into_iter().next() {
                return r;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {state} notification of {rule} within {within:?}; got {:?}\nlog:\n{}",
                    self.got.lock().unwrap(),
                    d.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, body).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_resolve_and_survive_a_restart() {
    let servers = bootstrap();
    let hook = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&dir.path().join("data"));
    d.ok(&["datasource", "create", "k", "--type", "kafka", "--set", &format!("bootstrap.servers={servers}")]);

    // Bad input: one line each, nothing stored.
    d.ok(&["task", "create", "missing"]);
    let bad = d.fail(&["alert", "create", "x", "--task", "missing", "--when", "speed>3"]);
    assert!(bad.contains("expected failed, freshness>DURATION"), "{bad}");
    let bad = d.fail(&["alert", "create", "x", "--when", "failed"]);
    assert!(bad.contains("needs a scope"), "{bad}");
    let bad = d.fail(&["alert", "create", "x", "--task", "nope", "--when", "failed"]);
    assert!(bad.contains("task \"nope\" does not exist"), "{bad}");
    let bad = d.fail(&["alert", "create", "x", "--task", "missing", "--when", "failed", "--webhook", "ftp://h/x"]);
    assert!(bad.contains("http:// or https://"), "{bad}");
    let bad = d.fail(&["alert", "create", "x", "--task", "missing", "--when", "lag>1", "--for", "soon"]);
    assert!(bad.contains("--for \"soon\""), "{bad}");
    assert_eq!(d.json(&["alert", "list"]), serde_json::json!([]));

    // A task that fails definitely (its topic does not exist) fires a signed `failed` alert.
    d.ok(&[
        "alert",
        "create",
        "on_fail",
        "--task",
        "missing",
        "--when",
        "failed",
        "--webhook",
        &hook.url,
        "--secret",
        SECRET,
    ]);
    let bad = d.fail(&["alert", "create", "on_fail", "--folder", "default", "--when", "failed"]);
    assert!(bad.contains("exists already"), "{bad}");
    let shown = d.json(&["alert", "show", "on_fail"]);
    assert_eq!(shown["rule"]["secret"], "***", "the secret is redacted: {shown}");
    assert!(!d.ok(&["alert", "show", "on_fail", "--format", "json"]).contains(SECRET));
    d.ok(&["task", "configure", "missing", "--source", "k", "--source-table", &unique("no_such_topic")]);
    d.ok(&["task", "deploy", "missing", "-y"]);
    d.wait_task("missing", Duration::from_secs(60), "failure", |v| v["task"]["state"] == "failed");
    let seen_failed = Instant::now();
    let fired = hook.wait(&d, "on_fail", "firing", Duration::from_secs(30));
    println!("failed task seen → firing notification received: {:.1} s", seen_failed.elapsed().as_secs_f64());
    assert_eq!(fired.signature.as_deref(), Some(format!("sha256={}", hmac_hex(SECRET, &fired.raw)).as_str()));
    assert_eq!(fired.body["task"], "missing");
    assert_eq!(fired.body["condition"], "failed");
    assert!(fired.body["value"].as_str().unwrap().contains("does not exist"), "{}", fired.body);
    assert!(fired.body["id"].as_str().unwrap().ends_with("-firing"));
    assert!(fired.body["fired_at"].is_string() && fired.body["resolved_at"].is_null());

    // `alert test` delivers through the same webhook, signed.
    let out = d.ok(&["alert", "test", "on_fail"]);
    assert!(out.contains("answered 200"), "{out}");
    let test = hook.wait(&d, "on_fail", "test", Duration::from_secs(5));
    assert_eq!(test.signature.unwrap(), format!("sha256={}", hmac_hex(SECRET, &test.raw)));

    // A lag rule over the folder: a stopped task falls behind, fires, survives a restart.
    let topic = unique("al_lag");
    create_topic(&servers, &topic, 1).await;
    let p = producer(&servers);
    send(&p, &topic, 0, "k0", Some(b"{\"id\": 0}"), None);
    flush(&p);
    d.ok(&["task", "create", "lagging"]);
    d.ok(&[
        "task",
        "configure",
        "lagging",
        "--source",
        "k",
        "--source-table",
        &topic,
        "--column",
        "id=$.id:bigint",
        "--commit-interval",
        "250ms",
    ]);
    d.ok(&["task", "deploy", "lagging", "-y"]);
    d.wait_task("lagging", Duration::from_secs(60), "first row", |v| v["status"]["rows_synced"] == 1);
    d.ok(&["task", "stop", "lagging"]);
    d.ok(&[
        "alert",
        "create",
        "behind",
        "--folder",
        "default",
        "--when",
        "lag>2",
        "--for",
        "2s",
        "--webhook",
        &hook.url,
    ]);
    for i in 1..=5 {
        // One record per batch: tansu's high watermark is wrong after multi-record batches.
        send(&p, &topic, 0, &format!("k{i}"), Some(format!("{{\"id\": {i}}}").as_bytes()), None);
        flush(&p);
    }
    d.wait_task("lagging", Duration::from_secs(30), "lag 5", |v| v["status"]["lag"] == 5);
    let fired = hook.wait(&d, "behind", "firing", Duration::from_secs(30));
    assert_eq!((fired.body["task"].as_str(), fired.body["value"].as_str()), (Some("lagging"), Some("5")));
    assert_eq!(fired.signature, None, "no secret, no signature");
    let firing = d.json(&["alert", "events"]);
    assert!(firing.as_array().unwrap().iter().any(|e| e["rule"] == "behind" && e["state"] == "firing"), "{firing}");

    assert!(d.terminate().success());
    d.restart();
    // Several evaluator rounds after the restart: still firing, not notified again.
    std::thread::sleep(Duration::from_secs(8));
    let shown = d.json(&["alert", "show", "behind"]);
    let lagging: Vec<&Value> = shown["events"].as_array().unwrap().iter().filter(|e| e["task"] == "lagging").collect();
    assert_eq!(lagging.len(), 1, "{shown}");
    assert_eq!(lagging[0]["state"], "firing");
    assert_eq!(hook.of("behind", "firing").len(), 1);
    assert_eq!(hook.of("on_fail", "firing").len(), 1, "the failed alert is not sent again either");

    // The task catches up: the alert resolves, notified once.
    d.ok(&["task", "start", "lagging"]);
    d.wait_task("lagging", Duration::from_secs(60), "caught up", |v| v["status"]["lag"] == 0);
    let caught_up = Instant::now();
    let resolved = hook.wait(&d, "behind", "resolved", Duration::from_secs(30));
    println!("lag 0 seen → resolved notification received: {:.1} s", caught_up.elapsed().as_secs_f64());
    assert_eq!(
        resolved.body["id"].as_str().unwrap(),
        fired.body["id"].as_str().unwrap().replace("-firing", "-resolved")
    );
    assert!(resolved.body["resolved_at"].is_string());
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(hook.of("behind", "resolved").len(), 1);
    assert_eq!(hook.of("behind", "firing").len(), 1);
    let shown = d.json(&["alert", "show", "behind"]);
    assert_eq!(shown["events"][0]["state"], "resolved");
    assert_eq!(shown["events"][0]["resolved_sent"], true);
    assert_eq!(shown["rule"]["firing"], 0, "{shown}");

    let list = d.ok(&["alert", "list"]);
    assert!(list.contains("behind") && list.contains("folder default") && list.contains("lag>2"), "{list}");
    d.ok(&["alert", "delete", "behind", "-y"]);
    assert!(d.fail(&["alert", "show", "behind"]).contains("does not exist"));
}
