//! Billing against the in-process fake Stripe: the journey, lifecycle rules, failure
//! handling and access control of the nine Stripe-backed endpoints.

mod access;
mod failures;
mod idempotency;
mod journey;
mod lifecycle;

use crate::fake_stripe::{FakeStripe, API_KEY};
use crate::helpers::{body, default_now, spawn_app_with, TestApp, SERVICE};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub struct BillingApp {
    pub app: TestApp,
    pub stripe: FakeStripe,
}

pub const EMAIL: &str = "billing@acme.test";

/// The service pointed at a fresh fake Stripe whose clock matches the service's; short
/// timeouts and backoff so failure tests run fast.
pub async fn spawn_billing_app() -> BillingApp {
    spawn_billing_app_with(&[]).await
}

pub async fn spawn_billing_app_with(extra: &[(&str, &str)]) -> BillingApp {
    let stripe = FakeStripe::start().await;
    stripe.set_now(default_now().timestamp());
    let url = stripe.url();
    let mut env = vec![
        ("EDGEQUOTA__STRIPE__API_KEY", API_KEY),
        ("EDGEQUOTA__STRIPE__BASE_URL", url.as_str()),
        ("EDGEQUOTA__STRIPE__TIMEOUT_MS", "400"),
        ("EDGEQUOTA__STRIPE__MAX_RETRIES", "2"),
        ("EDGEQUOTA__STRIPE__RETRY_BACKOFF_MS", "5"),
        ("EDGEQUOTA__ENGINE__ACTOR_IDLE_TTL_SECS", "1"),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(default_now(), &env).await;
    BillingApp { app, stripe }
}

impl BillingApp {
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.app.post(path, SERVICE, &body).await
    }

    /// Posts and expects 200; the JSON body.
    pub async fn ok(&self, path: &str, request: Value) -> Value {
        let res = self.post(path, request).await;
        let status = res.status();
        let b = body(res).await;
        assert_eq!(status, StatusCode::OK, "{path}: {b}");
        b
    }

    /// An org with a Stripe customer; returns (org, customer id).
    pub async fn org_with_customer(&self) -> (String, String) {
        let org = self.app.create_org().await;
        let b = self
            .ok(
                "/api/stripe/customer.ensure",
                json!({"orgId": org, "email": EMAIL}),
            )
            .await;
        let customer = b["stripeCustomerId"].as_str().expect("customer").to_owned();
        (org, customer)
    }

    /// An org on a `plan_starter_m` trial; returns (org, customer, subscription id).
    pub async fn org_on_trial(&self) -> (String, String, String) {
        let (org, customer) = self.org_with_customer().await;
        let b = self
            .ok(
                "/api/stripe/subscription.create",
                json!({"orgId": org, "priceLookup": "plan_starter_m"}),
            )
            .await;
        let sub = b["subscriptionId"]
            .as_str()
            .expect("subscription")
            .to_owned();
        (org, customer, sub)
    }

    pub async fn plan_of(&self, org: &str) -> (String, u64) {
        let e = self.app.entitlements(org).await;
        (
            e["planCode"].as_str().expect("planCode").to_owned(),
            e["included"].as_u64().expect("included"),
        )
    }

    /// How many requests reached the fake for `method path`.
    pub fn calls(&self, method: &str, path: &str) -> usize {
        self.stripe.requests_to(method, path).len()
    }

    /// Every request that changed something in Stripe.
    pub fn writes(&self) -> usize {
        self.stripe
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && !r.path.ends_with("/create_preview"))
            .count()
    }
}
