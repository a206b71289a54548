//! The local daemon is safe by default: requests a web page can make (cross-origin posts,
//! DNS rebinding) are refused and change nothing, while the CLI, MCP and the web UI's own
//! requests work; secrets are referenced or encrypted in the catalog, never printed, and a
//! key rotation keeps them usable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod daemon_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::MySqlServer;
use daemon_support::Daemon;
use serde_json::Value;
use tokio_postgres::NoTls;

/// A raw request: (status, head, body).
fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (status, head.to_string(), body.to_string())
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap().to_string()).collect()
}

/// One MCP `tools/call` over a fresh `rtsync mcp`: (isError, text).
fn mcp_call(d: &Daemon, tool: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtsync"))
        .args(["mcp", "--server", &d.url])
        .env_remove("RTSYNC_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
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
    let v: Value = serde_json::from_str(&line).unwrap();
    (v["result"]["isError"].as_bool().unwrap(), v["result"]["content"][0]["text"].as_str().unwrap().to_string())
}

#[test]
fn browser_borne_requests_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"));
    let port = d.port;
    let own = format!("127.0.0.1:{port}");
    let evil_host = format!("evil.example:{port}");
    let folders = || names(&d.json(&["folder", "list"]));
    let datasources = || names(&d.json(&["datasource", "list"]));

    // The issue's first request: a simple cross-site post from any web page.
    let (status, head, body) = raw(
        port,
        "POST",
        "/api/v1/folders",
        &[("Host", &own), ("Content-Type", "text/plain"), ("Origin", "http://evil.example")],
        r#"{"name":"evil_folder"}"#,
    );
    assert_eq!(status, 403, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "forbidden", "{body}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("cross-origin request from \"http://evil.example\""),
        "{body}"
    );
    assert!(!head.to_ascii_lowercase().contains("access-control"), "no CORS: {head}");
    // Without an Origin (an old browser, a form), the body type alone refuses it.
    let (status, _, body) = raw(
        port,
        "POST",
        "/api/v1/folders",
        &[("Host", &own), ("Content-Type", "text/plain")],
        r#"{"name":"evil_folder"}"#,
    );
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("application/json"), "{body}");
    // JSON, but the browser says it comes from another site.
    let (status, _, _) = raw(
        port,
        "POST",
        "/api/v1/datasources",
        &[("Host", &own), ("Content-Type", "application/json"), ("Sec-Fetch-Site", "cross-site")],
        r#"{"name":"evil_ds","type":"kafka","properties":{"bootstrap.servers":"evil.example:9092"}}"#,
    );
    assert_eq!(status, 403);
    let (status, _, _) = raw(
        port,
        "DELETE",
        "/api/v1/datasources/lakehouse",
        &[("Host", &own), ("Content-Type", "text/plain"), ("Origin", "http://evil.example")],
        "",
    );
    assert_eq!(status, 403);
    // A preflight from another site gets no CORS answer, so a browser sends nothing more.
    let (status, head, _) = raw(
        port,
        "OPTIONS",
        "/api/v1/folders",
        &[("Host", &own), ("Origin", "http://evil.example"), ("Access-Control-Request-Method", "POST")],
        "",
    );
    assert!((400..500).contains(&status), "{status}");
    assert!(!head.to_ascii_lowercase().contains("access-control"), "{head}");
    assert!(!folders().contains(&"evil_folder".to_string()), "{:?}", folders());
    assert_eq!(datasources(), ["lakehouse"], "nothing created, nothing deleted");

    // The issue's second request: DNS rebinding reads nothing.
    for path in ["/api/v1/datasources", "/api/v1/folders", "/metrics", "/"] {
        let (status, _, body) = raw(port, "GET", path, &[("Host", &evil_host)], "");
        assert_eq!(status, 403, "{path}: {body}");
        assert!(!body.contains("lakehouse") && !body.contains("<html"), "{path} answered data: {body}");
        assert!(body.contains("--allowed-host evil.example"), "{body}");
    }
    // Probes answer whatever the Host (Kubernetes sends the pod's IP).
    for path in ["/health", "/ready"] {
        let (status, _, _) = raw(port, "GET", path, &[("Host", "10.1.2.3:7878")], "");
        assert_eq!(status, 200, "{path}");
    }

    // The web UI's own request (same origin, JSON), localhost, the CLI and MCP work.
    let ui = [
        ("Host", own.as_str()),
        ("Origin", &format!("http://{own}")),
        ("Sec-Fetch-Site", "same-origin"),
        ("Content-Type", "application/json"),
    ];
    let (status, _, body) = raw(port, "POST", "/api/v1/folders", &ui, r#"{"name":"from_ui"}"#);
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = raw(port, "GET", "/api/v1/folders", &[("Host", &format!("localhost:{port}"))], "");
    assert_eq!(status, 200);
    assert!(body.contains("from_ui"), "{body}");
    let (status, _, page) = raw(port, "GET", "/", &[("Host", &own), ("Sec-Fetch-Site", "cross-site")], "");
    assert_eq!(status, 200, "a link from another site opens the UI");
    assert!(page.contains("\"Content-Type\": \"application/json\""), "the UI sends JSON");
    d.ok(&["folder", "create", "from_cli"]);
    let (is_error, text) = mcp_call(&d, "list_folders");
    assert!(!is_error && text.contains("from_cli") && text.contains("from_ui"), "{text}");
    assert_eq!(folders(), ["default", "from_cli", "from_ui"]);
    assert!(d.log_text().contains("request refused"), "refusals are logged");
}

#[test]
fn allowed_hosts_and_origins_are_the_operators_choice() {
    let dir = tempfile::tempdir().unwrap();
    let port = Daemon::free_port();
    let d = Daemon::start_with(
        &dir.path().join("data"),
        port,
        &["--allowed-host", "rtsync.internal", "--allowed-origin", "https://app.example"],
        &[],
    );
    let internal = format!("rtsync.internal:{port}");
    let (status, _, body) = raw(port, "GET", "/api/v1/folders", &[("Host", &internal)], "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(raw(port, "GET", "/api/v1/folders", &[("Host", &format!("evil.example:{port}"))], "").0, 403);

    let app = [("Host", internal.as_str()), ("Origin", "https://app.example")];
    let (status, head, _) = raw(port, "OPTIONS", "/api/v1/folders", &app, "");
    assert_eq!(status, 204);
    assert!(head.contains("Access-Control-Allow-Origin: https://app.example"), "{head}");
    let mut post = app.to_vec();
    post.extend([("Content-Type", "application/json"), ("Sec-Fetch-Site", "cross-site")]);
    let (status, head, body) = raw(port, "POST", "/api/v1/folders", &post, r#"{"name":"from_app"}"#);
    assert_eq!(status, 201, "{body}");
    assert!(head.contains("Access-Control-Allow-Origin: https://app.example"), "{head}");
    // Another origin still gets nothing.
    let (status, _, _) = raw(
        port,
        "POST",
        "/api/v1/folders",
        &[("Host", &internal), ("Origin", "https://other.example"), ("Content-Type", "application/json")],
        r#"{"name":"from_other"}"#,
    );
    assert_eq!(status, 403);
    assert_eq!(names(&d.json(&["folder", "list"])), ["default", "from_app"]);
}

// ---- secrets ----

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}{nanos:x}", std::process::id())
}

fn rtsync(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rtsync"))
        .args(args)
        .env_remove("RTSYNC_SECRET_KEY")
        .env_remove("RTSYNC_NEW_SECRET_KEY")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every file under `dir`, read as bytes, that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(p.display().to_string());
        }
    }
    found
}

/// A PostgreSQL role with its own password, owning a small table ready for CDC.
async fn pg_role(password: &str) -> (String, String, String) {
    let url = std::env::var("RTSYNC_PG_URL").expect("RTSYNC_PG_URL is not set: run the README's test command");
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let role = unique("sec_").to_lowercase();
    let db: String = client.query_one("SELECT current_database()", &[]).await.unwrap().get(0);
    client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{password}';
             GRANT CREATE ON DATABASE {db} TO {role};
             CREATE SCHEMA {role} AUTHORIZATION {role};
             CREATE TABLE {role}.accounts (id bigint PRIMARY KEY, owner text NOT NULL);
             INSERT INTO {role}.accounts VALUES (1, 'ada'), (2, 'grace'), (3, 'edsger');
             ALTER TABLE {role}.accounts OWNER TO {role};"
        ))
        .await
        .unwrap();
    let host = url.split_once('@').unwrap().1.to_string();
    (role, host.split_once('/').unwrap().0.to_string(), db)
}

/// The issue's grep test: a full workflow with known secrets, in the three safe modes
/// (password inside a URL and inline secrets encrypted, a variable reference, a file
/// reference); every output and every file of the data directory is searched for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leave_the_daemon() {
    let pg_pw = unique("PgPw-Url-");
    let env_pw = unique("PgPw-Env-");
    let wrong_pw = unique("PgPw-Wrong-");
    let sasl_pw = unique("Sasl-Inline-");
    let file_secret = unique("Aws-File-");
    let session_token = unique("Aws-Token-");
    let (role, hostport, db) = pg_role(&pg_pw).await;
    // The variable reference: the same role, its password from the daemon's environment.
    let servers = std::env::var("RTSYNC_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".into());

    let dir = tempfile::tempdir().unwrap();
    let secrets_dir = dir.path().join("secrets");
    std::fs::create_dir(&secrets_dir).unwrap();
    std::fs::write(secrets_dir.join("aws"), format!("{file_secret}\n")).unwrap();
    let (ok, key) = rtsync(&["secrets", "keygen"], &[]);
    assert!(ok && key.trim().len() == 64, "{key}");
    let key = key.trim().to_string();
    let data = dir.path().join("data");
    let env_var = unique("RTSYNC_SECRET_PG_").to_uppercase();
    let wrong_var = unique("RTSYNC_SECRET_WRONG_").to_uppercase();
    let port = Daemon::free_port();
    let mut d = Daemon::start_with(
        &data,
        port,
        &["--secrets-dir", secrets_dir.to_str().unwrap()],
        &[("RTSYNC_SECRET_KEY", &key), (&env_var, &env_pw), (&wrong_var, &wrong_pw), ("HOME_SECRET", "nope")],
    );
    // The role's password is changed to the one in the variable once the URL data source
    // has been tested: both must have worked with their own.
    let mut out = String::new();
    let run = |out: &mut String, args: &[&str]| {
        let text = d.ok(args);
        out.push_str(&text);
        text
    };

    let object = format!("{role}.accounts");
    run(
        &mut out,
        &[
            "datasource",
            "create",
            "pg_url",
            "--type",
            "postgresql",
            "--set",
            &format!("url=postgres://{role}:{pg_pw}@{hostport}/{db}"),
        ],
    );
    run(
        &mut out,
        &[
            "datasource",
            "create",
            "pg_env",
            "--type",
            "postgresql",
            "--set",
            &format!("url=postgres://{role}@{hostport}/{db}"),
            "--set",
            &format!("password_env={env_var}"),
        ],
    );
    run(
        &mut out,
        &[
            "datasource",
            "create",
            "pg_wrong",
            "--type",
            "postgresql",
            "--set",
            &format!("url=postgres://{role}@{hostport}/{db}"),
            "--set",
            &format!("password_env={wrong_var}"),
        ],
    );
    run(
        &mut out,
        &[
            "datasource",
            "create",
            "kafka_sasl",
            "--type",
            "kafka",
            "--set",
            &format!("bootstrap.servers={servers}"),
            "--set",
            "sasl.username=app",
            "--set",
            &format!("sasl.password={sasl_pw}"),
        ],
    );
    let lake = dir.path().join("lake2");
    run(
        &mut out,
        &[
            "datasource",
            "create",
            "lake_s3",
            "--type",
            "lakehouse",
            "--set",
            &format!("root={}", lake.display()),
            "--set",
            "AWS_SECRET_ACCESS_KEY_file=aws",
            "--set",
            &format!("AWS_SESSION_TOKEN={session_token}"),
        ],
    );
    // References the operator did not allow are refused, and nothing is created.
    let refused = d.fail(&[
        "datasource",
        "create",
        "steal_env",
        "--type",
        "postgresql",
        "--set",
        "url=postgres://x@evil.example/db",
        "--set",
        "password_env=HOME_SECRET",
    ]);
    assert!(refused.contains("RTSYNC_SECRET_") && refused.contains("--secret-env-prefix"), "{refused}");
    let refused = d.fail(&[
        "datasource",
        "create",
        "steal_file",
        "--type",
        "kafka",
        "--set",
        "bootstrap.servers=evil.example:9092",
        "--set",
        "sasl.password_file=/etc/passwd",
    ]);
    assert!(refused.contains("--secrets-dir"), "{refused}");
    let refused = d.fail(&[
        "datasource",
        "create",
        "steal_up",
        "--type",
        "kafka",
        "--set",
        "bootstrap.servers=evil.example:9092",
        "--set",
        "sasl.password_file=../data/catalog.db",
    ]);
    assert!(refused.contains("--secrets-dir"), "{refused}");
    let listed = d.json(&["datasource", "list"]);
    out.push_str(&listed.to_string());
    assert_eq!(names(&listed), ["kafka_sasl", "lake_s3", "lakehouse", "pg_env", "pg_url", "pg_wrong"]);

    // What the API shows: secrets ***, references by name, the URL without its password.
    let shown = d.json(&["datasource", "show", "pg_url"]);
    out.push_str(&shown.to_string());
    assert_eq!(shown["properties"]["url"], format!("postgres://{role}@{hostport}/{db}"));
    assert_eq!(shown["properties"]["password"], "***");
    let shown = d.json(&["datasource", "show", "pg_env"]);
    assert_eq!(shown["properties"]["password_env"], env_var.as_str());
    let shown = d.json(&["datasource", "show", "lake_s3"]);
    out.push_str(&shown.to_string());
    assert_eq!(shown["properties"]["AWS_SECRET_ACCESS_KEY_file"], "aws");
    assert_eq!(shown["properties"]["AWS_SESSION_TOKEN"], "***");
    assert_eq!(d.json(&["datasource", "show", "kafka_sasl"])["properties"]["sasl.password"], "***");
    run(&mut out, &["datasource", "show", "kafka_sasl"]);
    run(&mut out, &["datasource", "list"]);

    // The URL's password works (it was split out and encrypted).
    let tested = run(&mut out, &["datasource", "test", "pg_url", "--object", &object]);
    assert!(tested.contains("ready for CDC"), "{tested}");
    // Now the role's password is the variable's: the reference works, the old URL one not.
    {
        let admin = std::env::var("RTSYNC_PG_URL").unwrap();
        let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client.batch_execute(&format!("ALTER ROLE {role} PASSWORD '{env_pw}'")).await.unwrap();
    }
    let tested = run(&mut out, &["datasource", "test", "pg_env", "--object", &object]);
    assert!(tested.contains("ready for CDC"), "{tested}");
    let wrong = d.cli(&["datasource", "test", "pg_wrong", "--object", &object]);
    out.push_str(&wrong.stdout);
    out.push_str(&wrong.stderr);
    assert!(wrong.stdout.contains("password") || wrong.stderr.contains("password"), "{}{}", wrong.stdout, wrong.stderr);
    run(&mut out, &["datasource", "test", "kafka_sasl"]);
    let tested = run(&mut out, &["datasource", "test", "lake_s3"]);
    assert!(tested.contains("writable"), "{tested}");
    run(&mut out, &["meta", "objects", "pg_env", &role]);
    run(&mut out, &["meta", "detail", "pg_env", &role, "accounts", "--format", "json"]);

    // A task from the referenced source: preview, deploy, rows arrive. Unique names: the
    // publication and slot are named after the task, on a shared server.
    let (acc, bad) = (unique("acc_").to_lowercase(), unique("bad_").to_lowercase());
    let (acc, bad) = (acc.as_str(), bad.as_str());
    run(&mut out, &["task", "create", acc, "--type", "REALTIME"]);
    run(
        &mut out,
        &["task", "configure", acc, "--source", "pg_env", "--source-schema", &role, "--source-table", "accounts"],
    );
    let preview = d.json(&["task", "preview", acc]);
    out.push_str(&preview.to_string());
    let owners: Vec<&str> = preview["rows"].as_array().unwrap().iter().map(|r| r["owner"].as_str().unwrap()).collect();
    assert_eq!(owners, ["ada", "grace", "edsger"], "{preview:#}");
    run(&mut out, &["task", "deploy", acc, "-y"]);
    let shown = d.wait_task(acc, Duration::from_secs(90), "the snapshot", |v| v["status"]["rows_synced"] == 3);
    out.push_str(&shown.to_string());
    // A task whose source has the wrong password fails, and says so without the password.
    run(&mut out, &["task", "create", bad, "--type", "REALTIME"]);
    run(
        &mut out,
        &["task", "configure", bad, "--source", "pg_wrong", "--source-schema", &role, "--source-table", "accounts"],
    );
    out.push_str(&d.cli(&["task", "deploy", bad, "-y"]).stderr);
    let failed = d.wait_task(bad, Duration::from_secs(90), "the failure", |v| v["task"]["last_error"].is_string());
    out.push_str(&failed.to_string());
    for task in [acc, bad] {
        let runs = d.json(&["runs", "list", "--task", task]);
        out.push_str(&runs.to_string());
        let run_id = runs[0]["id"].as_i64().unwrap().to_string();
        out.push_str(&d.json(&["runs", "detail", &run_id]).to_string());
        out.push_str(&d.cli(&["attempts", "log", &run_id]).stdout);
        out.push_str(&d.json(&["attempts", "log", &run_id]).to_string());
    }
    out.push_str(&d.json(&["task", "show", acc]).to_string());
    out.push_str(&d.get("/metrics").unwrap().1);
    for tool in ["list_data_sources", "list_folders"] {
        let (is_error, text) = mcp_call(&d, tool);
        assert!(!is_error, "{text}");
        out.push_str(&text);
    }
    assert!(out.contains("pg_url") && out.contains("rtsync_"), "the outputs were collected");
    // Undeploy drops the task's slot and publication from the shared server.
    out.push_str(&d.ok(&["task", "undeploy", acc, "-y"]));
    assert!(d.terminate().success());
    out.push_str(&d.log_text());

    for secret in [&pg_pw, &env_pw, &wrong_pw, &sasl_pw, &file_secret, &session_token, &key] {
        assert!(!out.contains(secret.as_str()), "{secret} was printed:\n{out}");
        let files = files_holding(&data, secret);
        assert!(files.is_empty(), "{secret} is in {files:?}");
    }
    assert!(!files_holding(&data, "enc:v1:").is_empty(), "the catalog holds encrypted values");

    // Without the key the daemon does not start: the catalog's secrets need it.
    let (ok, text) = rtsync(
        &["serve", "--data-dir", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{}", Daemon::free_port())],
        &[],
    );
    assert!(!ok && text.contains("RTSYNC_SECRET_KEY"), "{text}");

    // Rotation: re-encrypted under a new key, which then works; the old one no longer opens them.
    let (_, new_key) = rtsync(&["secrets", "keygen"], &[]);
    let new_key = new_key.trim().to_string();
    let (ok, text) = rtsync(
        &["secrets", "rotate", "--data-dir", data.to_str().unwrap()],
        &[("RTSYNC_SECRET_KEY", &key), ("RTSYNC_NEW_SECRET_KEY", &new_key)],
    );
    assert!(ok && text.contains("re-encrypted under the new key"), "{text}");
    let (ok, text) = rtsync(
        &["serve", "--data-dir", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{}", Daemon::free_port())],
        &[("RTSYNC_SECRET_KEY", &key)],
    );
    assert!(!ok && text.contains("another key"), "{text}");
    let d2 = Daemon::start_with(
        &dir.path().join("data"),
        Daemon::free_port(),
        &["--secrets-dir", secrets_dir.to_str().unwrap()],
        &[("RTSYNC_SECRET_KEY", &new_key), (&env_var, &env_pw)],
    );
    // The role's password went back to the URL's: the rotated ciphertext opens to it.
    {
        let admin = std::env::var("RTSYNC_PG_URL").unwrap();
        let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client.batch_execute(&format!("ALTER ROLE {role} PASSWORD '{pg_pw}'")).await.unwrap();
    }
    let tested = d2.ok(&["datasource", "test", "pg_url", "--object", &object]);
    assert!(tested.contains("ready for CDC"), "{tested}");
    drop(d2);
    assert!(files_holding(&data, &pg_pw).is_empty());
}

/// Plaintext mode says so at start; setting a key later encrypts what is stored.
#[test]
fn a_key_set_later_encrypts_the_stored_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secret = unique("Plain-Sasl-");
    let port = Daemon::free_port();
    let mut d = Daemon::start_with(&data, port, &[], &[]);
    d.ok(&[
        "datasource",
        "create",
        "k",
        "--type",
        "kafka",
        "--set",
        "bootstrap.servers=127.0.0.1:9",
        "--set",
        &format!("sasl.password={secret}"),
    ]);
    assert!(d.log_text().contains("secrets are stored in plaintext"), "{}", d.log_text());
    assert!(d.terminate().success());
    assert!(!files_holding(&data, &secret).is_empty(), "plaintext mode keeps it as given");

    let (_, key) = rtsync(&["secrets", "keygen"], &[]);
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, key.trim()).unwrap();
    let d = Daemon::start_with(&data, port, &["--secret-key-file", key_file.to_str().unwrap()], &[]);
    assert_eq!(d.json(&["datasource", "show", "k"])["properties"]["sasl.password"], "***");
    drop(d);
    assert!(files_holding(&data, &secret).is_empty(), "encrypted at the first start with a key");
    assert!(!files_holding(&data, "enc:v1:").is_empty());

    // And back to plaintext, for a move to references.
    let (ok, text) = rtsync(
        &[
            "secrets",
            "rotate",
            "--data-dir",
            data.to_str().unwrap(),
            "--secret-key-file",
            key_file.to_str().unwrap(),
            "--to-plaintext",
        ],
        &[],
    );
    assert!(ok && text.contains("1 secret value(s) decrypted"), "{text}");
    assert!(!files_holding(&data, &secret).is_empty());
}

per_mysql_server!(fn mysql_password_by_reference);

/// The MySQL family takes its password by reference too: the URL without it, the password
/// from the daemon's environment (on Oracle MySQL a `caching_sha2_password` user, refused or
/// let in without TLS).
fn mysql_password_by_reference(server: MySqlServer) {
    let url = server.url();
    let (scheme_user, rest) = url.split_once("://").unwrap().1.split_once('@').unwrap();
    let (user, password) = scheme_user.split_once(':').unwrap();
    let (hostport, db) = rest.split_once('/').unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_with(
        &dir.path().join("data"),
        Daemon::free_port(),
        &[],
        &[("RTSYNC_SECRET_MY", password), ("RTSYNC_SECRET_MY_WRONG", "not-the-password")],
    );
    let no_password = format!("url=mysql://{user}@{hostport}");
    d.ok(&[
        "datasource",
        "create",
        "my_env",
        "--type",
        "mysql",
        "--set",
        &no_password,
        "--set",
        "password_env=RTSYNC_SECRET_MY",
    ]);
    d.ok(&[
        "datasource",
        "create",
        "my_wrong",
        "--type",
        "mysql",
        "--set",
        &no_password,
        "--set",
        "password_env=RTSYNC_SECRET_MY_WRONG",
    ]);
    let namespaces = names(&d.json(&["meta", "namespaces", "my_env"]));
    assert!(namespaces.contains(&db.to_string()), "{namespaces:?}");
    let refused = d.fail(&["meta", "namespaces", "my_wrong"]);
    assert!(refused.to_ascii_lowercase().contains("access denied"), "{refused}");
    assert!(!refused.contains("not-the-password"), "{refused}");
    assert_eq!(d.json(&["datasource", "show", "my_env"])["properties"]["password_env"], "RTSYNC_SECRET_MY");
}
