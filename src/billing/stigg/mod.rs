//! Stigg: the GraphQL client (`client`), provisioning requests and re-provisioning on
//! plan changes (`provisioning`), and the outbox's attempts and drain (`outbox`).

pub mod client;
pub mod outbox;
pub mod provisioning;

pub use client::{StiggClient, StiggFailure};
pub use provisioning::{ProvisionError, ProvisionRequest, Provisioning};
