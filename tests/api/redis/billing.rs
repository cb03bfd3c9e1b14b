//! Billing with two nodes on one Redis: an org's Stripe operations are serialised
//! across nodes by the store's lease, and a plan change made through one node moves the
//! quota on the other.

use super::servers::Redis;
use crate::fake_stripe::{FakeStripe, API_KEY};
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_billing_lease_is_held_by_one_holder_at_a_time_and_runs_out() {
    let Some(redis) = Redis::start(1, false) else {
        return;
    };
    let b = redis.store().await;
    let org = edgequota::domain::OrgId::parse("org_lease").unwrap();
    let first = b
        .orgs
        .lease(&org, None, 300)
        .await
        .unwrap()
        .expect("granted");
    assert!(
        b.orgs.lease(&org, None, 300).await.unwrap().is_none(),
        "held"
    );
    assert!(b
        .orgs
        .lease(&org, Some("not-mine".into()), 300)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        b.orgs.lease(&org, Some(first.clone()), 300).await.unwrap(),
        Some(first.clone())
    );
    b.orgs.release(&org, "not-mine".into()).await.unwrap();
    assert!(
        b.orgs.lease(&org, None, 300).await.unwrap().is_none(),
        "a stranger cannot release it"
    );
    b.orgs.release(&org, first).await.unwrap();
    let second = b
        .orgs
        .lease(&org, None, 200)
        .await
        .unwrap()
        .expect("free after release");
    // Not renewed: it runs out by itself (a holder that died).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let third = b
        .orgs
        .lease(&org, None, 200)
        .await
        .unwrap()
        .expect("free after the lease ran out");
    assert_ne!(second, third);
}

/// A holder that lost its lease (paused past it; another node took the org) cannot
/// overwrite the billing mirror the new holder wrote: the store checks the token in the
/// same script that writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_write_fenced_with_a_lost_lease_changes_nothing() {
    use edgequota::domain::{BillingRecord, Metric, OrgId, PeriodKey};
    use edgequota::store::{LedgerWrite, StoreError};
    let Some(redis) = Redis::start(1, false) else {
        return;
    };
    let b = redis.store().await;
    let org = OrgId::parse("org_fenced").unwrap();
    let period = PeriodKey::parse("2026-03").unwrap();
    let mirror = |customer: &str| {
        LedgerWrite::Billing(Box::new(BillingRecord {
            customer_id: Some(customer.into()),
            ..Default::default()
        }))
    };
    let old = b
        .orgs
        .lease(&org, None, 150)
        .await
        .unwrap()
        .expect("granted");
    b.ledger
        .commit(
            &org,
            vec![LedgerWrite::Fence(old.clone()), mirror("cus_old")],
        )
        .await
        .expect("the holder writes");
    // The old holder stalls past its lease; another node takes the org and writes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = b
        .orgs
        .lease(&org, None, 5_000)
        .await
        .unwrap()
        .expect("granted");
    b.ledger
        .commit(&org, vec![LedgerWrite::Fence(new), mirror("cus_new")])
        .await
        .expect("the new holder writes");
    let late = b
        .ledger
        .commit(&org, vec![LedgerWrite::Fence(old), mirror("cus_stale")])
        .await;
    assert!(matches!(late, Err(StoreError::Fenced(_))), "{late:?}");
    let stored = b.ledger.load(&org, period).await.unwrap().billing;
    assert_eq!(
        stored.and_then(|r| r.customer_id).as_deref(),
        Some("cus_new"),
        "the fenced write changed nothing"
    );
    // Unfenced ledger writes (usage, state) are not subject to the lease.
    let usage = LedgerWrite::Usage {
        period,
        metric: Metric::api_call(),
        delta: 1,
    };
    b.ledger.commit(&org, vec![usage]).await.expect("unfenced");
}

#[actix_rt::test]
async fn two_nodes_create_one_customer_and_follow_each_others_plan_changes() {
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
    ];
    let a = spawn_app_with(default_now(), &env).await;
    let b = spawn_app_with(default_now(), &env).await;
    let org = a.create_org().await;
    assert_eq!(b.entitlements(&org).await["planCode"], "plan_free");
    // Ten customer.ensure at once, half through each node: one Stripe customer.
    let ensure = json!({"orgId": org, "email": "billing@acme.test"});
    let calls = (0..10).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        node.post("/api/stripe/customer.ensure", SERVICE, &ensure)
    });
    let mut customers = HashSet::new();
    for res in futures_util::future::join_all(calls).await {
        assert_eq!(res.status(), StatusCode::OK);
        customers.insert(
            body(res).await["stripeCustomerId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(customers.len(), 1, "{customers:?}");
    assert_eq!(stripe.requests_to("POST", "/v1/customers").len(), 1);
    // A subscription made through A: B's quota follows within a sync interval or two.
    let res = a
        .post(
            "/api/stripe/subscription.create",
            SERVICE,
            &json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let on_a = a.entitlements(&org).await;
    assert_eq!(on_a["planCode"], "plan_starter_m");
    eventually(
        "B to show the plan and quota A shows",
        Duration::from_secs(2),
        || async {
            let on_b = b.entitlements(&org).await;
            (on_b["planCode"] == on_a["planCode"] && on_b["included"] == on_a["included"])
                .then_some(())
        },
    )
    .await;
}
