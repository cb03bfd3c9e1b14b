//! Contract tests of the fake Stigg server, driven over HTTP with reqwest and the very
//! operation texts the service sends (the constants of its Stigg client), so the replies
//! the service will parse, the schema checks, and the failure modes tests will inject
//! are pinned down here.

use crate::fake_stigg::{FakeStigg, StiggFailure, STIGG_API_KEY};
use serde_json::{json, Value};
use std::time::Duration;

use edgequota::billing::stigg::client::{
    PROVISION_CUSTOMER as CUSTOMER_QUERY, PROVISION_SUBSCRIPTION as SUBSCRIPTION_QUERY,
};

fn customer_body(org: &str, billing_id: &str) -> Value {
    json!({
        "query": CUSTOMER_QUERY,
        "operationName": "ProvisionCustomer",
        "variables": { "input": {
            "customerId": org, "name": "Acme", "email": "ops@acme.test", "billingId": billing_id,
        } },
    })
}

fn subscription_body(org: &str, plan: &str, strategy: &str) -> Value {
    json!({
        "query": SUBSCRIPTION_QUERY,
        "operationName": "ProvisionSubscription",
        "variables": { "input": {
            "customerId": org, "planId": plan, "billingId": "sub_123",
            "billingPeriod": "MONTHLY", "scheduleStrategy": strategy,
        } },
    })
}

async fn send(
    fake: &FakeStigg,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    let mut req = reqwest::Client::new()
        .post(format!("{}/graphql", fake.url()))
        .json(body);
    if let Some(key) = key {
        req = req.header("X-API-KEY", key);
    }
    req.send().await
}

async fn post(fake: &FakeStigg, body: &Value) -> (u16, Value) {
    let res = send(fake, Some(STIGG_API_KEY), body)
        .await
        .expect("reach fake");
    read(res).await
}

async fn read(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn first_error(body: &Value) -> &Value {
    &body["errors"][0]
}

#[actix_web::test]
async fn provisions_a_customer_then_a_subscription() {
    let fake = FakeStigg::start().await;
    assert!(!fake.url().ends_with('/'));

    let (status, body) = post(&fake, &customer_body("org_1", "cus_1")).await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
    let customer = &body["data"]["provisionCustomer"]["customer"];
    assert_eq!(customer["customerId"], "org_1");
    assert_eq!(customer["billingId"], "cus_1");
    let stigg_id = customer["id"].as_str().expect("stigg id");
    assert!(!stigg_id.is_empty());
    let stored = fake.customer("org_1").expect("stored customer");
    assert_eq!(
        stored,
        json!({ "id": stigg_id, "customerId": "org_1", "name": "Acme",
                "email": "ops@acme.test", "billingId": "cus_1" })
    );

    let (status, body) = post(
        &fake,
        &subscription_body("org_1", "plan-edgequota-pro", "IMMEDIATE"),
    )
    .await;
    assert_eq!(status, 200);
    let result = &body["data"]["provisionSubscription"];
    assert_eq!(result["status"], "SUCCESS");
    assert!(result["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(result["subscription"]["status"], "ACTIVE");
    let sub_id = result["subscription"]["id"].as_str().expect("sub id");
    let stored = fake.subscription_of("org_1").expect("stored subscription");
    assert_eq!(
        stored,
        json!({ "id": sub_id, "planId": "plan-edgequota-pro", "billingId": "sub_123",
                "scheduleStrategy": "IMMEDIATE" })
    );

    // A later provisioning becomes the current subscription.
    let body = subscription_body("org_1", "plan-edgequota-starter", "END_OF_BILLING_PERIOD");
    let (status, _) = post(&fake, &body).await;
    assert_eq!(status, 200);
    let stored = fake.subscription_of("org_1").expect("stored subscription");
    assert_eq!(stored["planId"], "plan-edgequota-starter");
    assert_eq!(stored["scheduleStrategy"], "END_OF_BILLING_PERIOD");
    assert_ne!(stored["id"], sub_id);
    assert!(fake.subscription_of("org_2").is_none());
}

#[actix_web::test]
async fn a_second_customer_with_the_same_id_is_a_duplicate_error() {
    let fake = FakeStigg::start().await;
    fake.add_customer("org_old", "cus_old");
    let (status, body) = post(&fake, &customer_body("org_old", "cus_new")).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], Value::Null);
    let error = first_error(&body);
    assert_eq!(error["message"], "Duplicated entity not allowed");
    assert_eq!(error["extensions"]["code"], "DuplicatedEntityNotAllowed");
    assert_eq!(error["extensions"]["isValidationError"], true);
    assert_eq!(fake.customer("org_old").unwrap()["billingId"], "cus_old");

    // The same holds for one the fake provisioned itself.
    post(&fake, &customer_body("org_1", "cus_1")).await;
    let (_, body) = post(&fake, &customer_body("org_1", "cus_1")).await;
    assert_eq!(
        first_error(&body)["extensions"]["code"],
        "DuplicatedEntityNotAllowed"
    );
}

#[actix_web::test]
async fn a_subscription_needs_a_known_customer_and_plan() {
    let fake = FakeStigg::start().await;
    let (status, body) = post(
        &fake,
        &subscription_body("org_x", "plan-edgequota-free", "IMMEDIATE"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(first_error(&body)["message"], "Customer not found");
    assert_eq!(first_error(&body)["extensions"]["code"], "CustomerNotFound");
    assert_eq!(first_error(&body)["extensions"]["isValidationError"], true);

    fake.add_customer("org_1", "cus_1");
    let (status, body) = post(&fake, &subscription_body("org_1", "plan-gold", "IMMEDIATE")).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(first_error(&body)["extensions"]["code"], "PlanNotFound");
    assert_eq!(first_error(&body)["extensions"]["isValidationError"], true);
    assert!(fake.subscription_of("org_1").is_none());

    for plan in [
        "plan-edgequota-free",
        "plan-edgequota-starter",
        "plan-edgequota-scale",
    ] {
        let (_, body) = post(&fake, &subscription_body("org_1", plan, "IMMEDIATE")).await;
        assert_eq!(
            body["data"]["provisionSubscription"]["status"], "SUCCESS",
            "{plan}"
        );
    }
}

#[actix_web::test]
async fn a_missing_or_wrong_api_key_is_401() {
    let fake = FakeStigg::start().await;
    for key in [None, Some("stigg_wrong")] {
        let res = send(&fake, key, &customer_body("org_1", "cus_1"))
            .await
            .unwrap();
        let (status, body) = read(res).await;
        assert_eq!(status, 401, "{key:?}");
        assert_eq!(
            body,
            json!({ "errors": [{ "message": "Unauthorized", "extensions": { "code": "UNAUTHENTICATED" } }] })
        );
    }
    assert!(fake.customer("org_1").is_none());
    assert_eq!(fake.calls().len(), 2);
}

#[actix_web::test]
async fn an_unknown_or_missing_operation_is_a_graphql_validation_error() {
    let fake = FakeStigg::start().await;
    let mut body = customer_body("org_1", "cus_1");
    body["operationName"] = json!("DeleteCustomer");
    let (status, reply) = post(&fake, &body).await;
    assert_eq!(status, 200);
    assert!(reply["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Unknown operation"));
    assert_eq!(
        reply["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );

    body.as_object_mut().unwrap().remove("operationName");
    let (status, reply) = post(&fake, &body).await;
    assert_eq!(status, 200);
    assert!(reply["errors"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Unknown operation"));
    assert_eq!(
        reply["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert!(fake.customer("org_1").is_none());
}

#[actix_web::test]
async fn malformed_requests_are_rejected_without_changing_state() {
    let fake = FakeStigg::start().await;
    let res = reqwest::Client::new()
        .post(format!("{}/graphql", fake.url()))
        .header("X-API-KEY", STIGG_API_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = read(res).await;
    assert_eq!(status, 400);
    assert!(body["errors"][0]["message"].is_string());

    // The operation name must match the query's mutation field.
    let mut body = customer_body("org_1", "cus_1");
    body["query"] = json!(SUBSCRIPTION_QUERY);
    let (status, reply) = post(&fake, &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        first_error(&reply)["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );

    let mut cases = Vec::new();
    for field in ["customerId", "billingId"] {
        let mut body = customer_body("org_1", "cus_1");
        body["variables"]["input"]
            .as_object_mut()
            .unwrap()
            .remove(field);
        cases.push(body);
    }
    let mut no_input = customer_body("org_1", "cus_1");
    no_input["variables"] = json!({});
    cases.push(no_input);
    let mut numeric = customer_body("org_1", "cus_1");
    numeric["variables"]["input"]["customerId"] = json!(42);
    cases.push(numeric);
    let mut no_plan = subscription_body("org_1", "plan-edgequota-free", "IMMEDIATE");
    no_plan["variables"]["input"]["planId"] = Value::Null;
    cases.push(no_plan);
    cases.push(subscription_body(
        "org_1",
        "plan-edgequota-free",
        "SOMETIME",
    ));
    fake.add_customer("org_1", "cus_1");
    for body in &cases {
        let (status, reply) = post(&fake, body).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            first_error(&reply)["extensions"]["code"],
            "BAD_USER_INPUT",
            "{body}"
        );
        assert_eq!(first_error(&reply)["extensions"]["isValidationError"], true);
    }
    assert!(fake.subscription_of("org_1").is_none());
}

#[actix_web::test]
async fn a_server_error_is_500_and_expires_after_times() {
    let fake = FakeStigg::start().await;
    fake.fail(StiggFailure::ServerError, Some(2));
    for _ in 0..2 {
        let res = send(&fake, Some(STIGG_API_KEY), &customer_body("org_1", "cus_1"))
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 500);
        assert!(!res.text().await.unwrap().is_empty());
        assert!(fake.customer("org_1").is_none());
    }
    let (status, body) = post(&fake, &customer_body("org_1", "cus_1")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["provisionCustomer"]["customer"]["customerId"],
        "org_1"
    );
}

#[actix_web::test]
async fn a_graphql_error_is_transient_and_leaves_state_alone() {
    let fake = FakeStigg::start().await;
    fake.fail(
        StiggFailure::GraphqlError("Stigg is having a bad day".into()),
        Some(1),
    );
    let (status, body) = post(&fake, &customer_body("org_1", "cus_1")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "data": null, "errors": [{ "message": "Stigg is having a bad day",
                "extensions": { "code": "INTERNAL_SERVER_ERROR" } }] })
    );
    assert!(fake.customer("org_1").is_none());
    let (_, body) = post(&fake, &customer_body("org_1", "cus_1")).await;
    assert!(body.get("errors").is_none(), "{body}");
}

#[actix_web::test]
async fn a_validation_error_is_permanent_in_shape() {
    let fake = FakeStigg::start().await;
    fake.add_customer("org_1", "cus_1");
    fake.fail(
        StiggFailure::ValidationError("Plan is archived".into()),
        Some(1),
    );
    let (status, body) = post(
        &fake,
        &subscription_body("org_1", "plan-edgequota-free", "IMMEDIATE"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "data": null, "errors": [{ "message": "Plan is archived",
                "extensions": { "code": "BAD_USER_INPUT", "isValidationError": true } }] })
    );
    assert!(fake.subscription_of("org_1").is_none());
}

#[actix_web::test]
async fn a_failure_without_times_lasts_until_cleared_and_precedes_auth() {
    let fake = FakeStigg::start().await;
    fake.fail(StiggFailure::ServerError, None);
    for _ in 0..3 {
        let res = send(&fake, None, &customer_body("org_1", "cus_1"))
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 500);
    }
    fake.clear_failures();
    let res = send(&fake, None, &customer_body("org_1", "cus_1"))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let (status, _) = post(&fake, &customer_body("org_1", "cus_1")).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn a_slow_answer_outlasts_a_client_timeout_and_still_applies() {
    let fake = FakeStigg::start().await;
    fake.fail(StiggFailure::Slow(Duration::from_millis(600)), Some(1));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = client
        .post(format!("{}/graphql", fake.url()))
        .header("X-API-KEY", STIGG_API_KEY)
        .json(&customer_body("org_1", "cus_1"))
        .send()
        .await
        .expect_err("the client gives up first");
    assert!(err.is_timeout(), "{err}");
    assert!(fake.customer("org_1").is_none());

    // The rule was used up, and the abandoned request still takes effect.
    let start = std::time::Instant::now();
    let (status, _) = post(&fake, &customer_body("org_2", "cus_2")).await;
    assert_eq!(status, 200);
    assert!(start.elapsed() < Duration::from_millis(400));
    crate::helpers::eventually(
        "the slow request to apply",
        Duration::from_secs(5),
        || async { fake.customer("org_1").map(drop) },
    )
    .await;
}

#[actix_web::test]
async fn a_slow_answer_is_a_normal_answer_for_a_patient_client() {
    let fake = FakeStigg::start().await;
    fake.fail(StiggFailure::Slow(Duration::from_millis(200)), Some(1));
    let start = std::time::Instant::now();
    let (status, body) = post(&fake, &customer_body("org_1", "cus_1")).await;
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["provisionCustomer"]["customer"]["billingId"],
        "cus_1"
    );
}

#[actix_web::test]
async fn every_call_is_recorded_with_variables_and_headers() {
    let fake = FakeStigg::start().await;
    let res = reqwest::Client::new()
        .post(format!("{}/graphql", fake.url()))
        .header("X-API-KEY", STIGG_API_KEY)
        .header("X-Correlation-Id", "corr-42")
        .json(&customer_body("org_1", "cus_1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    fake.fail(StiggFailure::ServerError, Some(1));
    post(
        &fake,
        &subscription_body("org_1", "plan-edgequota-free", "IMMEDIATE"),
    )
    .await;
    send(
        &fake,
        None,
        &subscription_body("org_1", "plan-edgequota-free", "IMMEDIATE"),
    )
    .await
    .unwrap();

    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    let first = &calls[0];
    assert_eq!(first.operation.as_deref(), Some("ProvisionCustomer"));
    assert_eq!(first.input("customerId"), Some("org_1"));
    assert_eq!(first.input("email"), Some("ops@acme.test"));
    assert_eq!(first.input("missing"), None);
    assert_eq!(first.variables["input"]["billingId"], "cus_1");
    assert_eq!(first.header("x-correlation-id"), Some("corr-42"));
    assert_eq!(first.header("X-API-KEY"), Some(STIGG_API_KEY));
    assert!(first.headers.contains_key("x-correlation-id"));

    let subs = fake.calls_of("ProvisionSubscription");
    assert_eq!(
        subs.len(),
        2,
        "failed and unauthorised calls are recorded too"
    );
    assert_eq!(subs[0].input("planId"), Some("plan-edgequota-free"));
    assert_eq!(subs[1].header("x-api-key"), None);
    assert_eq!(fake.calls_of("ProvisionCustomer").len(), 1);
    assert!(fake.calls_of("Nope").is_empty());
}

/// Some service tests run on a plain multi-thread tokio runtime without an actix System.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_under_a_plain_tokio_runtime() {
    let fake = FakeStigg::start().await;
    fake.fail(StiggFailure::Slow(Duration::from_millis(50)), Some(1));
    let (status, body) = post(&fake, &customer_body("org_1", "cus_1")).await;
    assert_eq!(status, 200);
    assert!(body["data"]["provisionCustomer"]["customer"]["id"].is_string());
    assert!(fake.customer("org_1").is_some());
}

#[tokio::test]
async fn documents_and_inputs_are_checked_against_stiggs_schema() {
    let fake = FakeStigg::start().await;
    let mut unknown_input = customer_body("org_s", "cus_s");
    unknown_input["variables"]["input"]["planCode"] = json!("x");
    let mut bad_enum = subscription_body("org_s", "plan-edgequota-pro", "IMMEDIATE");
    bad_enum["variables"]["input"]["billingPeriod"] = json!("WEEKLY");
    let mut bad_type = customer_body("org_s", "cus_s");
    bad_type["variables"]["input"]["shouldSyncFree"] = json!("yes");
    let mut unknown_field = customer_body("org_s", "cus_s");
    unknown_field["query"] = json!(CUSTOMER_QUERY.replace("billingId }", "billingId plan }"));
    let mut scalar_selected = subscription_body("org_s", "plan-edgequota-pro", "IMMEDIATE");
    scalar_selected["query"] =
        json!(SUBSCRIPTION_QUERY.replace("status subscription", "status { x } subscription"));
    let mut wrong_type = customer_body("org_s", "cus_s");
    wrong_type["query"] =
        json!(CUSTOMER_QUERY.replace("ProvisionCustomerInput", "ProvisionSubscriptionInput"));
    let cases = [
        (unknown_input, "BAD_USER_INPUT"),
        (bad_enum, "BAD_USER_INPUT"),
        (bad_type, "BAD_USER_INPUT"),
        (unknown_field, "GRAPHQL_VALIDATION_FAILED"),
        (scalar_selected, "GRAPHQL_VALIDATION_FAILED"),
        (wrong_type, "GRAPHQL_VALIDATION_FAILED"),
    ];
    for (body, code) in cases {
        let (status, reply) = post(&fake, &body).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(
            reply["errors"][0]["extensions"]["code"], code,
            "{body}: {reply}"
        );
        assert!(reply.get("data").is_none_or(Value::is_null), "{reply}");
    }
    assert!(fake.customer("org_s").is_none(), "nothing was provisioned");
    // The service's own documents pass.
    let (_, reply) = post(&fake, &customer_body("org_s", "cus_s")).await;
    assert!(reply["errors"].is_null(), "{reply}");
}
