//! What the nginx and Caddy tests share: a small upstream that remembers what reached
//! it, a gateway process started from a shipped configuration (templated only for ports
//! and paths) and stopped when dropped, and the scenario both gateways must pass with a
//! hostile end client.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shipped configuration's addresses, replaced by the test's.
pub const SHIPPED_EDGEQUOTA: &str = "127.0.0.1:8080";
pub const SHIPPED_UPSTREAM: &str = "127.0.0.1:8000";

pub fn shipped(name: &str) -> String {
    let path = format!("{}/config/gateways/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A request that reached the upstream: its path and its `X-Edgequota-Org`.
pub type Reached = (String, Option<String>);

/// What reached the upstream.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<Reached>>>);

impl Seen {
    pub fn all(&self) -> Vec<Reached> {
        self.0.lock().unwrap().clone()
    }
}

/// A minimal HTTP/1.1 upstream on its own thread: answers 200 "upstream" and closes.
pub fn start_upstream() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("upstream binds");
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || serve_one(stream, &log));
        }
    });
    (addr, seen)
}

fn serve_one(mut stream: TcpStream, seen: &Seen) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut org = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("x-edgequota-org") {
                org = Some(value.trim().to_owned());
            }
        }
    }
    seen.0.lock().unwrap().push((path, org));
    let _ = stream.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\nConnection: close\r\n\r\nupstream",
    );
}

/// A gateway child process, killed (and reaped) when dropped.
pub struct Gateway {
    pub base: String,
    child: Child,
    /// Holds the configuration and logs until the gateway is gone.
    _dir: tempfile::TempDir,
}

impl Gateway {
    pub fn spawn(mut cmd: Command, port: u16, dir: tempfile::TempDir) -> Gateway {
        let child = cmd.spawn().expect("the gateway starts");
        let gw = Gateway {
            base: format!("http://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the gateway never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scenario both gateways pass: allowed calls reach the upstream with the real org;
/// a hostile client's own headers and query change nothing; the call after the quota is
/// spent is 429 with `Retry-After` and never reaches the upstream; a revoked key is 401;
/// the counter equals the calls that reached the upstream.
pub async fn exercise(app: &TestApp, gateway: &Gateway, seen: &Seen) {
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    let other = app.create_org().await;
    // Leave 4 of the free plan's 1,000 calls.
    assert_eq!(
        app.record(&org, "req_fill", 996).await.status(),
        StatusCode::OK
    );
    let client = reqwest::Client::new();
    let call = |path: &str| client.get(format!("{}{path}", gateway.base));

    // 1: a plain call with the key as Bearer.
    let res = call("/v1/plain").bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "upstream");
    // 2: the key as X-Api-Key, and a client trying to charge nothing, choose the metric,
    // pretend to be another org, and turn a denial into a 200.
    let res = call("/v1/hostile?metric=nope&denyStatus=200")
        .header("X-Api-Key", &key)
        .header("X-Edgequota-Metric", "nope")
        .header("X-Edgequota-Cost", "0")
        .header("X-Edgequota-Org", &other)
        .header("x-tenant-id", &other)
        .header("X-Edgequota-Token", SERVICE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // 3: a client asking to be charged nothing... or a lot: always exactly 1.
    let res = call("/v1/cheap")
        .bearer_auth(&key)
        .header("X-Edgequota-Cost", "1000")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.entitlements(&org).await["used"], 999);
    let res = call("/v1/last").bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // 5: spent. Denied, with Retry-After, whatever the client asks for.
    for hostile in [
        "/v1/over",
        "/v1/over?denyStatus=200",
        "/v1/over?metric=api_call&denyStatus=403",
    ] {
        let res = call(hostile)
            .bearer_auth(&key)
            .header("X-Edgequota-Org", &other)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{hostile}");
        assert!(res.headers().contains_key("retry-after"), "{hostile}");
        let b: serde_json::Value = res.json().await.expect("a JSON envelope");
        assert_eq!(b["code"], "QUOTA_EXCEEDED");
        assert_eq!(b["allow"], false);
    }
    // Revoked: 401, not forwarded.
    let key_id = key.split('.').nth(1).unwrap().to_owned();
    let res = app
        .post(
            "/api/orgs/api-keys.revoke",
            SERVICE,
            &json!({"keyId": key_id}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = call("/v1/revoked").bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = call("/v1/anonymous").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let reached = seen.all();
    let paths: Vec<&str> = reached
        .iter()
        .map(|(p, _)| p.split('?').next().unwrap())
        .collect();
    assert_eq!(paths, ["/v1/plain", "/v1/hostile", "/v1/cheap", "/v1/last"]);
    for (path, told) in &reached {
        assert_eq!(
            told.as_deref(),
            Some(org.as_str()),
            "{path} was told another org"
        );
    }
    // The counter: the 996 recorded plus exactly the calls that reached the upstream.
    assert_eq!(
        app.entitlements(&org).await["used"],
        996 + reached.len() as u64
    );
    assert_eq!(app.entitlements(&other).await["used"], 0);
}
