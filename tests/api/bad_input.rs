//! Bad input on the hot paths (`/api/usage/record`, `/api/quota/check`) and on
//! `/api/usage/seed`: every malformed, mistyped, oversized or unauthorised request gets
//! the documented status and error envelope (SPEC §2), and no counter moves.

use crate::helpers::{assert_error, body, spawn_app, TestApp, ADMIN, SERVICE};
use chrono::Duration;
use edgequota::clock::Clock;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::Response;
use serde_json::{json, Value};

const RECORD: &str = "/api/usage/record";
const CHECK: &str = "/api/quota/check";
const SEED: &str = "/api/usage/seed";
const JSON: Option<&str> = Some("application/json");
/// What `known_org` records before the bad requests arrive.
const BASELINE_USED: u64 = 7;

/// An org with `BASELINE_USED` already recorded, and the `remaining` a check answers.
async fn known_org(app: &TestApp) -> (String, u64) {
    let org = app.create_org().await;
    let res = app.record(&org, "baseline", BASELINE_USED).await;
    assert_eq!(res.status(), 200);
    let remaining = check_remaining(app, &org).await;
    (org, remaining)
}

async fn check_remaining(app: &TestApp, org: &str) -> u64 {
    let res = app.check(org).await;
    assert_eq!(res.status(), 200, "a valid check still answers");
    body(res).await["remaining"].as_u64().expect("remaining")
}

/// Nothing the bad requests did is visible: same usage, same period, same answer.
async fn assert_untouched(app: &TestApp, org: &str, remaining: u64, case: &str) {
    let e = app.entitlements(org).await;
    assert_eq!(e["used"], BASELINE_USED, "{case}: used changed: {e}");
    assert_eq!(e["periodKey"], "2026-03", "{case}: period changed: {e}");
    let now = check_remaining(app, org).await;
    assert_eq!(now, remaining, "{case}: remaining changed");
}

/// Sends a raw body with full control over the `Authorization` and content type.
async fn send(
    app: &TestApp,
    path: &str,
    auth: Option<&str>,
    ct: Option<&str>,
    raw: String,
) -> Response {
    let mut req = app.client.post(app.url(path)).body(raw);
    if let Some(a) = auth {
        req = req.header(AUTHORIZATION, a);
    }
    if let Some(ct) = ct {
        req = req.header(CONTENT_TYPE, ct);
    }
    req.send().await.expect("request sent")
}

async fn send_json(app: &TestApp, path: &str, raw: &str) -> Response {
    let auth = format!("Bearer {SERVICE}");
    send(app, path, Some(&auth), JSON, raw.to_owned()).await
}

/// A valid record body for `org`.
fn record_body(app: &TestApp, org: &str, request_id: &str) -> Value {
    json!({"orgId": org, "metric": "api_call", "value": 1,
           "occurredAt": app.clock_now(), "request_id": request_id})
}

/// Asserts a 400 whose `details` name `field` with a problem.
async fn assert_invalid(res: Response, field: &str, case: &str) {
    let status = res.status();
    let b = body(res).await;
    assert_eq!(status, 400, "{case}: {b}");
    assert_eq!(b["code"], "BAD_REQUEST", "{case}: {b}");
    let cid = b["correlationId"].as_str();
    assert!(cid.is_some_and(|c| !c.is_empty()), "{case}: {b}");
    let details = b["details"].as_array();
    let named = details.is_some_and(|ds| {
        ds.iter()
            .any(|d| d["field"] == field && d["problem"].as_str().is_some_and(|p| !p.is_empty()))
    });
    assert!(named, "{case}: details do not name {field}: {b}");
}

/// One bad field per case: `base` with `field` set to the value (removed when `None`)
/// is refused with a 400 naming `field`, and afterwards nothing has changed.
async fn refuse_each(app: &TestApp, path: &str, base: &Value, cases: Vec<(&str, Option<Value>)>) {
    let org = base["orgId"].as_str().expect("base orgId").to_owned();
    let remaining = check_remaining(app, &org).await;
    for (field, value) in cases {
        let mut spoiled = base.clone();
        let case = match &value {
            Some(v) => format!("{path} with {field} = {v}"),
            None => format!("{path} without {field}"),
        };
        match value {
            Some(v) => spoiled[field] = v,
            None => {
                spoiled.as_object_mut().expect("object").remove(field);
            }
        }
        let res = send_json(app, path, &spoiled.to_string()).await;
        assert_invalid(res, field, &case).await;
        assert_untouched(app, &org, remaining, &case).await;
    }
}

/// An `occurredAt` this far ahead of the service clock.
fn ahead(app: &TestApp, by: Duration) -> Option<Value> {
    Some(json!((app.clock.now() + by).to_rfc3339()))
}

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

#[actix_web::test]
async fn a_one_mebibyte_body_is_too_large() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let auth = format!("Bearer {SERVICE}");
    for path in [RECORD, CHECK, SEED] {
        // Valid for every endpoint but for its size (unknown fields are ignored).
        let mut b = record_body(&app, &org, "huge");
        b["periodKey"] = json!("2026-04");
        b["padding"] = json!("x".repeat(1024 * 1024));
        let res = send(&app, path, Some(&auth), JSON, b.to_string()).await;
        assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    }
    assert_untouched(&app, &org, remaining, "1 MiB body").await;
}

#[actix_web::test]
async fn a_body_not_declared_as_json_is_unsupported() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let auth = format!("Bearer {SERVICE}");
    let mut b = record_body(&app, &org, "plain");
    b["periodKey"] = json!("2026-04");
    for path in [RECORD, CHECK, SEED] {
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let res = send(&app, path, Some(&auth), ct, b.to_string()).await;
            assert_error(res, 415, "UNSUPPORTED_MEDIA_TYPE").await;
        }
    }
    assert_untouched(&app, &org, remaining, "wrong content type").await;
}

#[actix_web::test]
async fn missing_unknown_or_revoked_credentials_are_unauthorized() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let res = app
        .post("/api/orgs/api-keys.create", SERVICE, &json!({"orgId": org}))
        .await;
    assert_eq!(res.status(), 200);
    let minted = body(res).await;
    let key = minted["apiKey"].as_str().expect("apiKey");
    let check = json!({"orgId": org, "metric": "api_call"});
    assert_eq!(
        app.post(CHECK, key, &check).await.status(),
        200,
        "key works"
    );
    let revoke = json!({"keyId": minted["keyId"]});
    let res = app
        .post("/api/orgs/api-keys.revoke", SERVICE, &revoke)
        .await;
    assert_eq!(res.status(), 200, "key revoked");
    let revoked = format!("Bearer {key}");
    let basic = format!("Basic {SERVICE}");
    let auths = [
        None,
        Some("Bearer not-a-token"),
        Some("Bearer "),
        Some(&*basic),
        Some(&*revoked),
    ];
    for (i, auth) in auths.into_iter().enumerate() {
        let bodies = [
            (RECORD, record_body(&app, &org, &format!("unauth-{i}"))),
            (CHECK, check.clone()),
            (SEED, json!({"orgId": org, "periodKey": "2026-04"})),
        ];
        for (path, b) in bodies {
            let res = send(&app, path, auth, JSON, b.to_string()).await;
            assert_error(res, 401, "UNAUTHORIZED").await;
        }
    }
    assert_untouched(&app, &org, remaining, "bad credentials").await;
}

#[actix_web::test]
async fn an_org_key_cannot_act_for_another_org() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let (other, other_remaining) = known_org(&app).await;
    let key = app.mint_key(&org).await;
    let bodies = [
        (RECORD, record_body(&app, &other, "foreign")),
        (CHECK, json!({"orgId": other, "metric": "api_call"})),
        (SEED, json!({"orgId": other, "periodKey": "2026-04"})),
    ];
    for (path, b) in bodies {
        assert_error(app.post(path, &key, &b).await, 403, "FORBIDDEN").await;
    }
    assert_untouched(&app, &other, other_remaining, "foreign org key").await;
    assert_untouched(&app, &org, remaining, "foreign org key, own org").await;
}

#[actix_web::test]
async fn only_admins_may_reset_quotas() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let key = app.mint_key(&org).await;
    let reset = json!({"periodKey": "2026-04", "force": true});
    for token in [SERVICE, key.as_str()] {
        let res = app.post("/api/admin/quotas.reset", token, &reset).await;
        assert_error(res, 403, "FORBIDDEN").await;
    }
    let bad = json!({"periodKey": "2026-13", "force": true});
    let res = app.post("/api/admin/quotas.reset", ADMIN, &bad).await;
    assert_invalid(res, "periodKey", "admin reset to month 13").await;
    assert_untouched(&app, &org, remaining, "refused resets").await;
}

#[actix_web::test]
async fn an_unknown_org_is_not_found_everywhere() {
    let app = spawn_app().await;
    let ghost = "org_01J00000000000000000000000";
    let bodies = [
        (RECORD, record_body(&app, ghost, "ghost")),
        (CHECK, json!({"orgId": ghost, "metric": "api_call"})),
        (SEED, json!({"orgId": ghost, "periodKey": "2026-03"})),
    ];
    for (path, b) in bodies {
        assert_error(app.post(path, SERVICE, &b).await, 404, "NOT_FOUND").await;
    }
    let req = app.client.get(app.url("/api/me/entitlements.read"));
    let res = req
        .bearer_auth(SERVICE)
        .header("x-tenant-id", ghost)
        .send()
        .await;
    assert_error(res.expect("request sent"), 404, "NOT_FOUND").await;
}

#[actix_web::test]
async fn unknown_routes_and_wrong_methods_answer_in_the_envelope() {
    let app = spawn_app().await;
    assert_error(app.get("/api/nope", SERVICE).await, 404, "NOT_FOUND").await;
    let res = app.post("/api/usage/nope", SERVICE, &json!({})).await;
    assert_error(res, 404, "NOT_FOUND").await;
    for path in [RECORD, CHECK, SEED] {
        assert_error(app.get(path, SERVICE).await, 405, "METHOD_NOT_ALLOWED").await;
    }
}

#[actix_web::test]
async fn hostile_bodies_are_refused_without_a_server_error() {
    let app = spawn_app().await;
    let (org, remaining) = known_org(&app).await;
    let raws = [
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        format!(
            "{{\"orgId\":{}1{}}}",
            "{\"a\":".repeat(5_000),
            "}".repeat(5_000)
        ),
        "\u{0}".to_owned(),
        "\u{feff}{}".to_owned(),
        format!("{{\"orgId\":\"{org}\",\"metric\":\"api_call\",\"cost\":1e400}}"),
        format!("{{\"orgId\":\"{org}\",\"metric\":\"api\\u0000call\"}}"),
        format!("{{\"orgId\":\"{org}\",\"metric\":\"\\ud800\"}}"),
        "{\"orgId\":{\"$ne\":null},\"metric\":\"api_call\"}".to_owned(),
    ];
    for raw in &raws {
        for path in [RECORD, CHECK, SEED] {
            let res = send_json(&app, path, raw).await;
            let status = res.status();
            let b = body(res).await;
            assert_eq!(status, 400, "{path} with {raw:.60}: {b}");
            assert_eq!(b["code"], "BAD_REQUEST", "{path} with {raw:.60}: {b}");
        }
    }
    assert_untouched(&app, &org, remaining, "hostile bodies").await;
}
