//! API tokens: a daemon started with `RTSYNC_TOKEN` (or `--token-file`) answers the API, the
//! metrics and the MCP server's calls only with `Authorization: Bearer <token>`; `/health` and
//! the web UI's page stay open; a non-loopback address without a token is refused at start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "3f9c1e2a7b6d4c8e9f0a1b2c3d4e5f60";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` with an optional bearer token: (status, body).
fn get(port: u16, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &std::path::Path, listen: &str, token: Option<&str>, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtsync"));
    cmd.args(["serve", "--data-dir", dir.to_str().unwrap(), "--listen", listen])
        .args(extra)
        .env("RTSYNC_LOG", "warn")
        .env_remove("RTSYNC_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("RTSYNC_TOKEN", t);
    }
    cmd
}

fn cli(port: u16, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtsync"));
    cmd.args(args)
        .env("RTSYNC_SERVER", format!("http://127.0.0.1:{port}"))
        .env_remove("RTSYNC_TOKEN")
        .stdin(Stdio::null());
    if let Some(t) = token {
        cmd.env("RTSYNC_TOKEN", t);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// One MCP `tools/call` over a fresh `rtsync mcp`: (isError, text).
fn mcp_call(port: u16, token: Option<&str>, tool: &str) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtsync"));
    cmd.args(["mcp", "--server", &format!("http://127.0.0.1:{port}")])
        .env_remove("RTSYNC_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(t) = token {
        cmd.env("RTSYNC_TOKEN", t);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    drop(stdin);
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    (v["result"]["isError"].as_bool().unwrap(), v["result"]["content"][0]["text"].as_str().unwrap().to_string())
}

#[test]
fn a_token_guards_the_api_metrics_and_mcp() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _daemon =
        Serve(serve(&dir.path().join("data"), &format!("127.0.0.1:{port}"), Some(TOKEN), &[]).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, "/health", None).is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "the daemon did not answer /health");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Open: health and the UI's page (which asks for the token on its first API call).
    assert_eq!(get(port, "/", None).unwrap().0, 200);
    // Closed without the token: the API and the metrics.
    let (status, body) = get(port, "/api/v1/vclusters", None).unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("requires a token"), "{body}");
    assert_eq!(get(port, "/metrics", None).unwrap().0, 401);
    assert_eq!(get(port, "/metrics", Some(TOKEN)).unwrap().0, 200);
    assert_eq!(get(port, "/api/v1/vclusters", Some("0000000000000000000000000000000")).unwrap().0, 401);

    let refused = cli(port, None, &["vcluster", "list"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("requires a token") && stderr(&refused).contains("RTSYNC_TOKEN"),
        "{}",
        stderr(&refused)
    );
    let wrong = cli(port, None, &["vcluster", "list", "--token", "not-the-token-at-all"]);
    assert!(stderr(&wrong).contains("the token is wrong"), "{}", stderr(&wrong));
    let ok = cli(port, Some(TOKEN), &["vcluster", "list"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("SYNC"));

    let (is_error, text) = mcp_call(port, None, "list_folders");
    assert!(is_error && text.contains("requires a token"), "{text}");
    let (is_error, text) = mcp_call(port, Some(TOKEN), "list_folders");
    assert!(!is_error && text.contains("default"), "{text}");
}

#[test]
fn exposed_addresses_need_a_token_and_tokens_need_length() {
    let dir = tempfile::tempdir().unwrap();
    let wait = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    // Refused before binding: the address is never served, not even for a moment.
    let (ok, err) = wait(&mut serve(&dir.path().join("a"), &format!("0.0.0.0:{}", free_port()), None, &[]));
    assert!(!ok && err.contains("refusing to serve the API") && err.contains("RTSYNC_TOKEN"), "{err}");
    let (ok, err) = wait(&mut serve(&dir.path().join("b"), &format!("127.0.0.1:{}", free_port()), Some("short"), &[]));
    assert!(!ok && err.contains("at least 16"), "{err}");
    let missing = dir.path().join("no-such-token-file");
    let (ok, err) = wait(&mut serve(
        &dir.path().join("c"),
        &format!("127.0.0.1:{}", free_port()),
        None,
        &["--token-file", missing.to_str().unwrap()],
    ));
    assert!(!ok && err.contains("--token-file"), "{err}");

    // A token file works like the variable.
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let port = free_port();
    let _daemon = Serve(
        serve(&dir.path().join("d"), &format!("127.0.0.1:{port}"), None, &["--token-file", file.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, "/health", None).is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "the daemon with a token file did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(port, "/api/v1/folders", None).unwrap().0, 401);
    assert_eq!(get(port, "/api/v1/folders", Some(TOKEN)).unwrap().0, 200);
}
