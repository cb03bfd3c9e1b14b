//! A stateful fake of the slice of the Stripe API edgequota uses, served over real
//! HTTP inside the test process so the service's own async-stripe client talks to
//! it unchanged. Tests read and steer its state through `FakeStripe`'s methods.
//!
//! Every request passes, in order: recording, failure injection, auth, the
//! idempotency cache, then the route handlers; `server` holds that pipeline.

mod customers;
mod invoices;
pub mod objects;
mod params;
mod schedules;
mod server;
mod state;
mod subscriptions;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use serde_json::Value;
use state::{find, find_mut, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub const API_KEY: &str = "sk_test_edgequota_fake";

/// One request as the fake received it, with percent-decoded parameters.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
}

impl Recorded {
    /// A parameter by its wire name (`items[0][price]`): the body first, then the query.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .chain(&self.query)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Clone, Debug)]
pub struct FailRule {
    /// `None` matches every method.
    pub method: Option<String>,
    /// Matched against the full path, e.g. `/v1/customers`.
    pub path_prefix: Option<String>,
    pub mode: FailMode,
    /// The rule expires after this many matching requests; `None` = until cleared.
    pub times: Option<usize>,
}

#[derive(Clone, Debug)]
pub enum FailMode {
    /// 500 `api_error`.
    ServerError,
    /// 400 `invalid_request_error`: Stripe refusing the request itself.
    BadRequest,
    /// 429 `rate_limit_error` with a `Retry-After` header.
    RateLimited { retry_after_secs: u64 },
    /// Sleep, then answer normally.
    Slow(Duration),
}

impl FailRule {
    pub fn server_error(path_prefix: &str, times: usize) -> FailRule {
        FailRule::new(path_prefix, FailMode::ServerError, Some(times))
    }

    pub fn bad_request(path_prefix: &str, times: usize) -> FailRule {
        FailRule::new(path_prefix, FailMode::BadRequest, Some(times))
    }

    pub fn rate_limited(path_prefix: &str, retry_after_secs: u64, times: usize) -> FailRule {
        let mode = FailMode::RateLimited { retry_after_secs };
        FailRule::new(path_prefix, mode, Some(times))
    }

    pub fn slow(path_prefix: &str, delay: Duration, times: Option<usize>) -> FailRule {
        FailRule::new(path_prefix, FailMode::Slow(delay), times)
    }

    fn new(path_prefix: &str, mode: FailMode, times: Option<usize>) -> FailRule {
        FailRule {
            method: None,
            path_prefix: Some(path_prefix.to_string()),
            mode,
            times,
        }
    }

    /// Restricts the rule to one HTTP method.
    pub fn on(mut self, method: &str) -> FailRule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

struct Shared {
    store: Mutex<Store>,
    requests: Mutex<Vec<Recorded>>,
    failures: Mutex<Vec<FailRule>>,
    clock: Mutex<Option<i64>>,
    /// Requests the fake has finished handling (answered), for tests that must wait
    /// until a slow request has had its effect.
    completed: std::sync::atomic::AtomicUsize,
}

impl Shared {
    fn now(&self) -> i64 {
        lock(&self.clock).unwrap_or_else(|| chrono::Utc::now().timestamp())
    }

    /// The first matching rule, counting one use against its `times`.
    fn take_failure(&self, method: &str, path: &str) -> Option<FailMode> {
        let mut rules = lock(&self.failures);
        let i = rules.iter().position(|r| r.matches(method, path))?;
        let mode = rules[i].mode.clone();
        if let Some(left) = rules[i].times.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                rules.remove(i);
            }
        }
        Some(mode)
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct FakeStripe {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    handle: ServerHandle,
}

fn serve(shared: &Arc<Shared>, listener: std::net::TcpListener) -> actix_web::dev::Server {
    let data = web::Data::from(shared.clone());
    HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(server::serve))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .listen(listener)
    .expect("listen fake stripe")
    .run()
}

impl FakeStripe {
    /// Serves on 127.0.0.1:0 with one worker, spawned on the current actix runtime.
    pub async fn start() -> FakeStripe {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::seeded()),
            requests: Mutex::default(),
            failures: Mutex::default(),
            clock: Mutex::default(),
            completed: Default::default(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake stripe");
        let addr = listener.local_addr().expect("fake stripe address");
        let server = serve(&shared, listener);
        let handle = server.handle();
        actix_rt::spawn(server);
        FakeStripe {
            shared,
            addr,
            handle,
        }
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    /// Serves again on the same address, with the same state, after `stop` (an outage
    /// that ends). The address is re-bound with SO_REUSEADDR, as a restarted Stripe
    /// edge would come back where it was.
    pub async fn restart(&mut self) {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .expect("socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        socket.bind(&self.addr.into()).expect("re-bind fake stripe");
        socket.listen(128).expect("listen");
        let server = serve(&self.shared, socket.into());
        self.handle = server.handle();
        actix_rt::spawn(server);
    }

    /// With the trailing slash async-stripe expects (it builds `{base}v1{path}`).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// How many requests the fake has answered (a slow one counts once it is done).
    pub fn completed(&self) -> usize {
        self.shared
            .completed
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        let mut all = self.requests();
        all.retain(|r| r.method.eq_ignore_ascii_case(method) && r.path == path);
        all
    }

    pub fn fail(&self, rule: FailRule) {
        lock(&self.shared.failures).push(rule);
    }

    pub fn clear_failures(&self) {
        lock(&self.shared.failures).clear();
    }

    pub fn set_now(&self, unix: i64) {
        *lock(&self.shared.clock) = Some(unix);
    }

    pub fn now(&self) -> i64 {
        self.shared.now()
    }

    /// Paid invoices for `customer`, each strictly newer than any invoice before it.
    pub fn add_invoices(&self, customer: &str, n: usize) -> Vec<String> {
        let now = self.now();
        let mut store = lock(&self.shared.store);
        let base = now - n as i64;
        (0..n as i64)
            .map(|i| invoices::add_paid_invoice(&mut store, customer, base + i))
            .collect()
    }

    pub fn customer(&self, id: &str) -> Option<Value> {
        find(&lock(&self.shared.store).customers, id).cloned()
    }

    pub fn subscription(&self, id: &str) -> Option<Value> {
        find(&lock(&self.shared.store).subscriptions, id).cloned()
    }

    pub fn schedule(&self, id: &str) -> Option<Value> {
        find(&lock(&self.shared.store).schedules, id).cloned()
    }

    pub fn customers(&self) -> Vec<Value> {
        lock(&self.shared.store).customers.clone()
    }

    pub fn subscriptions(&self) -> Vec<Value> {
        lock(&self.shared.store).subscriptions.clone()
    }

    /// Lets a test play Stripe's part (a cancellation, a scheduled price change).
    /// Panics if there is no such subscription: that is a broken test.
    pub fn update_subscription(&self, id: &str, f: impl FnOnce(&mut Value)) {
        let mut store = lock(&self.shared.store);
        let sub = find_mut(&mut store.subscriptions, id)
            .unwrap_or_else(|| panic!("fake stripe has no subscription {id}"));
        f(sub);
    }

    /// Moves a subscription's item to the price with `lookup_key`, as Stripe does when a
    /// schedule's next phase starts or the customer changes plan in the portal.
    pub fn set_subscription_price(&self, id: &str, lookup_key: &str) {
        let mut store = lock(&self.shared.store);
        let price = store
            .prices
            .iter()
            .find(|p| p["lookup_key"] == lookup_key)
            .cloned()
            .unwrap_or_else(|| panic!("fake stripe has no price {lookup_key}"));
        let sub = find_mut(&mut store.subscriptions, id)
            .unwrap_or_else(|| panic!("fake stripe has no subscription {id}"));
        let item = &mut sub["items"]["data"][0];
        item["plan"] = objects::plan(&price);
        item["price"] = price;
    }

    /// Deletes a subscription outright (Stripe then answers 404 for it).
    pub fn delete_subscription(&self, id: &str) {
        lock(&self.shared.store)
            .subscriptions
            .retain(|s| s["id"] != id);
    }

    pub fn price_id(&self, lookup_key: &str) -> Option<String> {
        let store = lock(&self.shared.store);
        let price = store
            .prices
            .iter()
            .find(|p| p["lookup_key"] == lookup_key)?;
        price["id"].as_str().map(str::to_string)
    }

    pub fn put_event(&self, event: Value) {
        lock(&self.shared.store).events.push(event);
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        // The stop command is sent eagerly; the returned future only awaits completion.
        drop(self.handle.stop(false));
    }
}
