//! Billing: the Stripe client wrapper, the subscription lifecycle built on it, and the
//! webhook intake, processing and supervisor that keep the local mirror converged with
//! Stripe (the mirror itself lives in `domain::billing`, owned by the org's actor).

pub mod events;
pub mod lifecycle;
pub mod signature;
pub mod stripe;
pub mod webhook_supervisor;
pub mod webhooks;

pub use lifecycle::{BillingError, BillingService};
pub use webhooks::Webhooks;
