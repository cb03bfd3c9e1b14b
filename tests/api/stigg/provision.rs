//! `POST /api/stigg/provision` and its status: the design card's six tests, the exact
//! variables sent, duplicates, Stigg failing and coming back.

use super::spawn_stigg_app;
use crate::billing::EMAIL;
use crate::fake_stigg::StiggFailure;
use crate::helpers::{assert_error, body, spawn_app, ADMIN, SERVICE};
use serde_json::json;

#[actix_web::test]
async fn happy_path_provisions_customer_then_subscription_with_the_catalogue_plan_id() {
    let s = spawn_stigg_app().await;
    let (org, request) = s.trial_request().await;
    let b = s.t.ok("/api/stigg/provision", request.clone()).await;
    assert_eq!(b, json!({"provisioned": true, "stiggCustomerId": org}));

    let customer = &s.stigg.calls_of("ProvisionCustomer")[0];
    assert_eq!(customer.input("customerId"), Some(org.as_str()));
    assert_eq!(
        customer.input("billingId"),
        request["stripeCustomerId"].as_str()
    );
    assert_eq!(customer.input("name"), Some("Acme"));
    assert_eq!(customer.input("email"), Some(EMAIL));
    assert_eq!(
        customer.header("x-api-key"),
        Some(crate::fake_stigg::STIGG_API_KEY)
    );
    let sub = &s.stigg.calls_of("ProvisionSubscription")[0];
    assert_eq!(sub.input("customerId"), Some(org.as_str()));
    assert_eq!(sub.input("planId"), Some("plan-edgequota-starter"));
    assert_eq!(
        sub.input("billingId"),
        request["stripeSubscriptionId"].as_str()
    );
    assert_eq!(sub.input("billingPeriod"), Some("MONTHLY"));
    assert_eq!(sub.input("scheduleStrategy"), Some("IMMEDIATE"));
    assert_eq!(
        s.stigg.subscription_of(&org).unwrap()["planId"],
        "plan-edgequota-starter"
    );
    let status = body(s.status(&org).await).await;
    assert_eq!(status["state"], "provisioned");
    assert_eq!(status["attempts"], 1);
    assert!(status["lastError"].is_null());
}

#[actix_web::test]
async fn missing_fields_are_a_400_naming_each() {
    let s = spawn_stigg_app().await;
    let res =
        s.t.post("/api/stigg/provision", json!({"orgId": "org_1"}))
            .await;
    let b = assert_error(res, 400, "BAD_REQUEST").await;
    let fields: Vec<_> = b["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["stripeCustomerId", "stripeSubscriptionId", "planCode"]
    );
    let (_, mut request) = s.trial_request().await;
    request["planCode"] = json!("plan_gold");
    let b = assert_error(
        s.t.post("/api/stigg/provision", request).await,
        400,
        "BAD_REQUEST",
    )
    .await;
    assert_eq!(b["details"][0]["field"], "planCode");
    assert!(s.stigg.calls().is_empty());
}

#[actix_web::test]
async fn an_unknown_org_or_ids_that_are_not_the_orgs_are_404() {
    let s = spawn_stigg_app().await;
    let (_, request) = s.trial_request().await;
    let (_, other) = s.trial_request().await;
    let mut unknown = request.clone();
    unknown["orgId"] = json!("org_unknown");
    let mut wrong_sub = request.clone();
    wrong_sub["stripeSubscriptionId"] = other["stripeSubscriptionId"].clone();
    let mut wrong_customer = request.clone();
    wrong_customer["stripeCustomerId"] = other["stripeCustomerId"].clone();
    for bad in [unknown, wrong_sub, wrong_customer] {
        assert_error(
            s.t.post("/api/stigg/provision", bad).await,
            404,
            "NOT_FOUND",
        )
        .await;
    }
    assert!(s.stigg.calls().is_empty());
    let org = request["orgId"].as_str().unwrap();
    assert_error(s.status(org).await, 404, "NOT_FOUND").await;
}

#[actix_web::test]
async fn stigg_failing_is_a_500_then_the_outbox_provisions_it_when_stigg_is_back() {
    let s = spawn_stigg_app().await;
    let (org, request) = s.trial_request().await;
    s.stigg.fail(StiggFailure::ServerError, None);
    let b = assert_error(
        s.t.post("/api/stigg/provision", request).await,
        500,
        "INTERNAL",
    )
    .await;
    assert!(b["message"].as_str().unwrap().contains("Stigg"), "{b}");
    let status = body(s.status(&org).await).await;
    assert_eq!(status["state"], "pending");
    assert_eq!(status["attempts"], 3, "the request's own bounded tries");
    assert!(status["lastError"].as_str().unwrap().contains("Stigg"));
    assert_eq!(s.stigg.calls().len(), 3);

    s.stigg.clear_failures();
    s.t.app.clock.advance(chrono::Duration::seconds(30));
    let status = s.wait_for_state(&org, "provisioned").await;
    assert_eq!(status["attempts"], 4);
    assert!(s.stigg.subscription_of(&org).is_some());
}

#[actix_web::test]
async fn graphql_errors_and_timeouts_are_retried_within_the_request() {
    let s = spawn_stigg_app().await;
    let (org, request) = s.trial_request().await;
    s.stigg
        .fail(StiggFailure::GraphqlError("internal".into()), Some(1));
    s.t.ok("/api/stigg/provision", request).await;
    assert_eq!(body(s.status(&org).await).await["attempts"], 2);

    let (org, request) = s.trial_request().await;
    s.stigg.fail(
        StiggFailure::Slow(std::time::Duration::from_millis(700)),
        Some(2),
    );
    // Two timeouts (300 ms each), then a success within the request's three tries.
    let b = s.t.ok("/api/stigg/provision", request).await;
    assert_eq!(b["provisioned"], true);
    assert_eq!(body(s.status(&org).await).await["attempts"], 3);
}

#[actix_web::test]
async fn a_refusal_by_stigg_is_final() {
    let s = spawn_stigg_app().await;
    let (org, request) = s.trial_request().await;
    s.stigg
        .fail(StiggFailure::ValidationError("bad input".into()), None);
    assert_error(
        s.t.post("/api/stigg/provision", request).await,
        500,
        "INTERNAL",
    )
    .await;
    let status = body(s.status(&org).await).await;
    assert_eq!(status["state"], "failed");
    assert_eq!(status["attempts"], 1, "not retried");
    s.t.app.clock.advance(chrono::Duration::minutes(10));
    s.outbox_drained().await;
    assert_eq!(s.stigg.calls().len(), 1);
}

#[actix_web::test]
async fn provisioning_again_is_harmless() {
    let s = spawn_stigg_app().await;
    let (org, request) = s.trial_request().await;
    s.t.ok("/api/stigg/provision", request.clone()).await;
    let b = s.t.ok("/api/stigg/provision", request).await;
    assert_eq!(b["stiggCustomerId"], org.as_str());
    assert_eq!(s.stigg.calls_of("ProvisionCustomer").len(), 2);

    // A customer Stigg already had (created elsewhere) is fine too.
    let (org, request) = s.trial_request().await;
    s.stigg
        .add_customer(&org, request["stripeCustomerId"].as_str().unwrap());
    s.t.ok("/api/stigg/provision", request).await;
    assert_eq!(body(s.status(&org).await).await["state"], "provisioned");
}

#[actix_web::test]
async fn correlation_ids_reach_the_response_stigg_and_the_debug_log() {
    let s = spawn_stigg_app().await;
    let (_, request) = s.trial_request().await;
    let res =
        s.t.app
            .client
            .post(s.t.app.url("/api/stigg/provision"))
            .bearer_auth(SERVICE)
            .header("x-correlation-id", "corr-stigg-1")
            .header("x-request-id", "req-stigg-1")
            .json(&request)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-correlation-id"], "corr-stigg-1");
    assert_eq!(res.headers()["x-request-id"], "req-stigg-1");
    let calls = s.stigg.calls();
    assert_eq!(calls.len(), 2, "customer, then subscription");
    for call in calls {
        assert_eq!(call.header("x-correlation-id"), Some("corr-stigg-1"));
    }
    // The DebugLog is written by a batched background task.
    let log = crate::helpers::eventually(
        "the provision request in the DebugLog",
        std::time::Duration::from_secs(5),
        || async {
            let log = body(
                s.t.app
                    .get("/api/admin/debug-log?correlationId=corr-stigg-1", ADMIN)
                    .await,
            )
            .await;
            (!log.as_array()?.is_empty()).then_some(log)
        },
    )
    .await;
    assert_eq!(log[0]["route"], "/api/stigg/provision", "{log}");
    assert_eq!(log[0]["status"], 200);

    // And on an error, in the envelope.
    let res =
        s.t.app
            .client
            .post(s.t.app.url("/api/stigg/provision"))
            .bearer_auth(SERVICE)
            .header("x-correlation-id", "corr-stigg-2")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
    assert_eq!(body(res).await["correlationId"], "corr-stigg-2");
}

#[actix_web::test]
async fn without_a_stigg_key_provisioning_is_503_and_nothing_is_queued() {
    let app = spawn_app().await;
    let org = app.create_org().await;
    let request = json!({"orgId": org, "stripeCustomerId": "cus_1",
                         "stripeSubscriptionId": "sub_1", "planCode": "plan_starter_m"});
    let b = assert_error(
        app.post("/api/stigg/provision", SERVICE, &request).await,
        503,
        "UNAVAILABLE",
    )
    .await;
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("EDGEQUOTA__STIGG__API_KEY"));
    let res = app
        .get(&format!("/api/stigg/provision.status?orgId={org}"), SERVICE)
        .await;
    assert_error(res, 404, "NOT_FOUND").await;
}
