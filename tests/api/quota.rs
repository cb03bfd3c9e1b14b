//! Stories 4.1 and 4.3: the quota check, its RateLimit headers, and the denial envelope.

use crate::helpers::*;
use serde_json::json;

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[actix_web::test]
async fn a_check_allows_and_carries_the_ratelimit_headers() {
    // 2026-03-14T12:00:00Z: March has 31 days; 17.5 days remain.
    let app = spawn_app().await;
    let org = app.create_org().await;
    let res = app.check(&org).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "ratelimit-policy"),
        "\"api_call\";q=1000;w=2678400"
    );
    assert_eq!(header(&res, "ratelimit"), "\"api_call\";r=1000;t=1512000");
    assert_eq!(body(res).await, json!({"allow": true, "remaining": 1000}));
}

#[actix_web::test]
async fn checks_never_consume_quota() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    for _ in 0..50 {
        assert_eq!(app.check(&org).await.status(), 200);
    }
    assert_eq!(app.entitlements(&org).await["used"], 0);
}

#[actix_web::test]
async fn a_check_denies_with_the_standard_envelope_once_usage_reaches_the_limit() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "r1", 999).await.status(), 200);
    let res = app
        .post(
            "/api/quota/check",
            SERVICE,
            &json!({"orgId": org, "metric": "api_call", "cost": 2}),
        )
        .await;
    assert_eq!(res.status(), 429);
    assert_eq!(body(res).await["remaining"], 0);
    assert_eq!(
        body(app.check(&org).await).await,
        json!({"allow": true, "remaining": 1})
    );
    assert_eq!(app.record(&org, "r2", 1).await.status(), 200);
    let res = app.check(&org).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "1512000");
    assert_eq!(header(&res, "ratelimit"), "\"api_call\";r=0;t=1512000");
    assert_eq!(
        header(&res, "ratelimit-policy"),
        "\"api_call\";q=1000;w=2678400"
    );
    let b = body(res).await;
    assert_eq!(b["code"], "QUOTA_EXCEEDED");
    assert_eq!(b["allow"], false);
    assert_eq!(b["remaining"], 0);
    assert_eq!(b["metric"], "api_call");
    assert_eq!(b["periodKey"], "2026-03");
    assert_eq!(b["limit"], 1000);
    assert_eq!(b["resetAt"], "2026-04-01T00:00:00Z");
    assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(b["correlationId"].as_str().is_some_and(|c| !c.is_empty()));
}

#[actix_web::test]
async fn the_deny_envelope_example_has_the_exact_shape_of_a_real_denial() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/quota/deny-envelope.example"))
        .bearer_auth(SERVICE)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), "1512000");
    assert!(header(&res, "ratelimit").starts_with("\"api_call\";r=0;"));
    assert!(header(&res, "ratelimit-policy").starts_with("\"api_call\";q=1000;"));
    let b = body(res).await;
    let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "allow",
            "code",
            "correlationId",
            "limit",
            "message",
            "metric",
            "periodKey",
            "remaining",
            "resetAt"
        ]
    );
    assert_eq!(b["code"], "QUOTA_EXCEEDED");
    assert_eq!(b["resetAt"], "2026-04-01T00:00:00Z");
}

#[actix_web::test]
async fn recording_never_denies_and_remaining_stays_at_zero_when_over() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let res = app.record(&org, "big", 5000).await;
    assert_eq!(res.status(), 200);
    let b = body(res).await;
    assert_eq!(b["used"], 5000);
    assert_eq!(b["remaining"], 0);
    assert_eq!(app.check(&org).await.status(), 429);
}
