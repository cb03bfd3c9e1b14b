//! Reliability tests against the real binary as a child process: crash safety under
//! `kill -9`, clean restart, SIGTERM shutdown, and rollover with an injected clock.

use crate::helpers::{ADMIN, SERVICE};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    pub fn start(dir: &Path, extra: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgequota"));
        cmd.env("EDGEQUOTA__SERVER__BIND", "127.0.0.1:0")
            .env("EDGEQUOTA__STORE__PATH", dir)
            .env("EDGEQUOTA__AUTH__ADMIN_TOKENS", ADMIN)
            .env("EDGEQUOTA__AUTH__SERVICE_TOKENS", SERVICE)
            .env("EDGEQUOTA__TELEMETRY__LEVEL", "info")
            .env("EDGEQUOTA__ROLLOVER__CHECK_INTERVAL_MS", "50")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        let addr: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                            .collect();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the binary logs `listening on <addr>`");
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain signal to our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().expect("exit status")
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
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json::<Value>().await.unwrap()
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

async fn used(c: &reqwest::Client, base: &str, org: &str) -> Value {
    json_of(
        c.get(format!("{base}/api/me/entitlements.read"))
            .bearer_auth(SERVICE)
            .header("x-tenant-id", org),
    )
    .await
}

#[derive(Clone)]
struct Event {
    org: String,
    id: String,
    value: u64,
    at: String,
}

impl Event {
    fn body(&self) -> Value {
        json!({"orgId": self.org, "metric": "api_call", "value": self.value,
               "occurredAt": self.at, "request_id": self.id})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let c = client();
    let mut orgs = Vec::new();
    for _ in 0..4 {
        orgs.push(create_org(&c, &server.base).await);
    }
    let at = chrono::Utc::now().to_rfc3339();
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 800;
    let events: Vec<Vec<Event>> = (0..CLIENTS)
        .map(|k| {
            (0..PER_CLIENT)
                .map(|i| Event {
                    org: orgs[(k + i) % orgs.len()].clone(),
                    id: format!("c{k}-e{i}"),
                    value: 1 + (i % 5) as u64,
                    at: at.clone(),
                })
                .collect()
        })
        .collect();
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for batch in events.clone() {
        let (c, base, acked) = (c.clone(), server.base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut answered: HashMap<String, String> = HashMap::new();
            for e in batch {
                match post(&c, &base, "/api/usage/record", &e.body()).await {
                    Ok(res) if res.status() == 200 => {
                        answered.insert(e.id.clone(), res.text().await.unwrap_or_default());
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(res) => panic!("unexpected status {}", res.status()),
                    Err(_) => break, // the server died under us
                }
            }
            answered
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.load(Ordering::SeqCst) < CLIENTS * PER_CLIENT / 2 {
        assert!(Instant::now() < deadline, "records too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    let mut first_bodies: HashMap<String, String> = HashMap::new();
    for t in tasks {
        first_bodies.extend(t.await.unwrap());
    }
    let total = CLIENTS * PER_CLIENT;
    assert!(
        first_bodies.len() >= total / 2 && first_bodies.len() < total,
        "killed mid-stream: {}",
        first_bodies.len()
    );

    let server = Server::start(dir.path(), &[]);
    // Replay every event (acknowledged or not), concurrently per client.
    let mut tasks = Vec::new();
    for batch in events.clone() {
        let (c, base) = (c.clone(), server.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut bodies = HashMap::new();
            for e in batch {
                let res = post(&c, &base, "/api/usage/record", &e.body())
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "replay of {}", e.id);
                bodies.insert(e.id.clone(), res.text().await.unwrap());
            }
            bodies
        }));
    }
    let mut second: HashMap<String, String> = HashMap::new();
    for t in tasks {
        second.extend(t.await.unwrap());
    }
    for (id, body) in &first_bodies {
        assert_eq!(&second[id], body, "replay of acknowledged {id} differs");
    }
    let mut expected: HashMap<&str, u64> = HashMap::new();
    for e in events.iter().flatten() {
        *expected.entry(e.org.as_str()).or_default() += e.value;
    }
    for org in &orgs {
        assert_eq!(
            used(&c, &server.base, org).await["used"],
            expected[org.as_str()],
            "org {org}"
        );
    }
    // A third pass changes nothing and answers the same bodies.
    for e in events.iter().flatten().step_by(7) {
        let res = post(&c, &server.base, "/api/usage/record", &e.body())
            .await
            .unwrap();
        assert_eq!(res.text().await.unwrap(), second[&e.id]);
    }
    for org in &orgs {
        assert_eq!(
            used(&c, &server.base, org).await["used"],
            expected[org.as_str()]
        );
    }
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_sigterm_restart_and_the_exit_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let c = client();
    let org = create_org(&c, &server.base).await;
    let res = post(
        &c,
        &server.base,
        "/api/orgs/api-keys.create",
        &json!({"orgId": org}),
    )
    .await
    .unwrap();
    let key = res.json::<Value>().await.unwrap()["apiKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = Event {
        org: org.clone(),
        id: "keep".into(),
        value: 33,
        at: chrono::Utc::now().to_rfc3339(),
    };
    let first = post(&c, &server.base, "/api/usage/record", &event.body())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let period = used(&c, &server.base, &org).await["periodKey"].clone();
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");

    let server = Server::start(dir.path(), &[]);
    let e = used(&c, &server.base, &org).await;
    assert_eq!(e["used"], 33);
    assert_eq!(e["periodKey"], period);
    let replay = post(&c, &server.base, "/api/usage/record", &event.body())
        .await
        .unwrap();
    assert_eq!(replay.text().await.unwrap(), first);
    let res = c
        .post(format!("{}/api/quota/check", server.base))
        .bearer_auth(&key)
        .json(&json!({"orgId": org, "metric": "api_call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"allow": true, "remaining": 967})
    );
    assert_eq!(used(&c, &server.base, &org).await["used"], 33);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_injected_clock_the_binary_rolls_every_org_over_at_the_month_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let start = "2027-02-28T23:59:57Z";
    let server = Server::start(dir.path(), &[("EDGEQUOTA__CLOCK__START_AT", start)]);
    let c = client();
    let orgs = [
        create_org(&c, &server.base).await,
        create_org(&c, &server.base).await,
    ];
    for (i, org) in orgs.iter().enumerate() {
        let e = Event {
            org: org.clone(),
            id: "r".into(),
            value: 10 + i as u64,
            at: start.into(),
        };
        let body = post(&c, &server.base, "/api/usage/record", &e.body())
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(body["periodKey"], "2027-02");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for org in &orgs {
        loop {
            let e = used(&c, &server.base, org).await;
            if e["periodKey"] == "2027-03" {
                assert_eq!(e["used"], 0);
                break;
            }
            assert!(Instant::now() < deadline, "never rolled over: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for (i, org) in orgs.iter().enumerate() {
        let url = format!(
            "{}/api/admin/usage.read?orgId={org}&periodKey=2027-02",
            server.base
        );
        assert_eq!(
            json_of(c.get(url).bearer_auth(ADMIN)).await["metrics"]["api_call"]["used"],
            10 + i as u64
        );
    }
    let reset = |c: reqwest::Client, base: String| {
        let body = json!({"periodKey": "2027-03"});
        json_of(
            c.post(format!("{base}/api/admin/quotas.reset"))
                .bearer_auth(ADMIN)
                .json(&body),
        )
    };
    assert_eq!(
        reset(c.clone(), server.base.clone()).await,
        json!({"updated": 0, "periodKey": "2027-03"})
    );
    assert_eq!(
        reset(c.clone(), server.base.clone()).await,
        json!({"updated": 0, "periodKey": "2027-03"})
    );
    assert!(server.terminate().success());
}
