//! A seeded generator of hostile requests (SPEC §2): valid bodies of every JSON endpoint
//! with one field spoiled (wrong types, huge, negative and fractional numbers, nulls,
//! 10 KB strings, control characters), or the whole body spoiled (truncated, not an
//! object, 10,000-deep nesting, invalid UTF-8, garbage after the value), bad query
//! strings on the GET endpoints, and other orgs' keys. Every answer must be a 4xx in the
//! envelope, nothing the requests target may change, and the metrics' series count must
//! stay bounded. The seed is printed; `EDGEQUOTA_TEST_SEED` repeats a run.

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
    }
    pick(rng, v)
}

struct Endpoint {
    path: &'static str,
    admin: bool,
    body: Value,
    fields: Vec<(&'static str, Kind)>,
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

#[actix_web::test]
async fn thousands_of_hostile_requests_get_a_4xx_envelope_and_change_nothing() {
    let seed: u64 = std::env::var("EDGEQUOTA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xf022_2026);
    println!("fuzz seed: {seed} (EDGEQUOTA_TEST_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let s = spawn_stigg_app().await;
    let t = &s.t;
    let (org, customer, sub) = t.org_on_trial().await;
    let other = t.app.create_org().await;
    let res = t
        .app
        .post("/api/orgs/api-keys.create", SERVICE, &json!({"orgId": org}))
        .await;
    let minted = body(res).await;
    let key_id = minted["keyId"].as_str().unwrap().to_owned();
    let key = minted["apiKey"].as_str().unwrap().to_owned();
    let other_key = t.app.mint_key(&other).await;
    assert_eq!(t.app.record(&org, "base", 11).await.status(), 200);
    let before = (
        t.app.entitlements(&org).await,
        t.app.entitlements(&other).await,
    );
    let stripe_writes = t.writes();
    let scrape_before = t.app.get("/metrics", ADMIN).await.text().await.unwrap();
    let now = t.app.clock_now();
    let list = endpoints(&org, &key_id, &customer, &sub, &now);
    let mut cases = 0;
    for round in 0..2_500 {
        let ep = &list[rng.gen_range(0..list.len())];
        let token = if ep.admin { ADMIN } else { SERVICE };
        let (case, token, bytes) = match rng.gen_range(0..10) {
            // One field spoiled.
            0..=5 => {
                let (field, kind) = ep.fields[rng.gen_range(0..ep.fields.len())];
                let mut b = ep.body.clone();
                match invalid(kind, &mut rng) {
                    Some(v) => b[field] = v,
                    None => {
                        b.as_object_mut().unwrap().remove(field);
                    }
                }
                (
                    format!("{} with {field} = {:.80}", ep.path, b[field].to_string()),
                    token,
                    b.to_string().into_bytes(),
                )
            }
            // The whole body spoiled.
            6..=8 => (
                format!("{} with a spoiled body", ep.path),
                token,
                spoiled_body(&ep.body, &mut rng),
            ),
            // Another org's key for this org (endpoints that name the org).
            _ if ep.body.get("orgId").is_some() && !ep.admin => (
                format!("{} with another org's key", ep.path),
                other_key.as_str(),
                ep.body.to_string().into_bytes(),
            ),
            _ => (
                format!("{} without credentials", ep.path),
                "",
                ep.body.to_string().into_bytes(),
            ),
        };
        let case = format!("seed {seed}, round {round}: {case}");
        let mut req = t
            .app
            .client
            .post(t.app.url(ep.path))
            .header("content-type", "application/json")
            .body(bytes);
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{case}: {e}"));
        let status = res.status().as_u16();
        assert_envelope(status, &res.text().await.unwrap(), &case);
        cases += 1;
    }
    // Bad query strings and tenant headers on the GET endpoints.
    let gets = [
        "/api/admin/usage.read?orgId={org}&periodKey=2026-13",
        "/api/admin/usage.read?orgId=&periodKey=2026-03",
        "/api/admin/usage.read?orgId={org}&orgId={org}&periodKey=2026-03",
        "/api/admin/debug-log?limit=0",
        "/api/admin/debug-log?limit=abc",
        "/api/admin/debug-log?limit=100000",
        "/api/admin/webhooks.list?state=lost",
        "/api/admin/webhooks.list?cursor=-1",
        "/api/admin/webhooks.list?limit=1&limit=2",
        "/api/invoices.list?limit=101",
        "/api/invoices.list?cursor=in%2F..",
        "/api/stigg/provision.status?orgId=%01",
        "/api/orgs/api-keys.list?orgId=",
        "/api/orgs/api-keys.list?orgId={long}",
    ];
    let long = "o".repeat(200);
    for _ in 0..300 {
        let path = gets[rng.gen_range(0..gets.len())]
            .replace("{org}", &org)
            .replace("{long}", &long);
        let res = t.app.get(&path, ADMIN).await;
        let status = res.status().as_u16();
        assert_envelope(
            status,
            &res.text().await.unwrap(),
            &format!("seed {seed}: GET {path}"),
        );
        cases += 1;
    }
    for tenant in ["", " org", "org\u{1}", &long] {
        let res = t
            .app
            .client
            .get(t.app.url("/api/me/entitlements.read"))
            .bearer_auth(SERVICE)
            .header("x-tenant-id", tenant)
            .send()
            .await;
        if let Ok(res) = res {
            let status = res.status().as_u16();
            assert_envelope(
                status,
                &res.text().await.unwrap(),
                &format!("tenant {tenant:.20?}"),
            );
        }
    }
    assert!(cases >= 2_800);
    // Nothing the requests targeted changed.
    let after = (
        t.app.entitlements(&org).await,
        t.app.entitlements(&other).await,
    );
    assert_eq!(before, after, "seed {seed}");
    assert_eq!(
        t.writes(),
        stripe_writes,
        "seed {seed}: Stripe was written to"
    );
    assert!(s.stigg.calls().is_empty(), "seed {seed}: Stigg was called");
    let res = t
        .app
        .post(
            "/api/quota/check",
            &key,
            &json!({"orgId": org, "metric": "api_call"}),
        )
        .await;
    assert_eq!(res.status(), 200, "seed {seed}: the org's key was revoked");
    let res = t
        .app
        .get(&format!("/api/orgs/api-keys.list?orgId={org}"), SERVICE)
        .await;
    assert_eq!(
        body(res).await.as_array().unwrap().len(),
        1,
        "seed {seed}: keys changed"
    );
    let scrape_after = t.app.get("/metrics", ADMIN).await.text().await.unwrap();
    let grown = series(&scrape_after).saturating_sub(series(&scrape_before));
    assert!(grown <= 40, "seed {seed}: {grown} new series");
}
