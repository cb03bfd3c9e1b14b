//! The error envelope, the one table of error codes → HTTP status, and the one place
//! every domain error (engine, store, billing, webhooks, Stigg) gets its code. A 500
//! logs the error's whole cause chain (`error.cause_chain`); the caller sees only the
//! correlation id to look it up by. 503 is reserved for what SPEC says: a part not
//! configured, or the service shutting down.
//!
//! Every non-2xx body is `{code, message, correlationId}`, plus `details` for validation
//! and the denial fields for quota denials. The correlation id comes from the request's
//! task-local context, so errors raised anywhere under the middleware carry it.

use super::ids;
use crate::billing::stigg::ProvisionError;
use crate::billing::stripe::Outcome;
use crate::billing::webhooks::{ProcessError, ReceiveError};
use crate::billing::BillingError;
use crate::quota::EngineError;
use crate::store::StoreError;
use actix_web::http::{header::HeaderName, header::HeaderValue, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    QuotaExceeded,
    Internal,
    Unavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "BAD_REQUEST",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::Conflict => "CONFLICT",
            Code::RequestTimeout => "REQUEST_TIMEOUT",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Code::QuotaExceeded => "QUOTA_EXCEEDED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::BadRequest => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Conflict => StatusCode::CONFLICT,
            Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// One field-level problem of a 400.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Detail {
    pub field: String,
    pub problem: String,
}

impl Detail {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub details: Vec<Detail>,
    /// Extra top-level body fields (the denial envelope's).
    pub extra: Map<String, Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn invalid(details: Vec<Detail>) -> Self {
        let fields: Vec<&str> = details.iter().map(|d| d.field.as_str()).collect();
        let mut e = Self::new(
            Code::BadRequest,
            format!("invalid request: {}", fields.join(", ")),
        );
        e.details = details;
        e
    }

    pub fn field(field: &str, problem: impl Into<String>) -> Self {
        Self::invalid(vec![Detail::new(field, problem)])
    }

    pub fn unauthorized() -> Self {
        Self::new(Code::Unauthorized, "missing or unknown credentials")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Code::Conflict, message)
    }

    /// A failure on our side: the cause (with its whole chain) goes to the log, not to
    /// the caller.
    pub fn internal<E: std::error::Error + ?Sized>(cause: &E) -> Self {
        tracing::error!(error.cause_chain = %crate::errors::chain(cause), correlation_id = %ids::correlation_id(), "internal error");
        Self::new(
            Code::Internal,
            "internal error; see the service log for this correlation id",
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        for (k, v) in &self.headers {
            res.insert_header((k.clone(), v.clone()));
        }
        res.json(self.body())
    }
}

impl ApiError {
    /// The envelope this error answers with.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("code".into(), self.code.as_str().into());
        body.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.extra {
            body.insert(k.clone(), v.clone());
        }
        body.insert("correlationId".into(), ids::correlation_id().into());
        if !self.details.is_empty() {
            body.insert(
                "details".into(),
                serde_json::to_value(&self.details).unwrap_or_default(),
            );
        }
        Value::Object(body)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::OrgNotFound => ApiError::not_found("org not found"),
            EngineError::Conflict(m) => ApiError::conflict(m),
            EngineError::ShuttingDown => ApiError::new(Code::Unavailable, e.to_string()),
            EngineError::Store(s) if s.is_unreachable() => unreachable_store(&s),
            EngineError::Store(s @ StoreError::Fenced(_)) => ApiError::conflict(format!(
                "another node took over this org's billing meanwhile; retry ({s})"
            )),
            e @ (EngineError::Store(_)
            | EngineError::Retired
            | EngineError::Internal(_)
            | EngineError::Encode { .. }) => ApiError::internal(&e),
        }
    }
}

impl From<BillingError> for ApiError {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::NotConfigured => ApiError::new(Code::Unavailable, e.to_string()),
            BillingError::Engine(e) => e.into(),
            BillingError::Conflict(m) => ApiError::conflict(m),
            BillingError::Invalid { field, problem } => ApiError::field(field, problem),
            BillingError::Rejected { field, message } => {
                let mut err = ApiError::new(Code::BadRequest, message.clone());
                err.details = vec![Detail::new(field, message)];
                err
            }
            BillingError::StripeState(_) => ApiError::conflict(e.to_string()),
            BillingError::Upstream(failure) => {
                tracing::error!(error.cause_chain = %crate::errors::chain(&failure), correlation_id = %ids::correlation_id(), "Stripe call failed");
                // Say "nothing was changed" only when that is known.
                let note = match failure.outcome() {
                    Outcome::NotApplied => "nothing was changed",
                    Outcome::Unknown => "its outcome is unknown; retrying the same request is safe",
                };
                ApiError::new(Code::Internal, format!("{failure}; {note}"))
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unreachable() {
            unreachable_store(&e)
        } else {
            ApiError::internal(&e)
        }
    }
}

/// 503: the shared store did not answer in time; nothing acknowledged was lost, and the
/// same request (idempotent by its ids) can be retried.
fn unreachable_store(e: &StoreError) -> ApiError {
    tracing::warn!(error.cause_chain = %crate::errors::chain(e), correlation_id = %ids::correlation_id(), "store unreachable");
    ApiError::new(
        Code::Unavailable,
        "the store is unreachable; retry the request (it is safe to repeat)",
    )
}

impl From<ReceiveError> for ApiError {
    fn from(e: ReceiveError) -> Self {
        match e {
            ReceiveError::NotConfigured => ApiError::new(Code::Unavailable, e.to_string()),
            ReceiveError::Signature(_) | ReceiveError::Invalid(_) => {
                ApiError::new(Code::BadRequest, e.to_string())
            }
            ReceiveError::Store(e) => e.into(),
        }
    }
}

impl From<ProcessError> for ApiError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::NotFound(_) => ApiError::not_found(e.to_string()),
            ProcessError::Store(e) => e.into(),
            ProcessError::Failed(e) => e.into(),
        }
    }
}

impl From<ProvisionError> for ApiError {
    fn from(e: ProvisionError) -> Self {
        match e {
            ProvisionError::NotConfigured => ApiError::new(Code::Unavailable, e.to_string()),
            ProvisionError::Invalid { field, problem } => ApiError::field(field, problem),
            ProvisionError::NotFound(m) => ApiError::not_found(m),
            ProvisionError::Engine(e) => e.into(),
            ProvisionError::Store(e) => e.into(),
            ProvisionError::Pending(_) | ProvisionError::Refused(_) => {
                tracing::error!(error.cause_chain = %crate::errors::chain(&e), correlation_id = %ids::correlation_id(), "Stigg provisioning failed");
                ApiError::new(Code::Internal, e.to_string())
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
