//! The real binary killed with SIGKILL while a provisioning request is pending in the
//! outbox: it is provisioned after restart.

use crate::binary::{client, create_org, post, Server};
use crate::fake_stigg::{FakeStigg, StiggFailure, STIGG_API_KEY};
use crate::fake_stripe::{FakeStripe, API_KEY};
use crate::helpers::SERVICE;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[actix_web::test]
async fn a_pending_provisioning_survives_kill_9() {
    let stripe = FakeStripe::start().await;
    let stigg = FakeStigg::start().await;
    let (stripe_url, stigg_url) = (stripe.url(), stigg.url());
    let env = [
        ("EDGEQUOTA__STRIPE__API_KEY", API_KEY),
        ("EDGEQUOTA__STRIPE__BASE_URL", stripe_url.as_str()),
        ("EDGEQUOTA__STIGG__API_KEY", STIGG_API_KEY),
        ("EDGEQUOTA__STIGG__BASE_URL", stigg_url.as_str()),
        ("EDGEQUOTA__STIGG__REQUEST_BACKOFF_MS", "5"),
        ("EDGEQUOTA__STIGG__RETRY_BASE_MS", "200"),
        ("EDGEQUOTA__STIGG__POLL_INTERVAL_MS", "50"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &env);
    let c = client();
    let base = server.base.clone();
    let org = create_org(&c, &base).await;
    let call = |path: &'static str, body: Value| {
        let (c, base) = (c.clone(), base.clone());
        async move { post(&c, &base, path, &body).await.unwrap() }
    };
    let customer = call(
        "/api/stripe/customer.ensure",
        json!({"orgId": org, "email": "ops@acme.test"}),
    )
    .await
    .json::<Value>()
    .await
    .unwrap()["stripeCustomerId"]
        .clone();
    let sub = call(
        "/api/stripe/subscription.create",
        json!({"orgId": org, "priceLookup": "plan_starter_m"}),
    )
    .await
    .json::<Value>()
    .await
    .unwrap()["subscriptionId"]
        .clone();
    stigg.fail(StiggFailure::ServerError, None);
    let res = call(
        "/api/stigg/provision",
        json!({"orgId": org, "stripeCustomerId": customer,
               "stripeSubscriptionId": sub, "planCode": "plan_starter_m"}),
    )
    .await;
    assert_eq!(res.status(), 500);
    server.kill9();

    stigg.clear_failures();
    let server = Server::start(dir.path(), &env);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let res = c
            .get(format!(
                "{}/api/stigg/provision.status?orgId={org}",
                server.base
            ))
            .bearer_auth(SERVICE)
            .send()
            .await
            .unwrap();
        let status = res.json::<Value>().await.unwrap();
        if status["state"] == "provisioned" {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stigg.subscription_of(&org).is_some());
}
