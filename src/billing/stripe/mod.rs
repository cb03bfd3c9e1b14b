//! The only code that speaks Stripe: async-stripe's typed requests, sent with a per-
//! attempt timeout, an `Idempotency-Key` on every create/update (the same key on every
//! retry, so a retry never does the work twice), and bounded retries with jittered
//! exponential backoff for what Stripe documents as transient (429, 409 lock conflicts,
//! 5xx, timeouts, network errors). Answers are reduced to the few fields the service
//! keeps (`types.rs`), so nothing past this module depends on async-stripe's types.
//! `failure.rs` classifies what went wrong; the calls are grouped by resource family
//! (`customers`, `subscriptions`, `schedules`, `invoices`).
//!
//! The retry loop is ours rather than async-stripe's `RequestStrategy::ExponentialBackoff`
//! because that one sleeps whole seconds and (without its uuid feature) sends no
//! idempotency key on retries.

mod customers;
mod failure;
mod invoices;
mod schedules;
mod subscriptions;
mod types;

use crate::config::StripeSettings;
use crate::metrics::Metrics;
use failure::classify;
use rand::Rng;
use std::time::{Duration, Instant};
use stripe::{IdempotencyKey, RequestStrategy, StripeRequest};

pub use failure::{Outcome, StripeFailure};
pub use types::*;

pub const OPERATIONS: &[&str] = &[
    "billing_portal.sessions.create",
    "customers.create",
    "customers.update",
    "events.retrieve",
    "invoices.create_preview",
    "invoices.list",
    "payment_methods.attach",
    "prices.list",
    "setup_intents.create",
    "subscription_schedules.create",
    "subscription_schedules.release",
    "subscription_schedules.update",
    "subscriptions.create",
    "subscriptions.list",
    "subscriptions.retrieve",
    "subscriptions.update",
];

/// The Stripe client: every call goes through `send` (timeouts, retries with the same
/// idempotency key, classification of failures, metrics).
pub struct StripeApi {
    client: stripe::Client,
    timeout: Duration,
    max_retries: u32,
    backoff: Duration,
    metrics: Metrics,
}

impl StripeApi {
    /// `None` when no API key is configured (billing endpoints then answer 503).
    pub fn from_settings(
        settings: &StripeSettings,
        metrics: Metrics,
    ) -> Result<Option<Self>, String> {
        if settings.api_key.is_empty() {
            return Ok(None);
        }
        // async-stripe joins "{base}v1{path}", so the base must end with a slash.
        let mut base = settings.base_url.trim().to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let client = stripe::ClientBuilder::new(settings.api_key.expose())
            .url(base)
            .app_info("edgequota", Some(env!("CARGO_PKG_VERSION").into()), None)
            .build()
            .map_err(|e| format!("stripe client: {e}"))?;
        Ok(Some(Self {
            client,
            timeout: Duration::from_millis(settings.timeout_ms),
            max_retries: settings.max_retries,
            backoff: Duration::from_millis(settings.retry_backoff_ms),
            metrics,
        }))
    }

    fn delay(&self, retry: u32) -> Duration {
        let base = self.backoff.saturating_mul(1u32 << retry.min(16));
        let jitter_ms = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 2);
        base + Duration::from_millis(jitter_ms)
    }

    /// Sends `req` (with `key` as its `Idempotency-Key`), retrying transient failures.
    async fn send<R>(
        &self,
        op: &'static str,
        req: &R,
        key: Option<&str>,
    ) -> Result<R::Output, StripeFailure>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        let strategy = match key {
            Some(k) => RequestStrategy::Idempotent(
                IdempotencyKey::new(k)
                    .map_err(|e| StripeFailure::Broken(format!("invalid idempotency key: {e}")))?,
            ),
            None => RequestStrategy::Once,
        };
        let started = Instant::now();
        let mut retries = 0;
        let outcome = loop {
            let sent = req
                .customize()
                .request_strategy(strategy.clone())
                .timeout(self.timeout)
                .send(&self.client)
                .await;
            match sent {
                Ok(v) => break Ok(v),
                Err(e) => {
                    let attempt = classify(e, key.is_some());
                    if attempt.retry && retries < self.max_retries {
                        tracing::warn!(operation = op, retry = retries + 1, error = %attempt.failure, "Stripe call failed; retrying");
                        self.metrics
                            .stripe_requests
                            .with_label_values(&[op, "retried"])
                            .inc();
                        tokio::time::sleep(self.delay(retries)).await;
                        retries += 1;
                        continue;
                    }
                    break Err(attempt.failure);
                }
            }
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(StripeFailure::Rejected { .. }) => "rejected",
            Err(StripeFailure::Unavailable { .. } | StripeFailure::Broken(_)) => "failed",
        };
        self.metrics
            .stripe_requests
            .with_label_values(&[op, label])
            .inc();
        self.metrics
            .stripe_duration
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &outcome {
            tracing::warn!(operation = op, attempts = retries + 1, error = %e, "Stripe call failed");
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_sent_is_in_the_label_set() {
        let full = concat!(
            include_str!("customers.rs"),
            include_str!("subscriptions.rs"),
            include_str!("schedules.rs"),
            include_str!("invoices.rs")
        );
        let source = &full[..full.find("#[cfg(test)]").unwrap_or(full.len())];
        let mut sent = std::collections::BTreeSet::new();
        for (i, _) in source.match_indices(".send(") {
            let rest = source[i + 6..].trim_start();
            if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                sent.insert(name);
            }
        }
        assert!(sent.len() >= 10, "{sent:?}");
        for name in &sent {
            assert!(
                super::OPERATIONS.contains(name),
                "{name} is not in OPERATIONS"
            );
        }
        assert_eq!(
            sent.len(),
            super::OPERATIONS.len(),
            "unused operation names"
        );
    }
}
