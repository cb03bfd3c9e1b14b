//! The integration tests: one binary, one module per area. In-process tests use
//! `spawn_app()`; the reliability tests run the real binary as a child process.

mod helpers;

mod auth;
mod authorize;
mod bad_input;
mod billing;
mod binary;
mod consume;
mod contract;
mod fake_stigg;
mod fake_stripe;
mod gateways;
mod grpc;
mod hardening;
mod observability;
mod operator_kit;
mod orgs;
mod quota;
mod redis;
mod rollover;
mod stigg;
mod stigg_fake_contract;
mod stripe_fake_contract;
mod usage;
mod usage_batch;
mod webhooks;
