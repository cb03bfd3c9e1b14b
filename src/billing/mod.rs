//! Billing: the Stripe client wrapper and the subscription lifecycle built on it (the
//! org's billing mirror lives in `domain::billing`, owned by the org's actor).

pub mod lifecycle;
pub mod stripe;

pub use lifecycle::{BillingError, BillingService};
