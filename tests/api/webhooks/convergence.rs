//! Convergence: whatever order events arrive in, the org ends up mirroring Stripe's
//! current subscription, and its quota follows at once.

use super::{spawn_webhook_app, subscription_event};
use crate::helpers::{assert_error, body, ADMIN, SERVICE};
use serde_json::json;

#[actix_web::test]
async fn a_cancellation_drops_the_org_to_the_free_quota() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.stripe.update_subscription(&sub, |s| {
        s["status"] = "canceled".into();
        s["ended_at"] = s["created"].clone();
    });
    let event = subscription_event(&t, "customer.subscription.deleted", &sub);
    assert_eq!(t.deliver(&event).await.status(), 202);
    t.wait_for_plan(&org, "plan_free").await;
    assert_eq!(t.plan_of(&org).await.1, 1_000);
}

#[actix_web::test]
async fn an_upgrade_in_the_customer_portal_raises_the_quota() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.stripe.set_subscription_price(&sub, "plan_pro_m");
    let event = subscription_event(&t, "customer.subscription.updated", &sub);
    t.deliver(&event).await;
    t.wait_for_plan(&org, "plan_pro_m").await;
    assert_eq!(t.plan_of(&org).await.1, 100_000);
}

#[actix_web::test]
async fn a_scheduled_downgrade_lowers_the_quota_only_once_stripe_shows_the_new_price() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.ok(
        "/api/plans/upgrade.now",
        json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
    )
    .await;
    t.ok(
        "/api/plans/downgrade.schedule",
        json!({"orgId": org, "newPlanCode": "plan_starter_m"}),
    )
    .await;
    // Stripe still bills pro (the schedule's next phase has not started).
    let event = subscription_event(&t, "subscription_schedule.updated", &sub);
    let schedule_event = {
        let schedule = t.stripe.subscription(&sub).unwrap()["schedule"].clone();
        let mut e = event.clone();
        e["data"]["object"] = t.stripe.schedule(schedule.as_str().unwrap()).unwrap();
        e
    };
    t.deliver(&schedule_event).await;
    let id = schedule_event["id"].as_str().unwrap();
    let res = t
        .app
        .post("/api/jobs/stripe.process", ADMIN, &json!({"eventId": id}))
        .await;
    assert_eq!(body(res).await["converged"], true);
    assert_eq!(t.plan_of(&org).await.0, "plan_pro_m");
    // The pending downgrade is still on record: asking again changes nothing in Stripe.
    let writes = t.writes();
    let again = t
        .ok(
            "/api/plans/downgrade.schedule",
            json!({"orgId": org, "newPlanCode": "plan_starter_m"}),
        )
        .await;
    assert_eq!(again["pendingPlanCode"], "plan_starter_m");
    assert_eq!(t.writes(), writes);

    // The period ends: Stripe moves the subscription to the new price and releases it.
    t.stripe.set_subscription_price(&sub, "plan_starter_m");
    t.stripe
        .update_subscription(&sub, |s| s["schedule"] = json!(null));
    t.deliver(&subscription_event(
        &t,
        "customer.subscription.updated",
        &sub,
    ))
    .await;
    t.wait_for_plan(&org, "plan_starter_m").await;
}

#[actix_web::test]
async fn updated_before_created_ends_in_stripes_state() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    let created = subscription_event(&t, "customer.subscription.created", &sub);
    t.stripe.set_subscription_price(&sub, "plan_scale_m");
    t.stripe
        .update_subscription(&sub, |s| s["status"] = "active".into());
    let updated = subscription_event(&t, "customer.subscription.updated", &sub);
    for event in [&updated, &created] {
        let id = event["id"].as_str().unwrap();
        t.deliver(event).await;
        t.wait_for_event(id, "processed").await;
    }
    assert_eq!(t.plan_of(&org).await, ("plan_scale_m".into(), 1_000_000));
}

#[actix_web::test]
async fn deleted_before_updated_ends_canceled_even_when_stripe_forgot_the_subscription() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    let stale_update = subscription_event(&t, "customer.subscription.updated", &sub);
    let deleted = subscription_event(&t, "customer.subscription.deleted", &sub);
    // Stripe no longer has the subscription at all: a 404 counts as canceled.
    t.stripe.delete_subscription(&sub);
    for event in [&deleted, &stale_update] {
        let id = event["id"].as_str().unwrap();
        t.deliver(event).await;
        t.wait_for_event(id, "processed").await;
    }
    assert_eq!(t.plan_of(&org).await.0, "plan_free");
    // The org may subscribe again: the old subscription is over.
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_pro_m"}),
        )
        .await;
    assert_ne!(b["subscriptionId"], sub.as_str());
}

#[actix_web::test]
async fn the_job_endpoint_processes_one_event_now() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.stripe.set_subscription_price(&sub, "plan_pro_m");
    let event = subscription_event(&t, "invoice.paid", &sub);
    // An invoice event names the subscription through its parent.
    let mut event = event;
    event["data"]["object"] = json!({
        "object": "invoice", "id": "in_job", "customer": t.stripe.subscription(&sub).unwrap()["customer"],
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub}},
    });
    t.deliver(&event).await;
    let id = event["id"].as_str().unwrap();
    let res = t
        .app
        .post("/api/jobs/stripe.process", ADMIN, &json!({"eventId": id}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await["converged"], true);
    assert_eq!(t.plan_of(&org).await.0, "plan_pro_m");

    let res = t
        .app
        .post(
            "/api/jobs/stripe.process",
            ADMIN,
            &json!({"eventId": "evt_unknown"}),
        )
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
    let res = t
        .app
        .post("/api/jobs/stripe.process", SERVICE, &json!({"eventId": id}))
        .await;
    assert_error(res, 403, "FORBIDDEN").await;
    let res = t
        .app
        .post("/api/jobs/stripe.process", ADMIN, &json!({}))
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
}

#[actix_web::test]
async fn an_event_for_a_customer_of_no_org_is_ignored() {
    let t = spawn_webhook_app().await;
    let event = crate::fake_stripe::objects::event(
        "customer.subscription.updated",
        json!({"object": "subscription", "id": "sub_foreign", "customer": "cus_foreign",
               "metadata": {}}),
    );
    t.deliver(&event).await;
    let e = t
        .wait_for_event(event["id"].as_str().unwrap(), "ignored")
        .await;
    assert!(
        e["lastError"].as_str().unwrap().contains("cus_foreign"),
        "{e}"
    );
}

#[actix_web::test]
async fn a_subscription_created_outside_the_service_is_adopted() {
    let t = spawn_webhook_app().await;
    let (org, customer) = t.org_with_customer().await;
    // Created in Stripe's dashboard, not through the service.
    let price = t.stripe.price_id("plan_pro_m").unwrap();
    let created = reqwest::Client::new()
        .post(format!("{}v1/subscriptions", t.stripe.url()))
        .bearer_auth(crate::fake_stripe::API_KEY)
        .form(&[
            ("customer", customer.as_str()),
            ("items[0][price]", price.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let sub = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.deliver(&subscription_event(
        &t,
        "customer.subscription.created",
        &sub,
    ))
    .await;
    t.wait_for_plan(&org, "plan_pro_m").await;
    // And the service now treats it as the org's subscription.
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_eq!(b["subscriptionId"], sub.as_str());
}

#[actix_web::test]
async fn a_subscription_of_another_customer_naming_the_org_in_metadata_is_ignored() {
    let t = spawn_webhook_app().await;
    let (org, _) = t.org_with_customer().await;
    // Someone else's customer, with a subscription whose metadata claims the org.
    let stripe = reqwest::Client::new();
    let post = |path: &str, form: Vec<(&str, String)>| {
        stripe
            .post(format!("{}v1/{path}", t.stripe.url()))
            .bearer_auth(crate::fake_stripe::API_KEY)
            .form(&form)
            .send()
    };
    let foreign = post("customers", vec![("email", "x@evil.test".into())])
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let price = t.stripe.price_id("plan_scale_m").unwrap();
    let created = post(
        "subscriptions",
        vec![
            ("customer", foreign.clone()),
            ("items[0][price]", price),
            ("metadata[org_id]", org.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 200);
    let sub = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = subscription_event(&t, "customer.subscription.created", &sub);
    t.deliver(&event).await;
    let e = t
        .wait_for_event(event["id"].as_str().unwrap(), "ignored")
        .await;
    assert!(e["lastError"].as_str().unwrap().contains("not org"), "{e}");
    assert_eq!(t.plan_of(&org).await, ("plan_free".into(), 1_000));
}
