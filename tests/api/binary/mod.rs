//! Reliability tests against the real binary as a child process: crash safety under
//! `kill -9`, clean restart and signals, start-up failures and the first start, the data
//! directory's contents, a full disk, rollover with an injected clock, and the
//! write-behind window of consumes.
//!
//! Children never inherit the caller's `EDGEQUOTA__*` variables: each test sets exactly
//! the settings it means.

mod batch;
mod consume;
mod crash;
mod disk;
mod lifecycle;
mod rollover;

use crate::helpers::{Scrape, SERVICE};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A mid-month instant: tests that do not cross a boundary pin their clock here, so a
/// real month turning over mid-test changes nothing.
pub const MID_MONTH: &str = "2026-03-14T12:00:00Z";

pub struct Server {
    child: Child,
    pub base: String,
    /// The gRPC front's address (`host:port`), when it is enabled.
    pub grpc: Option<String>,
    /// Every line the binary wrote to stdout (its JSON log).
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The command for the binary with the test tokens and a data directory, and nothing
/// inherited from the caller's `EDGEQUOTA__*` environment.
pub fn command(dir: &Path, extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgequota"));
    for (k, _) in std::env::vars() {
        if k.starts_with("EDGEQUOTA__") {
            cmd.env_remove(k);
        }
    }
    cmd.env("EDGEQUOTA__SERVER__BIND", "127.0.0.1:0")
        .env("EDGEQUOTA__GRPC__BIND", "127.0.0.1:0")
        .env("EDGEQUOTA__STORE__PATH", dir)
        .env("EDGEQUOTA__AUTH__ADMIN_TOKENS", crate::helpers::ADMIN)
        .env("EDGEQUOTA__AUTH__SERVICE_TOKENS", SERVICE)
        .env("EDGEQUOTA__TELEMETRY__LEVEL", "info")
        .env("EDGEQUOTA__ROLLOVER__CHECK_INTERVAL_MS", "50")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

impl Server {
    pub fn start(dir: &Path, extra: &[(&str, &str)]) -> Server {
        Server::spawn(command(dir, extra))
    }

    /// Starts `cmd` and waits for its `listening on <addr>` line.
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd.spawn().expect("binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        let grpc = Arc::new(Mutex::new(None));
        let grpc_seen = grpc.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            let addr_after = |line: &str, marker: &str| {
                line.split(marker).nth(1).map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect::<String>()
                })
            };
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = addr_after(&line, "rate limit service) serving on ") {
                    *grpc_seen.lock().unwrap() = Some(addr);
                }
                if !sent {
                    if let Some(addr) = addr_after(&line, "listening on ") {
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the binary logs `listening on <addr>`");
        // The gRPC front starts (and logs) before the HTTP one.
        let grpc = grpc.lock().unwrap().clone();
        Server {
            child,
            base: format!("http://{addr}"),
            grpc,
            log,
        }
    }

    pub fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: a plain signal to our own child process.
        unsafe { libc::kill(self.pid(), signal) };
    }

    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().expect("exit status")
    }

    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub async fn post(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    c.post(format!("{base}{path}"))
        .bearer_auth(SERVICE)
        .json(body)
        .send()
        .await
}

/// Sends the request and parses the JSON answer.
pub async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json::<Value>().await.unwrap()
}

/// One server per directory, all with the same `settings` (several nodes of one store).
pub fn start_nodes(dirs: &[tempfile::TempDir], settings: &[(&str, &str)]) -> Vec<Server> {
    dirs.iter()
        .map(|d| Server::start(d.path(), settings))
        .collect()
}

/// The `/metrics` scrape of the node at `base`, parsed by the suite's one parser.
pub async fn metrics_scrape(c: &reqwest::Client, base: &str) -> Scrape {
    let res = c.get(format!("{base}/metrics")).send().await.unwrap();
    Scrape(res.text().await.unwrap())
}

pub async fn create_org(c: &reqwest::Client, base: &str) -> String {
    let res = post(
        c,
        base,
        "/api/orgs.create",
        &json!({"name": "A", "ownerUserId": "u"}),
    )
    .await
    .unwrap();
    res.json::<Value>().await.unwrap()["orgId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The org's entitlements as a service token with `x-tenant-id` sees them.
pub async fn entitlements(c: &reqwest::Client, base: &str, org: &str) -> Value {
    json_of(
        c.get(format!("{base}/api/me/entitlements.read"))
            .bearer_auth(SERVICE)
            .header("x-tenant-id", org),
    )
    .await
}

/// A usage record's body.
pub fn record(org: &str, id: &str, value: u64, at: &str) -> Value {
    json!({"orgId": org, "metric": "api_call", "value": value,
           "occurredAt": at, "request_id": id})
}
