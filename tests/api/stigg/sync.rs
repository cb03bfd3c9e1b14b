//! Stigg follows Stripe: an upgrade, a scheduled downgrade and a cancellation each
//! re-provision an already provisioned org through the outbox, with the right strategy.

use super::spawn_stigg_app;
use serde_json::json;
use std::time::{Duration, Instant};

async fn wait_for_plan(s: &super::StiggApp, org: &str, plan_id: &str, strategy: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(sub) = s.stigg.subscription_of(org) {
            if sub["planId"] == plan_id && sub["scheduleStrategy"] == strategy {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Stigg never got {plan_id} {strategy}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn upgrade_and_downgrade_reprovision_with_the_right_strategy() {
    let s = spawn_stigg_app().await;
    let (org, request) = s.trial_request().await;
    s.t.ok("/api/stigg/provision", request).await;
    s.t.ok(
        "/api/plans/upgrade.now",
        json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
    )
    .await;
    wait_for_plan(&s, &org, "plan-edgequota-pro", "IMMEDIATE").await;
    s.t.ok(
        "/api/plans/downgrade.schedule",
        json!({"orgId": org, "newPlanCode": "plan_starter_m"}),
    )
    .await;
    wait_for_plan(&s, &org, "plan-edgequota-starter", "END_OF_BILLING_PERIOD").await;
    let last = s.stigg.calls_of("ProvisionSubscription").pop().unwrap();
    assert_eq!(last.input("billingId"), request_sub(&s, &org).as_deref());
}

fn request_sub(s: &super::StiggApp, org: &str) -> Option<String> {
    s.stigg
        .subscription_of(org)
        .and_then(|v| v["billingId"].as_str().map(str::to_owned))
}

#[actix_web::test]
async fn a_cancellation_seen_by_webhook_reprovisions_the_free_plan() {
    let s = spawn_stigg_app().await;
    let (org, request) = s.trial_request().await;
    let sub = request["stripeSubscriptionId"].as_str().unwrap().to_owned();
    s.t.ok("/api/stigg/provision", request).await;
    s.t.stripe
        .update_subscription(&sub, |v| v["status"] = "canceled".into());
    let event = crate::fake_stripe::objects::event(
        "customer.subscription.deleted",
        s.t.stripe.subscription(&sub).unwrap(),
    );
    assert_eq!(s.t.deliver(&event).await.status(), 202);
    wait_for_plan(&s, &org, "plan-edgequota-free", "IMMEDIATE").await;
}

#[actix_web::test]
async fn orgs_never_provisioned_are_not_sent_to_stigg() {
    let s = spawn_stigg_app().await;
    let (org, _) = s.trial_request().await;
    s.t.ok(
        "/api/plans/upgrade.now",
        json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
    )
    .await;
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert!(s.stigg.calls().is_empty());
}
