//! SPEC behaviours that had no test of their own: body limits on both sides of the
//! boundary (in `body_limits`), the JSON media type with parameters, unknown fields, the
//! tracing headers on every kind of answer, unknown orgs on every billing endpoint, a
//! catalogue with two metrics, the `occurredAt` bound, month-end records, the invoice
//! list's default page, and diagnostics behind `open_diagnostics`.

mod body_limits;

use crate::billing::spawn_billing_app;
use crate::helpers::*;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

const LIMIT: usize = 64 * 1024;

/// `base` padded (with an unknown field) to exactly `len` bytes.
fn padded(base: &Value, len: usize) -> String {
    let mut b = base.clone();
    b["pad"] = json!("");
    let raw = b.to_string();
    let pad = len.checked_sub(raw.len()).expect("room to pad");
    let text = raw.replacen(
        "\"pad\":\"\"",
        &format!("\"pad\":\"{}\"", "x".repeat(pad)),
        1,
    );
    assert_eq!(text.len(), len);
    text
}

async fn send(app: &TestApp, path: &str, token: &str, raw: String, ct: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", ct)
        .body(raw)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn json_with_a_charset_and_unknown_fields_is_accepted() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let body = json!({"orgId": org, "metric": "api_call", "cost": 2, "extra": {"x": [1]},
                      "orgID": "ignored"});
    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
    ] {
        let res = send(&app, "/api/quota/check", SERVICE, body.to_string(), ct).await;
        assert_eq!(res.status(), 200, "{ct}");
        assert_eq!(
            body_of(res).await,
            json!({"allow": true, "remaining": 1000})
        );
    }
}

async fn body_of(res: reqwest::Response) -> Value {
    body(res).await
}

fn assert_tracing(res: &reqwest::Response, case: &str) {
    for h in ["x-request-id", "x-correlation-id"] {
        let v = res.headers().get(h).map(|v| v.to_str().unwrap().to_owned());
        assert!(v.is_some_and(|v| !v.is_empty()), "{case}: no {h}");
    }
}

#[actix_web::test]
async fn tracing_headers_are_on_every_kind_of_answer() {
    let t = crate::webhooks::spawn_webhook_app().await;
    let app = &t.app;
    let org = app.create_org().await;
    // 200 with a generated request id (none was sent).
    let res = app.check(&org).await;
    assert_tracing(&res, "200");
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 26, "a ULID: {generated}");
    // 413, 415, 429, 202, 500.
    let big = padded(&json!({"orgId": org, "metric": "api_call"}), LIMIT + 1);
    let res = send(app, "/api/quota/check", SERVICE, big, "application/json").await;
    assert_eq!(res.status(), 413);
    assert_tracing(&res, "413");
    let res = send(app, "/api/quota/check", SERVICE, "{}".into(), "text/plain").await;
    assert_eq!(res.status(), 415);
    assert_tracing(&res, "415");
    assert_eq!(app.record(&org, "all", 1000).await.status(), 200);
    let res = app.check(&org).await;
    assert_eq!(res.status(), 429);
    assert_tracing(&res, "429");
    let event = crate::fake_stripe::objects::event(
        "charge.succeeded",
        json!({"id": "ch", "object": "charge"}),
    );
    let res = t.deliver(&event).await;
    assert_eq!(res.status(), 202);
    assert_tracing(&res, "202");
    app.faults.fail_next_applies(1);
    let res = app.record(&org, "fails", 1).await;
    assert_eq!(res.status(), 500);
    assert_tracing(&res, "500");
}

#[actix_web::test]
async fn an_unknown_org_is_not_found_on_every_billing_endpoint() {
    let t = spawn_billing_app().await;
    let ghost = "org_01GHOST0000000000000000000";
    let request = json!({"orgId": ghost, "email": "a@b.co", "priceLookup": "plan_starter_m",
                         "paymentMethodId": "pm_card_visa", "newPlanCode": "plan_pro_m"});
    for path in [
        "/api/stripe/customer.ensure",
        "/api/stripe/subscription.create",
        "/api/payments/setup-intent.create",
        "/api/payments/default-method.set",
        "/api/payments/portal.create",
        "/api/plans/preview",
        "/api/plans/upgrade.now",
        "/api/plans/downgrade.schedule",
    ] {
        let res = t.app.post(path, SERVICE, &request).await;
        assert_error(res, 404, "NOT_FOUND").await;
    }
    let res = t
        .app
        .get_as_tenant("/api/invoices.list", SERVICE, ghost)
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
    assert_eq!(t.writes(), 0, "nothing reached Stripe");
}

const TWO_METRICS: &str = r#"
[plans.plan_free]
stripe_lookup_key = "plan_free"
stigg_plan_id = "free"
rank = 0
included = { api_call = 100, storage_gb = 5 }
"#;

#[actix_web::test]
async fn a_catalogue_with_two_metrics_is_checked_and_reported_per_metric() {
    let dir = tempfile::tempdir().unwrap();
    let plans = dir.path().join("plans.toml");
    std::fs::write(&plans, TWO_METRICS).unwrap();
    let app = spawn_app_with(
        default_now(),
        &[("EDGEQUOTA__PLANS__FILE", plans.to_str().unwrap())],
    )
    .await;
    let org = app.create_org().await;
    let rec = json!({"orgId": org, "metric": "storage_gb", "value": 4,
                     "occurredAt": app.clock_now(), "request_id": "s1"});
    assert_eq!(
        app.post("/api/usage/record", SERVICE, &rec).await.status(),
        200
    );
    let check = |metric: &str, cost: u64| {
        let body = json!({"orgId": org, "metric": metric, "cost": cost});
        let app = &app;
        async move { app.post("/api/quota/check", SERVICE, &body).await }
    };
    let res = check("storage_gb", 1).await;
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"storage_gb\";q=5;w=2678400"
    );
    assert_eq!(body(res).await, json!({"allow": true, "remaining": 1}));
    assert_error(check("storage_gb", 2).await, 429, "QUOTA_EXCEEDED").await;
    assert_eq!(
        body(check("api_call", 100).await).await,
        json!({"allow": true, "remaining": 100})
    );
    assert_error(check("seats", 1).await, 400, "BAD_REQUEST").await;
    let e = app.entitlements(&org).await;
    assert_eq!(
        e,
        json!({"planCode": "plan_free", "included": 100, "used": 0, "remaining": 100,
               "periodKey": "2026-03",
               "metrics": {"api_call": {"included": 100, "used": 0, "remaining": 100},
                           "storage_gb": {"included": 5, "used": 4, "remaining": 1}}})
    );
}

#[actix_web::test]
async fn occurred_at_may_be_exactly_five_minutes_ahead_and_no_more() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let at = |secs: i64| (default_now() + chrono::Duration::seconds(secs)).to_rfc3339();
    let rec = |id: &str, at: String| json!({"orgId": org, "metric": "api_call", "value": 1, "occurredAt": at, "request_id": id});
    assert_eq!(
        app.post("/api/usage/record", SERVICE, &rec("edge", at(300)))
            .await
            .status(),
        200
    );
    let res = app
        .post("/api/usage/record", SERVICE, &rec("over", at(301)))
        .await;
    let b = assert_error(res, 400, "BAD_REQUEST").await;
    assert_eq!(b["details"][0]["field"], "occurredAt");
    assert_eq!(app.entitlements(&org).await["used"], 1);
}

#[actix_web::test]
async fn a_record_a_few_minutes_into_next_month_counts_there_at_month_end() {
    let slow = [("EDGEQUOTA__ROLLOVER__CHECK_INTERVAL_MS", "3600000")];
    let end = Utc.with_ymd_and_hms(2026, 3, 31, 23, 58, 0).unwrap();
    let app = spawn_app_with(end, &slow).await;
    let org = app.create_org().await;
    let rec = json!({"orgId": org, "metric": "api_call", "value": 7,
                     "occurredAt": "2026-04-01T00:02:00Z", "request_id": "early"});
    let res = app.post("/api/usage/record", SERVICE, &rec).await;
    assert_eq!(
        body(res).await,
        json!({"periodKey": "2026-04", "used": 7, "remaining": 993})
    );
    assert_eq!(
        app.entitlements(&org).await["used"],
        0,
        "March is untouched"
    );
    assert_eq!(app.stored_used(&org, "2026-04").await, 7);
    // Once the clock is in April, the org's April counter holds it.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 4, 1, 0, 3, 0).unwrap());
    let e = app.entitlements(&org).await;
    assert_eq!(
        (e["periodKey"].clone(), e["used"].clone()),
        (json!("2026-04"), json!(7))
    );
    assert_eq!(
        body(app.check(&org).await).await,
        json!({"allow": true, "remaining": 993})
    );
}

#[actix_web::test]
async fn the_invoice_list_pages_ten_by_default() {
    let t = spawn_billing_app().await;
    let (org, customer) = t.org_with_customer().await;
    let ids = t.stripe.add_invoices(&customer, 15);
    let res = t
        .app
        .get_as_tenant("/api/invoices.list", SERVICE, &org)
        .await;
    let next = res.headers()["x-next-cursor"].to_str().unwrap().to_owned();
    let page = body(res).await;
    let got: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let newest: Vec<&str> = ids.iter().rev().take(10).map(String::as_str).collect();
    assert_eq!(got, newest);
    assert_eq!(next, newest[9]);
}

#[actix_web::test]
async fn closed_diagnostics_need_a_token_for_ping_smoke_and_metrics() {
    let app = spawn_app_with(
        default_now(),
        &[("EDGEQUOTA__SERVER__OPEN_DIAGNOSTICS", "false")],
    )
    .await;
    let org = app.create_org().await;
    let key = app.mint_key(&org).await;
    for path in ["/api/diag/ping", "/api/diag/smoke", "/metrics"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_error(res, 401, "UNAUTHORIZED").await;
        assert_error(app.get(path, &key).await, 403, "FORBIDDEN").await;
        assert_eq!(app.get(path, SERVICE).await.status(), 200, "{path}");
    }
}
