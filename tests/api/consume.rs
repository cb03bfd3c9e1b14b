//! `POST /api/quota/consume` (SPEC 4.4): decide and count in one step — exact under
//! concurrency, in the same counter as records, persisted write-behind and across a
//! clean restart, moved by rollover and resets like everything else.

use crate::helpers::*;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use std::time::Duration;

async fn consume(app: &TestApp, org: &str, cost: u64) -> reqwest::Response {
    app.post(
        "/api/quota/consume",
        SERVICE,
        &json!({"orgId": org, "metric": "api_call", "cost": cost}),
    )
    .await
}

/// What the store holds for the org in `period` once the flusher has run.
async fn stored_eventually(app: &TestApp, org: &str, period: &str, expect: u64) {
    eventually(
        "consumed units in the store",
        Duration::from_secs(5),
        || async { (app.stored_used(org, period).await == json!(expect)).then_some(()) },
    )
    .await;
}

#[actix_web::test]
async fn an_allowed_consume_counts_at_once_and_answers_like_a_check() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let res = consume(&app, &org, 3).await;
    assert_eq!(res.status(), 200);
    let policy = res.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let state = res.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert_eq!(body(res).await, json!({"allow": true, "remaining": 997}));
    assert!(policy.starts_with("\"api_call\";q=1000;w="), "{policy}");
    assert!(state.starts_with("\"api_call\";r=997;t="), "{state}");
    // The check sees it at once; the store soon after (write-behind).
    assert_eq!(body(app.check(&org).await).await["remaining"], 997);
    stored_eventually(&app, &org, "2026-03", 3).await;
}

#[actix_web::test]
async fn a_denied_consume_is_the_standard_envelope_and_counts_nothing() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(consume(&app, &org, 999).await.status(), 200);
    let res = consume(&app, &org, 2).await;
    assert!(res.headers().contains_key("retry-after"));
    let denied = assert_error(res, 429, "QUOTA_EXCEEDED").await;
    assert_eq!(denied["allow"], false);
    assert_eq!(denied["remaining"], 0);
    assert_eq!(denied["limit"], 1000);
    assert_eq!(body(consume(&app, &org, 1).await).await["remaining"], 0);
    stored_eventually(&app, &org, "2026-03", 1000).await;
}

#[actix_web::test]
async fn concurrent_consumes_never_admit_more_than_included() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let tasks = (0..64).map(|_| {
        let (client, url, org) = (
            app.client.clone(),
            app.url("/api/quota/consume"),
            org.clone(),
        );
        actix_rt::spawn(async move {
            let mut allowed = 0u64;
            for _ in 0..100 {
                let res = client
                    .post(&url)
                    .bearer_auth(SERVICE)
                    .json(&json!({"orgId": org, "metric": "api_call"}))
                    .send()
                    .await
                    .expect("consume");
                match res.status().as_u16() {
                    200 => allowed += 1,
                    429 => {}
                    other => panic!("unexpected status {other}"),
                }
            }
            allowed
        })
    });
    let mut allowed = 0;
    for t in futures::future::join_all(tasks).await {
        allowed += t.expect("task");
    }
    assert_eq!(allowed, 1000, "6,400 consumes against 1,000 included");
    assert_eq!(app.entitlements(&org).await["used"], 1000);
    stored_eventually(&app, &org, "2026-03", 1000).await;
}

#[actix_web::test]
async fn consumes_and_records_count_into_the_same_counter() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(consume(&app, &org, 10).await.status(), 200);
    let rec = app.record(&org, "r1", 5).await;
    assert_eq!(rec.status(), 200);
    assert_eq!(body(consume(&app, &org, 1).await).await["remaining"], 984);
    assert_eq!(app.record(&org, "r1", 5).await.status(), 200, "a replay");
    assert_eq!(app.entitlements(&org).await["used"], 16);
    stored_eventually(&app, &org, "2026-03", 16).await;
    // A record fills the rest; consumes are then denied.
    assert_eq!(app.record(&org, "r2", 984).await.status(), 200);
    assert_eq!(consume(&app, &org, 1).await.status(), 429);
}

#[actix_web::test]
async fn a_clean_restart_loses_no_consume() {
    let app = spawn_app_with(
        default_now(),
        &[("EDGEQUOTA__ENGINE__CONSUME_FLUSH_MS", "60000")],
    )
    .await;
    let org = app.create_org().await;
    for _ in 0..7 {
        assert_eq!(consume(&app, &org, 3).await.status(), 200);
    }
    // With a one-minute flush interval nothing has been persisted by the flusher: the
    // shutdown does it.
    let dir = app.stop().await;
    let app = spawn_app_in(dir, default_now(), &[]).await;
    assert_eq!(app.stored_used(&org, "2026-03").await, json!(21));
    assert_eq!(app.entitlements(&org).await["used"], 21);
}

#[actix_web::test]
async fn an_org_evicted_for_idleness_keeps_its_consumes() {
    let app = spawn_app_with(
        default_now(),
        &[
            ("EDGEQUOTA__ENGINE__ACTOR_IDLE_TTL_SECS", "1"),
            ("EDGEQUOTA__ENGINE__CONSUME_FLUSH_MS", "60000"),
        ],
    )
    .await;
    let org = app.create_org().await;
    assert_eq!(consume(&app, &org, 4).await.status(), 200);
    app.wait_for_idle_eviction().await;
    assert_eq!(app.stored_used(&org, "2026-03").await, json!(4));
    assert_eq!(body(consume(&app, &org, 1).await).await["remaining"], 995);
}

#[actix_web::test]
async fn a_consume_after_the_month_turns_counts_in_the_new_period() {
    let start = Utc.with_ymd_and_hms(2026, 3, 31, 23, 59, 0).unwrap();
    let app = spawn_app_with(start, &[]).await;
    let org = app.create_org().await;
    assert_eq!(consume(&app, &org, 600).await.status(), 200);
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 1).unwrap());
    // Decided in April even before the sweep reaches the org.
    let res = consume(&app, &org, 500).await;
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await["remaining"], 500);
    stored_eventually(&app, &org, "2026-04", 500).await;
    assert_eq!(app.stored_used(&org, "2026-03").await, json!(600));
}

#[actix_web::test]
async fn a_forced_reset_zeroes_consumed_units_too() {
    let app = spawn_app_with(
        default_now(),
        &[("EDGEQUOTA__ENGINE__CONSUME_FLUSH_MS", "60000")],
    )
    .await;
    let org = app.create_org().await;
    assert_eq!(consume(&app, &org, 40).await.status(), 200);
    let reset: Value = app
        .reset(&json!({"periodKey": "2026-03", "force": true}))
        .await;
    assert_eq!(reset["updated"], 1);
    assert_eq!(app.entitlements(&org).await["used"], 0);
    assert_eq!(app.stored_used(&org, "2026-03").await, json!(0));
    assert_eq!(body(consume(&app, &org, 1).await).await["remaining"], 999);
}

#[actix_web::test]
async fn consume_validates_like_check() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let bad = app
        .post(
            "/api/quota/consume",
            SERVICE,
            &json!({"orgId": org, "metric": "nope", "cost": 0}),
        )
        .await;
    let e = assert_error(bad, 400, "BAD_REQUEST").await;
    let fields: Vec<&str> = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["metric", "cost"]);
    let unknown = consume(&app, "org_01HZZZZZZZZZZZZZZZZZZZZZZZ", 1).await;
    assert_error(unknown, 404, "NOT_FOUND").await;
    assert_eq!(app.entitlements(&org).await["used"], 0);
    let m = app.metrics_scrape().await;
    assert_eq!(
        m.get("edgequota_quota_consumes_total{metric=\"api_call\",result=\"allow\"}"),
        0.0
    );
}
