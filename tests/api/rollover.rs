//! Story 7.1: the rollover supervisor at the month boundary and the admin reset.

use crate::helpers::*;
use chrono::{TimeZone, Utc};
use serde_json::json;
use std::time::Duration;

/// Waits until the rollover supervisor has stored `period` as the org's period. Nothing
/// here reads the org through its actor (which would roll it on the spot): the test sees
/// only what the supervisor did by itself.
async fn wait_for_stored_period(app: &TestApp, org: &str, period: &str) {
    eventually(
        &format!("the supervisor to store {period} for {org}"),
        Duration::from_secs(10),
        || async { (app.stored_period(org).await == period).then_some(()) },
    )
    .await;
}

#[actix_web::test]
async fn crossing_a_month_boundary_moves_every_org_to_the_new_period_with_zero_usage() {
    let start = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 58).unwrap();
    let app = spawn_app_with(start, &[]).await;
    let orgs = [
        app.create_org().await,
        app.create_org().await,
        app.create_org().await,
    ];
    for (i, org) in orgs.iter().enumerate() {
        assert_eq!(app.record(org, "r", 100 + i as u64).await.status(), 200);
        assert_eq!(app.stored_period(org).await, "2026-12");
    }
    app.clock
        .set(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 1).unwrap());
    for org in &orgs {
        wait_for_stored_period(&app, org, "2027-01").await;
    }
    eventually(
        "the current_period gauge",
        Duration::from_secs(5),
        || async {
            let m = app.metrics_scrape().await;
            (m.get("edgequota_current_period") == 202701.0).then_some(())
        },
    )
    .await;
    let m = app.metrics_scrape().await;
    assert_eq!(m.get("edgequota_rollover_orgs_total"), 3.0);
    for (i, org) in orgs.iter().enumerate() {
        let e = app.entitlements(org).await;
        assert_eq!(
            (e["used"].clone(), e["remaining"].clone()),
            (json!(0), json!(1000))
        );
        assert_eq!(app.stored_used(org, "2026-12").await, 100 + i as u64);
    }
}

#[actix_web::test]
async fn orgs_not_in_memory_are_rolled_too() {
    let start = Utc.with_ymd_and_hms(2026, 5, 31, 23, 0, 0).unwrap();
    let app = spawn_app_with(start, &[("EDGEQUOTA__ENGINE__ACTOR_IDLE_TTL_SECS", "1")]).await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "r", 5).await.status(), 200);
    app.wait_for_idle_eviction().await;
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap());
    wait_for_stored_period(&app, &org, "2026-06").await;
    assert_eq!(app.engine.live_actors(), 0, "the sweep's actor was retired");
    let e = app.entitlements(&org).await;
    assert_eq!(
        (e["periodKey"].as_str(), e["used"].as_u64()),
        (Some("2026-06"), Some(0))
    );
    assert_eq!(app.stored_used(&org, "2026-05").await, 5);
}

#[actix_web::test]
async fn a_manual_reset_moves_older_orgs_once_and_twice_is_harmless() {
    // The supervisor looks once at start and then not for an hour: the admin reset alone
    // moves the orgs here.
    let slow = [("EDGEQUOTA__ROLLOVER__CHECK_INTERVAL_MS", "3600000")];
    let app = spawn_app_with(default_now(), &slow).await;
    let orgs = [app.create_org().await, app.create_org().await];
    for org in &orgs {
        assert_eq!(app.record(org, "r", 50).await.status(), 200);
    }
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 5).unwrap());
    let reset = json!({"periodKey": "2026-04"});
    assert_eq!(
        app.reset(&reset).await,
        json!({"updated": 2, "periodKey": "2026-04"})
    );
    assert_eq!(app.record(&orgs[0], "r2", 7).await.status(), 200);
    assert_eq!(
        app.reset(&reset).await,
        json!({"updated": 0, "periodKey": "2026-04"})
    );
    // Both orgs are in April; March's usage stays in the store.
    for (i, org) in orgs.iter().enumerate() {
        let e = app.entitlements(org).await;
        let used = if i == 0 { 7 } else { 0 };
        assert_eq!(
            (e["periodKey"].as_str(), e["used"].as_u64()),
            (Some("2026-04"), Some(used))
        );
        assert_eq!(app.stored_used(org, "2026-03").await, 50);
    }
}

#[actix_web::test]
async fn a_reset_to_a_period_after_the_clocks_is_a_conflict_and_changes_nothing() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "r", 50).await.status(), 200);
    for period in ["2026-04", "9999-12"] {
        for force in [false, true] {
            let res = app
                .post(
                    "/api/admin/quotas.reset",
                    ADMIN,
                    &json!({"periodKey": period, "force": force}),
                )
                .await;
            let b = assert_error(res, 409, "CONFLICT").await;
            assert!(b["message"].as_str().unwrap().contains("2026-03"), "{b}");
        }
    }
    let e = app.entitlements(&org).await;
    assert_eq!(
        (e["periodKey"].as_str(), e["used"].as_u64()),
        (Some("2026-03"), Some(50))
    );
    assert_eq!(app.stored_used(&org, "2026-03").await, 50);
}

#[actix_web::test]
async fn a_forced_reset_zeroes_orgs_already_in_the_period() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "r", 80).await.status(), 200);
    let res = app.reset(&json!({"periodKey": "2026-03"})).await;
    assert_eq!(res["updated"], 0);
    assert_eq!(app.entitlements(&org).await["used"], 80);
    let force = json!({"periodKey": "2026-03", "force": true});
    assert_eq!(app.reset(&force).await["updated"], 1);
    assert_eq!(app.entitlements(&org).await["used"], 0);
    // Forced twice: nothing left to zero.
    assert_eq!(app.reset(&force).await["updated"], 0);
    // A restart keeps the reset.
    let dir = app.stop().await;
    let app = spawn_app_in(dir, default_now(), &[]).await;
    assert_eq!(app.entitlements(&org).await["used"], 0);
}
