//! Hostile input (SPEC §2, §6): made-up methods mint no series, garbage after a JSON
//! value is refused, query-string errors stay in the envelope, a body that never arrives
//! is cut off with a 408 in the envelope, connections are capped, and absurd signature
//! timestamps are refused. (Unknown org ids: `negative_cache.rs`.)

use crate::helpers::*;
use crate::webhooks::{signature, spawn_webhook_app, SECRET};
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[actix_web::test]
async fn made_up_methods_share_one_series() {
    let app = spawn_app().await;
    let before = app.metrics_scrape().await;
    let count = |s: &Scrape| {
        s.samples()
            .filter(|l| l.starts_with("edgequota_http_requests_total{"))
            .count()
    };
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("M{i}X").as_bytes()).unwrap();
        let res = app
            .client
            .request(method, app.url("/api/quota/check"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405);
    }
    let after = app.metrics_scrape().await;
    assert!(
        count(&after) <= count(&before) + 1,
        "series grew by {}",
        count(&after) - count(&before)
    );
    let other =
        "edgequota_http_requests_total{method=\"other\",route=\"/api/quota/check\",status=\"4xx\"}";
    assert_eq!(after.get(other), 300.0);
    for line in after
        .samples()
        .filter(|l| l.starts_with("edgequota_http_requests_total{"))
    {
        let method = line
            .split("method=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        let known = [
            "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other",
        ];
        assert!(method.is_some_and(|m| known.contains(&m)), "{line}");
    }
}

async fn send_raw(app: &TestApp, path: &str, token: &str, raw: String) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn garbage_after_the_json_value_is_refused_and_changes_nothing() {
    let t = spawn_webhook_app().await;
    let app = &t.app;
    let org = app.create_org().await;
    assert_eq!(app.record(&org, "base", 7).await.status(), 200);
    let res = app
        .post("/api/orgs/api-keys.create", SERVICE, &json!({"orgId": org}))
        .await;
    let minted = body(res).await;
    let key = minted["apiKey"].as_str().unwrap().to_owned();
    let record = json!({"orgId": org, "metric": "api_call", "value": 5,
                        "occurredAt": app.clock_now(), "request_id": "garbage"});
    let cases = [
        (
            "/api/orgs/api-keys.revoke",
            SERVICE,
            json!({"keyId": minted["keyId"]}),
        ),
        (
            "/api/usage/seed",
            SERVICE,
            json!({"orgId": org, "periodKey": "2026-03"}),
        ),
        ("/api/usage/record", SERVICE, record.clone()),
        (
            "/api/quota/check",
            SERVICE,
            json!({"orgId": org, "metric": "api_call"}),
        ),
        (
            "/api/orgs.create",
            SERVICE,
            json!({"name": "X", "ownerUserId": "u"}),
        ),
        ("/api/orgs/api-keys.create", SERVICE, json!({"orgId": org})),
        (
            "/api/admin/quotas.reset",
            ADMIN,
            json!({"periodKey": "2026-03", "force": true}),
        ),
        (
            "/api/admin/webhooks.replay",
            ADMIN,
            json!({"eventIds": ["evt_x"]}),
        ),
    ];
    for (path, token, valid) in &cases {
        for tail in ["x", "{}", " 1", "\n]", "\u{0}"] {
            let res = send_raw(app, path, token, format!("{valid}{tail}")).await;
            let b = assert_error(res, 400, "BAD_REQUEST").await;
            assert!(b["details"].is_array(), "{path} + {tail:?}: {b}");
        }
        // White space after the value is fine (and proves the bodies above were valid).
        if *path == "/api/quota/check" {
            let res = send_raw(app, path, token, format!(" {valid}\r\n ")).await;
            assert_eq!(res.status(), 200);
        }
    }
    // Nothing changed: the key works, usage and the key list are as before.
    let res = app
        .post(
            "/api/quota/check",
            &key,
            &json!({"orgId": org, "metric": "api_call"}),
        )
        .await;
    assert_eq!(body(res).await, json!({"allow": true, "remaining": 993}));
    let res = app
        .get(&format!("/api/orgs/api-keys.list?orgId={org}"), SERVICE)
        .await;
    assert_eq!(body(res).await.as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn query_string_errors_answer_in_the_envelope_naming_the_parameter() {
    let t = spawn_webhook_app().await;
    let app = &t.app;
    let cases = [
        (
            "/api/admin/usage.read?orgId=a&orgId=b&periodKey=2026-03",
            ADMIN,
            "orgId",
        ),
        ("/api/admin/debug-log?limit=1&limit=2", ADMIN, "limit"),
        (
            "/api/admin/webhooks.list?state=dead&state=queued",
            ADMIN,
            "state",
        ),
        (
            "/api/invoices.list?limit=1&cursor=a&limit=3",
            SERVICE,
            "limit",
        ),
        (
            "/api/stigg/provision.status?orgId=a&orgId=a",
            SERVICE,
            "orgId",
        ),
        ("/api/orgs/api-keys.list?orgId=a&orgId=b", SERVICE, "orgId"),
    ];
    for (path, token, param) in cases {
        let res = app.get(path, token).await;
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "application/json",
            "{path}"
        );
        let b = assert_error(res, 400, "BAD_REQUEST").await;
        assert_eq!(b["details"][0]["field"], param, "{path}: {b}");
    }
}

#[actix_web::test]
async fn an_absurd_signature_timestamp_is_refused_not_a_crash() {
    let t = spawn_webhook_app().await;
    let raw = br#"{"id":"evt_1","object":"event","type":"x","data":{"object":{}}}"#;
    for ts in ["-9223372036854775808", "9223372036854775807", "-1"] {
        let header = format!("t={ts},v1={}", "ab".repeat(32));
        let res = t.deliver_raw(raw, Some(header)).await;
        assert_error(res, 400, "BAD_REQUEST").await;
    }
    // The service is still fine.
    let header = signature(SECRET, t.now_unix(), raw);
    assert_eq!(t.deliver_raw(raw, Some(header)).await.status(), 202);
}

/// Opens a raw connection and sends `head` (a request head announcing a body that never
/// comes); returns the socket.
fn hold(addr: &str, head: &str) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s
}

fn status_of(s: &mut std::net::TcpStream) -> String {
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Reads one whole response (until its `content-length` body is in, or the connection
/// ends): the head and the body.
fn response_of(s: &mut std::net::TcpStream) -> (String, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end].lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                if !name.trim().eq_ignore_ascii_case("content-length") {
                    return None;
                }
                value.trim().parse::<usize>().ok()
            });
            if length.is_some_and(|n| raw.len() >= end + 4 + n) {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    (head.to_owned(), body.to_owned())
}

fn head(path: &str, extra: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: Bearer {SERVICE}\r\n{extra}content-length: {length}\r\n\r\n"
    )
}

#[actix_web::test]
async fn a_body_that_never_arrives_is_cut_off_with_a_408() {
    let t = crate::billing::spawn_billing_app_with(&[
        ("EDGEQUOTA__SERVER__BODY_READ_TIMEOUT_MS", "300"),
        ("EDGEQUOTA__STRIPE__WEBHOOK_SECRETS", SECRET),
    ])
    .await;
    let addr = t.app.base.trim_start_matches("http://").to_owned();
    let fresh = format!(
        "stripe-signature: t={},v1={}\r\n",
        t.now_unix(),
        "ab".repeat(32)
    );
    let cases = [
        ("/api/webhooks/stripe.receive", fresh.as_str(), 500_000),
        ("/api/usage/record", "", 60_000),
    ];
    for (path, extra, length) in cases {
        let started = Instant::now();
        let (answer, text) = actix_rt::task::spawn_blocking({
            let (addr, h) = (addr.clone(), head(path, extra, length));
            move || response_of(&mut hold(&addr, &h))
        })
        .await
        .unwrap();
        let status = answer.lines().next().unwrap_or_default();
        assert!(status.contains(" 408"), "{path}: {answer}");
        assert!(started.elapsed() < Duration::from_secs(5), "{path}");
        // In the error envelope (SPEC §2), like every other non-2xx answer.
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{path}: {answer}"
        );
        let b: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: the 408 body is not JSON ({e}): {text:?}"));
        assert_eq!(b["code"], "REQUEST_TIMEOUT", "{path}: {b}");
        for field in ["message", "correlationId"] {
            assert!(
                b[field].as_str().is_some_and(|v| !v.is_empty()),
                "{path}: {field} in {b}"
            );
        }
    }
    // A malformed or stale signature is refused without waiting for the body.
    let stale = format!(
        "stripe-signature: t={},v1={}\r\n",
        t.now_unix() - 3600,
        "ab".repeat(32)
    );
    for extra in ["stripe-signature: nonsense\r\n", stale.as_str(), ""] {
        let status = actix_rt::task::spawn_blocking({
            let (addr, h) = (
                addr.clone(),
                head("/api/webhooks/stripe.receive", extra, 100_000),
            );
            move || status_of(&mut hold(&addr, &h))
        })
        .await
        .unwrap();
        assert!(status.contains(" 400"), "{extra:?}: {status}");
    }
}

#[actix_web::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = spawn_app_with(
        default_now(),
        &[
            ("EDGEQUOTA__SERVER__MAX_CONNECTIONS", "1"),
            ("EDGEQUOTA__SERVER__BODY_READ_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Both workers' single slots are taken by bodies that never come.
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (addr, h) = (addr.clone(), head("/api/usage/record", "", 1000));
            std::thread::spawn(move || status_of(&mut hold(&addr, &h)))
        })
        .collect();
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let ping = app.client.get(app.url("/api/diag/ping")).send();
    let early = actix_rt::time::timeout(Duration::from_millis(600), ping).await;
    assert!(
        early.is_err(),
        "a third connection was served beyond the cap"
    );
    for h in holders {
        assert!(h.join().unwrap().contains(" 408"));
    }
    let res = app
        .client
        .get(app.url("/api/diag/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "served once a slot is free");
}
