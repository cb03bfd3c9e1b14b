//! Stripe failing: transient failures are retried with the same idempotency key, what
//! stays broken answers 500 naming Stripe, the caller's mistakes answer 400 with Stripe's
//! message — and after any failure the local state is as it was before.

use super::{spawn_billing_app, spawn_billing_app_with, EMAIL};
use crate::fake_stripe::FailRule;
use crate::helpers::assert_error;
use serde_json::json;
use std::time::Duration;

#[actix_web::test]
async fn a_500_then_success_is_retried_with_the_same_idempotency_key() {
    let t = spawn_billing_app().await;
    let org = t.app.create_org().await;
    t.stripe.fail(FailRule::server_error("/v1/customers", 1));
    let b = t
        .ok(
            "/api/stripe/customer.ensure",
            json!({"orgId": org, "email": EMAIL}),
        )
        .await;
    assert!(b["stripeCustomerId"].as_str().unwrap().starts_with("cus_"));
    let sent = t.stripe.requests_to("POST", "/v1/customers");
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].header("idempotency-key"),
        sent[1].header("idempotency-key")
    );
    assert_eq!(t.stripe.customers().len(), 1);
    let metrics = t.app.metrics_scrape().await;
    for outcome in ["retried", "ok"] {
        let series = format!(
            "edgequota_stripe_requests_total{{operation=\"customers.create\",outcome=\"{outcome}\"}}"
        );
        assert_eq!(metrics.value(&series), Some(1.0), "{series}");
    }
}

#[actix_web::test]
async fn a_429_is_retried() {
    let t = spawn_billing_app().await;
    let (org, _) = t.org_with_customer().await;
    t.stripe
        .fail(FailRule::rate_limited("/v1/subscriptions", 1, 2).on("POST"));
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_eq!(b["status"], "trialing");
    assert_eq!(t.calls("POST", "/v1/subscriptions"), 3);
    assert_eq!(t.stripe.subscriptions().len(), 1);
}

#[actix_web::test]
async fn a_slow_answer_times_out_and_the_retry_does_not_duplicate() {
    let t = spawn_billing_app().await;
    let org = t.app.create_org().await;
    t.stripe.fail(FailRule::slow(
        "/v1/customers",
        Duration::from_millis(900),
        Some(1),
    ));
    let b = t
        .ok(
            "/api/stripe/customer.ensure",
            json!({"orgId": org, "email": EMAIL}),
        )
        .await;
    // Both attempts reached the fake; wait until the slow first one has been answered
    // too (after the retry), then there must still be one customer.
    let sent = t.stripe.requests_to("POST", "/v1/customers");
    assert_eq!(sent.len(), 2, "one timed-out attempt, one retry");
    assert_eq!(
        sent[0].header("idempotency-key"),
        sent[1].header("idempotency-key")
    );
    let everything = t.stripe.requests().len();
    crate::helpers::eventually(
        "the slow attempt to finish",
        Duration::from_secs(5),
        || async { (t.stripe.completed() >= everything).then_some(()) },
    )
    .await;
    assert_eq!(t.stripe.customers().len(), 1);
    assert_eq!(t.stripe.customers()[0]["id"], b["stripeCustomerId"]);
}

#[actix_web::test]
async fn stripe_down_is_a_500_naming_stripe_and_changes_nothing() {
    let t = spawn_billing_app().await;
    let (org, _) = t.org_with_customer().await;
    t.stripe
        .fail(FailRule::server_error("/v1/subscriptions", 100).on("POST"));
    let res = t
        .post(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    let b = assert_error(res, 500, "INTERNAL").await;
    assert!(b["message"].as_str().unwrap().contains("Stripe"), "{b}");
    assert_eq!(t.calls("POST", "/v1/subscriptions"), 3, "1 try + 2 retries");
    assert_eq!(t.plan_of(&org).await.0, "plan_free");

    // Stripe back: the same call now subscribes the org.
    t.stripe.clear_failures();
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_eq!(b["status"], "trialing");
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");
}

#[actix_web::test]
async fn stripe_timing_out_every_attempt_is_a_500() {
    let t = spawn_billing_app_with(&[("EDGEQUOTA__STRIPE__MAX_RETRIES", "1")]).await;
    let org = t.app.create_org().await;
    t.stripe.fail(FailRule::slow(
        "/v1/customers",
        Duration::from_millis(1_500),
        None,
    ));
    let res = t
        .post(
            "/api/stripe/customer.ensure",
            json!({"orgId": org, "email": EMAIL}),
        )
        .await;
    let b = assert_error(res, 500, "INTERNAL").await;
    assert!(b["message"].as_str().unwrap().contains("Stripe"), "{b}");
    assert!(b["message"].as_str().unwrap().contains("in time"), "{b}");
    // Bounded by the timeout: exactly one try and one retry, with the same key.
    let sent = t.stripe.requests_to("POST", "/v1/customers");
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].header("idempotency-key"),
        sent[1].header("idempotency-key")
    );
}

#[actix_web::test]
async fn a_failed_upgrade_leaves_the_plan_and_quota_unchanged() {
    let t = spawn_billing_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.stripe.fail(FailRule::server_error(
        &format!("/v1/subscriptions/{sub}"),
        100,
    ));
    let res = t
        .post(
            "/api/plans/upgrade.now",
            json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
        )
        .await;
    assert_error(res, 500, "INTERNAL").await;
    assert_eq!(t.plan_of(&org).await, ("plan_starter_m".into(), 10_000));
    let item = &t.stripe.subscription(&sub).unwrap()["items"]["data"][0]["price"]["id"];
    assert_eq!(
        item.as_str(),
        t.stripe.price_id("plan_starter_m").as_deref()
    );
}

#[actix_web::test]
async fn a_failed_downgrade_stores_no_pending_change_and_can_be_retried() {
    let t = spawn_billing_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.ok(
        "/api/plans/upgrade.now",
        json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
    )
    .await;
    // The schedule is created, but setting its phases fails.
    t.stripe
        .fail(FailRule::server_error("/v1/subscription_schedules/", 100));
    let res = t
        .post(
            "/api/plans/downgrade.schedule",
            json!({"orgId": org, "newPlanCode": "plan_starter_m"}),
        )
        .await;
    assert_error(res, 500, "INTERNAL").await;
    assert_eq!(t.plan_of(&org).await.0, "plan_pro_m");
    t.stripe.clear_failures();
    let b = t
        .ok(
            "/api/plans/downgrade.schedule",
            json!({"orgId": org, "newPlanCode": "plan_starter_m"}),
        )
        .await;
    assert_eq!(b["pendingPlanCode"], "plan_starter_m");
    assert_eq!(
        t.calls("POST", "/v1/subscription_schedules"),
        1,
        "schedule reused"
    );
    assert!(t.stripe.subscription(&sub).unwrap()["schedule"].is_string());
}

#[actix_web::test]
async fn a_declined_card_is_a_400_with_stripes_message() {
    let t = spawn_billing_app().await;
    let (org, customer) = t.org_with_customer().await;
    let res = t
        .post(
            "/api/payments/default-method.set",
            json!({"orgId": org, "paymentMethodId": "pm_card_chargeDeclined"}),
        )
        .await;
    let b = assert_error(res, 400, "BAD_REQUEST").await;
    assert_eq!(b["message"], "Your card was declined.");
    assert_eq!(b["details"][0]["field"], "paymentMethodId");
    let cus = t.stripe.customer(&customer).unwrap();
    assert!(cus["invoice_settings"]["default_payment_method"].is_null());
    assert_eq!(
        t.calls("POST", "/v1/payment_methods/pm_card_chargeDeclined/attach"),
        1,
        "not retried"
    );
}

#[actix_web::test]
async fn an_unknown_payment_method_is_a_400_with_stripes_message() {
    let t = spawn_billing_app().await;
    let (org, _) = t.org_with_customer().await;
    let res = t
        .post(
            "/api/payments/default-method.set",
            json!({"orgId": org, "paymentMethodId": "pm_unknown"}),
        )
        .await;
    let b = assert_error(res, 400, "BAD_REQUEST").await;
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("No such PaymentMethod"),
        "{b}"
    );
}

#[actix_web::test]
async fn a_wrong_api_key_is_a_500_naming_stripe() {
    let t = spawn_billing_app_with(&[("EDGEQUOTA__STRIPE__API_KEY", "sk_test_wrong")]).await;
    let org = t.app.create_org().await;
    let res = t
        .post(
            "/api/stripe/customer.ensure",
            json!({"orgId": org, "email": EMAIL}),
        )
        .await;
    let b = assert_error(res, 500, "INTERNAL").await;
    assert!(b["message"].as_str().unwrap().contains("API key"), "{b}");
    assert_eq!(t.calls("POST", "/v1/customers"), 1, "not retried");
}

#[actix_web::test]
async fn an_upgrade_failing_after_releasing_a_downgrade_forgets_the_downgrade() {
    let t = spawn_billing_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.ok(
        "/api/plans/upgrade.now",
        json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
    )
    .await;
    let pending = t
        .ok(
            "/api/plans/downgrade.schedule",
            json!({"orgId": org, "newPlanCode": "plan_starter_m"}),
        )
        .await;
    t.stripe.fail(FailRule::server_error(
        &format!("/v1/subscriptions/{sub}"),
        100,
    ));
    let res = t
        .post(
            "/api/plans/upgrade.now",
            json!({"orgId": org, "newPlanCode": "plan_scale_m"}),
        )
        .await;
    assert_error(res, 500, "INTERNAL").await;
    assert!(t.stripe.subscription(&sub).unwrap()["schedule"].is_null());
    // Past the old effective time the org keeps what Stripe bills: pro.
    let effective = chrono::DateTime::parse_from_rfc3339(pending["effectiveAt"].as_str().unwrap())
        .unwrap()
        .timestamp();
    let now = crate::helpers::default_now().timestamp();
    t.app
        .clock
        .advance(chrono::Duration::seconds(effective - now + 1));
    // Reading the entitlements applies whatever plan change has come due first.
    assert_eq!(t.plan_of(&org).await.0, "plan_pro_m");
}

#[actix_web::test]
async fn a_create_whose_answer_times_out_never_leaves_two_live_subscriptions() {
    let t = spawn_billing_app_with(&[("EDGEQUOTA__STRIPE__MAX_RETRIES", "0")]).await;
    let (org, _) = t.org_with_customer().await;
    // Stripe creates the subscription but answers after the service stopped waiting.
    t.stripe
        .fail(FailRule::slow("/v1/subscriptions", Duration::from_millis(900), Some(1)).on("POST"));
    let res = t
        .post(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    let b = assert_error(res, 500, "INTERNAL").await;
    let message = b["message"].as_str().unwrap();
    assert!(message.contains("unknown"), "{b}");
    assert!(!message.contains("nothing was changed"), "{b}");
    // The slow create completes on Stripe's side.
    crate::helpers::eventually(
        "Stripe to finish the slow create",
        Duration::from_secs(5),
        || async { (t.stripe.subscriptions().len() == 1).then_some(()) },
    )
    .await;
    // The caller retries, even with another plan: the live subscription is adopted.
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_pro_m"}),
        )
        .await;
    let live: Vec<_> = t
        .stripe
        .subscriptions()
        .into_iter()
        .filter(|s| s["status"] != "canceled")
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(b["subscriptionId"], live[0]["id"]);
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");
}
