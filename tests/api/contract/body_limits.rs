//! SPEC §2 and 4.7 body limits on both sides of each boundary: every JSON endpoint
//! family takes a body of exactly 64 KiB and refuses one byte more, and the batch record
//! takes exactly 1 MiB and refuses one byte more — 413 in the error envelope, nothing
//! counted.

use super::{padded, send, LIMIT};
use crate::billing::spawn_billing_app;
use crate::helpers::*;
use serde_json::json;

/// The batch record's own limit (SPEC 4.7).
const BATCH_LIMIT: usize = 1024 * 1024;

#[actix_web::test]
async fn every_json_endpoint_family_takes_64_kib_and_refuses_one_byte_more() {
    let t = spawn_billing_app().await;
    let app = &t.app;
    let org = app.create_org().await;
    let record = |id: &str| {
        json!({"orgId": org, "metric": "api_call", "value": 1,
               "occurredAt": app.clock_now(), "request_id": id})
    };
    // payments/* and plans/* for an org that does not exist: the body was read and
    // parsed, then the org looked up (404), as `an_unknown_org_is_not_found_…` pins.
    let ghost = json!({"orgId": "org_01GHOST0000000000000000000",
                       "paymentMethodId": "pm_card_visa", "newPlanCode": "plan_pro_m"});
    let cases = [
        (
            "/api/quota/check",
            SERVICE,
            json!({"orgId": org, "metric": "api_call"}),
            200,
        ),
        (
            "/api/quota/consume",
            SERVICE,
            json!({"orgId": org, "metric": "api_call"}),
            200,
        ),
        ("/api/usage/record", SERVICE, record("limit-ok"), 200),
        (
            "/api/usage/seed",
            SERVICE,
            json!({"orgId": org, "periodKey": "2026-03"}),
            200,
        ),
        (
            "/api/orgs.create",
            SERVICE,
            json!({"name": "L", "ownerUserId": "u"}),
            200,
        ),
        (
            "/api/orgs/api-keys.create",
            SERVICE,
            json!({"orgId": org}),
            200,
        ),
        (
            "/api/stripe/customer.ensure",
            SERVICE,
            json!({"orgId": org, "email": "a@b.co"}),
            200,
        ),
        (
            "/api/payments/setup-intent.create",
            SERVICE,
            ghost.clone(),
            404,
        ),
        (
            "/api/payments/default-method.set",
            SERVICE,
            ghost.clone(),
            404,
        ),
        ("/api/payments/portal.create", SERVICE, ghost.clone(), 404),
        ("/api/plans/preview", SERVICE, ghost.clone(), 404),
        ("/api/plans/upgrade.now", SERVICE, ghost.clone(), 404),
        ("/api/plans/downgrade.schedule", SERVICE, ghost, 404),
        // This app has no Stigg: a body that got past the limit is answered 503.
        (
            "/api/stigg/provision",
            SERVICE,
            json!({"orgId": org, "stripeCustomerId": "cus_limit",
                   "stripeSubscriptionId": "sub_limit", "planCode": "plan_starter_m"}),
            503,
        ),
        (
            "/api/admin/quotas.reset",
            ADMIN,
            json!({"periodKey": "2026-03"}),
            200,
        ),
        (
            "/api/admin/webhooks.replay",
            ADMIN,
            json!({"eventIds": ["evt_none"]}),
            200,
        ),
        (
            "/api/jobs/stripe.process",
            ADMIN,
            json!({"eventId": "evt_none"}),
            404,
        ),
    ];
    for (path, token, base, status) in cases {
        let res = send(app, path, token, padded(&base, LIMIT), "application/json").await;
        assert_eq!(res.status().as_u16(), status, "{path} at exactly 64 KiB");
        let res = send(
            app,
            path,
            token,
            padded(&base, LIMIT + 1),
            "application/json",
        )
        .await;
        assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    }
    // The consume and the record at the limit counted once each; those over it not at all.
    assert_eq!(app.entitlements(&org).await["used"], 2);
}

#[actix_web::test]
async fn the_batch_record_takes_exactly_1_mib_and_refuses_one_byte_more() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let batch = |id: &str| {
        json!({"events": [{"orgId": org, "metric": "api_call", "value": 1,
                           "occurredAt": app.clock_now(), "request_id": id}]})
    };
    let path = "/api/usage/record.batch";
    let at_limit = padded(&batch("batch-limit-ok"), BATCH_LIMIT);
    let res = send(&app, path, SERVICE, at_limit, "application/json").await;
    assert_eq!(res.status(), 200, "exactly 1 MiB");
    let b = body(res).await;
    assert_eq!(b["results"][0]["status"], 200, "{b}");
    assert_eq!(b["results"][0]["body"]["used"], 1, "{b}");
    let over = padded(&batch("batch-limit-over"), BATCH_LIMIT + 1);
    let res = send(&app, path, SERVICE, over, "application/json").await;
    assert_error(res, 413, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(
        app.entitlements(&org).await["used"],
        1,
        "the one over it not counted"
    );
}
