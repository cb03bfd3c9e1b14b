//! Billing: the Stripe client (`stripe/`, the only code that speaks Stripe), the
//! operations of the subscription lifecycle — one module per story area (`customers`,
//! `subscriptions`, `plan_change`, `invoices`) over the shared `BillingService` — the
//! convergence of an org's mirror with Stripe (`converge`), the webhook intake and
//! processing (`webhooks/`), and Stigg provisioning through a durable outbox (`stigg/`).
//! A generic queue supervisor drains both queues; the mirror itself lives in
//! `domain::billing`, owned by the org's actor.

pub mod converge;
pub mod customers;
pub mod error;
pub mod invoices;
pub mod locks;
pub mod org_lock;
pub mod plan_change;
pub mod plans;
pub mod queue_supervisor;
pub mod service;
pub mod stigg;
pub mod stripe;
pub mod subscriptions;
pub mod webhooks;

pub use error::BillingError;
pub use service::BillingService;
pub use stigg::Provisioning;
pub use webhooks::Webhooks;
