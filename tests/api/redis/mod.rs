//! The Redis backend against real Redis servers started by the tests: one server, and a
//! cluster of six (three masters, three replicas).

mod billing;
mod conformance;
mod drift;
mod failover;
mod nodes;
mod outage;
mod queue;
mod rollover;
pub mod servers;
mod webhooks;
