//! The only code that speaks Stigg: a small GraphQL client over reqwest for the two
//! provisioning mutations. GraphQL reports failures inside a 200 (`errors`), so every
//! answer is classified: validation errors and other 4xx are permanent (retrying cannot
//! help); timeouts, connection errors, 5xx, 408, 429 and a refused key (401/403: a
//! rotated key) are an outage, waited out; other GraphQL errors are transient. A
//! "duplicate customer" error on provisionCustomer means the customer exists, which is
//! what was asked for.

use crate::config::StiggSettings;
use crate::metrics::Metrics;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The operation documents sent to Stigg (the test fake validates these very texts).
pub const PROVISION_CUSTOMER: &str = "mutation ProvisionCustomer($input: ProvisionCustomerInput!) { provisionCustomer(input: $input) { customer { id customerId billingId } } }";
pub const PROVISION_SUBSCRIPTION: &str = "mutation ProvisionSubscription($input: ProvisionSubscriptionInput!) { provisionSubscription(input: $input) { id status subscription { id status } } }";

/// GraphQL error codes Stigg uses for "already exists".
const DUPLICATE_CODES: [&str; 2] = ["DuplicatedEntityNotAllowed", "CustomerAlreadyExists"];

#[derive(Debug, Clone, thiserror::Error)]
pub enum StiggFailure {
    /// Stigg unreachable, slow, failing, rate-limiting us or refusing our key: wait it
    /// out.
    #[error("Stigg is unavailable: {reason}")]
    Outage {
        reason: String,
        #[source]
        cause: Option<Cause>,
    },
    /// Stigg answered with an error worth retrying a few times.
    #[error("Stigg failed: {reason}")]
    Transient {
        reason: String,
        #[source]
        cause: Option<Cause>,
    },
    /// Stigg refused the request itself (an answer, so no client error under it);
    /// retrying the same request cannot succeed.
    #[error("Stigg refused the request: {reason}")]
    Permanent { reason: String },
}

/// The client error under a failure, kept so the log line carries its cause chain (none
/// when the failure is an answer Stigg gave).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    Http(Arc<reqwest::Error>),
    #[error(transparent)]
    Body(Arc<serde_json::Error>),
}

impl StiggFailure {
    pub fn failure_kind(&self) -> crate::store::jobs::FailureKind {
        use crate::store::jobs::FailureKind;
        match self {
            StiggFailure::Outage { .. } => FailureKind::Outage,
            StiggFailure::Transient { .. } => FailureKind::Transient,
            StiggFailure::Permanent { .. } => FailureKind::Permanent,
        }
    }

    fn outage(reason: String, cause: Option<Cause>) -> Self {
        StiggFailure::Outage { reason, cause }
    }

    fn transient(reason: String, cause: Option<Cause>) -> Self {
        StiggFailure::Transient { reason, cause }
    }

    fn permanent(reason: String) -> Self {
        StiggFailure::Permanent { reason }
    }
}

pub struct StiggClient {
    http: reqwest::Client,
    endpoint: String,
    api_key: String,
    metrics: Metrics,
}

/// One GraphQL error, as far as classification needs it.
fn error_facts(e: &Value) -> (String, Option<String>, bool) {
    let message = e["message"]
        .as_str()
        .unwrap_or("unknown GraphQL error")
        .to_owned();
    let code = e["extensions"]["code"].as_str().map(str::to_owned);
    let validation = e["extensions"]["isValidationError"].as_bool() == Some(true)
        || matches!(
            code.as_deref(),
            Some("BAD_USER_INPUT" | "GRAPHQL_VALIDATION_FAILED" | "GRAPHQL_PARSE_FAILED")
        )
        || code.as_deref().is_some_and(|c| c.ends_with("NotFound"));
    (message, code, validation)
}

fn is_duplicate(errors: &[Value]) -> bool {
    errors.iter().any(|e| {
        let (message, code, _) = error_facts(e);
        code.as_deref()
            .is_some_and(|c| DUPLICATE_CODES.contains(&c))
            || message.to_ascii_lowercase().contains("already exists")
            || message.to_ascii_lowercase().contains("duplicate")
    })
}

impl StiggClient {
    /// `None` when no API key is configured (provisioning then answers 503).
    pub fn from_settings(
        settings: &StiggSettings,
        metrics: Metrics,
    ) -> Result<Option<Self>, String> {
        if settings.api_key.is_empty() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .user_agent(concat!("edgequota/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("stigg client: {e}"))?;
        Ok(Some(Self {
            http,
            endpoint: format!("{}/graphql", settings.base_url.trim_end_matches('/')),
            api_key: settings.api_key.expose().to_owned(),
            metrics,
        }))
    }

    /// Sends one operation; `Ok(Err(errors))` is a 200 carrying GraphQL errors.
    async fn send(
        &self,
        operation: &'static str,
        query: &str,
        input: Value,
        correlation_id: &str,
    ) -> Result<Result<Value, Vec<Value>>, StiggFailure> {
        let started = Instant::now();
        let res = self
            .http
            .post(&self.endpoint)
            .header("X-API-KEY", &self.api_key)
            .header("x-correlation-id", correlation_id)
            .json(&json!({
                "query": query,
                "operationName": operation,
                "variables": { "input": input },
            }))
            .send()
            .await;
        let result = async {
            let res = res.map_err(|e| {
                let reason = if e.is_timeout() {
                    "Stigg did not answer in time".to_owned()
                } else {
                    format!("could not reach Stigg: {e}")
                };
                StiggFailure::outage(reason, Some(Cause::Http(Arc::new(e))))
            })?;
            let status = res.status();
            let body = res.text().await.map_err(|e| {
                let reason = format!("reading Stigg's answer failed: {e}");
                StiggFailure::outage(reason, Some(Cause::Http(Arc::new(e))))
            })?;
            if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
                return Err(StiggFailure::outage(
                    format!("Stigg answered {status}"),
                    None,
                ));
            }
            if matches!(status.as_u16(), 401 | 403) {
                return Err(StiggFailure::outage(
                    format!("Stigg refused the configured API key ({status}); check stigg.api_key"),
                    None,
                ));
            }
            if !status.is_success() {
                return Err(StiggFailure::permanent(format!(
                    "Stigg answered {status}: {}",
                    body.chars().take(200).collect::<String>()
                )));
            }
            let v: Value = serde_json::from_str(&body).map_err(|e| {
                let reason = format!("unreadable answer from Stigg: {e}");
                StiggFailure::transient(reason, Some(Cause::Body(Arc::new(e))))
            })?;
            match v["errors"].as_array() {
                Some(errors) if !errors.is_empty() => Ok(Err(errors.clone())),
                _ => Ok(Ok(v["data"].clone())),
            }
        }
        .await;
        let outcome = match &result {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "graphql_error",
            Err(StiggFailure::Outage { .. } | StiggFailure::Transient { .. }) => "failed",
            Err(StiggFailure::Permanent { .. }) => "rejected",
        };
        self.metrics
            .stigg_requests
            .with_label_values(&[operation, outcome])
            .inc();
        self.metrics
            .stigg_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    fn failure(errors: &[Value]) -> StiggFailure {
        let messages: Vec<String> = errors.iter().map(|e| error_facts(e).0).collect();
        let text = messages.join("; ");
        let internal = |e: &Value| {
            matches!(
                error_facts(e).1.as_deref(),
                Some("INTERNAL_SERVER_ERROR" | "SERVICE_UNAVAILABLE")
            )
        };
        if errors.iter().any(|e| error_facts(e).2) {
            StiggFailure::permanent(text)
        } else if errors.iter().all(internal) {
            StiggFailure::outage(text, None)
        } else {
            StiggFailure::transient(text, None)
        }
    }

    /// Creates the Stigg customer `customer_id` (the org id); returns the Stigg id the
    /// service reports (`customerId`). An existing customer counts as success.
    pub async fn provision_customer(
        &self,
        customer_id: &str,
        name: &str,
        email: Option<&str>,
        billing_id: &str,
        correlation_id: &str,
    ) -> Result<String, StiggFailure> {
        let input = json!({
            "customerId": customer_id,
            "name": name,
            "email": email,
            "billingId": billing_id,
        });
        match self
            .send(
                "ProvisionCustomer",
                PROVISION_CUSTOMER,
                input,
                correlation_id,
            )
            .await?
        {
            Ok(data) => Ok(data["provisionCustomer"]["customer"]["customerId"]
                .as_str()
                .unwrap_or(customer_id)
                .to_owned()),
            Err(errors) if is_duplicate(&errors) => Ok(customer_id.to_owned()),
            Err(errors) => Err(Self::failure(&errors)),
        }
    }

    pub async fn provision_subscription(
        &self,
        customer_id: &str,
        plan_id: &str,
        billing_id: &str,
        schedule_strategy: &str,
        correlation_id: &str,
    ) -> Result<(), StiggFailure> {
        let input = json!({
            "customerId": customer_id,
            "planId": plan_id,
            "billingId": billing_id,
            "billingPeriod": "MONTHLY",
            "scheduleStrategy": schedule_strategy,
        });
        match self
            .send(
                "ProvisionSubscription",
                PROVISION_SUBSCRIPTION,
                input,
                correlation_id,
            )
            .await?
        {
            Ok(_) => Ok(()),
            Err(errors) => Err(Self::failure(&errors)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_errors_are_classified() {
        let dup = json!({"message": "Duplicated entity not allowed",
                         "extensions": {"code": "DuplicatedEntityNotAllowed", "isValidationError": true}});
        assert!(is_duplicate(&[dup]));
        let bad = json!({"message": "Plan not found", "extensions": {"code": "PlanNotFound"}});
        assert!(matches!(
            StiggClient::failure(&[bad]),
            StiggFailure::Permanent { .. }
        ));
        let internal = json!({"message": "boom", "extensions": {"code": "INTERNAL_SERVER_ERROR"}});
        assert!(matches!(
            StiggClient::failure(&[internal]),
            StiggFailure::Outage { .. }
        ));
        let odd = json!({"message": "odd", "extensions": {"code": "SOMETHING_ELSE"}});
        assert!(matches!(
            StiggClient::failure(&[odd]),
            StiggFailure::Transient { .. }
        ));
    }
}
