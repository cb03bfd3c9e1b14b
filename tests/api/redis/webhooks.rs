//! A Stripe webhook delivered to one of two nodes sharing Redis is processed exactly
//! once — by whichever node claims it — and the same event delivered to both is stored
//! once.

use super::servers::Redis;
use crate::fake_stripe::{objects, FakeStripe, API_KEY};
use crate::helpers::*;
use crate::webhooks::{signature, SECRET};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

const PROCESSED: &str =
    "edgequota_webhook_events_total{family=\"customer.subscription\",outcome=\"processed\"}";

#[actix_rt::test]
async fn an_event_delivered_to_either_node_is_processed_once() {
    let Some(redis) = Redis::start(1, false) else {
        return;
    };
    let stripe = FakeStripe::start().await;
    stripe.set_now(default_now().timestamp());
    let (stripe_url, redis_url) = (stripe.url(), redis.urls()[0].clone());
    let env = [
        ("EDGEQUOTA__STORE__BACKEND", "redis"),
        ("EDGEQUOTA__STORE__REDIS_URLS", redis_url.as_str()),
        ("EDGEQUOTA__STRIPE__API_KEY", API_KEY),
        ("EDGEQUOTA__STRIPE__BASE_URL", stripe_url.as_str()),
        ("EDGEQUOTA__STRIPE__WEBHOOK_SECRETS", SECRET),
        ("EDGEQUOTA__WEBHOOKS__POLL_INTERVAL_MS", "20"),
    ];
    let a = spawn_app_with(default_now(), &env).await;
    let b = spawn_app_with(default_now(), &env).await;
    let org = a.create_org().await;
    let res = a
        .post(
            "/api/stripe/customer.ensure",
            SERVICE,
            &json!({"orgId": org, "email": "w@acme.test"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = a
        .post(
            "/api/stripe/subscription.create",
            SERVICE,
            &json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let sub = body(res).await["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = objects::event(
        "customer.subscription.updated",
        stripe.subscription(&sub).expect("the fake has it"),
    );
    let raw = serde_json::to_vec(&event).unwrap();
    let header = signature(SECRET, default_now().timestamp(), &raw);
    // To both nodes at once, as a retrying Stripe might.
    let deliver = |node: &TestApp| {
        node.client
            .post(node.url("/api/webhooks/stripe.receive"))
            .header("content-type", "application/json")
            .header("stripe-signature", header.clone())
            .body(raw.clone())
            .send()
    };
    let (to_a, to_b) = futures_util::join!(deliver(&a), deliver(&b));
    assert_eq!(to_a.unwrap().status(), StatusCode::ACCEPTED);
    assert_eq!(to_b.unwrap().status(), StatusCode::ACCEPTED);
    let processed = || async {
        a.metrics_scrape().await.get(PROCESSED) + b.metrics_scrape().await.get(PROCESSED)
    };
    eventually("the event processed", Duration::from_secs(5), || async {
        (processed().await >= 1.0).then_some(())
    })
    .await;
    // Both nodes keep draining; nobody processes it again.
    let drains = "edgequota_queue_drain_runs_total{queue=\"webhooks\"}";
    let before = (
        a.metrics_scrape().await.get(drains),
        b.metrics_scrape().await.get(drains),
    );
    eventually(
        "both nodes drained twice more",
        Duration::from_secs(5),
        || async {
            let now = (
                a.metrics_scrape().await.get(drains),
                b.metrics_scrape().await.get(drains),
            );
            (now.0 >= before.0 + 2.0 && now.1 >= before.1 + 2.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        processed().await,
        1.0,
        "processed once across the two nodes"
    );
    let listed = body(
        a.get("/api/admin/webhooks.list?state=processed", ADMIN)
            .await,
    )
    .await;
    let ids: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["eventId"] == event["id"])
        .collect();
    assert_eq!(ids.len(), 1, "stored once: {listed}");
}
