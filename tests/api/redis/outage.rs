//! Redis unreachable: records answer 503 quickly (no pile-up), consumes keep deciding
//! from memory flagged `X-Edgequota-Degraded: store`, and when Redis is back every
//! consumed unit reaches it.

use super::servers::Redis;
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::cell::Cell;
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
    let admitted = Cell::new(0u64);
    eventually(
        "consumes to be flagged degraded",
        Duration::from_secs(5),
        || async {
            let res = consume().await;
            assert_eq!(res.status(), StatusCode::OK);
            admitted.set(admitted.get() + 1);
            let flag = res.headers().get("x-edgequota-degraded");
            flag.is_some_and(|v| v == "store").then_some(())
        },
    )
    .await;
    for _ in 0..10 {
        assert_eq!(consume().await.status(), StatusCode::OK);
        admitted.set(admitted.get() + 1);
    }
    assert_eq!(
        app.metrics_scrape().await.get("edgequota_store_degraded"),
        1.0
    );

    redis.restart(0);
    // Back: the flag clears, and every unit consumed meanwhile reaches the store.
    eventually(
        "consumes to lose the degraded flag after Redis came back",
        Duration::from_secs(10),
        || async {
            let res = consume().await;
            assert_eq!(res.status(), StatusCode::OK);
            admitted.set(admitted.get() + 1);
            (!res.headers().contains_key("x-edgequota-degraded")).then_some(())
        },
    )
    .await;
    let expected = json!(10 + 5 + admitted.get());
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
