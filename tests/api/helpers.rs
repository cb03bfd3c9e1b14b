//! Test harness: `spawn_app()` starts the whole service in-process on port 0 with a
//! temporary sled directory and a manual clock; `TestApp` wraps the calls tests make.

use chrono::{DateTime, TimeZone, Utc};
use edgequota::clock::ManualClock;
use edgequota::config::Settings;
use edgequota::Application;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use tempfile::TempDir;

pub const ADMIN: &str = "test-admin-token";
pub const SERVICE: &str = "test-service-token";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub dir: TempDir,
    pub handle: actix_web::dev::ServerHandle,
    pub engine: Arc<edgequota::quota::QuotaEngine>,
    /// The store's fault injection (inert unless a test arms it).
    pub faults: Arc<edgequota::store::faults::Faults>,
    /// The gRPC front (Envoy's rate limit service), unless a test disabled it.
    pub grpc: Option<std::net::SocketAddr>,
    pub running: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// The instant tests start at unless they choose one: mid-month, far from a boundary.
pub fn default_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 12, 0, 0).unwrap()
}

pub fn settings(dir: &std::path::Path, extra: &[(&str, &str)]) -> Settings {
    let mut env = vec![
        (
            "EDGEQUOTA__SERVER__BIND".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        ("EDGEQUOTA__SERVER__WORKERS".into(), "2".into()),
        ("EDGEQUOTA__GRPC__BIND".into(), "127.0.0.1:0".into()),
        ("EDGEQUOTA__STORE__PATH".into(), dir.display().to_string()),
        (
            "EDGEQUOTA__STORE__CACHE_CAPACITY_BYTES".into(),
            "16777216".into(),
        ),
        ("EDGEQUOTA__AUTH__ADMIN_TOKENS".into(), ADMIN.into()),
        ("EDGEQUOTA__AUTH__SERVICE_TOKENS".into(), SERVICE.into()),
        ("EDGEQUOTA__ENGINE__ARBITERS".into(), "2".into()),
        ("EDGEQUOTA__ROLLOVER__CHECK_INTERVAL_MS".into(), "20".into()),
        (
            "EDGEQUOTA__DEBUG_LOG__HOT_PATH_SAMPLE_EVERY".into(),
            "1".into(),
        ),
        ("EDGEQUOTA__TELEMETRY__LEVEL".into(), "warn".into()),
        (
            "EDGEQUOTA__ENGINE__IDEMPOTENCY_FILTER_BITS_LOG2".into(),
            "16".into(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load_with_env(None, env).expect("test settings")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(default_now(), &[]).await
}

pub async fn spawn_app_with(now: DateTime<Utc>, extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    spawn_app_in(dir, now, extra).await
}

/// Starts the service on an existing data directory (restarts).
pub async fn spawn_app_in(dir: TempDir, now: DateTime<Utc>, extra: &[(&str, &str)]) -> TestApp {
    let clock = ManualClock::new(now);
    let app = Application::build_with_clock(settings(dir.path(), extra), clock.clone())
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let engine = app.engine();
    let faults = app.faults();
    let grpc = app.grpc_address();
    let running = actix_rt::spawn(app.run_until_stopped());
    TestApp {
        faults,
        grpc,
        running,
        base,
        client: reqwest::Client::new(),
        clock,
        dir,
        handle,
        engine,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the server gracefully and hands back the data directory.
    pub async fn stop(self) -> TempDir {
        let TestApp {
            handle,
            running,
            engine,
            dir,
            ..
        } = self;
        drop(engine);
        handle.stop(true).await;
        running.await.expect("server task").expect("clean shutdown");
        dir
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET path` as `token` acting for `org` through `x-tenant-id`.
    pub async fn get_as_tenant(&self, path: &str, token: &str, org: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .header("x-tenant-id", org)
            .send()
            .await
            .expect("request sent")
    }

    /// The Prometheus scrape, parsed.
    pub async fn metrics_scrape(&self) -> Scrape {
        Scrape(
            self.get("/metrics", ADMIN)
                .await
                .text()
                .await
                .expect("scrape"),
        )
    }

    /// The org's period as stored (written by the rollover sweep), read without rolling
    /// the org: through the admin usage read, which does not touch its actor.
    pub async fn stored_period(&self, org: &str) -> Value {
        let path = format!("/api/admin/usage.read?orgId={org}&periodKey=2026-01");
        body(self.get(&path, ADMIN).await).await["storedPeriodKey"].clone()
    }

    pub async fn create_org(&self) -> String {
        let res = self
            .post(
                "/api/orgs.create",
                SERVICE,
                &json!({"name": "Acme", "ownerUserId": "user_1"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        body(res).await["orgId"].as_str().expect("orgId").to_owned()
    }

    pub async fn mint_key(&self, org: &str) -> String {
        let res = self
            .post("/api/orgs/api-keys.create", SERVICE, &json!({"orgId": org}))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        body(res).await["apiKey"]
            .as_str()
            .expect("apiKey")
            .to_owned()
    }

    pub async fn check(&self, org: &str) -> Response {
        self.post(
            "/api/quota/check",
            SERVICE,
            &json!({"orgId": org, "metric": "api_call"}),
        )
        .await
    }

    pub async fn record(&self, org: &str, request_id: &str, value: u64) -> Response {
        let at = self.clock_now();
        self.post(
            "/api/usage/record",
            SERVICE,
            &json!({"orgId": org, "metric": "api_call", "value": value,
                    "occurredAt": at, "request_id": request_id}),
        )
        .await
    }

    pub async fn entitlements(&self, org: &str) -> Value {
        let res = self
            .get_as_tenant("/api/me/entitlements.read", SERVICE, org)
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        body(res).await
    }

    /// `POST /api/admin/quotas.reset` as admin; the response body.
    pub async fn reset(&self, request: &Value) -> Value {
        body(self.post("/api/admin/quotas.reset", ADMIN, request).await).await
    }

    /// The stored `api_call` usage of `org` in `period` (admin usage.read).
    pub async fn stored_used(&self, org: &str, period: &str) -> Value {
        let path = format!("/api/admin/usage.read?orgId={org}&periodKey={period}");
        body(self.get(&path, ADMIN).await).await["metrics"]["api_call"]["used"].clone()
    }

    /// Waits until every org actor has been stopped for idleness.
    pub async fn wait_for_idle_eviction(&self) {
        eventually(
            "every org actor to be evicted for idleness",
            std::time::Duration::from_secs(10),
            || async { (self.engine.live_actors() == 0).then_some(()) },
        )
        .await;
    }

    pub fn clock_now(&self) -> String {
        use edgequota::clock::Clock;
        self.clock.now().to_rfc3339()
    }
}

/// A Prometheus text exposition.
pub struct Scrape(pub String);

impl Scrape {
    /// The value of one sample, `series` written as exported (labels in name order);
    /// `None` when the scrape has no such sample.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }

    /// As `value`, 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.value(series).unwrap_or(0.0)
    }

    /// Sample lines (no comments).
    pub fn samples(&self) -> impl Iterator<Item = &str> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
    }
}

/// Polls `probe` every 20 ms until it yields a value, failing the test after `timeout`
/// with `what` — for everything a test can only observe once background work has run.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub async fn body(res: Response) -> Value {
    let text = res.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts an error envelope: status, code, and a correlation id.
pub async fn assert_error(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let b = body(res).await;
    assert_eq!(b["code"], code, "code in {b}");
    assert!(
        b["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {b}"
    );
    assert!(
        b["correlationId"].as_str().is_some_and(|c| !c.is_empty()),
        "correlationId in {b}"
    );
    b
}

/// `Some(path)` of a system binary; `None` (the test skips) when it is missing locally.
/// Under `CI=true` a missing binary fails the test: CI installs it.
pub fn system_binary(name: &str) -> Option<String> {
    let found = ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|dir| format!("{dir}/{name}"))
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed, and CI=true needs it (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {name} is not installed (apt-get install {name})");
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
