//! Stripe webhooks (stories 2.3, 2.4, 8.1): the signed intake (`intake`), processing of
//! one event — convergence of the org's mirror with Stripe — with retries into dead
//! letters (`process`), and replay, listing and the queue's upkeep (`replay`). Events
//! are jobs of the store's webhook `JobQueue`; a `queue_supervisor` drains it.
//!
//! An event is acknowledged (202) only after it is stored durably, so an acknowledged
//! event survives a crash and is processed after restart. While Stripe is unreachable,
//! failed attempts back off (capped) without using up `max_attempts` for
//! `outage_budget_hours`: an outage parks nothing, and the queue drains soon after.

pub mod events;
mod intake;
mod process;
mod replay;
pub mod signature;

use super::queue_supervisor::Waker;
use super::{BillingError, BillingService};
use crate::clock::SharedClock;
use crate::config::{Secret, WebhookSettings};
use crate::metrics::Metrics;
use crate::store::jobs::RetryPolicy;
use crate::store::webhook_jobs::{WebhookJob, WebhookPayload};
use crate::store::{JobQueue, StoreError};
use signature::SignatureError;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("no webhook signing secret is configured: set stripe.webhook_secrets (EDGEQUOTA__STRIPE__WEBHOOK_SECRETS)")]
    NotConfigured,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the body is not a Stripe event: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no stored event {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Processing failed; the event stays queued (or is dead) with this error recorded.
    #[error(transparent)]
    Failed(BillingError),
}

/// Where processing left an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// The org's mirror matches Stripe (now or already).
    Converged,
    /// Nothing to converge: an untracked type, or no org of ours.
    Ignored,
}

pub struct Accepted {
    pub event_id: String,
    pub duplicate: bool,
}

pub struct Replayed {
    pub enqueued: usize,
    pub missing: Vec<String>,
}

enum Outcome {
    Done(Processed, Option<String>),
    Failed(BillingError),
}

/// How long a claimed event is not handed to another poller (time to converge one).
const LEASE_MS: i64 = 120_000;

pub struct Webhooks {
    queue: Arc<dyn JobQueue<WebhookPayload>>,
    billing: Arc<BillingService>,
    clock: SharedClock,
    metrics: Metrics,
    secrets: Vec<Secret>,
    settings: WebhookSettings,
    policy: RetryPolicy,
    /// Wakes the supervisor when an event is queued.
    waker: Waker,
    /// When finished events were last purged (at most hourly).
    last_purge: std::sync::Mutex<Option<Instant>>,
}

impl Webhooks {
    pub fn new(
        queue: Arc<dyn JobQueue<WebhookPayload>>,
        billing: Arc<BillingService>,
        clock: SharedClock,
        metrics: Metrics,
        secrets: Vec<Secret>,
        settings: WebhookSettings,
    ) -> Self {
        let policy = RetryPolicy {
            max_attempts: settings.max_attempts,
            base: Duration::from_millis(settings.retry_base_ms),
            max: Duration::from_millis(settings.retry_max_ms),
            outage_budget: Duration::from_secs(settings.outage_budget_hours * 3600),
            outage_retry_max: Duration::from_millis(settings.outage_retry_max_ms),
        };
        Self {
            queue,
            billing,
            clock,
            metrics,
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
            settings,
            policy,
            waker: Waker::default(),
            last_purge: std::sync::Mutex::new(None),
        }
    }

    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    fn count(&self, family: &str, outcome: &str) {
        self.metrics
            .webhook_events
            .with_label_values(&[family, outcome])
            .inc();
    }

    pub async fn get(&self, id: &str) -> Result<Option<WebhookJob>, StoreError> {
        self.queue.get(id).await
    }

    async fn replace(&self, old: &WebhookJob, new: &WebhookJob) -> Result<(), StoreError> {
        if !self.queue.replace(old.clone(), new.clone()).await? {
            // Another processor recorded an outcome first; its record stands.
            tracing::debug!(event = %old.id, "event changed while processing; keeping the other outcome");
        }
        Ok(())
    }
}
