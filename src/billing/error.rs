//! Why a billing operation failed, in the terms the HTTP layer maps to statuses: the
//! caller's input, the state of the subscription in Stripe, Stripe being unavailable
//! (keeping its cause, and whether anything may have changed), or the engine.

use super::stripe::StripeFailure;
use crate::domain::OrgId;
use crate::quota::EngineError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BillingError {
    #[error("Stripe is not configured: set stripe.api_key (EDGEQUOTA__STRIPE__API_KEY)")]
    NotConfigured,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Conflict(String),
    /// A request field the service refuses before calling Stripe.
    #[error("{field} {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    /// Stripe refused a value the caller supplied (e.g. the payment method): 400 with
    /// Stripe's message.
    #[error("{message}")]
    Rejected {
        field: &'static str,
        message: String,
    },
    /// Stripe refused the change given the subscription's state in Stripe.
    #[error("Stripe refused: {0}")]
    StripeState(String),
    /// Stripe unreachable or failing (the failure says whether anything changed).
    #[error(transparent)]
    Upstream(StripeFailure),
}

impl BillingError {
    /// How the background queues should treat this failure: an outage of Stripe (or a
    /// missing key) is waited out; anything else counts as a failed attempt.
    pub fn failure_kind(&self) -> crate::store::jobs::FailureKind {
        use crate::store::jobs::FailureKind;
        match self {
            BillingError::NotConfigured => FailureKind::Outage,
            BillingError::Upstream(f) if f.is_outage() => FailureKind::Outage,
            _ => FailureKind::Transient,
        }
    }

    pub(super) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            problem: problem.into(),
        }
    }

    pub(super) fn no_customer() -> Self {
        Self::Conflict(
            "the org has no Stripe customer yet; call /api/stripe/customer.ensure first".into(),
        )
    }

    pub(super) fn no_subscription() -> Self {
        Self::Conflict(
            "the org has no live subscription; call /api/stripe/subscription.create first".into(),
        )
    }
}

/// Stripe's refusal of a call made with the service's own ids is a state conflict.
pub(super) fn state(e: StripeFailure) -> BillingError {
    match e {
        StripeFailure::Rejected { message, .. } => BillingError::StripeState(message),
        other => BillingError::Upstream(other),
    }
}

/// Stripe's refusal of a call carrying a caller's value (`field`) is the caller's error.
pub(super) fn caller(field: &'static str) -> impl Fn(StripeFailure) -> BillingError {
    move |e| match e {
        StripeFailure::Rejected { message, .. } => BillingError::Rejected { field, message },
        other => BillingError::Upstream(other),
    }
}

/// A key for one logical Stripe write that is not naturally once-only: fresh per call,
/// reused across that call's retries.
pub(super) fn request_key(op: &str, org: &OrgId) -> String {
    format!("edgequota:{op}:{org}:{}", ulid::Ulid::new())
}
