//! Malformed JSON and invalid fields: each refused with the field named, the boundary
//! values accepted, and no counter moved.

use super::*;

#[actix_web::test]
async fn malformed_json_is_a_bad_request_and_changes_nothing() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let raws = [
        "{",
        "not json",
        "",
        "{\"orgId\": }",
        "[1,2]",
        "null",
        "{\"orgId\":\"a\"}}",
    ];
    for raw in raws {
        for path in [RECORD, CHECK, SEED] {
            let b = assert_error(send_json(&app, path, raw).await, 400, "BAD_REQUEST").await;
            assert!(b["details"].is_array(), "{path} with {raw:?}: {b}");
        }
    }
    assert_untouched(&app, &org, remaining, "malformed JSON").await;
}

#[actix_web::test]
async fn record_refuses_each_invalid_field_and_names_it() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let long = "x".repeat(129);
    let cases = vec![
        ("value", Some(json!("1"))),
        ("orgId", Some(json!(42))),
        ("metric", Some(json!({}))),
        ("orgId", None),
        ("metric", None),
        ("value", None),
        ("occurredAt", None),
        ("request_id", None),
        ("orgId", Some(json!(""))),
        ("metric", Some(json!(""))),
        ("occurredAt", Some(json!(""))),
        ("request_id", Some(json!(""))),
        ("orgId", Some(json!("a\u{1}b"))),
        ("request_id", Some(json!("a\u{1}b"))),
        ("orgId", Some(json!(long))),
        ("request_id", Some(json!(long))),
        ("value", Some(json!(0))),
        ("value", Some(json!(-1))),
        ("value", Some(json!(1.5))),
        ("value", Some(json!(1_000_000_001u64))),
        ("metric", Some(json!("nope"))),
        ("metric", Some(json!("API_CALL"))),
        ("occurredAt", Some(json!("yesterday"))),
        ("occurredAt", Some(json!("2026-03-14T12:00:00"))),
        ("occurredAt", ahead(&app, Duration::minutes(6))),
        ("occurredAt", ahead(&app, Duration::seconds(301))),
    ];
    refuse_each(&app, RECORD, &record_body(&app, &org, "bad-1"), cases).await;
    // Above u64::MAX: not representable as a `Value`, so spelled out.
    let raw = record_body(&app, &org, "bad-2").to_string();
    let huge = raw.replace("\"value\":1", "\"value\":18446744073709551616");
    assert_ne!(raw, huge);
    let res = send_json(&app, RECORD, &huge).await;
    assert_invalid(res, "value", "value above u64::MAX").await;
    assert_untouched(&app, &org, remaining, "value above u64::MAX").await;
}

#[actix_web::test]
async fn one_validation_error_names_every_bad_field() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let bad = json!({"metric": "api_call", "value": 0, "occurredAt": "soon", "request_id": "r"});
    let b = assert_error(app.post(RECORD, SERVICE, &bad).await, 400, "BAD_REQUEST").await;
    let details = b["details"].as_array().expect("details");
    let fields: Vec<&str> = details.iter().filter_map(|d| d["field"].as_str()).collect();
    for f in ["orgId", "value", "occurredAt"] {
        assert!(fields.contains(&f), "{f} missing from {b}");
    }
    assert_untouched(&app, &org, remaining, "several bad fields").await;
}

#[actix_web::test]
async fn record_accepts_the_boundary_values() {
    let app = spawn_app().await;
    let (org, _) = known_org(&app).await;
    let mut b = record_body(&app, &org, "max-value");
    b["value"] = json!(1_000_000_000u64);
    assert_eq!(
        app.post(RECORD, SERVICE, &b).await.status(),
        200,
        "value 1e9"
    );
    let mut b = record_body(&app, &org, "four-minutes-ahead");
    b["occurredAt"] = ahead(&app, Duration::minutes(4)).expect("time");
    assert_eq!(
        app.post(RECORD, SERVICE, &b).await.status(),
        200,
        "4 min ahead"
    );
    let mut b = record_body(&app, &org, &"r".repeat(128));
    b["value"] = json!(2);
    assert_eq!(
        app.post(RECORD, SERVICE, &b).await.status(),
        200,
        "128-byte id"
    );
    let used = app.entitlements(&org).await["used"].as_u64().expect("used");
    assert_eq!(used, BASELINE_USED + 1_000_000_000 + 1 + 2);
    // A 128-byte org id is well-formed: unknown (404), not invalid (400).
    let long_org = "o".repeat(128);
    let res = app
        .post(RECORD, SERVICE, &record_body(&app, &long_org, "r1"))
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
    let res = app
        .post(
            CHECK,
            SERVICE,
            &json!({"orgId": long_org, "metric": "api_call"}),
        )
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
}

#[actix_web::test]
async fn check_refuses_each_invalid_field_and_answers_the_same_afterwards() {
    let app = spawn_app().await;
    let (org, _) = known_org(&app).await;
    let cases = vec![
        ("cost", Some(json!(0))),
        ("cost", Some(json!(-1))),
        ("cost", Some(json!(1.5))),
        ("cost", Some(json!("1"))),
        ("cost", Some(json!(1_000_000_001u64))),
        ("metric", Some(json!("nope"))),
        ("metric", Some(json!("API_CALL"))),
        ("metric", Some(json!(""))),
        ("metric", None),
        ("orgId", None),
        ("orgId", Some(json!(""))),
        ("orgId", Some(json!(7))),
        ("orgId", Some(json!("a\u{1}b"))),
        ("orgId", Some(json!("x".repeat(129)))),
    ];
    let base = json!({"orgId": org, "metric": "api_call", "cost": 1});
    refuse_each(&app, CHECK, &base, cases).await;
}

#[actix_web::test]
async fn seed_refuses_bad_period_keys_without_rolling_the_org_over() {
    let app = spawn_app().await;
    let (org, _) = known_org(&app).await;
    let cases = vec![
        ("periodKey", Some(json!("2026-13"))),
        ("periodKey", Some(json!("26-01"))),
        ("periodKey", Some(json!(""))),
        ("periodKey", Some(json!(202604))),
        ("periodKey", None),
        ("orgId", None),
        ("orgId", Some(json!("a\u{1}b"))),
    ];
    refuse_each(
        &app,
        SEED,
        &json!({"orgId": org, "periodKey": "2026-04"}),
        cases,
    )
    .await;
}
