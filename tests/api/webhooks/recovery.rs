//! When processing fails: retries with backoff until Stripe recovers, dead letters after
//! the last attempt (visible, counted, replayable), and replay of stored, Stripe-only and
//! unknown events.

use super::{spawn_webhook_app, subscription_event};
use crate::fake_stripe::FailRule;
use crate::helpers::{assert_error, body, eventually, ADMIN, SERVICE};
use serde_json::json;
use std::time::Duration;

#[actix_web::test]
async fn processing_is_retried_until_stripe_recovers() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.stripe.set_subscription_price(&sub, "plan_pro_m");
    t.stripe
        .fail(FailRule::server_error(&format!("/v1/subscriptions/{sub}"), 1_000).on("GET"));
    let event = subscription_event(&t, "customer.subscription.updated", &sub);
    let id = event["id"].as_str().unwrap().to_owned();
    assert_eq!(t.deliver(&event).await.status(), 202);
    // The first attempt fails and the event waits for its backoff (1 s on the service clock).
    let waiting = eventually("a failed attempt", Duration::from_secs(5), || async {
        t.event_in(&id, "queued")
            .await
            .filter(|e| e["attempts"] == 1)
    })
    .await;
    assert!(
        waiting["lastError"].as_str().unwrap().contains("Stripe"),
        "{waiting}"
    );
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");
    t.stripe.clear_failures();
    t.app.clock.advance(chrono::Duration::seconds(2));
    t.wait_for_plan(&org, "plan_pro_m").await;
    assert_eq!(t.wait_for_event(&id, "processed").await["attempts"], 2);
}

#[actix_web::test]
async fn a_permanently_failing_event_becomes_a_visible_replayable_dead_letter() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.stripe.set_subscription_price(&sub, "plan_pro_m");
    // Stripe refusing the read (a 400) is not an outage: every attempt counts.
    t.stripe
        .fail(FailRule::bad_request(&format!("/v1/subscriptions/{sub}"), 1_000).on("GET"));
    let event = subscription_event(&t, "customer.subscription.updated", &sub);
    let id = event["id"].as_str().unwrap().to_owned();
    t.deliver(&event).await;
    let dead = eventually(
        "the event to be parked",
        Duration::from_secs(10),
        || async {
            // Each step moves the service clock past the longest backoff (5 min cap).
            t.app.clock.advance(chrono::Duration::minutes(6));
            t.event_in(&id, "dead").await
        },
    )
    .await;
    assert_eq!(dead["attempts"], 3);
    // The gauge follows at the end of the supervisor's drain, just after the state.
    eventually(
        "the dead letter gauge at 1",
        Duration::from_secs(5),
        || async {
            let metrics = t.app.get("/metrics", ADMIN).await.text().await.unwrap();
            metrics
                .contains("edgequota_webhook_dead_letters 1")
                .then_some(())
        },
    )
    .await;
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");

    t.stripe.clear_failures();
    let res = t
        .app
        .post(
            "/api/admin/webhooks.replay",
            ADMIN,
            &json!({"eventIds": [id]}),
        )
        .await;
    assert_eq!(body(res).await, json!({"enqueued": 1, "missing": []}));
    t.wait_for_plan(&org, "plan_pro_m").await;
    t.wait_for_event(&id, "processed").await;
    assert!(t.events_in("dead").await.is_empty());
}

#[actix_web::test]
async fn a_stripe_outage_uses_no_attempts_until_its_budget_is_spent() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.stripe.set_subscription_price(&sub, "plan_pro_m");
    t.stripe
        .fail(FailRule::server_error(&format!("/v1/subscriptions/{sub}"), 100_000).on("GET"));
    let event = subscription_event(&t, "customer.subscription.updated", &sub);
    let id = event["id"].as_str().unwrap().to_owned();
    t.deliver(&event).await;
    // 5xx answers on the service clock, in steps past the capped (30 s) backoff.
    let queued = eventually("six outage attempts", Duration::from_secs(10), || async {
        t.app.clock.advance(chrono::Duration::seconds(40));
        let e = t.event_in(&id, "queued").await?;
        (e["attempts"].as_u64()? >= 6).then_some(e)
    })
    .await;
    assert_eq!(queued["countedAttempts"], 0, "{queued}");
    assert!(queued["outageSince"].is_string(), "{queued}");
    assert!(t.events_in("dead").await.is_empty());
    t.app.clock.advance(chrono::Duration::hours(10));
    // Past the 72-hour budget every further attempt counts: dead after 3.
    t.app.clock.advance(chrono::Duration::hours(63));
    let dead = eventually(
        "the event to be parked",
        Duration::from_secs(10),
        || async {
            t.app.clock.advance(chrono::Duration::minutes(6));
            t.event_in(&id, "dead").await
        },
    )
    .await;
    assert_eq!(dead["countedAttempts"], 3, "{dead}");
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");
}

#[actix_web::test]
async fn replay_requeues_stored_fetches_stripe_only_and_lists_unknown_events() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    let stored = subscription_event(&t, "customer.subscription.updated", &sub);
    let stored_id = stored["id"].as_str().unwrap().to_owned();
    t.deliver(&stored).await;
    t.wait_for_event(&stored_id, "processed").await;

    // An event the service never received (its delivery was lost): only Stripe has it.
    t.stripe.set_subscription_price(&sub, "plan_scale_m");
    let lost = subscription_event(&t, "customer.subscription.updated", &sub);
    let lost_id = lost["id"].as_str().unwrap().to_owned();
    t.stripe.put_event(lost);

    let res = t
        .app
        .post(
            "/api/admin/webhooks.replay",
            ADMIN,
            &json!({"eventIds": [stored_id, lost_id, "evt_nowhere"]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        body(res).await,
        json!({"enqueued": 2, "missing": ["evt_nowhere"]})
    );
    assert_eq!(t.calls("GET", &format!("/v1/events/{lost_id}")), 1);
    t.wait_for_plan(&org, "plan_scale_m").await;
    t.wait_for_event(&lost_id, "processed").await;
    assert_eq!(
        t.wait_for_event(&stored_id, "processed").await["attempts"],
        1
    );
}

#[actix_web::test]
async fn replay_and_listing_are_admin_only_and_validated() {
    let t = spawn_webhook_app().await;
    let res = t
        .app
        .post(
            "/api/admin/webhooks.replay",
            SERVICE,
            &json!({"eventIds": ["evt_1"]}),
        )
        .await;
    assert_error(res, 403, "FORBIDDEN").await;
    let too_many: Vec<String> = (0..101).map(|i| format!("evt_{i}")).collect();
    for bad in [
        json!({}),
        json!({"eventIds": []}),
        json!({"eventIds": too_many}),
        json!({"eventIds": ["evt/1"]}),
    ] {
        let res = t.app.post("/api/admin/webhooks.replay", ADMIN, &bad).await;
        assert_error(res, 400, "BAD_REQUEST").await;
    }
    let res = t
        .app
        .get("/api/admin/webhooks.list?state=lost", ADMIN)
        .await;
    assert_error(res, 400, "BAD_REQUEST").await;
    let res = t.app.get("/api/admin/webhooks.list", SERVICE).await;
    assert_error(res, 403, "FORBIDDEN").await;
}

#[actix_web::test]
async fn the_listing_pages_with_a_cursor() {
    let t = spawn_webhook_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let event = crate::fake_stripe::objects::event(
            "charge.succeeded",
            json!({"id": format!("ch_{i}"), "object": "charge"}),
        );
        ids.push(event["id"].as_str().unwrap().to_owned());
        t.deliver(&event).await;
    }
    let res = t
        .app
        .get("/api/admin/webhooks.list?state=ignored&limit=3", ADMIN)
        .await;
    let cursor = res.headers()["x-next-cursor"].to_str().unwrap().to_owned();
    let first = body(res).await;
    let res = t
        .app
        .get(
            &format!("/api/admin/webhooks.list?state=ignored&limit=3&cursor={cursor}"),
            ADMIN,
        )
        .await;
    assert!(res.headers().get("x-next-cursor").is_none());
    let second = body(res).await;
    let got: Vec<_> = first
        .as_array()
        .unwrap()
        .iter()
        .chain(second.as_array().unwrap())
        .map(|e| e["eventId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ids, "arrival order, no gaps or repeats");
}

#[actix_web::test]
async fn finished_events_are_purged_after_the_retention() {
    let t = spawn_webhook_app().await;
    let (_, _, sub) = t.org_on_trial().await;
    let event = subscription_event(&t, "customer.subscription.updated", &sub);
    t.deliver(&event).await;
    t.wait_for_event(event["id"].as_str().unwrap(), "processed")
        .await;
    let crate::billing::BillingApp { app, stripe } = t;
    let dir = app.stop().await;
    let url = stripe.url();
    let later = crate::helpers::default_now() + chrono::Duration::days(31);
    let app = crate::helpers::spawn_app_in(
        dir,
        later,
        &[
            ("EDGEQUOTA__STRIPE__API_KEY", crate::fake_stripe::API_KEY),
            ("EDGEQUOTA__STRIPE__BASE_URL", url.as_str()),
            ("EDGEQUOTA__STRIPE__WEBHOOK_SECRETS", super::SECRET),
            ("EDGEQUOTA__WEBHOOKS__POLL_INTERVAL_MS", "20"),
        ],
    )
    .await;
    let t = crate::billing::BillingApp { app, stripe };
    eventually("the purge", Duration::from_secs(5), || async {
        t.events_in("processed").await.is_empty().then_some(())
    })
    .await;
}
