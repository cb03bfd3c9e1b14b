//! Who may call the billing endpoints, and what they answer with no Stripe key.

use super::{spawn_billing_app, EMAIL};
use crate::helpers::{assert_error, body, spawn_app, SERVICE};
use serde_json::json;

const ENDPOINTS: [&str; 8] = [
    "/api/stripe/customer.ensure",
    "/api/stripe/subscription.create",
    "/api/payments/setup-intent.create",
    "/api/payments/default-method.set",
    "/api/payments/portal.create",
    "/api/plans/preview",
    "/api/plans/upgrade.now",
    "/api/plans/downgrade.schedule",
];

#[actix_web::test]
async fn without_a_stripe_key_billing_answers_503_and_quotas_keep_working() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let request = json!({"orgId": org, "email": EMAIL, "priceLookup": "plan_starter_m",
                         "paymentMethodId": "pm_card_visa", "newPlanCode": "plan_pro_m"});
    for path in ENDPOINTS {
        let b = assert_error(app.post(path, SERVICE, &request).await, 503, "UNAVAILABLE").await;
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains("EDGEQUOTA__STRIPE__API_KEY"),
            "{path}: {b}"
        );
    }
    let res = app.get_as_tenant("/api/invoices.list", SERVICE, &org).await;
    assert_error(res, 503, "UNAVAILABLE").await;
    assert_eq!(app.check(&org).await.status(), 200);
    assert_eq!(app.record(&org, "r-1", 1).await.status(), 200);
}

#[actix_web::test]
async fn an_org_key_acts_only_on_its_own_org() {
    let t = spawn_billing_app().await;
    let (mine, _) = t.org_with_customer().await;
    let (theirs, _) = t.org_with_customer().await;
    let key = t.app.mint_key(&mine).await;
    for path in ENDPOINTS {
        let request = json!({"orgId": theirs, "email": EMAIL, "priceLookup": "plan_starter_m",
                             "paymentMethodId": "pm_card_visa", "newPlanCode": "plan_pro_m"});
        assert_error(t.app.post(path, &key, &request).await, 403, "FORBIDDEN").await;
    }
    let res = t
        .app
        .post(
            "/api/stripe/subscription.create",
            &key,
            &json!({"orgId": mine, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(t.plan_of(&theirs).await.0, "plan_free");
}

#[actix_web::test]
async fn the_invoice_list_takes_the_org_from_the_key_or_the_tenant_header() {
    let t = spawn_billing_app().await;
    let (mine, my_customer) = t.org_with_customer().await;
    let (theirs, their_customer) = t.org_with_customer().await;
    let my_invoices = t.stripe.add_invoices(&my_customer, 2);
    let their_invoices = t.stripe.add_invoices(&their_customer, 1);
    let key = t.app.mint_key(&mine).await;
    let ids = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // An org key: its own org, whatever x-tenant-id says.
    let res = t
        .app
        .get_as_tenant("/api/invoices.list", &key, &theirs)
        .await;
    let mut got = ids(body(res).await);
    got.sort();
    let mut want = my_invoices.clone();
    want.sort();
    assert_eq!(got, want);

    // A service token: the org named by x-tenant-id, which is required.
    let res = t
        .app
        .get_as_tenant("/api/invoices.list", SERVICE, &theirs)
        .await;
    assert_eq!(ids(body(res).await), their_invoices);
    let res = t.app.get("/api/invoices.list", SERVICE).await;
    assert_error(res, 400, "BAD_REQUEST").await;
    let res = t
        .app
        .client
        .get(t.app.url("/api/invoices.list"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "UNAUTHORIZED").await;
}
