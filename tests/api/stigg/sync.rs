//! Stigg follows Stripe: an upgrade, a scheduled downgrade and a cancellation each
//! re-provision an already provisioned org through the outbox, with the right strategy.

use super::spawn_stigg_app;
use crate::helpers::eventually;
use serde_json::json;
use std::time::Duration;

async fn wait_for_plan(s: &super::StiggApp, org: &str, plan_id: &str, strategy: &str) {
    let what = format!("Stigg to get {plan_id} {strategy}");
    eventually(&what, Duration::from_secs(5), || async {
        let sub = s.stigg.subscription_of(org)?;
        (sub["planId"] == plan_id && sub["scheduleStrategy"] == strategy).then_some(())
    })
    .await
}

#[actix_web::test]
async fn upgrade_and_downgrade_reprovision_with_the_right_strategy() {
    let s = spawn_stigg_app().await;
    let (org, request) = s.trial_request().await;
    s.t.ok("/api/stigg/provision", request.clone()).await;
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
    // Every re-provisioning names the org's Stripe subscription as its billing id.
    let sub = request["stripeSubscriptionId"].as_str().unwrap();
    let calls = s.stigg.calls_of("ProvisionSubscription");
    assert_eq!(calls.len(), 3, "provision, upgrade, downgrade");
    for call in calls {
        assert_eq!(call.input("billingId"), Some(sub));
    }
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
    // The upgrade has returned (a re-provisioning would have been queued by then), and
    // the outbox has drained since: still nothing sent.
    s.outbox_drained().await;
    assert!(s.stigg.calls().is_empty());
}
