//! The signed intake: Stripe's signature rules, durability before the 202, duplicates,
//! untracked types, and what is refused (with nothing stored).

use super::{signature, spawn_webhook_app, subscription_event, OLD_SECRET, SECRET};
use crate::fake_stripe::objects;
use crate::helpers::{assert_error, body, spawn_app};
use futures::future::join_all;
use serde_json::json;

#[actix_web::test]
async fn a_signed_event_is_acknowledged_202_and_processed() {
    let t = spawn_webhook_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    let event = subscription_event(&t, "customer.subscription.updated", &sub);
    let res = t.deliver(&event).await;
    assert_eq!(res.status(), 202);
    assert_eq!(
        body(res).await,
        json!({"queued": true, "eventId": event["id"]})
    );
    let id = event["id"].as_str().unwrap();
    let listed = t.wait_for_event(id, "processed").await;
    assert_eq!(listed["type"], "customer.subscription.updated");
    assert_eq!(listed["attempts"], 1);
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");
}

#[actix_web::test]
async fn signature_rules() {
    let t = spawn_webhook_app().await;
    let now = t.now_unix();
    let (_, _, sub) = t.org_on_trial().await;
    let raw = serde_json::to_vec(&subscription_event(
        &t,
        "customer.subscription.updated",
        &sub,
    ))
    .unwrap();
    let tampered = {
        let mut r = raw.clone();
        let i = r.iter().position(|b| *b == b'{').unwrap();
        r.insert(i + 1, b' ');
        r
    };
    let good = hex::encode(super::hmac(SECRET, now, &raw));
    let refused = [
        (
            "tampered body",
            tampered.clone(),
            Some(signature(SECRET, now, &raw)),
        ),
        (
            "wrong secret",
            raw.clone(),
            Some(signature("whsec_other", now, &raw)),
        ),
        (
            "stale timestamp",
            raw.clone(),
            Some(signature(SECRET, now - 301, &raw)),
        ),
        (
            "future timestamp",
            raw.clone(),
            Some(signature(SECRET, now + 301, &raw)),
        ),
        ("missing header", raw.clone(), None),
        ("v0 only", raw.clone(), Some(format!("t={now},v0={good}"))),
        ("garbage header", raw.clone(), Some("nonsense".into())),
    ];
    for (case, body_bytes, header) in refused {
        let b = assert_error(t.deliver_raw(&body_bytes, header).await, 400, "BAD_REQUEST").await;
        assert!(!b["message"].as_str().unwrap().is_empty(), "{case}");
    }
    for state in ["queued", "processed", "dead", "ignored"] {
        assert!(
            t.events_in(state).await.is_empty(),
            "nothing stored ({state})"
        );
    }
    let accepted = [
        ("rotated secret", Some(signature(OLD_SECRET, now, &raw))),
        (
            "edge of tolerance",
            Some(signature(SECRET, now - 300, &raw)),
        ),
        (
            "several v1 values",
            Some(format!("t={now},v1={},v1={good},v0=ab", "0".repeat(64))),
        ),
    ];
    for (case, header) in accepted {
        assert_eq!(t.deliver_raw(&raw, header).await.status(), 202, "{case}");
    }
}

#[actix_web::test]
async fn a_body_that_is_not_a_stripe_event_is_refused_even_if_signed() {
    let t = spawn_webhook_app().await;
    let now = t.now_unix();
    for raw in [&b"{not json"[..], br#"{"id":"evt_1","object":"charge"}"#] {
        let header = signature(SECRET, now, raw);
        assert_error(t.deliver_raw(raw, Some(header)).await, 400, "BAD_REQUEST").await;
    }
    assert!(t.events_in("ignored").await.is_empty());
}

#[actix_web::test]
async fn without_webhook_secrets_the_intake_answers_503() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/webhooks/stripe.receive"))
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    let b = assert_error(res, 503, "UNAVAILABLE").await;
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("EDGEQUOTA__STRIPE__WEBHOOK_SECRETS"));
}

#[actix_web::test]
async fn the_same_event_five_times_at_once_is_stored_and_processed_once() {
    let t = spawn_webhook_app().await;
    let (_, _, sub) = t.org_on_trial().await;
    let event = subscription_event(&t, "customer.subscription.updated", &sub);
    let id = event["id"].as_str().unwrap().to_owned();
    let gets_before = t.calls("GET", &format!("/v1/subscriptions/{sub}"));
    let answers = join_all((0..5).map(|_| t.deliver(&event))).await;
    for res in answers {
        assert_eq!(res.status(), 202);
        assert_eq!(body(res).await["eventId"], id.as_str());
    }
    t.wait_for_event(&id, "processed").await;
    // A wrongly queued second copy would have been processed by the next drains.
    t.webhooks_drained().await;
    assert_eq!(t.events_in("processed").await.len(), 1);
    assert!(t.events_in("queued").await.is_empty());
    assert_eq!(
        t.calls("GET", &format!("/v1/subscriptions/{sub}")) - gets_before,
        1,
        "Stripe was read once"
    );
    let metrics = t.app.metrics_scrape().await;
    assert_eq!(
        metrics.value(
            "edgequota_webhook_events_total{family=\"customer.subscription\",outcome=\"duplicate\"}"
        ),
        Some(4.0)
    );
}

#[actix_web::test]
async fn an_untracked_event_type_is_stored_acknowledged_and_ignored() {
    let t = spawn_webhook_app().await;
    let event = objects::event(
        "charge.succeeded",
        json!({"id": "ch_1", "object": "charge"}),
    );
    assert_eq!(t.deliver(&event).await.status(), 202);
    let ignored = t.events_in("ignored").await;
    assert_eq!(ignored.len(), 1);
    assert_eq!(ignored[0]["eventId"], event["id"]);
    assert!(t.events_in("queued").await.is_empty());
}

/// A signed event whose body is exactly `len` bytes (padded inside its object).
fn event_of_size(len: usize) -> Vec<u8> {
    let base = objects::event(
        "charge.succeeded",
        json!({"id": "ch_pad", "object": "charge", "pad": ""}),
    );
    let raw = serde_json::to_vec(&base).unwrap();
    let pad = len.checked_sub(raw.len()).expect("room to pad");
    let text = String::from_utf8(raw)
        .unwrap()
        .replace("\"pad\":\"\"", &format!("\"pad\":\"{}\"", "x".repeat(pad)));
    assert_eq!(text.len(), len);
    text.into_bytes()
}

#[actix_web::test]
async fn the_intake_takes_bodies_up_to_512_kib_and_refuses_one_byte_more() {
    let t = spawn_webhook_app().await;
    for (len, status) in [(200 * 1024, 202), (512 * 1024, 202), (512 * 1024 + 1, 413)] {
        let raw = event_of_size(len);
        let header = signature(SECRET, t.now_unix(), &raw);
        let res = t.deliver_raw(&raw, Some(header)).await;
        assert_eq!(res.status().as_u16(), status, "{len} bytes");
        if status == 413 {
            assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
        }
    }
    assert_eq!(
        t.events_in("ignored").await.len(),
        2,
        "both accepted events stored"
    );
}

#[actix_web::test]
async fn an_event_is_processed_within_a_second_with_the_default_poll() {
    let t =
        crate::billing::spawn_billing_app_with(&[("EDGEQUOTA__STRIPE__WEBHOOK_SECRETS", SECRET)])
            .await;
    let (org, _, sub) = t.org_on_trial().await;
    t.stripe.set_subscription_price(&sub, "plan_pro_m");
    let event = subscription_event(&t, "customer.subscription.updated", &sub);
    let started = std::time::Instant::now();
    assert_eq!(t.deliver(&event).await.status(), 202);
    crate::helpers::eventually(
        "processing within a second",
        std::time::Duration::from_secs(1),
        || async { (t.plan_of(&org).await.0 == "plan_pro_m").then_some(()) },
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}
