//! The fake Stigg's injected failures (server errors, GraphQL and validation errors,
//! slow answers), its record of calls, and the schema checks of documents and inputs.

use super::*;

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
    // Long enough that the next request, if answered at once, is done well before.
    fake.fail(StiggFailure::Slow(Duration::from_secs(2)), Some(1));
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

    // The rule was used up: the next request is answered (and applied) while the
    // abandoned one still sleeps in the fake — had it been slowed too, the first would
    // have applied before it returned. Then the abandoned request still takes effect.
    let (status, body) = post(&fake, &customer_body("org_2", "cus_2")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["provisionCustomer"]["customer"]["customerId"],
        "org_2"
    );
    assert!(fake.customer("org_2").is_some());
    assert!(
        fake.customer("org_1").is_none(),
        "the second request was slowed too: the rule was not used up"
    );
    assert_eq!(fake.calls().len(), 2, "one call each");
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
