//! Hostile deliveries to the Stripe webhook intake (`/api/webhooks/stripe.receive`,
//! authenticated by the signature alone): a real event, a spoiled one or a spoiled body,
//! under a signature that cannot verify (none, malformed, stale, from the future, another
//! secret's, another body's, an absurd timestamp). Each must be a 4xx in the envelope;
//! the run then checks that nothing was queued.

use super::*;
use crate::billing::BillingApp;
use crate::webhooks::{signature, SECRET};

/// Deliveries per run (the run's total stays near three thousand cases).
const DELIVERIES: usize = 200;

/// A `Stripe-Signature` header that must not verify for `raw` at `now` (`None`: none).
fn bad_signature(raw: &[u8], now: i64, rng: &mut StdRng) -> Option<String> {
    let good = signature(SECRET, now, raw);
    let v1 = good
        .split_once(",v1=")
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    let choices = [
        None,
        Some(String::new()),
        Some("nonsense".to_owned()),
        Some(format!("t={now}")),
        Some(format!("v1={v1}")),
        Some(format!("t={now},v1={}", "ab".repeat(32))),
        Some(format!("t={now},v1={}", &v1[..v1.len() / 2])),
        Some(format!("t={now},v0={v1}")),
        Some(format!("t=x{now},v1={v1}")),
        Some(format!("t=-9223372036854775808,v1={v1}")),
        Some(signature("whsec_not_the_services", now, raw)),
        Some(signature(SECRET, now - 3_600, raw)),
        Some(signature(SECRET, now + 3_600, raw)),
        Some(signature(SECRET, now, b"{\"id\":\"evt_another_body\"}")),
    ];
    choices[rng.gen_range(0..choices.len())].clone()
}

/// Sends the deliveries and checks each answer; returns how many were sent.
pub(super) async fn hostile_deliveries(
    t: &BillingApp,
    sub: &str,
    rng: &mut StdRng,
    seed: u64,
) -> usize {
    let object = t.stripe.subscription(sub).expect("the org's subscription");
    let valid = crate::fake_stripe::objects::event("customer.subscription.updated", object);
    let now = t.now_unix();
    for round in 0..DELIVERIES {
        let raw = match rng.gen_range(0..3) {
            0 => valid.to_string().into_bytes(),
            1 => spoiled_body(&valid, rng),
            _ => {
                let mut e = valid.clone();
                let field = ["id", "type", "object", "data", "created"][rng.gen_range(0..5)];
                e[field] = invalid(Kind::Text, rng).unwrap_or(Value::Null);
                e.to_string().into_bytes()
            }
        };
        let header = bad_signature(&raw, now, rng);
        let case = format!(
            "seed {seed}, delivery {round}: signature {header:?} on {:.80}",
            String::from_utf8_lossy(&raw)
        );
        let res = t.deliver_raw(&raw, header).await;
        let status = res.status().as_u16();
        assert_envelope(status, &res.text().await.unwrap(), &case);
    }
    DELIVERIES
}
