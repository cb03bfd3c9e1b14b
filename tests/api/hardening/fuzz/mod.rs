//! A seeded generator of hostile requests (SPEC §2): valid bodies of every JSON endpoint
//! (consume and the batch record included, a batch's first event spoiled like a record)
//! with one field spoiled (wrong types, huge, negative and fractional numbers, nulls,
//! 10 KB strings, control characters), or the whole body spoiled (truncated, not an
//! object, 10,000-deep nesting, invalid UTF-8, garbage after the value), bad query
//! strings on the GET endpoints, other orgs' keys, and deliveries to the Stripe webhook
//! intake that no signature covers (`intake.rs`). Every answer must be a 4xx in the
//! envelope (a batch's events each a 4xx envelope), nothing the requests target may
//! change, and the metrics' series count must stay bounded. The seed is printed;
//! `EDGEQUOTA_TEST_SEED` repeats a run.

use crate::helpers::*;
use crate::stigg::spawn_stigg_app;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[derive(Clone, Copy)]
enum Kind {
    Org,
    Metric,
    Amount,
    OptionalAmount,
    Time,
    Request,
    Period,
    Text,
    Key,
    OptionalBool,
    Email,
    Plan,
    StripeId,
    EventIds,
    OptionalUnix,
    /// A batch's `events`.
    Events,
}

/// Values a field of `kind` must refuse (`None`: the field left out).
fn invalid(kind: Kind, rng: &mut StdRng) -> Option<Value> {
    let long = json!("x".repeat(10 * 1024));
    let ctrl = json!("a\u{1}b\u{7f}");
    let common = [json!([]), json!({}), json!(true), long.clone()];
    let pick = |rng: &mut StdRng, v: Vec<Value>| Some(v[rng.gen_range(0..v.len())].clone());
    let mut v: Vec<Value> = common.to_vec();
    match kind {
        Kind::Org | Kind::Request | Kind::Key => {
            v.extend([json!(""), json!(" x"), ctrl, json!(12), json!(null)]);
            if rng.gen_bool(0.2) {
                return None;
            }
        }
        Kind::Metric => v.extend([
            json!("API"),
            json!("a-b"),
            json!(""),
            json!("nope"),
            json!(7),
            json!(null),
        ]),
        Kind::Amount | Kind::OptionalAmount => {
            v.extend([
                json!(0),
                json!(-1),
                json!(1.5),
                json!(1_000_000_001u64),
                json!("1"),
                json!(u64::MAX),
                json!(i64::MIN),
            ]);
            if matches!(kind, Kind::Amount) {
                v.push(json!(null));
            }
        }
        Kind::Time => v.extend([
            json!(""),
            json!("yesterday"),
            json!("2026-03-14T12:00:00"),
            json!("9999-01-01T00:00:00Z"),
            json!("2026-03-14T12:05:01Z"),
            json!(1773489600),
            json!(null),
        ]),
        Kind::Period => v.extend([
            json!("2026-13"),
            json!("26-01"),
            json!(""),
            json!(202603),
            json!("9999-99"),
            json!(null),
        ]),
        Kind::Text => v.extend([json!(""), json!("   "), ctrl, json!(5), json!(null)]),
        Kind::OptionalBool => v.retain(|x| !x.is_boolean()),
        Kind::Email => v.extend([
            json!("a"),
            json!("a@b"),
            json!("a b@c.de"),
            json!("@x.io"),
            json!(null),
        ]),
        Kind::Plan => v.extend([
            json!(""),
            json!("plan pro"),
            json!("plan_nope"),
            json!("../x"),
            json!(null),
        ]),
        Kind::StripeId => v.extend([json!(""), json!("cus_x/../y"), json!("sub 1"), json!(null)]),
        Kind::EventIds => {
            v = vec![
                json!([]),
                json!("evt_1"),
                json!([1, 2]),
                json!(["evt/1"]),
                json!((0..101).map(|i| format!("evt_{i}")).collect::<Vec<_>>()),
                json!(null),
                long,
            ]
        }
        Kind::OptionalUnix => v.extend([json!(0), json!(-5), json!("now"), json!(1.5)]),
        Kind::Events => v.extend([
            json!("x"),
            json!(null),
            json!([1]),
            json!([null]),
            json!(["x", []]),
            json!(vec![json!({}); 1_001]),
        ]),
    }
    pick(rng, v)
}

struct Endpoint {
    path: &'static str,
    admin: bool,
    body: Value,
    /// A name, or `events.0.<name>` for the batch's first event.
    fields: Vec<(&'static str, Kind)>,
}

/// The batch record: answered per event.
const BATCH: &str = "/api/usage/record.batch";

impl Endpoint {
    /// Whether the body names an org (so another org's key must be refused).
    fn names_org(&self) -> bool {
        self.body.get("orgId").is_some() || self.body["events"][0].get("orgId").is_some()
    }

    /// Whether an accepted request would count usage.
    fn counts(&self) -> bool {
        matches!(
            self.path,
            "/api/quota/consume" | "/api/usage/record" | BATCH
        )
    }
}

/// The object holding `field`, and the field's name in it (`events.0.value` is the
/// first event's `value`).
fn slot<'a>(body: &'a mut Value, field: &'a str) -> (&'a mut Value, &'a str) {
    match field.strip_prefix("events.0.") {
        Some(name) => (&mut body["events"][0], name),
        None => (body, field),
    }
}

fn endpoints(org: &str, key_id: &str, customer: &str, sub: &str, now: &str) -> Vec<Endpoint> {
    use Kind::*;
    let e = |path, admin, body, fields| Endpoint {
        path,
        admin,
        body,
        fields,
    };
    vec![
        e(
            "/api/orgs.create",
            false,
            json!({"name": "N", "ownerUserId": "u"}),
            vec![("name", Text), ("ownerUserId", Text)],
        ),
        e(
            "/api/orgs/api-keys.create",
            false,
            json!({"orgId": org}),
            vec![("orgId", Org)],
        ),
        e(
            "/api/orgs/api-keys.revoke",
            false,
            json!({"keyId": key_id}),
            vec![("keyId", Key)],
        ),
        e(
            "/api/orgs/api-keys.revoke-all",
            false,
            json!({"orgId": org}),
            vec![("orgId", Org)],
        ),
        e(
            "/api/usage/seed",
            false,
            json!({"orgId": org, "periodKey": "2026-03"}),
            vec![("orgId", Org), ("periodKey", Period)],
        ),
        e(
            "/api/usage/record",
            false,
            json!({"orgId": org, "metric": "api_call", "value": 3, "occurredAt": now, "request_id": "fz"}),
            vec![
                ("orgId", Org),
                ("metric", Metric),
                ("value", Amount),
                ("occurredAt", Time),
                ("request_id", Request),
            ],
        ),
        e(
            "/api/quota/check",
            false,
            json!({"orgId": org, "metric": "api_call", "cost": 1}),
            vec![("orgId", Org), ("metric", Metric), ("cost", OptionalAmount)],
        ),
        e(
            "/api/quota/consume",
            false,
            json!({"orgId": org, "metric": "api_call", "cost": 1}),
            vec![("orgId", Org), ("metric", Metric), ("cost", OptionalAmount)],
        ),
        e(
            BATCH,
            false,
            json!({"events": [{"orgId": org, "metric": "api_call", "value": 3,
                               "occurredAt": now, "request_id": "fz-batch"}]}),
            vec![
                ("events", Events),
                ("events.0.orgId", Org),
                ("events.0.metric", Metric),
                ("events.0.value", Amount),
                ("events.0.occurredAt", Time),
                ("events.0.request_id", Request),
            ],
        ),
        e(
            "/api/admin/quotas.reset",
            true,
            json!({"periodKey": "2026-03", "force": true}),
            vec![("periodKey", Period), ("force", OptionalBool)],
        ),
        e(
            "/api/admin/webhooks.replay",
            true,
            json!({"eventIds": ["evt_fuzz"]}),
            vec![("eventIds", EventIds)],
        ),
        e(
            "/api/jobs/stripe.process",
            true,
            json!({"eventId": "evt_fuzz"}),
            vec![("eventId", StripeId)],
        ),
        e(
            "/api/stripe/customer.ensure",
            false,
            json!({"orgId": org, "email": "a@b.co"}),
            vec![("orgId", Org), ("email", Email)],
        ),
        e(
            "/api/stripe/subscription.create",
            false,
            json!({"orgId": org, "priceLookup": "plan_pro_m"}),
            vec![("orgId", Org), ("priceLookup", Plan)],
        ),
        e(
            "/api/payments/setup-intent.create",
            false,
            json!({"orgId": org}),
            vec![("orgId", Org)],
        ),
        e(
            "/api/payments/default-method.set",
            false,
            json!({"orgId": org, "paymentMethodId": "pm_card_visa"}),
            vec![("orgId", Org), ("paymentMethodId", StripeId)],
        ),
        e(
            "/api/payments/portal.create",
            false,
            json!({"orgId": org}),
            vec![("orgId", Org)],
        ),
        e(
            "/api/plans/preview",
            false,
            json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
            vec![("orgId", Org), ("newPlanCode", Plan)],
        ),
        e(
            "/api/plans/upgrade.now",
            false,
            json!({"orgId": org, "newPlanCode": "plan_pro_m", "prorationDateUnix": 1773489600}),
            vec![
                ("orgId", Org),
                ("newPlanCode", Plan),
                ("prorationDateUnix", OptionalUnix),
            ],
        ),
        e(
            "/api/plans/downgrade.schedule",
            false,
            json!({"orgId": org, "newPlanCode": "plan_free"}),
            vec![("orgId", Org), ("newPlanCode", Plan)],
        ),
        e(
            "/api/stigg/provision",
            false,
            json!({"orgId": org, "stripeCustomerId": customer, "stripeSubscriptionId": sub, "planCode": "plan_starter_m"}),
            vec![
                ("orgId", Org),
                ("stripeCustomerId", StripeId),
                ("stripeSubscriptionId", StripeId),
                ("planCode", Plan),
            ],
        ),
    ]
}

/// A whole body spoiled: bytes that are not one JSON object.
fn spoiled_body(valid: &Value, rng: &mut StdRng) -> Vec<u8> {
    let text = valid.to_string();
    match rng.gen_range(0..8) {
        0 => text.as_bytes()[..rng.gen_range(0..text.len())].to_vec(),
        1 => ["[]", "\"x\"", "1", "null", "true", "", " "][rng.gen_range(0..7)].into(),
        2 => format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        3 => format!(
            "{{\"a\":{}1{}}}",
            "{\"a\":".repeat(10_000),
            "}".repeat(10_000)
        )
        .into_bytes(),
        4 => {
            let mut b = text.into_bytes();
            let at = b.iter().position(|c| *c == b'"').unwrap_or(0) + 1;
            b.insert(at, 0xff);
            b
        }
        5 => format!("{text}{}", ["x", "{}", ",", "\u{0}"][rng.gen_range(0..4)]).into_bytes(),
        6 => format!("\u{feff}{text}").into_bytes(),
        // A field given twice.
        _ => {
            let first = valid
                .as_object()
                .and_then(|o| o.keys().next())
                .cloned()
                .unwrap_or_default();
            text.replacen('{', &format!("{{\"{first}\":1,"), 1)
                .into_bytes()
        }
    }
}

fn assert_envelope(status: u16, text: &str, case: &str) {
    assert!(
        (400..500).contains(&status),
        "{case}: answered {status}: {text:.300}"
    );
    let b: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {text:.300}"));
    for field in ["code", "message", "correlationId"] {
        assert!(
            b[field].as_str().is_some_and(|s| !s.is_empty()),
            "{case}: {field} missing in {b}"
        );
    }
}

fn series(scrape: &str) -> usize {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

mod intake;
mod run;
