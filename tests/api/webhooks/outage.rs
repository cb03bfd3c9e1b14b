//! A Stripe outage against the real binary (SPEC §6): Stripe unreachable for minutes
//! parks nothing — every event stays queued, its attempts not counted — and once Stripe
//! is back every event is processed within a minute (the capped outage backoff).

use super::{signature, SECRET};
use crate::binary::{client, create_org, entitlements, post, Server};
use crate::fake_stripe::{objects, FakeStripe, API_KEY};
use crate::helpers::{eventually, ADMIN};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn events_in(c: &reqwest::Client, base: &str, state: &str) -> Vec<Value> {
    let res = c
        .get(format!(
            "{base}/api/admin/webhooks.list?state={state}&limit=100"
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    res.json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[actix_web::test]
async fn minutes_of_stripe_outage_park_nothing_and_the_queue_drains_within_a_minute_after() {
    let outage = Duration::from_secs(
        std::env::var("EDGEQUOTA_TEST_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let mut stripe = FakeStripe::start().await;
    let url = stripe.url();
    // Three counted attempts would park an event within seconds; the outage budget and
    // the 30 s outage backoff cap are the defaults.
    let env = [
        ("EDGEQUOTA__STRIPE__API_KEY", API_KEY),
        ("EDGEQUOTA__STRIPE__BASE_URL", url.as_str()),
        ("EDGEQUOTA__STRIPE__WEBHOOK_SECRETS", SECRET),
        ("EDGEQUOTA__STRIPE__TIMEOUT_MS", "1000"),
        ("EDGEQUOTA__STRIPE__MAX_RETRIES", "0"),
        ("EDGEQUOTA__WEBHOOKS__MAX_ATTEMPTS", "3"),
        ("EDGEQUOTA__WEBHOOKS__RETRY_BASE_MS", "500"),
        ("EDGEQUOTA__WEBHOOKS__POLL_INTERVAL_MS", "100"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &env);
    let (c, base) = (client(), server.base.clone());
    let org = create_org(&c, &base).await;
    let ok = |res: reqwest::Response| async move {
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };
    let body = json!({"orgId": org, "email": "ops@acme.test"});
    ok(post(&c, &base, "/api/stripe/customer.ensure", &body)
        .await
        .unwrap())
    .await;
    let body = json!({"orgId": org, "priceLookup": "plan_starter_m"});
    let created = ok(post(&c, &base, "/api/stripe/subscription.create", &body)
        .await
        .unwrap())
    .await;
    let sub = created["subscriptionId"].as_str().unwrap().to_owned();

    stripe.stop().await;
    // The customer moves to pro in the portal while Stripe is unreachable for us.
    stripe.set_subscription_price(&sub, "plan_scale_m");
    let mut ids = Vec::new();
    for _ in 0..5 {
        let object = stripe.subscription(&sub).unwrap();
        let event = objects::event("customer.subscription.updated", object);
        let raw = serde_json::to_vec(&event).unwrap();
        let header = signature(SECRET, chrono::Utc::now().timestamp(), &raw);
        let res = c
            .post(format!("{base}/api/webhooks/stripe.receive"))
            .header("stripe-signature", header)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        ids.push(event["id"].as_str().unwrap().to_owned());
    }
    let outage_started = Instant::now();
    while outage_started.elapsed() < outage {
        assert!(
            events_in(&c, &base, "dead").await.is_empty(),
            "an outage parked an event"
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let queued = events_in(&c, &base, "queued").await;
    assert_eq!(queued.len(), 5, "{queued:?}");
    for e in &queued {
        assert!(
            e["attempts"].as_u64().unwrap() > 3,
            "tried beyond max_attempts: {e}"
        );
        assert_eq!(e["countedAttempts"], 0, "{e}");
        assert!(e["lastError"].as_str().unwrap().contains("Stripe"), "{e}");
    }

    stripe.restart().await;
    let back = Instant::now();
    eventually(
        "every event processed within a minute after Stripe returned",
        Duration::from_secs(60),
        || async {
            let processed = events_in(&c, &base, "processed").await;
            ids.iter()
                .all(|id| processed.iter().any(|e| e["eventId"] == id.as_str()))
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "queue drained {:.1} s after Stripe returned",
        back.elapsed().as_secs_f64()
    );
    assert_eq!(
        entitlements(&c, &base, &org).await["planCode"],
        "plan_scale_m"
    );
}
