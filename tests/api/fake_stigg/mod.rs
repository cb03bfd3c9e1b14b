//! A stateful fake of the two Stigg GraphQL mutations edgequota sends
//! (`ProvisionCustomer`, `ProvisionSubscription`), served over real HTTP inside
//! the test process so the service's own client talks to it unchanged. Tests read
//! and steer its state through `FakeStigg`'s methods.
//!
//! This file owns the public control API and the shared state; `graphql` holds
//! the request pipeline and the two operations.

mod graphql;
mod schema;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub const STIGG_API_KEY: &str = "stigg_test_fake";

/// The plan ids Stigg knows about; any other `planId` is a `PlanNotFound`.
const SEED_PLANS: [&str; 4] = [
    "plan-edgequota-free",
    "plan-edgequota-starter",
    "plan-edgequota-pro",
    "plan-edgequota-scale",
];

/// One request as the fake received it, recorded before any failure or auth check.
#[derive(Clone, Debug)]
pub struct StiggCall {
    /// The body's `operationName`; `None` when absent or the body is not JSON.
    pub operation: Option<String>,
    /// The body's `variables`; `Null` when absent or the body is not JSON.
    pub variables: Value,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
}

impl StiggCall {
    /// `variables.input.<field>`, if it is a string.
    pub fn input(&self, field: &str) -> Option<&str> {
        self.variables.get("input")?.get(field)?.as_str()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

#[derive(Clone, Debug)]
pub enum StiggFailure {
    /// HTTP 500 with a plain-text body.
    ServerError,
    /// HTTP 200 with `INTERNAL_SERVER_ERROR` in `errors`: transient on Stigg's side.
    GraphqlError(String),
    /// HTTP 200 with `BAD_USER_INPUT` and `isValidationError`: permanent.
    ValidationError(String),
    /// Sleep, then answer normally. The request is applied even if the client
    /// has given up by then, as a real timed-out request may have been.
    Slow(Duration),
}

struct FailRule {
    mode: StiggFailure,
    /// `None` = until cleared.
    times: Option<usize>,
}

/// What Stigg would have stored. Values are kept as the JSON the control API returns.
#[derive(Default)]
struct Store {
    /// By `customerId`: `{id, customerId, name, email, billingId}`.
    customers: BTreeMap<String, Value>,
    /// By `customerId`: `{id, planId, billingId, scheduleStrategy}`.
    subscriptions: BTreeMap<String, Value>,
    plans: Vec<String>,
}

impl Store {
    fn seeded() -> Store {
        Store {
            plans: SEED_PLANS.iter().map(|p| p.to_string()).collect(),
            ..Store::default()
        }
    }

    fn insert_customer(
        &mut self,
        customer_id: &str,
        name: Value,
        email: Value,
        billing_id: &str,
    ) -> Value {
        let customer = json!({
            "id": ulid::Ulid::new().to_string(),
            "customerId": customer_id,
            "name": name,
            "email": email,
            "billingId": billing_id,
        });
        self.customers
            .insert(customer_id.to_string(), customer.clone());
        customer
    }
}

struct Shared {
    store: Mutex<Store>,
    calls: Mutex<Vec<StiggCall>>,
    failures: Mutex<Option<FailRule>>,
}

impl Shared {
    /// The active failure, counting one use against its `times`.
    fn take_failure(&self) -> Option<StiggFailure> {
        let mut slot = lock(&self.failures);
        let rule = slot.as_mut()?;
        let mode = rule.mode.clone();
        if let Some(left) = rule.times.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                *slot = None;
            }
        }
        Some(mode)
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct FakeStigg {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    handle: ServerHandle,
}

impl FakeStigg {
    /// Serves on 127.0.0.1:0 with one worker. The server future is `Send`, so
    /// `tokio::spawn` runs it under both an actix System and a plain tokio runtime.
    pub async fn start() -> FakeStigg {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::seeded()),
            calls: Mutex::default(),
            failures: Mutex::default(),
        });
        let data = web::Data::from(shared.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake stigg");
        let addr = listener.local_addr().expect("fake stigg address");
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(graphql::serve))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("listen fake stigg")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeStigg {
            shared,
            addr,
            handle,
        }
    }

    /// Without a trailing slash: the service appends `/graphql`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<StiggCall> {
        lock(&self.shared.calls).clone()
    }

    pub fn calls_of(&self, operation: &str) -> Vec<StiggCall> {
        let mut all = self.calls();
        all.retain(|c| c.operation.as_deref() == Some(operation));
        all
    }

    /// Replaces any earlier rule: the next `times` requests (`None` = until
    /// cleared) fail with `mode`, whatever their operation.
    pub fn fail(&self, mode: StiggFailure, times: Option<usize>) {
        let rule = match times {
            Some(0) => None,
            _ => Some(FailRule { mode, times }),
        };
        *lock(&self.shared.failures) = rule;
    }

    pub fn clear_failures(&self) {
        *lock(&self.shared.failures) = None;
    }

    /// `{id, customerId, name, email, billingId}`.
    pub fn customer(&self, customer_id: &str) -> Option<Value> {
        lock(&self.shared.store).customers.get(customer_id).cloned()
    }

    /// The customer's current subscription: `{id, planId, billingId, scheduleStrategy}`.
    pub fn subscription_of(&self, customer_id: &str) -> Option<Value> {
        lock(&self.shared.store)
            .subscriptions
            .get(customer_id)
            .cloned()
    }

    /// A customer Stigg already has, as if provisioned earlier (name and email null).
    pub fn add_customer(&self, customer_id: &str, billing_id: &str) {
        lock(&self.shared.store).insert_customer(customer_id, Value::Null, Value::Null, billing_id);
    }
}

impl Drop for FakeStigg {
    fn drop(&mut self) {
        // The stop command is sent eagerly; the returned future only awaits completion.
        drop(self.handle.stop(false));
    }
}
