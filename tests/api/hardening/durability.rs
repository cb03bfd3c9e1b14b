//! Durability that holds when the disk fails (SPEC §6), with faults injected into the
//! store: a failed group commit fences the org's writes queued behind it, a failed sync
//! is an unknown outcome its retry settles, nothing read back is acknowledged before a
//! flush covered it, and smoke reports it — from one run shared by concurrent callers.

use crate::helpers::*;
use reqwest::Response;
use serde_json::json;
use std::time::Duration;

async fn used(app: &TestApp, org: &str) -> serde_json::Value {
    app.entitlements(org).await["used"].clone()
}

/// Records "a" (10) with the writer held at its commit, and "b" (5) of the same org
/// queued at the writer behind it; then lets the commit go on (to whatever fault the
/// caller armed). Both answers.
async fn record_with_one_queued_behind(app: &TestApp, org: &str) -> (Response, Response) {
    app.faults.hold_next_commit();
    let first = app.record(org, "a", 10);
    futures::join!(first, async {
        let faults = app.faults.clone();
        let held = actix_rt::task::spawn_blocking(move || faults.wait_held(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(held, "the writer never reached the commit");
        let behind = app.record(org, "b", 5);
        let release = async {
            actix_rt::time::sleep(Duration::from_millis(300)).await;
            app.faults.release();
        };
        futures::join!(behind, release).0
    })
}

#[actix_web::test]
async fn writes_queued_behind_a_failed_commit_are_fenced_and_replays_count_once() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    app.faults.fail_next_applies(1);
    let (first, behind) = record_with_one_queued_behind(&app, &org).await;
    assert_error(first, 500, "INTERNAL").await;
    let status = behind.status();
    let b = body(behind).await;
    // Refused, or (had it reached a fresh actor) counted on what is stored: never on top
    // of the failed write.
    assert!(
        status == 500 || b["used"] == 5,
        "a write behind the failed commit answered {status}: {b}"
    );
    for (id, value) in [("a", 10), ("b", 5), ("a", 10), ("b", 5)] {
        assert_eq!(app.record(&org, id, value).await.status(), 200);
    }
    assert_eq!(
        used(&app, &org).await,
        15,
        "each record counted exactly once"
    );
}

/// A commit whose batch was applied and whose sync then failed has an unknown outcome
/// (its 500 says so): a write of the same org queued behind it may build on it only once a
/// checkpoint has made both durable, and the failed record's retry then answers its
/// original body, counted once.
#[actix_web::test]
async fn a_write_behind_a_commit_whose_sync_failed_is_answered_only_once_both_are_durable() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    app.faults.fail_next_flushes(1);
    let (first, behind) = record_with_one_queued_behind(&app, &org).await;
    assert_error(first, 500, "INTERNAL").await;
    assert_eq!(
        app.faults.flush_failures_left(),
        0,
        "the armed sync failure was never tried"
    );
    let status = behind.status();
    let b = body(behind).await;
    // Either refused too, or answered on top of the applied record — which the answer's
    // checkpoint has then made durable.
    assert!(
        status == 500 || b["used"] == 15,
        "a write behind the failed sync answered {status}: {b}"
    );
    let retry = app.record(&org, "a", 10).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(
        body(retry).await,
        json!({"periodKey": "2026-03", "used": 10, "remaining": 990}),
        "the retry answers the record's own outcome, not a second count"
    );
    assert_eq!(app.record(&org, "b", 5).await.status(), 200);
    assert_eq!(
        used(&app, &org).await,
        15,
        "each record counted exactly once"
    );
    let dir = app.stop().await;
    let app = spawn_app_in(dir, default_now(), &[]).await;
    assert_eq!(used(&app, &org).await, 15, "and durable");
}

#[actix_web::test]
async fn a_replay_is_not_answered_from_writes_no_flush_covered() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    // The commit's batch is applied, its flush fails, and so does the next flush.
    app.faults.fail_next_flushes(2);
    assert_error(app.record(&org, "a", 10).await, 500, "INTERNAL").await;
    assert_error(app.record(&org, "a", 10).await, 500, "INTERNAL").await;
    // The disk is back: the replay flushes first, then answers what is now durable.
    let res = app.record(&org, "a", 10).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        body(res).await,
        json!({"periodKey": "2026-03", "used": 10, "remaining": 990})
    );
    assert_eq!(used(&app, &org).await, 10);
    // Survives a restart (it was flushed).
    let dir = app.stop().await;
    let app = spawn_app_in(dir, default_now(), &[]).await;
    assert_eq!(used(&app, &org).await, 10);
}

#[actix_web::test]
async fn smoke_reports_a_failing_store_from_one_run_shared_by_concurrent_callers() {
    let app = spawn_app().await;
    app.faults.fail_next_flushes(1);
    let calls = (0..10).map(|_| app.client.get(app.url("/api/diag/smoke")).send());
    let answers = futures::future::join_all(calls).await;
    let mut checks = Vec::new();
    for res in answers {
        let res = res.unwrap();
        assert_eq!(res.status(), 503);
        let b = body(res).await;
        assert_eq!(b["ok"], false, "{b}");
        assert_eq!(b["code"], "UNAVAILABLE");
        assert_eq!(b["checks"]["store"]["ok"], false, "{b}");
        assert!(
            b["checks"]["store"]["error"]
                .as_str()
                .unwrap()
                .contains("injected"),
            "{b}"
        );
        assert_eq!(b["checks"]["actors"]["ok"], true, "{b}");
        checks.push(b["checks"].clone());
    }
    // One run: the one injected failure answered all ten (a second run would pass).
    assert!(checks.windows(2).all(|w| w[0] == w[1]));
    // A second later the result is not reused: the store is fine again.
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    let res = app
        .client
        .get(app.url("/api/diag/smoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await["ok"], true);
}

/// A caller that hangs up while its record waits for the disk does not take the record
/// out of the quota: the record is durable, so the org's live counter shows it too (a
/// tenant who disconnects must not spend units the checks never see).
#[actix_web::test]
async fn a_record_whose_caller_hung_up_still_counts_in_the_live_quota() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(used(&app, &org).await, 0, "the actor is live and empty");
    app.faults.hold_next_commit();
    let hung_up = app
        .client
        .post(app.url("/api/usage/record"))
        .bearer_auth(SERVICE)
        .timeout(Duration::from_millis(300))
        .json(&json!({"orgId": org, "metric": "api_call", "value": 7,
                      "occurredAt": app.clock_now(), "request_id": "hung-up"}))
        .send();
    let faults = app.faults.clone();
    let held = actix_rt::task::spawn_blocking(move || faults.wait_held(Duration::from_secs(5)));
    let (sent, held) = futures::join!(hung_up, held);
    assert!(held.unwrap(), "the writer never reached the commit");
    assert!(
        sent.is_err(),
        "the caller gave up while the writer was held"
    );
    // The server notices the closed connection and drops the request's handler.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    app.faults.release();
    let mut seen = used(&app, &org).await;
    for _ in 0..50 {
        if seen == 7 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        seen = used(&app, &org).await;
    }
    assert_eq!(seen, 7, "the durable record is in the live counter");
    let replay = app.record(&org, "hung-up", 7).await;
    assert_eq!(body(replay).await["used"], 7, "and counted once");
    assert_eq!(used(&app, &org).await, 7);
}

/// A caller that stops waiting (its future dropped: a cancelled task, a gRPC client that
/// went away) while its record's commit is held, and the commit then fails: the failure
/// still reaches the org's actor, which retires, so a retry goes to the store afresh and
/// is counted once — not answered the abandoned record's failure from memory.
#[actix_web::test]
async fn a_failed_record_whose_caller_stopped_waiting_still_retires_the_actor() {
    use edgequota::clock::Clock;
    use edgequota::domain::{Metric, OrgId, RequestId};
    use edgequota::quota::RecordRequest;
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(used(&app, &org).await, 0, "the actor is live and empty");
    let now = app.clock.now();
    let request = RecordRequest {
        metric: Metric::api_call(),
        value: 7,
        occurred_at: now,
        request: RequestId::parse("abandoned").unwrap(),
    };
    app.faults.fail_next_applies(1);
    app.faults.hold_next_commit();
    let engine = app.engine.clone();
    let org_id = OrgId::parse(&org).unwrap();
    let caller = actix_rt::spawn(async move { engine.record(&org_id, request, now).await });
    let faults = app.faults.clone();
    let held = actix_rt::task::spawn_blocking(move || faults.wait_held(Duration::from_secs(5)));
    assert!(held.await.unwrap(), "the writer never reached the commit");
    caller.abort();
    assert!(caller.await.is_err(), "the caller was cancelled while held");
    app.faults.release();
    actix_rt::time::sleep(Duration::from_millis(300)).await;

    let body = json!({"periodKey": "2026-03", "used": 7, "remaining": 993});
    let retry = app
        .client
        .post(app.url("/api/usage/record"))
        .bearer_auth(SERVICE)
        .json(&json!({"orgId": org, "metric": "api_call", "value": 7,
                      "occurredAt": app.clock_now(), "request_id": "abandoned"}))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 200, "the retry reached the store afresh");
    assert_eq!(crate::helpers::body(retry).await, body);
    assert_eq!(used(&app, &org).await, 7, "counted once");
}
