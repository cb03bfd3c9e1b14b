//! The fake Stigg's provisioning operations: customers, subscriptions, auth, unknown
//! operations and malformed requests.

use super::*;

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
    let mut unknown = customer_body("org_1", "cus_1");
    unknown["operationName"] = json!("DeleteCustomer");
    let mut missing = customer_body("org_1", "cus_1");
    missing.as_object_mut().unwrap().remove("operationName");
    for body in [unknown, missing] {
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
    }
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
