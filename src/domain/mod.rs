//! Domain newtypes parsed once at the edge (ids, metrics, periods), the plan
//! catalogue, and the local billing mirror. Everything past the HTTP layer takes these types, never raw strings.

pub mod billing;
mod id_text;
pub mod ids;
pub mod inline_bytes;
pub mod metric;
pub mod period;
pub mod plans;
pub mod ratelimit;

pub use billing::{BillingRecord, PendingChange, SubscriptionRecord, SubscriptionStatus};
pub use ids::{KeyId, OrgId, RequestId};
pub use metric::Metric;
pub use period::PeriodKey;
pub use plans::{Catalogue, Plan, PlanCode};
pub use ratelimit::QuotaState;

/// Why a raw value was refused; becomes one `details` entry of a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub fn new(problem: impl Into<String>) -> Self {
        Self(problem.into())
    }
}
