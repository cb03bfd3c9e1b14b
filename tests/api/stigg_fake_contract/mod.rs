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

mod failures_and_recording;
mod provisioning;
