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

mod fields;
mod requests;
