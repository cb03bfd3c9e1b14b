//! The `Idempotency-Key` Stripe receives for a subscription create: derived from the
//! org and its predecessor subscription only, never from the plan, so a create retried
//! after a failure (even with another plan) cannot make a second live subscription in
//! Stripe, while another org, or the same org after a cancellation, gets its own key.

use super::{spawn_billing_app, BillingApp};
use crate::fake_stripe::FailRule;
use crate::helpers::assert_error;
use serde_json::json;

/// The keys of every `POST /v1/subscriptions` the fake received, in order.
fn create_keys(t: &BillingApp) -> Vec<String> {
    t.stripe
        .requests_to("POST", "/v1/subscriptions")
        .iter()
        .map(|r| {
            r.header("idempotency-key")
                .expect("every create carries an Idempotency-Key")
                .to_owned()
        })
        .collect()
}

fn live_subscriptions(t: &BillingApp) -> Vec<serde_json::Value> {
    let mut all = t.stripe.subscriptions();
    all.retain(|s| s["status"] != "canceled");
    all
}

#[actix_web::test]
async fn a_create_retried_with_another_plan_sends_the_same_idempotency_key() {
    let t = spawn_billing_app().await;
    let (org, _) = t.org_with_customer().await;
    // Every try of the first call fails, so nothing exists to adopt on the retry: the
    // retry must reach Stripe's create again, with the same key.
    t.stripe
        .fail(FailRule::server_error("/v1/subscriptions", 3).on("POST"));
    let res = t
        .post(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_error(res, 500, "INTERNAL").await;
    assert_eq!(create_keys(&t).len(), 3, "1 try + 2 retries");
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_pro_m"}),
        )
        .await;
    let keys = create_keys(&t);
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    for plan in ["plan_starter_m", "plan_pro_m", "starter", "pro"] {
        assert!(
            !keys[0].contains(plan),
            "the key names the plan: {}",
            keys[0]
        );
    }
    let live = live_subscriptions(&t);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(b["subscriptionId"], live[0]["id"]);
    assert_eq!(t.plan_of(&org).await.0, "plan_pro_m");
}

#[actix_web::test]
async fn each_org_and_each_predecessor_gets_its_own_idempotency_key() {
    let t = crate::webhooks::spawn_webhook_app().await;
    let (first, _, sub) = t.org_on_trial().await;
    let (second, _, _) = t.org_on_trial().await;
    let keys = create_keys(&t);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_ne!(keys[0], keys[1], "two orgs share a key");

    // The first org's subscription ends; its next create follows a predecessor, so it
    // is a new create for Stripe, not a replay of the first one.
    t.stripe.update_subscription(&sub, |s| {
        s["status"] = "canceled".into();
        s["ended_at"] = s["created"].clone();
    });
    let event = crate::webhooks::subscription_event(&t, "customer.subscription.deleted", &sub);
    assert_eq!(t.deliver(&event).await.status(), 202);
    t.wait_for_plan(&first, "plan_free").await;
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": first, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_ne!(b["subscriptionId"], sub.as_str(), "a new subscription");
    let keys = create_keys(&t);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_ne!(keys[2], keys[0], "the same key as before the cancellation");
    assert_ne!(keys[2], keys[1], "the other org's key");
    assert_eq!(live_subscriptions(&t).len(), 2);
    assert_eq!(t.plan_of(&first).await.0, "plan_starter_m");
    assert_eq!(t.plan_of(&second).await.0, "plan_starter_m");
}
