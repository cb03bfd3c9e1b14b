//! Billing: the Stripe client wrapper, the subscription lifecycle built on it, the
//! webhook intake and processing that keep the local mirror converged with Stripe, and
//! Stigg provisioning through a durable outbox; a generic queue supervisor drains both
//! queues (the mirror itself lives in `domain::billing`, owned by the org's actor).

pub mod events;
pub mod lifecycle;
pub mod locks;
pub mod queue_supervisor;
pub mod signature;
pub mod stigg;
pub mod stripe;
pub mod webhooks;

pub use lifecycle::{BillingError, BillingService};
pub use stigg::Provisioning;
pub use webhooks::Webhooks;
