//! Running `rtsync serve` on a free loopback port with a temporary data directory, and the
//! `rtsync` CLI against it, for the daemon's end-to-end tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// More `serve` arguments and environment variables, kept across restarts.
    args: Vec<String>,
    env: Vec<(String, String)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What one CLI call printed.
pub struct Cli {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Daemon {
    /// Starts a daemon on a free port with its data in `data_dir`.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, free_port())
    }

    pub fn start_on(data_dir: &Path, port: u16) -> Self {
        Self::start_with(data_dir, port, &[], &[])
    }

    /// Starts a daemon with more `serve` arguments and environment variables.
    pub fn start_with(data_dir: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = data_dir.with_extension("daemon.log");
        let mut d = Daemon {
            child: None,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            log,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        d.spawn();
        d
    }

    pub fn free_port() -> u16 {
        free_port()
    }

    fn spawn(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rtsync"))
            .args([
                "serve",
                "--data-dir",
                self.data_dir.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RTSYNC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("spawn rtsync serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.get("/health").is_some_and(|(s, _)| s == 200) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rtsync serve exited with {status}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("rtsync serve did not answer within 30s; log:\n{}", self.log_text());
    }

    /// Starts the daemon again (same data directory and port).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the daemon is still running");
        self.spawn();
    }

    /// SIGKILL: no shutdown path at all.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the running daemon.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("the daemon did not stop within 90s; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A raw GET (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        let status: u16 = raw.split_whitespace().nth(1)?.parse().ok()?;
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((status, body))
    }

    /// Runs `rtsync ARGS` against this daemon.
    pub fn cli(&self, args: &[&str]) -> Cli {
        let out: Output = Command::new(env!("CARGO_BIN_EXE_rtsync"))
            .args(args)
            .env("RTSYNC_SERVER", &self.url)
            .env("RTSYNC_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("run rtsync");
        Cli {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.cli(args);
        assert!(r.ok, "rtsync {args:?} failed: {}\n{}", r.stderr, r.stdout);
        r.stdout
    }

    /// Runs a command that must fail; returns its one-line reason.
    pub fn fail(&self, args: &[&str]) -> String {
        let r = self.cli(args);
        assert!(!r.ok, "rtsync {args:?} should have failed but printed:\n{}", r.stdout);
        let line = r.stderr.trim().to_string();
        assert!(line.starts_with("error: "), "rtsync {args:?}: {line}");
        assert_eq!(line.lines().count(), 1, "a one-line reason: {line}");
        line
    }

    /// Runs a read command with `--format json` and parses its output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("rtsync {args:?} printed no JSON ({e}): {out}"))
    }

    /// Polls `task show NAME` until `cond` holds; returns the last answer.
    pub fn wait_task(
        &self,
        name: &str,
        within: Duration,
        what: &str,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.json(&["task", "show", name]);
            if cond(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!("task {name}: {what} did not happen within {within:?}; last:\n{v:#}\nlog:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
