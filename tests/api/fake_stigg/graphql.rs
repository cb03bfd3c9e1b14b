//! The request pipeline (record, inject failures, route, authenticate, parse,
//! validate, execute) and the two mutations, with Stigg-shaped replies.

use super::schema::{self, Input};
use super::{lock, Shared, StiggCall, StiggFailure, Store, STIGG_API_KEY};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The status and JSON body of one answer.
struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body }
    }

    /// A request-level GraphQL error: the operation never ran, so there is no `data`.
    fn request_error(message: impl Into<String>, code: &str) -> Reply {
        let mut error = json!({ "message": message.into(), "extensions": { "code": code } });
        if code == "BAD_USER_INPUT" {
            error["extensions"]["isValidationError"] = json!(true);
        }
        Reply::ok(json!({ "errors": [error] }))
    }
}

/// Runs a validated `input` against the store: `data` on success, else one error.
type Run = fn(&mut Store, &Map<String, Value>) -> Result<Value, Value>;

/// One operation the fake serves: its GraphQL field, its input and result types (see
/// `schema`), the `input` fields that must be non-empty strings (what Stigg needs in
/// practice), and its resolver.
struct Operation {
    field: &'static str,
    input_type: &'static str,
    input: &'static [(&'static str, Input)],
    result_type: &'static str,
    required: &'static [&'static str],
    run: Run,
}

const PROVISION_CUSTOMER: Operation = Operation {
    field: "provisionCustomer",
    input_type: "ProvisionCustomerInput",
    input: schema::PROVISION_CUSTOMER_INPUT,
    result_type: "ProvisionedCustomer",
    required: &["customerId", "billingId"],
    run: provision_customer,
};

const PROVISION_SUBSCRIPTION: Operation = Operation {
    field: "provisionSubscription",
    input_type: "ProvisionSubscriptionInput",
    input: schema::PROVISION_SUBSCRIPTION_INPUT,
    result_type: "ProvisionSubscriptionResult",
    required: &["customerId", "planId"],
    run: provision_subscription,
};

pub(super) async fn serve(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let call = record(&req, parsed.as_ref());
    lock(&shared.calls).push(call.clone());
    let routed = req.method() == actix_web::http::Method::POST && req.path() == "/graphql";
    let shared = shared.into_inner();
    match shared.take_failure() {
        Some(StiggFailure::ServerError) => {
            return HttpResponse::InternalServerError()
                .content_type("text/plain")
                .body("Internal Server Error (injected by the test)");
        }
        Some(StiggFailure::GraphqlError(message)) => {
            let error =
                json!({ "message": message, "extensions": { "code": "INTERNAL_SERVER_ERROR" } });
            return respond(Reply::ok(json!({ "data": null, "errors": [error] })));
        }
        Some(StiggFailure::ValidationError(message)) => {
            let extensions = json!({ "code": "BAD_USER_INPUT", "isValidationError": true });
            let error = json!({ "message": message, "extensions": extensions });
            return respond(Reply::ok(json!({ "data": null, "errors": [error] })));
        }
        Some(StiggFailure::Slow(delay)) => {
            // A spawned task runs to the end even if actix drops this handler when
            // the client hangs up, so a timed-out request still takes effect.
            let task = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                handle(&shared, &call, routed, parsed)
            });
            let reply = task.await.unwrap_or_else(|e| {
                Reply::request_error(format!("fake stigg task: {e}"), "INTERNAL_SERVER_ERROR")
            });
            return respond(reply);
        }
        None => {}
    }
    respond(handle(&shared, &call, routed, parsed))
}

fn record(req: &HttpRequest, body: Option<&Value>) -> StiggCall {
    let field = |name: &str| body.and_then(|b| b.get(name));
    StiggCall {
        operation: field("operationName")
            .and_then(Value::as_str)
            .map(str::to_string),
        variables: field("variables").cloned().unwrap_or(Value::Null),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_ascii_lowercase(), v)
            })
            .collect(),
    }
}

fn handle(shared: &Arc<Shared>, call: &StiggCall, routed: bool, body: Option<Value>) -> Reply {
    if !routed {
        let error = json!({ "message": "Not found: the fake serves only POST /graphql" });
        return Reply {
            status: 404,
            body: json!({ "errors": [error] }),
        };
    }
    if call.header("x-api-key") != Some(STIGG_API_KEY) {
        let error =
            json!({ "message": "Unauthorized", "extensions": { "code": "UNAUTHENTICATED" } });
        return Reply {
            status: 401,
            body: json!({ "errors": [error] }),
        };
    }
    let Some(Value::Object(body)) = body else {
        let error = json!({ "message": "POST body must be a JSON object with a GraphQL query" });
        return Reply {
            status: 400,
            body: json!({ "errors": [error] }),
        };
    };
    let op = match call.operation.as_deref() {
        Some("ProvisionCustomer") => &PROVISION_CUSTOMER,
        Some("ProvisionSubscription") => &PROVISION_SUBSCRIPTION,
        Some(other) => {
            let message = format!("Unknown operation named \"{other}\".");
            return Reply::request_error(message, "GRAPHQL_VALIDATION_FAILED");
        }
        None => {
            let message = "Unknown operation: operationName is missing.";
            return Reply::request_error(message, "GRAPHQL_VALIDATION_FAILED");
        }
    };
    let query = body.get("query").and_then(Value::as_str).unwrap_or("");
    if let Err(message) = check_document(op, call.operation.as_deref(), query) {
        return Reply::request_error(message, "GRAPHQL_VALIDATION_FAILED");
    }
    let input = match validate_input(op, &call.variables) {
        Ok(input) => input,
        Err(message) => return Reply::request_error(message, "BAD_USER_INPUT"),
    };
    let mut store = lock(&shared.store);
    match (op.run)(&mut store, input) {
        Ok(data) => Reply::ok(json!({ "data": data })),
        Err(error) => Reply::ok(json!({ "data": null, "errors": [error] })),
    }
}

/// Checks the document against the schema: the operation named as `operationName`, the
/// variable declared with the input type, the root field, and every selected field.
fn check_document(op: &Operation, name: Option<&str>, query: &str) -> Result<(), String> {
    let parsed = schema::parse(query)?;
    if Some(parsed.name.as_str()) != name {
        return Err(format!(
            "Unknown operation named \"{}\".",
            name.unwrap_or("")
        ));
    }
    if parsed.field != op.field {
        return Err(format!("The query does not select `{}(...)`.", op.field));
    }
    if parsed.variable_type != op.input_type {
        return Err(format!(
            "Variable \"$input\" of type \"{}!\" used in position expecting type \"{}!\".",
            parsed.variable_type, op.input_type
        ));
    }
    schema::check_selection(op.result_type, &parsed.selection)
}

/// Checks `variables.input` the way GraphQL coerces `$input`: an unknown, missing or
/// mistyped field rejects the whole request before it runs.
fn validate_input<'a>(
    op: &Operation,
    variables: &'a Value,
) -> Result<&'a Map<String, Value>, String> {
    let invalid = |why: String| format!("Variable \"$input\" got invalid value; {why}");
    let Some(input) = variables.get("input").and_then(Value::as_object) else {
        return Err(invalid("an input object is required.".into()));
    };
    for field in op.required {
        match input.get(*field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) => return Err(invalid(format!("field \"{field}\" is empty."))),
            Some(Value::Null) | None => {
                let why =
                    format!("field \"{field}\" of required type \"String!\" was not provided.");
                return Err(invalid(why));
            }
            Some(_) => return Err(invalid(format!("field \"{field}\" must be a string."))),
        }
    }
    for (field, value) in input {
        let Some((_, kind)) = op.input.iter().find(|(n, _)| n == field) else {
            return Err(invalid(format!(
                "field \"{field}\" is not defined by type \"{}\".",
                op.input_type
            )));
        };
        let fits = match (kind, value) {
            (_, Value::Null) => true,
            (Input::Str, Value::String(_)) => true,
            (Input::Bool, Value::Bool(_)) => true,
            (Input::Float, Value::Number(_)) => true,
            (Input::Enum(allowed), Value::String(v)) => allowed.contains(&v.as_str()),
            (Input::Object, v) => v.is_object() || v.is_array(),
            _ => false,
        };
        if !fits {
            return Err(invalid(format!(
                "field \"{field}\" has an invalid value {value}."
            )));
        }
    }
    Ok(input)
}

/// An error from inside an operation: `data` is null and the error names the field.
fn operation_error(field: &str, message: &str, code: &str) -> Value {
    json!({
        "message": message,
        "path": [field],
        "extensions": { "code": code, "isValidationError": true },
    })
}

fn string(input: &Map<String, Value>, field: &str) -> String {
    input
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn provision_customer(store: &mut Store, input: &Map<String, Value>) -> Result<Value, Value> {
    let customer_id = string(input, "customerId");
    if store.customers.contains_key(&customer_id) {
        let message = "Duplicated entity not allowed";
        return Err(operation_error(
            PROVISION_CUSTOMER.field,
            message,
            "DuplicatedEntityNotAllowed",
        ));
    }
    let optional = |f: &str| input.get(f).cloned().unwrap_or(Value::Null);
    let billing_id = string(input, "billingId");
    let customer = store.insert_customer(
        &customer_id,
        optional("name"),
        optional("email"),
        &billing_id,
    );
    Ok(json!({
        "provisionCustomer": {
            "customer": {
                "id": customer["id"],
                "customerId": customer_id,
                "billingId": billing_id,
            }
        }
    }))
}

/// Each provisioning replaces the customer's current subscription, whatever the
/// `scheduleStrategy`; the strategy is stored so tests can check what was asked.
fn provision_subscription(store: &mut Store, input: &Map<String, Value>) -> Result<Value, Value> {
    let field = PROVISION_SUBSCRIPTION.field;
    let customer_id = string(input, "customerId");
    if !store.customers.contains_key(&customer_id) {
        return Err(operation_error(
            field,
            "Customer not found",
            "CustomerNotFound",
        ));
    }
    let plan_id = string(input, "planId");
    if !store.plans.contains(&plan_id) {
        return Err(operation_error(field, "Plan not found", "PlanNotFound"));
    }
    let sub_id = format!(
        "subscription-{plan_id}-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let optional = |f: &str| input.get(f).cloned().unwrap_or(Value::Null);
    let subscription = json!({
        "id": sub_id,
        "planId": plan_id,
        "billingId": optional("billingId"),
        "scheduleStrategy": optional("scheduleStrategy"),
    });
    store.subscriptions.insert(customer_id, subscription);
    Ok(json!({
        "provisionSubscription": {
            "id": ulid::Ulid::new().to_string(),
            "status": "SUCCESS",
            "subscription": { "id": sub_id, "status": "ACTIVE" },
        }
    }))
}

fn respond(reply: Reply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type("application/json")
        .body(reply.body.to_string())
}
