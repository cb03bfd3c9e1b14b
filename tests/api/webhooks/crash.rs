//! The real binary killed with SIGKILL after acknowledging an event and before
//! processing it finished: the event is processed after restart.

use super::{signature, SECRET};
use crate::binary::{client, create_org, post, Server};
use crate::fake_stripe::{objects, FailRule, FakeStripe, API_KEY};
use crate::helpers::{eventually, SERVICE};
use serde_json::{json, Value};
use std::time::Duration;

async fn plan(c: &reqwest::Client, base: &str, org: &str) -> String {
    let res = c
        .get(format!("{base}/api/me/entitlements.read"))
        .bearer_auth(SERVICE)
        .header("x-tenant-id", org)
        .send()
        .await
        .unwrap();
    res.json::<Value>().await.unwrap()["planCode"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[actix_web::test]
async fn an_acknowledged_event_is_processed_after_kill_9() {
    let stripe = FakeStripe::start().await;
    let url = stripe.url();
    let env = [
        ("EDGEQUOTA__STRIPE__API_KEY", API_KEY),
        ("EDGEQUOTA__STRIPE__BASE_URL", url.as_str()),
        ("EDGEQUOTA__STRIPE__WEBHOOK_SECRETS", SECRET),
        ("EDGEQUOTA__WEBHOOKS__POLL_INTERVAL_MS", "50"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &env);
    let c = client();
    let base = server.base.clone();
    let org = create_org(&c, &base).await;
    let call = |path: &'static str, body: Value| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let res = post(&c, &base, path, &body).await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            res.json::<Value>().await.unwrap()
        }
    };
    call(
        "/api/stripe/customer.ensure",
        json!({"orgId": org, "email": "ops@acme.test"}),
    )
    .await;
    let sub = call(
        "/api/stripe/subscription.create",
        json!({"orgId": org, "priceLookup": "plan_starter_m"}),
    )
    .await["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();

    // Stripe moved the org to pro; reading it back will hang until the kill.
    stripe.set_subscription_price(&sub, "plan_pro_m");
    let path = format!("/v1/subscriptions/{sub}");
    stripe.fail(FailRule::slow(&path, Duration::from_secs(30), None).on("GET"));
    let event = objects::event(
        "customer.subscription.updated",
        stripe.subscription(&sub).unwrap(),
    );
    let raw = serde_json::to_vec(&event).unwrap();
    let res = c
        .post(format!("{base}/api/webhooks/stripe.receive"))
        .header(
            "stripe-signature",
            signature(SECRET, chrono::Utc::now().timestamp(), &raw),
        )
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    eventually("processing to start", Duration::from_secs(10), || async {
        (!stripe.requests_to("GET", &path).is_empty()).then_some(())
    })
    .await;
    server.kill9();

    stripe.clear_failures();
    let server = Server::start(dir.path(), &env);
    eventually(
        "the event processed after restart",
        Duration::from_secs(15),
        || async { (plan(&c, &server.base, &org).await == "plan_pro_m").then_some(()) },
    )
    .await;
}
