//! SPEC 4.7: `POST /api/usage/record.batch` — each event answered exactly as
//! `usage/record` answers it alone, independent failures, replays that count nothing,
//! duplicates inside a batch counted once, per-event authorization, and the limits.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const PATH: &str = "/api/usage/record.batch";

fn event(app: &TestApp, org: &str, request_id: &str, value: u64) -> Value {
    json!({"orgId": org, "metric": "api_call", "value": value,
           "occurredAt": app.clock_now(), "request_id": request_id})
}

async fn batch(app: &TestApp, token: &str, events: &[Value]) -> Vec<Value> {
    let res = app.post(PATH, token, &json!({ "events": events })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let b = body(res).await;
    let results = b["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), events.len());
    results
}

/// An answer without its correlation id (which differs per request by design).
fn comparable(mut answer: Value) -> Value {
    if let Some(o) = answer.as_object_mut() {
        o.remove("correlationId");
    }
    answer
}

#[actix_rt::test]
async fn each_event_is_answered_as_a_single_record_would_answer_it() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let other = app.create_org().await;
    let key = app.mint_key(&org).await;
    // A request id already used with another payload: a 409 in the batch.
    assert_eq!(
        app.record(&org, "req_taken", 7).await.status(),
        StatusCode::OK
    );
    let mut missing_value = event(&app, &org, "req_missing", 1);
    missing_value.as_object_mut().unwrap().remove("value");
    let mut future = event(&app, &org, "req_future", 1);
    future["occurredAt"] = json!("2099-01-01T00:00:00Z");
    let mut bad_type = event(&app, &org, "req_type", 1);
    bad_type["value"] = json!("three");
    let mut unknown_metric = event(&app, &org, "req_metric", 1);
    unknown_metric["metric"] = json!("nope");
    let events = vec![
        event(&app, &org, "req_a", 3),
        missing_value,
        event(&app, &other, "req_other", 1),
        future,
        event(&app, &org, "req_taken", 8),
        bad_type,
        unknown_metric,
        event(&app, &org, "req_b", 0),
        event(&app, "org_doesnotexist", "req_ghost", 1),
        json!("not an object"),
        event(&app, &org, "req_c", 4),
    ];
    let results = batch(&app, &key, &events).await;
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [200, 400, 403, 400, 409, 400, 400, 400, 403, 400, 200]
    );
    assert_eq!(results[0]["body"]["used"], 10);
    assert_eq!(results[10]["body"]["used"], 14);
    // Body for body, the same as each event sent alone (a replay for the accepted ones).
    for (event, result) in events.iter().zip(&results) {
        let res = app.post("/api/usage/record", &key, event).await;
        assert_eq!(
            res.status().as_u16() as u64,
            result["status"].as_u64().unwrap(),
            "{event}"
        );
        assert_eq!(
            comparable(body(res).await),
            comparable(result["body"].clone()),
            "{event}"
        );
    }
    assert_eq!(app.entitlements(&org).await["used"], 14);
    assert_eq!(app.entitlements(&other).await["used"], 0);
    // With a service token the other org's event is accepted, and the unknown org is 404.
    let results = batch(
        &app,
        SERVICE,
        &[
            event(&app, &other, "req_other", 1),
            event(&app, "org_doesnotexist", "req_ghost", 1),
        ],
    )
    .await;
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[1]["status"], 404);
    assert_eq!(results[1]["body"]["code"], "NOT_FOUND");
}

#[actix_rt::test]
async fn a_replayed_batch_answers_the_same_and_counts_nothing() {
    let app = spawn_app().await;
    let orgs = [app.create_org().await, app.create_org().await];
    let events: Vec<Value> = (0..200)
        .map(|i| event(&app, &orgs[i % 2], &format!("req_{i}"), 1 + (i as u64 % 3)))
        .collect();
    let first = batch(&app, SERVICE, &events).await;
    assert!(first.iter().all(|r| r["status"] == 200));
    let expected: u64 = (0..200).map(|i| 1 + (i as u64 % 3)).sum();
    let used = |e: Value| e["used"].as_u64().unwrap();
    let total = used(app.entitlements(&orgs[0]).await) + used(app.entitlements(&orgs[1]).await);
    assert_eq!(total, expected);
    // Each org's events were applied in input order: its running totals only grow.
    for org in &orgs {
        let totals: Vec<u64> = events
            .iter()
            .zip(&first)
            .filter(|(e, _)| e["orgId"] == org.as_str())
            .map(|(_, r)| r["body"]["used"].as_u64().unwrap())
            .collect();
        assert!(totals.windows(2).all(|w| w[0] < w[1]), "{totals:?}");
    }
    let again = batch(&app, SERVICE, &events).await;
    assert_eq!(again, first);
    let total = used(app.entitlements(&orgs[0]).await) + used(app.entitlements(&orgs[1]).await);
    assert_eq!(total, expected);
}

#[actix_rt::test]
async fn the_same_request_id_twice_in_one_batch_counts_once() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let e = event(&app, &org, "req_twice", 5);
    let mut changed = e.clone();
    changed["value"] = json!(6);
    let results = batch(&app, SERVICE, &[e.clone(), e.clone(), changed]).await;
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[2]["status"], 409);
    assert_eq!(app.entitlements(&org).await["used"], 5);
    assert_eq!(app.stored_used(&org, "2026-03").await, json!(5));
}

#[actix_rt::test]
async fn the_batch_itself_must_hold_one_to_a_thousand_events_within_one_mebibyte() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let too_many: Vec<Value> = (0..1001)
        .map(|i| event(&app, &org, &format!("r{i}"), 1))
        .collect();
    for body in [
        json!({"events": too_many}),
        json!({"events": []}),
        json!({}),
        json!({"events": 3}),
    ] {
        let res = app.post(PATH, SERVICE, &body).await;
        assert_error(res, 400, "BAD_REQUEST").await;
    }
    let full: Vec<Value> = (0..1000)
        .map(|i| event(&app, &org, &format!("r{i}"), 1))
        .collect();
    let results = batch(&app, SERVICE, &full).await;
    assert!(results.iter().all(|r| r["status"] == 200));
    // Past 1 MiB: 413, nothing counted.
    let padding = "x".repeat(1024 * 1024);
    let res = app
        .post(
            PATH,
            SERVICE,
            &json!({"events": [event(&app, &org, "r_big", 1)], "pad": padding}),
        )
        .await;
    assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    // Without a credential: 401.
    let res = app
        .client
        .post(app.url(PATH))
        .json(&json!({"events": [event(&app, &org, "r_anon", 1)]}))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "UNAUTHORIZED").await;
    assert_eq!(app.entitlements(&org).await["used"], 1000);
}

/// A batch hands live orgs' events to the store without their actors and moves their
/// counters in memory itself; forced resets (which replace the counters) racing with
/// batches must still leave every org's counter in memory equal to the store's.
#[actix_rt::test]
async fn batches_racing_forced_resets_leave_memory_equal_to_the_store() {
    use std::cell::Cell;
    let app = spawn_app().await;
    let mut orgs = Vec::new();
    for _ in 0..4 {
        let org = app.create_org().await;
        // A live actor, so the batches take the direct way.
        assert_eq!(app.record(&org, "warm", 1).await.status(), StatusCode::OK);
        orgs.push(org);
    }
    let done = Cell::new(false);
    let resets = Cell::new(0u32);
    let force = json!({"periodKey": "2026-03", "force": true});
    let senders = (0..6).map(|t| {
        let (app, orgs) = (&app, &orgs);
        async move {
            for b in 0..12 {
                let events: Vec<Value> = (0..60)
                    .map(|i| event(app, &orgs[i % orgs.len()], &format!("t{t}_b{b}_{i}"), 1))
                    .collect();
                let results = batch(app, SERVICE, &events).await;
                assert!(results.iter().all(|r| r["status"] == 200), "{results:?}");
            }
        }
    });
    let batches = async {
        futures::future::join_all(senders).await;
        done.set(true);
    };
    let resetting = async {
        while !done.get() {
            assert_eq!(app.reset(&force).await["periodKey"], "2026-03");
            resets.set(resets.get() + 1);
        }
    };
    futures::future::join(batches, resetting).await;
    assert!(resets.get() > 0, "the resets ran alongside the batches");
    for org in &orgs {
        let stored = app.stored_used(org, "2026-03").await;
        assert_eq!(app.entitlements(org).await["used"], stored, "{org}");
    }
}

/// Three events of 2 units for `org` at the clock's time, as the batch handler passes them.
fn direct_events(
    app: &TestApp,
    org: &str,
    prefix: &str,
) -> (
    Vec<(edgequota::domain::OrgId, edgequota::quota::RecordRequest)>,
    chrono::DateTime<chrono::Utc>,
) {
    use edgequota::clock::Clock;
    use edgequota::domain::{Metric, OrgId, RequestId};
    let now = app.clock.now();
    let events = (0..3)
        .map(|i| {
            (
                OrgId::parse(org).unwrap(),
                edgequota::quota::RecordRequest {
                    metric: Metric::api_call(),
                    value: 2,
                    occurred_at: now,
                    request: RequestId::parse(&format!("{prefix}_{i}")).unwrap(),
                },
            )
        })
        .collect();
    (events, now)
}

/// The race above, forced: a forced reset lands between a batch reading its org's
/// counters' stamp and handing its records to the store, so the store zeroes before it
/// counts them. Memory must end equal to the store (the batch sees the stamp move and
/// has the org reloaded), not at the reset's zero.
#[actix_rt::test]
async fn a_reset_between_placing_and_submitting_a_batch_leaves_memory_equal_to_the_store() {
    use edgequota::domain::PeriodKey;
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "warm", 5).await.status(), StatusCode::OK);
    let (events, now) = direct_events(&app, &org, "late");
    let prepared = app.engine.prepare_events(events, now);
    let march = PeriodKey::parse("2026-03").unwrap();
    assert_eq!(app.engine.rollover(march, true, "test").await.unwrap(), 1);
    let answers = app.engine.submit_events(prepared).await;
    let used: Vec<u64> = answers
        .iter()
        .map(|a| {
            let body: Value = serde_json::from_slice(&a.as_ref().unwrap().body).unwrap();
            body["used"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(used, vec![2, 4, 6], "counted after the reset's zero");
    assert_eq!(app.stored_used(&org, "2026-03").await, 6);
    assert_eq!(app.entitlements(&org).await["used"], 6);
}

/// The other move a batch races with: the org's actor retires (idle here) and a fresh
/// one loads the org from the store before the batch's records reach it. The fresh
/// actor's counters must still end up with them.
#[actix_rt::test]
async fn an_actor_replaced_between_placing_and_submitting_a_batch_still_shows_it() {
    let app = spawn_app_with(
        default_now(),
        &[("EDGEQUOTA__ENGINE__ACTOR_IDLE_TTL_SECS", "1")],
    )
    .await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "warm", 5).await.status(), StatusCode::OK);
    let (events, now) = direct_events(&app, &org, "late");
    let prepared = app.engine.prepare_events(events, now);
    app.wait_for_idle_eviction().await;
    // A fresh actor, loaded from a store without the batch.
    assert_eq!(app.entitlements(&org).await["used"], 5);
    let answers = app.engine.submit_events(prepared).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(app.stored_used(&org, "2026-03").await, 11);
    assert_eq!(app.entitlements(&org).await["used"], 11);
}
