//! Stripe webhooks end to end: signed intake, processing and convergence with the fake
//! Stripe's current state, retries, dead letters, the job endpoint and replay.

mod convergence;
mod crash;
mod intake;
mod outage;
mod recovery;

use crate::billing::{spawn_billing_app_with, BillingApp};
use crate::fake_stripe::objects;
use crate::helpers::{body, eventually, ADMIN};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::time::Duration;

pub const SECRET: &str = "whsec_test_current";
pub const OLD_SECRET: &str = "whsec_test_previous";

/// The service with two webhook secrets (rotation), a fast supervisor, 3 attempts.
pub async fn spawn_webhook_app() -> BillingApp {
    spawn_billing_app_with(&[
        (
            "EDGEQUOTA__STRIPE__WEBHOOK_SECRETS",
            "whsec_test_previous,whsec_test_current",
        ),
        ("EDGEQUOTA__WEBHOOKS__POLL_INTERVAL_MS", "20"),
        ("EDGEQUOTA__WEBHOOKS__RETRY_BASE_MS", "1000"),
        ("EDGEQUOTA__WEBHOOKS__MAX_ATTEMPTS", "3"),
    ])
    .await
}

/// The `Stripe-Signature` header Stripe sends: `t=...,v1=hex(HMAC-SHA256("{t}.{body}"))`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(hmac(secret, t, body)))
}

pub fn hmac(secret: &str, t: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// A Stripe event of `kind` about the fake's current subscription `sub`.
pub fn subscription_event(t: &BillingApp, kind: &str, sub: &str) -> Value {
    let object = t
        .stripe
        .subscription(sub)
        .expect("subscription in the fake");
    objects::event(kind, object)
}

impl BillingApp {
    pub fn now_unix(&self) -> i64 {
        use edgequota::clock::Clock;
        self.app.clock.now().timestamp()
    }

    /// Posts `raw` to the intake with `header` as its signature (none if `None`).
    pub async fn deliver_raw(&self, raw: &[u8], header: Option<String>) -> reqwest::Response {
        let mut req = self
            .app
            .client
            .post(self.app.url("/api/webhooks/stripe.receive"))
            .header("content-type", "application/json")
            .body(raw.to_vec());
        if let Some(h) = header {
            req = req.header("stripe-signature", h);
        }
        req.send().await.expect("request sent")
    }

    /// Delivers `event` signed with the current secret at the service's now.
    pub async fn deliver(&self, event: &Value) -> reqwest::Response {
        let raw = serde_json::to_vec(event).unwrap();
        let header = signature(SECRET, self.now_unix(), &raw);
        self.deliver_raw(&raw, Some(header)).await
    }

    /// The admin listing of events in `state`.
    pub async fn events_in(&self, state: &str) -> Vec<Value> {
        let res = self
            .app
            .get(&format!("/api/admin/webhooks.list?state={state}"), ADMIN)
            .await;
        assert_eq!(res.status(), 200);
        body(res).await.as_array().unwrap().clone()
    }

    /// Waits until the webhook supervisor has finished two more drains (so at least one
    /// whole drain began after this call): the positive signal before asserting that
    /// something did not happen.
    pub async fn webhooks_drained(&self) {
        let series = "edgequota_queue_drain_runs_total{queue=\"webhooks\"}";
        let before = self.app.metrics_scrape().await.get(series);
        crate::helpers::eventually("two webhook drains", Duration::from_secs(5), || async {
            (self.app.metrics_scrape().await.get(series) >= before + 2.0).then_some(())
        })
        .await;
    }

    /// Polls until the org's plan is `plan` (5 s at most).
    pub async fn wait_for_plan(&self, org: &str, plan: &str) {
        let what = format!("org {org} on {plan}");
        eventually(&what, Duration::from_secs(5), || async {
            (self.plan_of(org).await.0 == plan).then_some(())
        })
        .await
    }

    /// Polls until event `id` is in `state` (5 s at most); returns its listing.
    pub async fn wait_for_event(&self, id: &str, state: &str) -> Value {
        eventually(
            &format!("event {id} {state}"),
            Duration::from_secs(5),
            || async { self.event_in(id, state).await },
        )
        .await
    }

    /// Event `id` as listed in `state`, if it is in that state.
    pub async fn event_in(&self, id: &str, state: &str) -> Option<Value> {
        self.events_in(state)
            .await
            .into_iter()
            .find(|e| e["eventId"] == id)
    }
}
