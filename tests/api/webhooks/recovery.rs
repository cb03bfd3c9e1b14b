//! When processing fails: retries with backoff until Stripe recovers, dead letters after
//! the last attempt (visible, counted, replayable), and replay of stored, Stripe-only and
//! unknown events.

use super::{spawn_webhook_app, subscription_event};
use crate::billing::BillingApp;
use crate::fake_stripe::FailRule;
use crate::helpers::{assert_error, body, eventually, ADMIN, SERVICE};
use chrono::{DateTime, Utc};
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
            let metrics = t.app.metrics_scrape().await;
            (metrics.value("edgequota_webhook_dead_letters") == Some(1.0)).then_some(())
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
    assert!(t.events_in("dead").await.is_empty());
    let since = queued["outageSince"]
        .as_str()
        .expect("outageSince")
        .to_owned();
    let start = DateTime::parse_from_rfc3339(&since)
        .unwrap()
        .with_timezone(&Utc);
    // Deep into the outage, but inside the 72-hour budget: an attempt at each point is
    // still an outage attempt (a shorter budget would count it, or park the event).
    for at in [
        chrono::Duration::hours(10),
        chrono::Duration::hours(40),
        chrono::Duration::hours(70),
        chrono::Duration::hours(71) + chrono::Duration::minutes(50),
    ] {
        let e = attempt_at(&t, &id, start + at).await;
        assert_eq!(e["state"], "queued", "{at}: {e}");
        assert_eq!(e["countedAttempts"], 0, "{at}: {e}");
        assert_eq!(e["outageSince"], since.as_str(), "{at}: {e}");
    }
    assert!(t.events_in("dead").await.is_empty());
    // Past the 72-hour budget every further attempt counts: dead after 3.
    let past = start + chrono::Duration::hours(72) + chrono::Duration::minutes(1);
    let e = attempt_at(&t, &id, past).await;
    assert_eq!(e["state"], "queued", "{e}");
    // (An attempt in flight when the clock jumped may count as well.)
    let counted = e["countedAttempts"].as_u64().expect("countedAttempts");
    assert!((1..=2).contains(&counted), "{e}");
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

/// Sets the service clock to `at` and waits for the attempt the supervisor then makes:
/// the event's listing once its next attempt is planned after `at` (or it is dead).
async fn attempt_at(t: &BillingApp, id: &str, at: DateTime<Utc>) -> serde_json::Value {
    t.app.clock.set(at);
    let what = format!("an attempt at {at}");
    eventually(&what, Duration::from_secs(5), || async {
        if let Some(dead) = t.event_in(id, "dead").await {
            return Some(dead);
        }
        let e = t.event_in(id, "queued").await?;
        let next = DateTime::parse_from_rfc3339(e["nextAttemptAt"].as_str()?).ok()?;
        (next.timestamp() > at.timestamp()).then_some(e)
    })
    .await
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
