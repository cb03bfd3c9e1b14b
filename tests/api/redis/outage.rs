//! Redis unreachable: records answer 503 quickly (no pile-up), consumes keep deciding
//! from memory flagged `X-Edgequota-Degraded: store`, and when Redis is back every
//! consumed unit reaches it.

use super::servers::Redis;
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

#[actix_rt::test]
async fn an_outage_fails_records_fast_serves_consumes_from_memory_and_loses_nothing() {
    let Some(mut redis) = Redis::start(1, false) else {
        return;
    };
    let url = redis.urls()[0].clone();
    let app = spawn_app_with(
        default_now(),
        &[
            ("EDGEQUOTA__STORE__BACKEND", "redis"),
            ("EDGEQUOTA__STORE__REDIS_URLS", url.as_str()),
            ("EDGEQUOTA__STORE__REDIS_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let org = app.create_org().await;
    assert_eq!(
        app.record(&org, "req_before", 10).await.status(),
        StatusCode::OK
    );
    let body = json!({"orgId": org, "metric": "api_call"});
    let consume = || app.post("/api/quota/consume", SERVICE, &body);
    for _ in 0..5 {
        let res = consume().await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(!res.headers().contains_key("x-edgequota-degraded"));
    }

    redis.kill(0);
    // A record cannot be made durable: 503 in the envelope, in about the timeout.
    let started = Instant::now();
    let res = app.record(&org, "req_during", 1).await;
    let took = started.elapsed();
    assert_error(res, 503, "UNAVAILABLE").await;
    assert!(
        took < Duration::from_secs(3),
        "a record waited {took:?} for a dead Redis"
    );
    // Consumes go on from memory, flagged once the node has noticed.
    let mut admitted = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let res = consume().await;
        assert_eq!(res.status(), StatusCode::OK);
        admitted += 1;
        if res
            .headers()
            .get("x-edgequota-degraded")
            .is_some_and(|v| v == "store")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "consumes were never flagged degraded"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..10 {
        assert_eq!(consume().await.status(), StatusCode::OK);
        admitted += 1;
    }
    assert_eq!(
        app.metrics_scrape().await.get("edgequota_store_degraded"),
        1.0
    );

    redis.restart(0);
    // Back: the flag clears, and every unit consumed meanwhile reaches the store.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = consume().await;
        assert_eq!(res.status(), StatusCode::OK);
        admitted += 1;
        if !res.headers().contains_key("x-edgequota-degraded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still degraded after Redis came back"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let expected = json!(10 + 5 + admitted);
    eventually(
        "every consumed unit stored",
        Duration::from_secs(5),
        || async { (app.stored_used(&org, "2026-03").await == expected).then_some(()) },
    )
    .await;
    assert_eq!(
        app.record(&org, "req_after", 1).await.status(),
        StatusCode::OK
    );
}
