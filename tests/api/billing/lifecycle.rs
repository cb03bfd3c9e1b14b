//! The lifecycle rules: idempotent customer and subscription creation (also under
//! concurrency), plan-change direction checks, downgrade to free, upgrade superseding a
//! scheduled downgrade, and input validation.

use super::{spawn_billing_app, EMAIL};
use crate::helpers::{assert_error, body, SERVICE};
use futures::future::join_all;
use serde_json::json;

#[actix_web::test]
async fn customer_ensure_returns_the_stored_customer_without_calling_stripe_again() {
    let t = spawn_billing_app().await;
    let (org, customer) = t.org_with_customer().await;
    let b = t
        .ok(
            "/api/stripe/customer.ensure",
            json!({"orgId": org, "email": "other@acme.test"}),
        )
        .await;
    assert_eq!(b["stripeCustomerId"], customer.as_str());
    assert_eq!(t.calls("POST", "/v1/customers"), 1);
}

#[actix_web::test]
async fn twenty_concurrent_customer_ensures_create_one_customer() {
    let t = spawn_billing_app().await;
    let org = t.app.create_org().await;
    let calls = (0..20).map(|_| {
        t.post(
            "/api/stripe/customer.ensure",
            json!({"orgId": org, "email": EMAIL}),
        )
    });
    let mut ids = Vec::new();
    for res in join_all(calls).await {
        assert_eq!(res.status(), 200);
        ids.push(body(res).await["stripeCustomerId"].clone());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(t.stripe.customers().len(), 1);
}

#[actix_web::test]
async fn concurrent_subscription_creates_make_one_subscription() {
    let t = spawn_billing_app().await;
    let (org, _) = t.org_with_customer().await;
    let calls = (0..10).map(|_| {
        t.post(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
    });
    let mut ids = Vec::new();
    for res in join_all(calls).await {
        assert_eq!(res.status(), 200);
        ids.push(body(res).await["subscriptionId"].clone());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_eq!(t.stripe.subscriptions().len(), 1);
    assert_eq!(t.calls("POST", "/v1/subscriptions"), 1);
}

#[actix_web::test]
async fn a_second_subscription_create_returns_the_live_one() {
    let t = spawn_billing_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_pro_m"}),
        )
        .await;
    assert_eq!(b["subscriptionId"], sub.as_str());
    assert_eq!(b["status"], "trialing");
    assert_eq!(t.stripe.subscriptions().len(), 1);
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");
}

#[actix_web::test]
async fn subscription_create_needs_a_customer_and_a_known_plan() {
    let t = spawn_billing_app().await;
    let org = t.app.create_org().await;
    let res = t
        .post(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_error(res, 409, "CONFLICT").await;
    let (org, _) = t.org_with_customer().await;
    for bad in ["plan_gold", "plan_free"] {
        let res = t
            .post(
                "/api/stripe/subscription.create",
                json!({"orgId": org, "priceLookup": bad}),
            )
            .await;
        let b = assert_error(res, 400, "BAD_REQUEST").await;
        assert_eq!(b["details"][0]["field"], "priceLookup", "{b}");
    }
    assert_eq!(t.calls("POST", "/v1/subscriptions"), 0);
    assert_eq!(t.plan_of(&org).await.0, "plan_free");
}

#[actix_web::test]
async fn endpoints_needing_a_customer_or_subscription_answer_409_without_one() {
    let t = spawn_billing_app().await;
    let org = t.app.create_org().await;
    for path in [
        "/api/payments/setup-intent.create",
        "/api/payments/portal.create",
    ] {
        assert_error(t.post(path, json!({"orgId": org})).await, 409, "CONFLICT").await;
    }
    let res = t
        .post(
            "/api/payments/default-method.set",
            json!({"orgId": org, "paymentMethodId": "pm_card_visa"}),
        )
        .await;
    assert_error(res, 409, "CONFLICT").await;
    let (org, _) = t.org_with_customer().await;
    for path in [
        "/api/plans/preview",
        "/api/plans/upgrade.now",
        "/api/plans/downgrade.schedule",
    ] {
        let res = t
            .post(path, json!({"orgId": org, "newPlanCode": "plan_pro_m"}))
            .await;
        assert_error(res, 409, "CONFLICT").await;
    }
    assert_eq!(t.writes(), 1, "only the customer was created");
}

#[actix_web::test]
async fn plan_changes_must_go_in_their_direction() {
    let t = spawn_billing_app().await;
    let (org, _, _) = t.org_on_trial().await;
    let before = t.writes();
    for plan in ["plan_starter_m", "plan_free"] {
        let res = t
            .post(
                "/api/plans/upgrade.now",
                json!({"orgId": org, "newPlanCode": plan}),
            )
            .await;
        // SPEC 5.2: a plan that is not higher (the free plan too) is a 409.
        assert_error(res, 409, "CONFLICT").await;
    }
    for plan in ["plan_starter_m", "plan_pro_m"] {
        let res = t
            .post(
                "/api/plans/downgrade.schedule",
                json!({"orgId": org, "newPlanCode": plan}),
            )
            .await;
        assert_error(res, 409, "CONFLICT").await;
    }
    let res = t
        .post(
            "/api/plans/preview",
            json!({"orgId": org, "newPlanCode": "plan_starter_m"}),
        )
        .await;
    assert_error(res, 409, "CONFLICT").await;
    assert_eq!(t.writes(), before, "nothing reached Stripe");
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");
}

#[actix_web::test]
async fn downgrade_to_free_cancels_at_period_end_and_keeps_the_quota_until_then() {
    let t = spawn_billing_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    let b = t
        .ok(
            "/api/plans/downgrade.schedule",
            json!({"orgId": org, "newPlanCode": "plan_free"}),
        )
        .await;
    assert_eq!(b["pendingPlanCode"], "plan_free");
    assert_eq!(
        t.stripe.subscription(&sub).unwrap()["cancel_at_period_end"],
        true
    );
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");
    // Asked again: the same pending change, no second call.
    let writes = t.writes();
    let again = t
        .ok(
            "/api/plans/downgrade.schedule",
            json!({"orgId": org, "newPlanCode": "plan_free"}),
        )
        .await;
    assert_eq!(again, b);
    assert_eq!(t.writes(), writes);
}

#[actix_web::test]
async fn an_upgrade_releases_a_scheduled_downgrade() {
    let t = spawn_billing_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    t.ok(
        "/api/plans/upgrade.now",
        json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
    )
    .await;
    t.ok(
        "/api/plans/downgrade.schedule",
        json!({"orgId": org, "newPlanCode": "plan_starter_m"}),
    )
    .await;
    let schedule = t.stripe.subscription(&sub).unwrap()["schedule"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = t
        .ok(
            "/api/plans/upgrade.now",
            json!({"orgId": org, "newPlanCode": "plan_scale_m"}),
        )
        .await;
    assert_eq!(b["planCode"], "plan_scale_m");
    let released = format!("/v1/subscription_schedules/{schedule}/release");
    assert_eq!(t.calls("POST", &released), 1);
    assert_eq!(t.plan_of(&org).await, ("plan_scale_m".into(), 1_000_000));
}

#[actix_web::test]
async fn billing_bodies_are_validated_before_anything_is_sent() {
    let t = spawn_billing_app().await;
    let org = t.app.create_org().await;
    let cases = [
        (
            "/api/stripe/customer.ensure",
            json!({}),
            vec!["orgId", "email"],
        ),
        (
            "/api/stripe/customer.ensure",
            json!({"orgId": org, "email": "not-an-email"}),
            vec!["email"],
        ),
        (
            "/api/stripe/subscription.create",
            json!({"orgId": org}),
            vec!["priceLookup"],
        ),
        (
            "/api/payments/default-method.set",
            json!({"orgId": org, "paymentMethodId": "pm/../x"}),
            vec!["paymentMethodId"],
        ),
        (
            "/api/plans/upgrade.now",
            json!({"orgId": org, "newPlanCode": "plan_pro_m", "prorationDateUnix": -5}),
            vec!["prorationDateUnix"],
        ),
        (
            "/api/plans/preview",
            json!({"orgId": ""}),
            vec!["orgId", "newPlanCode"],
        ),
    ];
    for (path, request, fields) in cases {
        let b = assert_error(t.post(path, request).await, 400, "BAD_REQUEST").await;
        let got: Vec<_> = b["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, fields, "{path}: {b}");
    }
    let res = t
        .post(
            "/api/stripe/customer.ensure",
            json!({"orgId": "org_nope", "email": EMAIL}),
        )
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
    assert!(t.stripe.requests().is_empty(), "nothing reached Stripe");
}

#[actix_web::test]
async fn a_proration_date_outside_the_period_is_refused() {
    let t = spawn_billing_app().await;
    let (org, _, _) = t.org_on_trial().await;
    let future = crate::helpers::default_now().timestamp() + 3_600;
    let res = t
        .post(
            "/api/plans/upgrade.now",
            json!({"orgId": org, "newPlanCode": "plan_pro_m", "prorationDateUnix": future}),
        )
        .await;
    let b = assert_error(res, 400, "BAD_REQUEST").await;
    assert_eq!(b["details"][0]["field"], "prorationDateUnix");
    assert_eq!(t.plan_of(&org).await.0, "plan_starter_m");
}

#[actix_web::test]
async fn invoices_are_empty_before_a_customer_and_limits_are_checked() {
    let t = spawn_billing_app().await;
    let org = t.app.create_org().await;
    let res = t
        .app
        .get_as_tenant("/api/invoices.list", SERVICE, &org)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await, json!([]));
    for q in ["?limit=0", "?limit=101", "?limit=ten", "?cursor=in_1%2F2"] {
        let path = format!("/api/invoices.list{q}");
        let res = t.app.get_as_tenant(&path, SERVICE, &org).await;
        assert_error(res, 400, "BAD_REQUEST").await;
    }
}

#[actix_web::test]
async fn the_billing_mirror_survives_a_restart() {
    let t = spawn_billing_app().await;
    let (org, _, sub) = t.org_on_trial().await;
    let super::BillingApp { app, stripe } = t;
    let dir = app.stop().await;
    let url = stripe.url();
    let env = [
        ("EDGEQUOTA__STRIPE__API_KEY", crate::fake_stripe::API_KEY),
        ("EDGEQUOTA__STRIPE__BASE_URL", url.as_str()),
    ];
    let app = crate::helpers::spawn_app_in(dir, crate::helpers::default_now(), &env).await;
    let t = super::BillingApp { app, stripe };
    assert_eq!(t.plan_of(&org).await, ("plan_starter_m".into(), 10_000));
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_eq!(b["subscriptionId"], sub.as_str());
    assert_eq!(t.calls("POST", "/v1/subscriptions"), 1);
}
