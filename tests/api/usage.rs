//! Stories 1.5, 3.1 and 4.2: seeding, entitlements and idempotent, durable usage records.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn a_record_answers_the_period_usage_and_a_replay_answers_the_identical_body() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let first = app.record(&org, "req-1", 10).await.text().await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&first).unwrap(),
        json!({"periodKey": "2026-03", "used": 10, "remaining": 990})
    );
    assert_eq!(app.record(&org, "req-2", 5).await.status(), 200);
    let replay = app.record(&org, "req-1", 10).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.text().await.unwrap(), first);
    assert_eq!(app.entitlements(&org).await["used"], 15);
}

#[actix_web::test]
async fn a_request_id_reused_with_another_payload_is_a_conflict_and_counts_nothing() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "req-1", 10).await.status(), 200);
    assert_error(app.record(&org, "req-1", 11).await, 409, "CONFLICT").await;
    assert_eq!(app.entitlements(&org).await["used"], 10);
}

#[actix_web::test]
async fn request_ids_are_scoped_per_org() {
    let app = spawn_app().await;
    let (a, b) = (app.create_org().await, app.create_org().await);
    assert_eq!(app.record(&a, "same", 3).await.status(), 200);
    assert_eq!(app.record(&b, "same", 3).await.status(), 200);
    assert_eq!(app.entitlements(&a).await["used"], 3);
    assert_eq!(app.entitlements(&b).await["used"], 3);
}

#[actix_web::test]
async fn racing_duplicates_are_counted_once_and_all_get_the_same_body() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let replies = futures::future::join_all((0..24).map(|_| app.record(&org, "race", 7))).await;
    let mut bodies = Vec::new();
    for r in replies {
        assert_eq!(r.status(), 200);
        bodies.push(r.text().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    assert_eq!(app.entitlements(&org).await["used"], 7);
}

#[actix_web::test]
async fn many_concurrent_records_all_count() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let ids: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
    let replies = futures::future::join_all(ids.iter().map(|id| app.record(&org, id, 2))).await;
    assert!(replies.iter().all(|r| r.status() == 200));
    assert_eq!(app.entitlements(&org).await["used"], 400);
}

#[actix_web::test]
async fn a_record_for_last_month_counts_in_last_month_not_the_current_one() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let res = app
        .post(
            "/api/usage/record",
            SERVICE,
            &json!({"orgId": org, "metric": "api_call", "value": 4,
                    "occurredAt": "2026-02-27T10:00:00+02:00", "request_id": "late"}),
        )
        .await;
    assert_eq!(
        body(res).await,
        json!({"periodKey": "2026-02", "used": 4, "remaining": 996})
    );
    assert_eq!(app.entitlements(&org).await["used"], 0);
    assert_eq!(app.stored_used(&org, "2026-02").await, 4);
}

#[actix_web::test]
async fn seeding_the_current_period_returns_it_unchanged() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let seed = json!({"orgId": org, "periodKey": "2026-03"});
    let res = app.post("/api/usage/seed", SERVICE, &seed).await;
    assert_eq!(
        body(res).await,
        json!({"used": 0, "remaining": 1000, "periodKey": "2026-03"})
    );
    assert_eq!(app.record(&org, "r", 30).await.status(), 200);
    let res = app.post("/api/usage/seed", SERVICE, &seed).await;
    assert_eq!(
        body(res).await,
        json!({"used": 30, "remaining": 970, "periodKey": "2026-03"})
    );
}

#[actix_web::test]
async fn seeding_a_period_after_the_clocks_is_a_conflict_naming_the_current_one() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "r", 30).await.status(), 200);
    for period in ["2026-04", "2027-01", "9999-12"] {
        let res = app
            .post(
                "/api/usage/seed",
                SERVICE,
                &json!({"orgId": org, "periodKey": period}),
            )
            .await;
        let b = assert_error(res, 409, "CONFLICT").await;
        assert!(b["message"].as_str().unwrap().contains("2026-03"), "{b}");
    }
    let e = app.entitlements(&org).await;
    assert_eq!(
        (e["periodKey"].as_str(), e["used"].as_u64()),
        (Some("2026-03"), Some(30))
    );
}

#[actix_web::test]
async fn seeding_the_clocks_period_rolls_a_lagging_org_and_an_older_one_conflicts() {
    // No supervisor sweep after start: the org's actor stays in March until asked.
    let slow = [("EDGEQUOTA__ROLLOVER__CHECK_INTERVAL_MS", "3600000")];
    let app = spawn_app_with(default_now(), &slow).await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "r", 30).await.status(), 200);
    app.clock
        .set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 4, 1, 0, 0, 5).unwrap());
    let res = app
        .post(
            "/api/usage/seed",
            SERVICE,
            &json!({"orgId": org, "periodKey": "2026-04"}),
        )
        .await;
    assert_eq!(
        body(res).await,
        json!({"used": 0, "remaining": 1000, "periodKey": "2026-04"})
    );
    let res = app
        .post(
            "/api/usage/seed",
            SERVICE,
            &json!({"orgId": org, "periodKey": "2026-03"}),
        )
        .await;
    assert_error(res, 409, "CONFLICT").await;
    assert_eq!(app.stored_used(&org, "2026-03").await, 30);
}

#[actix_web::test]
async fn entitlements_list_every_metric_of_the_plan() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "r", 250).await.status(), 200);
    assert_eq!(
        app.entitlements(&org).await,
        json!({
            "planCode": "plan_free", "included": 1000, "used": 250, "remaining": 750,
            "periodKey": "2026-03",
            "metrics": {"api_call": {"included": 1000, "used": 250, "remaining": 750}}
        })
    );
}

#[actix_web::test]
async fn counters_keys_and_idempotency_survive_a_clean_restart() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    let first = app.record(&org, "keep", 42).await.text().await.unwrap();
    let dir = app.stop().await;
    let app = spawn_app_in(dir, default_now(), &[]).await;
    assert_eq!(app.entitlements(&org).await["used"], 42);
    let replay = app.record(&org, "keep", 42).await;
    assert_eq!(replay.text().await.unwrap(), first);
    assert_eq!(app.entitlements(&org).await["used"], 42);
    let res = app
        .post(
            "/api/quota/check",
            &key,
            &json!({"orgId": org, "metric": "api_call"}),
        )
        .await;
    assert_eq!(body(res).await, json!({"allow": true, "remaining": 958}));
}

#[actix_web::test]
async fn an_idle_org_actor_is_stopped_and_restarted_from_the_store() {
    let app = spawn_app_with(
        default_now(),
        &[("EDGEQUOTA__ENGINE__ACTOR_IDLE_TTL_SECS", "1")],
    )
    .await;
    let org = app.create_org().await;
    let first = app.record(&org, "idle", 9).await.text().await.unwrap();
    assert_eq!(app.engine.live_actors(), 1);
    app.wait_for_idle_eviction().await;
    assert_eq!(
        app.record(&org, "idle", 9).await.text().await.unwrap(),
        first
    );
    assert_eq!(app.entitlements(&org).await["used"], 9);
}

/// Moves the clock `days` on and waits until a purge has run at the new time.
async fn purge_after(app: &TestApp, days: i64) {
    let runs = || async {
        app.metrics_scrape()
            .await
            .get("edgequota_idempotency_purge_runs_total")
    };
    app.clock.advance(chrono::Duration::days(days));
    let before = runs().await;
    eventually(
        "two purge runs",
        std::time::Duration::from_secs(10),
        || async { (runs().await >= before + 2.0).then_some(()) },
    )
    .await;
}

#[actix_web::test]
async fn idempotency_entries_are_kept_35_days_then_purged() {
    let app = spawn_app_with(
        default_now(),
        &[
            ("EDGEQUOTA__ENGINE__PURGE_INTERVAL_SECS", "1"),
            ("EDGEQUOTA__ENGINE__ACTOR_IDLE_TTL_SECS", "1"),
        ],
    )
    .await;
    let org = app.create_org().await;
    let at = app.clock_now();
    let old = json!({"orgId": org, "metric": "api_call", "value": 1,
                     "occurredAt": at, "request_id": "old"});
    let first = app.post("/api/usage/record", SERVICE, &old).await;
    let first = first.text().await.unwrap();
    // Day 34: a purge has run, the entry is still there — the replay is answered from it.
    purge_after(&app, 34).await;
    let replay = app.post("/api/usage/record", SERVICE, &old).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.text().await.unwrap(), first);
    assert_eq!(app.stored_used(&org, "2026-03").await, 1);
    assert_eq!(
        app.metrics_scrape()
            .await
            .get("edgequota_idempotency_purged_total"),
        0.0
    );
    // Day 36: purged from the store; once the org's actor (whose recent answers may
    // outlive the store's, "at least 35 days") has gone, the id is a new record.
    purge_after(&app, 2).await;
    app.wait_for_idle_eviction().await;
    assert_eq!(
        app.metrics_scrape()
            .await
            .get("edgequota_idempotency_purged_total"),
        1.0
    );
    let again = app.post("/api/usage/record", SERVICE, &old).await;
    assert_eq!(again.status(), 200);
    assert!(again.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.stored_used(&org, "2026-03").await, 2);
}

#[actix_web::test]
async fn after_a_restart_replays_are_recognised_once_the_filter_is_rebuilt() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let mut first = Vec::new();
    for i in 0..300 {
        first.push(
            app.record(&org, &format!("f{i}"), 1)
                .await
                .text()
                .await
                .unwrap(),
        );
    }
    let dir = app.stop().await;
    let app = spawn_app_in(dir, default_now(), &[]).await;
    eventually(
        "the idempotency filter",
        std::time::Duration::from_secs(10),
        || async { app.engine.idempotency_filter_ready().then_some(()) },
    )
    .await;
    for (i, body) in first.iter().enumerate() {
        let replay = app.record(&org, &format!("f{i}"), 1).await;
        assert_eq!(&replay.text().await.unwrap(), body);
    }
    assert_eq!(app.entitlements(&org).await["used"], 300);
    // A fresh id is still counted.
    assert_eq!(app.record(&org, "new", 1).await.status(), 200);
    assert_eq!(app.entitlements(&org).await["used"], 301);
}
