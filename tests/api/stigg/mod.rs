//! Stigg provisioning end to end against the fake Stigg (and the fake Stripe for the
//! org's billing): the design card's tests, the exact variables, the outbox's retries
//! and restarts, outages that use up no attempts, and re-provisioning on plan changes.

mod crash;
mod outage;
mod provision;
mod sync;

use crate::billing::{spawn_billing_app_with, BillingApp};
use crate::fake_stigg::{FakeStigg, STIGG_API_KEY};
use crate::helpers::{body, SERVICE};
use serde_json::{json, Value};
use std::time::Duration;

pub struct StiggApp {
    pub t: BillingApp,
    pub stigg: FakeStigg,
}

/// The Stigg settings of these tests: Stigg at `url` with `key`, short timeouts and
/// backoffs, and a fast outbox poll.
pub fn stigg_settings<'a>(key: &'a str, url: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("EDGEQUOTA__STIGG__API_KEY", key),
        ("EDGEQUOTA__STIGG__BASE_URL", url),
        ("EDGEQUOTA__STIGG__TIMEOUT_MS", "300"),
        ("EDGEQUOTA__STIGG__REQUEST_BACKOFF_MS", "5"),
        ("EDGEQUOTA__STIGG__RETRY_BASE_MS", "1000"),
        ("EDGEQUOTA__STIGG__POLL_INTERVAL_MS", "20"),
    ]
}

pub async fn spawn_stigg_app() -> StiggApp {
    let stigg = FakeStigg::start().await;
    let url = stigg.url();
    let mut settings = stigg_settings(STIGG_API_KEY, &url);
    settings.extend([
        (
            "EDGEQUOTA__STRIPE__WEBHOOK_SECRETS",
            crate::webhooks::SECRET,
        ),
        ("EDGEQUOTA__WEBHOOKS__POLL_INTERVAL_MS", "20"),
    ]);
    let t = spawn_billing_app_with(&settings).await;
    StiggApp { t, stigg }
}

impl StiggApp {
    /// The provisioning body for an org on trial: (org, body).
    pub async fn trial_request(&self) -> (String, Value) {
        let (org, customer, sub) = self.t.org_on_trial().await;
        let request = json!({"orgId": org, "stripeCustomerId": customer,
                             "stripeSubscriptionId": sub, "planCode": "plan_starter_m"});
        (org, request)
    }

    pub async fn status(&self, org: &str) -> reqwest::Response {
        self.t
            .app
            .get(&format!("/api/stigg/provision.status?orgId={org}"), SERVICE)
            .await
    }

    /// Waits until the outbox's supervisor has finished two more drains (so at least one
    /// whole drain began after this call): the positive signal before asserting that
    /// something did not happen.
    pub async fn outbox_drained(&self) {
        let series = "edgequota_queue_drain_runs_total{queue=\"stigg\"}";
        let before = self.t.app.metrics_scrape().await.get(series);
        crate::helpers::eventually(
            "two Stigg outbox drains",
            Duration::from_secs(5),
            || async {
                (self.t.app.metrics_scrape().await.get(series) >= before + 2.0).then_some(())
            },
        )
        .await;
    }

    /// Polls until the org's provisioning is in `state` (5 s at most).
    pub async fn wait_for_state(&self, org: &str, state: &str) -> Value {
        let what = format!("provisioning of {org} {state}");
        crate::helpers::eventually(&what, Duration::from_secs(5), || async {
            let res = self.status(org).await;
            if res.status() != 200 {
                return None;
            }
            let b = body(res).await;
            (b["state"] == state).then_some(b)
        })
        .await
    }
}
