//! Story 9.1 and SPEC §2 tracing: smoke diagnostics, metrics, tracing headers, DebugLog.

use crate::helpers::*;
use serde_json::json;

#[actix_web::test]
async fn tracing_ids_are_echoed_or_generated_on_every_response() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/diag/ping"))
        .header("x-request-id", "req-abc")
        .header("x-correlation-id", "corr-xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-abc");
    assert_eq!(res.headers()["x-correlation-id"], "corr-xyz");
    let res = app.client.get(app.url("/nowhere")).send().await.unwrap();
    let generated = res.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!generated.is_empty());
    assert!(!res.headers()["x-request-id"].is_empty());
    let b = assert_error(res, 404, "NOT_FOUND").await;
    assert_eq!(b["correlationId"], generated);
}

#[actix_web::test]
async fn errors_carry_the_callers_correlation_id() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/quota/check"))
        .header("x-correlation-id", "trace-1")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let b = assert_error(res, 401, "UNAUTHORIZED").await;
    assert_eq!(b["correlationId"], "trace-1");
}

#[actix_web::test]
async fn the_debug_log_finds_requests_by_correlation_id() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let res = app
        .client
        .post(app.url("/api/quota/check"))
        .bearer_auth(SERVICE)
        .header("x-correlation-id", "find-me")
        .json(&json!({"orgId": org, "metric": "api_call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let entry = eventually(
        "the DebugLog entry",
        std::time::Duration::from_secs(5),
        || async {
            let res = app
                .get("/api/admin/debug-log?correlationId=find-me&limit=5", ADMIN)
                .await;
            body(res).await.as_array()?.first().cloned()
        },
    )
    .await;
    assert_eq!(entry["method"], "POST");
    assert_eq!(entry["route"], "/api/quota/check");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["orgId"], org.as_str());
    assert!(entry["latencyUs"].as_u64().is_some());
    let res = app.get("/api/admin/debug-log?limit=0", ADMIN).await;
    assert_error(res, 400, "BAD_REQUEST").await;
}

#[actix_web::test]
async fn smoke_diagnostics_report_a_store_and_an_actor_round_trip() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/diag/smoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let b = body(res).await;
    assert_eq!(b["ok"], true);
    assert_eq!(b["checks"]["store"]["ok"], true);
    assert_eq!(b["checks"]["actors"]["ok"], true);
    assert_eq!(b["checks"]["actors"]["arbiters"], 2);
}

#[actix_web::test]
async fn metrics_are_prometheus_text_without_org_labels() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    app.check(&org).await;
    assert_eq!(app.record(&org, "m1", 3).await.status(), 200);
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    for needle in [
        "edgequota_quota_checks_total{metric=\"api_call\",result=\"allow\"} 1",
        "edgequota_usage_records_total{outcome=\"recorded\"} 1",
        "edgequota_usage_units_total{metric=\"api_call\"} 3",
        "edgequota_store_commit_batch_size_count",
        "edgequota_http_requests_total{method=\"POST\",route=\"/api/quota/check\",status=\"2xx\"} 1",
        "edgequota_org_actors 1",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    assert!(!text.contains(&org), "an org id leaked into metrics");
    let store_bytes = text
        .lines()
        .find_map(|l| l.strip_prefix("edgequota_store_size_bytes "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(store_bytes.is_some_and(|b| b > 0), "store size not sampled");
}

#[actix_web::test]
async fn diagnostics_can_be_closed_to_anonymous_callers() {
    let app = spawn_app_with(
        default_now(),
        &[("EDGEQUOTA__SERVER__OPEN_DIAGNOSTICS", "false")],
    )
    .await;
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_error(res, 401, "UNAUTHORIZED").await;
    assert_eq!(app.get("/metrics", SERVICE).await.status(), 200);
    assert_eq!(app.get("/api/diag/smoke", ADMIN).await.status(), 200);
}
