//! The real binary killed with SIGKILL while a provisioning request is pending in the
//! outbox: it is provisioned after restart, and the request's correlation id is in the
//! log lines of both the request and the retry that finished it (SPEC 1.4) — as a
//! provisioning answered 200 at once has its id in its own log lines.

use crate::binary::{client, create_org, post, Server};
use crate::fake_stigg::{FakeStigg, StiggFailure, STIGG_API_KEY};
use crate::fake_stripe::{FakeStripe, API_KEY};
use crate::helpers::{eventually, SERVICE};
use serde_json::{json, Value};
use std::time::Duration;

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
    let res = c
        .post(format!("{base}/api/stigg/provision"))
        .bearer_auth(SERVICE)
        .header("x-correlation-id", "corr-story-1.4")
        .json(&json!({"orgId": org, "stripeCustomerId": customer,
                      "stripeSubscriptionId": sub, "planCode": "plan_starter_m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    assert_eq!(res.headers()["x-correlation-id"], "corr-story-1.4");
    // Whether one line of `server`'s log has `message` and the correlation id `id`. The
    // log reaches us through a reader thread: waited for, not read at once.
    let tagged = |server: &Server, message: &str, id: &str| {
        let field = format!("\"correlation_id\":\"{id}\"");
        server
            .log_text()
            .lines()
            .any(|l| l.contains(message) && l.contains(&field))
    };
    eventually(
        "the request's log lines with its correlation id",
        Duration::from_secs(5),
        || {
            let found = tagged(&server, "Stigg provisioning queued", "corr-story-1.4")
                && tagged(
                    &server,
                    "Stigg provisioning failed; will retry",
                    "corr-story-1.4",
                );
            async move { found.then_some(()) }
        },
    )
    .await;
    server.kill9();

    stigg.clear_failures();
    let server = Server::start(dir.path(), &env);
    eventually(
        "the provisioning after restart",
        Duration::from_secs(15),
        || async {
            let url = format!("{}/api/stigg/provision.status?orgId={org}", server.base);
            let res = c.get(url).bearer_auth(SERVICE).send().await.ok()?;
            let status = res.json::<Value>().await.ok()?;
            (status["state"] == "provisioned").then_some(())
        },
    )
    .await;
    assert!(stigg.subscription_of(&org).is_some());
    eventually(
        "the retry's log line with the request's correlation id",
        Duration::from_secs(5),
        || {
            let found = tagged(&server, "provisioned in Stigg", "corr-story-1.4");
            async move { found.then_some(()) }
        },
    )
    .await;
    for call in stigg.calls() {
        assert_eq!(call.header("x-correlation-id"), Some("corr-story-1.4"));
    }

    // A provisioning Stigg accepts at once: 200, and its id in both of its log lines.
    let base = server.base.clone();
    let org = create_org(&c, &base).await;
    let ok = |path: &'static str, body: Value| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let res = post(&c, &base, path, &body).await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            res.json::<Value>().await.unwrap()
        }
    };
    let body = json!({"orgId": org, "email": "ops@acme.test"});
    let customer = ok("/api/stripe/customer.ensure", body).await["stripeCustomerId"].clone();
    let body = json!({"orgId": org, "priceLookup": "plan_starter_m"});
    let sub = ok("/api/stripe/subscription.create", body).await["subscriptionId"].clone();
    let res = c
        .post(format!("{base}/api/stigg/provision"))
        .bearer_auth(SERVICE)
        .header("x-correlation-id", "corr-story-1.4-ok")
        .json(&json!({"orgId": org, "stripeCustomerId": customer,
                      "stripeSubscriptionId": sub, "planCode": "plan_starter_m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-correlation-id"], "corr-story-1.4-ok");
    eventually(
        "the 200 provisioning's log lines with its correlation id",
        Duration::from_secs(5),
        || {
            let found = tagged(&server, "Stigg provisioning queued", "corr-story-1.4-ok")
                && tagged(&server, "provisioned in Stigg", "corr-story-1.4-ok");
            async move { found.then_some(()) }
        },
    )
    .await;
    assert!(stigg.subscription_of(&org).is_some());
}
