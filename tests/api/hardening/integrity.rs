//! Quota integrity (SPEC 1.5, 7.1): checks decide in the clock's period, and no sequence
//! of seed, reset, record and check calls an org's own key can make lets a check allow
//! once the clock's period is used up.

use crate::helpers::*;
use chrono::{TimeZone, Utc};
use rand::{Rng, SeedableRng};
use serde_json::json;

#[actix_web::test]
async fn a_check_after_the_boundary_decides_in_the_new_period_even_before_any_sweep() {
    let slow = [("EDGEQUOTA__ROLLOVER__CHECK_INTERVAL_MS", "3600000")];
    let app = spawn_app_with(default_now(), &slow).await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "all", 1000).await.status(), 200);
    assert_error(app.check(&org).await, 429, "QUOTA_EXCEEDED").await;
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 1).unwrap());
    let res = app.check(&org).await;
    assert_eq!(res.status(), 200);
    let window = res.headers()["ratelimit"].to_str().unwrap().to_owned();
    assert_eq!(body(res).await, json!({"allow": true, "remaining": 1000}));
    // The RateLimit header describes April: reset at its end (30 days away).
    assert!(
        window.ends_with(&format!("t={}", 30 * 86_400 - 1)),
        "{window}"
    );
    assert_eq!(app.stored_used(&org, "2026-03").await, 1000);
}

/// The `remaining` a check answers, or `None` for a denial.
async fn check_as(app: &TestApp, key: &str, org: &str, cost: u64) -> Option<u64> {
    let res = app
        .post(
            "/api/quota/check",
            key,
            &json!({"orgId": org, "metric": "api_call", "cost": cost}),
        )
        .await;
    match res.status().as_u16() {
        200 => Some(body(res).await["remaining"].as_u64().unwrap()),
        429 => None,
        s => panic!("check answered {s}"),
    }
}

#[actix_web::test]
async fn no_sequence_of_calls_by_an_org_key_escapes_the_quota() {
    let seed: u64 = std::env::var("EDGEQUOTA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234);
    println!("quota-integrity property test seed: {seed} (EDGEQUOTA_TEST_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let app = spawn_app().await;
    let periods = [
        "2026-01", "2026-02", "2026-03", "2026-04", "2026-12", "2027-03", "9999-12",
    ];
    for sequence in 0..12 {
        let org = app.create_org().await;
        let key = app.mint_key(&org).await;
        // What the org has used in the clock's period (March 2026), by the model.
        let mut used: u64 = 0;
        for step in 0..30 {
            let case = format!("seed {seed}, sequence {sequence}, step {step}");
            match rng.gen_range(0..5) {
                0 => {
                    let period = periods[rng.gen_range(0..periods.len())];
                    let res = app
                        .post(
                            "/api/usage/seed",
                            &key,
                            &json!({"orgId": org, "periodKey": period}),
                        )
                        .await;
                    let status = res.status().as_u16();
                    let expected = if period == "2026-03" { 200 } else { 409 };
                    assert_eq!(status, expected, "{case}: seed {period}");
                }
                1 => {
                    let period = periods[rng.gen_range(0..periods.len())];
                    let force = rng.gen_bool(0.5);
                    let res = app
                        .post(
                            "/api/admin/quotas.reset",
                            &key,
                            &json!({"periodKey": period, "force": force}),
                        )
                        .await;
                    assert_eq!(res.status(), 403, "{case}: reset by an org key");
                    // An admin moving orgs into a future period is refused too.
                    if period > "2026-03" {
                        let res = app
                            .post(
                                "/api/admin/quotas.reset",
                                ADMIN,
                                &json!({"periodKey": period}),
                            )
                            .await;
                        assert_eq!(res.status(), 409, "{case}: admin reset to {period}");
                    }
                }
                2 | 3 => {
                    let value = rng.gen_range(1..=400);
                    let in_march = rng.gen_bool(0.8);
                    let at = if in_march {
                        app.clock_now()
                    } else {
                        "2026-02-20T10:00:00Z".to_owned()
                    };
                    let res = app
                        .post(
                            "/api/usage/record",
                            &key,
                            &json!({"orgId": org, "metric": "api_call", "value": value,
                                    "occurredAt": at, "request_id": format!("r-{sequence}-{step}")}),
                        )
                        .await;
                    assert_eq!(res.status(), 200, "{case}: record");
                    if in_march {
                        used += value;
                    }
                }
                _ => {
                    let cost = rng.gen_range(1..=300);
                    let left = 1000u64.saturating_sub(used);
                    let answer = check_as(&app, &key, &org, cost).await;
                    if cost <= left {
                        assert_eq!(answer, Some(left), "{case}: check cost {cost}, used {used}");
                    } else {
                        assert_eq!(
                            answer, None,
                            "{case}: check cost {cost} allowed, used {used}"
                        );
                    }
                }
            }
        }
        // Whatever happened, once March is used up nothing is allowed.
        if used >= 1000 {
            assert_eq!(
                check_as(&app, &key, &org, 1).await,
                None,
                "seed {seed}, sequence {sequence}"
            );
        }
        let e = app.entitlements(&org).await;
        assert_eq!(
            e["periodKey"], "2026-03",
            "seed {seed}, sequence {sequence}"
        );
        assert_eq!(e["used"], used, "seed {seed}, sequence {sequence}");
    }
}
