//! Stripe webhooks (stories 2.3, 2.4, 8.1): durable signed intake, processing of one
//! event (convergence of the org's mirror with Stripe), retries into dead letters,
//! replay, and the admin listing. The events are jobs of a [`JobTree`]; a
//! `queue_supervisor` drains it.
//!
//! An event is acknowledged (202) only after it is stored and the store flushed, so an
//! acknowledged event survives a crash and is processed after restart. While Stripe is
//! unreachable, failed attempts back off (capped) without using up `max_attempts` for
//! `outage_budget_hours`: an outage parks nothing, and the queue drains soon after.

use super::events::{self, EventRef};
use super::lifecycle::{BillingError, BillingService, Converged};
use super::queue_supervisor::{Drain, Waker};
use super::signature::{self, SignatureError};
use crate::clock::SharedClock;
use crate::config::{Secret, WebhookSettings};
use crate::errors::chain;
use crate::metrics::Metrics;
use crate::store::jobs::{FailureKind, Inserted, Job, JobState, RetryPolicy};
use crate::store::webhook_jobs::{WebhookJob, WebhookPayload, WebhookQueue};
use crate::store::{self, Store, StoreError};
use futures_util::future::{BoxFuture, FutureExt};
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

pub struct Webhooks {
    store: Store,
    queue: Arc<WebhookQueue>,
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

enum Outcome {
    Done(Processed, Option<String>),
    Failed(BillingError),
}

impl Webhooks {
    pub fn new(
        store: Store,
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
            queue: store.webhook_queue.clone(),
            store,
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

    /// The first half of intake, before the body is read: the service must have a
    /// secret, and the signature header must be well-formed and fresh.
    pub fn precheck(&self, header: Option<&str>) -> Result<signature::Header, ReceiveError> {
        if self.secrets.is_empty() {
            return Err(ReceiveError::NotConfigured);
        }
        let checked = signature::parse(header).and_then(|h| {
            h.check_time(self.clock.now().timestamp(), self.settings.tolerance_secs)?;
            Ok(h)
        });
        checked.map_err(|e| {
            self.count("unknown", "rejected");
            e.into()
        })
    }

    /// Story 2.3: verify the body against the prechecked header, store durably, then
    /// acknowledge. The same event again is acknowledged the same way and stored (and
    /// queued) once.
    pub async fn receive(
        &self,
        header: &signature::Header,
        body: Vec<u8>,
    ) -> Result<Accepted, ReceiveError> {
        if let Err(e) = header.verify(&body, &self.secrets) {
            self.count("unknown", "rejected");
            return Err(e.into());
        }
        let parsed = events::parse(&body).map_err(|e| {
            self.count("unknown", "rejected");
            ReceiveError::Invalid(e)
        })?;
        let family = events::family(&parsed.event_type);
        let event = self.new_event(&parsed, body, parsed.is_tracked())?;
        let inserted = self.insert_durably(event).await?;
        let duplicate = matches!(inserted, Inserted::Existing(_));
        let outcome = match (duplicate, parsed.is_tracked()) {
            (true, _) => "duplicate",
            (false, true) => "queued",
            (false, false) => "ignored",
        };
        self.count(family, outcome);
        if outcome == "queued" {
            self.waker.wake();
        }
        Ok(Accepted {
            event_id: parsed.id,
            duplicate,
        })
    }

    fn new_event(
        &self,
        parsed: &EventRef,
        raw: Vec<u8>,
        queued: bool,
    ) -> Result<WebhookJob, StoreError> {
        let now = self.now_ms();
        let payload = WebhookPayload {
            event_type: parsed.event_type.clone(),
            raw,
        };
        let job = Job::queued(
            parsed.id.clone(),
            self.store.db.generate_id()?,
            payload,
            now,
        );
        Ok(if queued {
            job
        } else {
            let mut ignored = job.finished(
                JobState::Ignored,
                Some("event type not tracked".into()),
                now,
            );
            ignored.attempts = 0;
            ignored
        })
    }

    async fn insert_durably(
        &self,
        event: WebhookJob,
    ) -> Result<Inserted<WebhookPayload>, StoreError> {
        let queue = self.queue.clone();
        let inserted = store::blocking(move || queue.insert_new(&event)).await?;
        self.store.flush().await?;
        Ok(inserted)
    }

    pub async fn get(&self, id: &str) -> Result<Option<WebhookJob>, StoreError> {
        let queue = self.queue.clone();
        let id = id.to_owned();
        store::blocking(move || queue.get(&id)).await
    }

    /// Story 2.4: processes one event now; records the outcome (or the failure, with
    /// backoff, or as a dead letter after the last counted attempt).
    pub async fn process(&self, id: &str) -> Result<Processed, ProcessError> {
        let event = self
            .get(id)
            .await?
            .ok_or_else(|| ProcessError::NotFound(id.to_owned()))?;
        match event.state {
            JobState::Done => return Ok(Processed::Converged),
            JobState::Ignored => return Ok(Processed::Ignored),
            JobState::Queued | JobState::Dead => {}
        }
        let started = Instant::now();
        let outcome = self.handle(&event).await;
        self.metrics
            .webhook_processing_duration
            .observe(started.elapsed().as_secs_f64());
        let family = events::family(&event.payload.event_type);
        match outcome {
            Outcome::Done(result, note) => {
                let state = match result {
                    Processed::Converged => JobState::Done,
                    Processed::Ignored => JobState::Ignored,
                };
                let done = event.finished(state, note, self.now_ms());
                self.replace(&event, &done).await?;
                self.count(
                    family,
                    if state == JobState::Done {
                        "processed"
                    } else {
                        "ignored"
                    },
                );
                Ok(result)
            }
            Outcome::Failed(e) => {
                self.record_failure(&event, e.failure_kind(), &chain(&e))
                    .await?;
                Err(ProcessError::Failed(e))
            }
        }
    }

    /// Counts a failed attempt of `event`: queued again after a backoff, or dead.
    pub async fn record_failure(
        &self,
        event: &WebhookJob,
        kind: FailureKind,
        error: &str,
    ) -> Result<(), StoreError> {
        let next = self.policy.after_failure(event, kind, error, self.now_ms());
        let family = events::family(&event.payload.event_type);
        if next.state == JobState::Dead {
            tracing::error!(event = %event.id, attempts = next.attempts, error, "webhook event parked as a dead letter");
            self.count(family, "dead");
        } else if kind == FailureKind::Outage && next.failures == event.failures {
            tracing::warn!(event = %event.id, attempts = next.attempts, error, "Stripe unavailable; webhook event waits for it");
            self.count(family, "outage");
        } else {
            tracing::warn!(event = %event.id, attempts = next.attempts, error, "webhook event failed; will retry");
            self.count(family, "failed");
        }
        self.replace(event, &next).await
    }

    /// Processes `id` with panics contained: a panic counts as a failed attempt.
    pub async fn process_isolated(self: &Arc<Self>, id: String) {
        let this = self.clone();
        let task_id = id.clone();
        let joined = actix_rt::spawn(async move { this.process(&task_id).await.map(drop) }).await;
        if let Err(join) = joined {
            tracing::error!(event = %id, error = %join, "webhook processing panicked");
            if let Ok(Some(event)) = self.get(&id).await {
                let failed = self
                    .record_failure(&event, FailureKind::Transient, "processing panicked")
                    .await;
                if let Err(e) = failed {
                    tracing::error!(event = %id, error = %chain(&e), "could not record the failure");
                }
            }
        }
    }

    async fn replace(&self, old: &WebhookJob, new: &WebhookJob) -> Result<(), StoreError> {
        let queue = self.queue.clone();
        let (old, new) = (old.clone(), new.clone());
        let id = old.id.clone();
        let replaced = store::blocking(move || queue.replace(&old, &new)).await?;
        if !replaced {
            // Another processor recorded an outcome first; its record stands.
            tracing::debug!(event = %id, "event changed while processing; keeping the other outcome");
        }
        self.store.flush().await
    }

    async fn handle(&self, event: &WebhookJob) -> Outcome {
        let parsed = match events::parse(&event.payload.raw) {
            Ok(p) => p,
            Err(e) => return Outcome::Done(Processed::Ignored, Some(e)),
        };
        if !parsed.is_tracked() {
            return Outcome::Done(Processed::Ignored, Some("event type not tracked".into()));
        }
        let Some(subscription) = parsed.subscription.as_deref() else {
            return Outcome::Done(
                Processed::Ignored,
                Some("no subscription in the event".into()),
            );
        };
        let org = match self
            .billing
            .org_for(parsed.customer.as_deref(), parsed.org_hint.as_deref())
            .await
        {
            Ok(Some(org)) => org,
            Ok(None) => {
                let note = format!(
                    "no org for customer {}",
                    parsed.customer.as_deref().unwrap_or("(none)")
                );
                return Outcome::Done(Processed::Ignored, Some(note));
            }
            Err(e) => return Outcome::Failed(e),
        };
        match self.billing.converge(&org, subscription).await {
            Ok(Converged::Updated) => Outcome::Done(Processed::Converged, None),
            Ok(Converged::NotTheOrgs) => Outcome::Done(
                Processed::Ignored,
                Some(format!("subscription {subscription} is not org {org}'s")),
            ),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Story 8.1: re-queues stored events; fetches the others from Stripe's events API.
    pub async fn replay(&self, ids: &[String]) -> Result<Replayed, ProcessError> {
        let mut enqueued = 0;
        let mut missing = Vec::new();
        for id in ids {
            if let Some(event) = self.get(id).await? {
                let again = event.requeued(event.payload.clone(), self.now_ms());
                self.replace(&event, &again).await?;
                enqueued += 1;
                continue;
            }
            let fetched = self
                .billing
                .retrieve_event(id)
                .await
                .map_err(ProcessError::Failed)?;
            let Some(raw) = fetched else {
                missing.push(id.clone());
                continue;
            };
            let parsed = events::parse(&raw).map_err(|e| {
                ProcessError::Failed(BillingError::Upstream(
                    super::stripe::StripeFailure::Broken(format!(
                        "Stripe returned an unreadable event {id}: {e}"
                    )),
                ))
            })?;
            let event = self.new_event(&parsed, raw, true)?;
            self.insert_durably(event).await?;
            enqueued += 1;
        }
        if enqueued > 0 {
            self.waker.wake();
        }
        Ok(Replayed { enqueued, missing })
    }

    /// Admin listing: events in `state` in arrival order after the cursor (a sequence).
    pub async fn list(
        &self,
        state: JobState,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        let queue = self.queue.clone();
        store::blocking(move || queue.list(state, after, limit)).await
    }

    /// Refreshes the queue gauges from the queue's counts and the oldest queued event
    /// (no scan), and at most hourly purges processed and ignored events past the
    /// retention, one at a time (dead letters are kept until replayed; Stripe's events
    /// API can still serve a purged event for 30 days).
    async fn refresh_and_purge(&self) {
        self.metrics
            .queue_drain_runs
            .with_label_values(&["webhooks"])
            .inc();
        if let Err(e) = self.refresh_gauges().await {
            tracing::warn!(error = %chain(&e), "webhook gauges not refreshed");
        }
        let due = {
            let mut last = self.last_purge.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            let queue = self.queue.clone();
            let cutoff = self.now_ms() - i64::from(self.settings.retention_days) * 86_400_000;
            let purged = store::blocking(move || {
                let mut n = 0;
                for state in [JobState::Done, JobState::Ignored] {
                    n += queue.purge_finished_before(state, cutoff)?;
                }
                Ok(n)
            })
            .await;
            match purged {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(purged = n, "finished webhook events past retention purged")
                }
                Err(e) => tracing::warn!(error = %chain(&e), "webhook purge failed"),
            }
        }
    }

    /// Refreshes the queue gauges (depth, oldest age, dead letters).
    pub async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let queue = self.queue.clone();
        let oldest = store::blocking(move || queue.oldest(JobState::Queued)).await?;
        self.metrics
            .webhook_queue_depth
            .set(self.queue.count(JobState::Queued) as i64);
        let age = oldest.map_or(0, |e| ((self.now_ms() - e.created_ms) / 1000).max(0));
        self.metrics.webhook_oldest_queued_age.set(age);
        self.metrics
            .webhook_dead_letters
            .set(self.queue.count(JobState::Dead) as i64);
        Ok(())
    }
}

/// Events taken from the queue per pass.
const BATCH: usize = 32;

impl Drain for Webhooks {
    fn drain_once(self: Arc<Self>) -> BoxFuture<'static, bool> {
        async move {
            let queue = self.queue.clone();
            let now = self.now_ms();
            let due = match store::blocking(move || queue.due(now, BATCH)).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(error = %chain(&e), "reading the webhook queue failed");
                    return false;
                }
            };
            let any = !due.is_empty();
            for event in due {
                self.process_isolated(event.id).await;
            }
            any
        }
        .boxed()
    }

    fn refresh(self: Arc<Self>) -> BoxFuture<'static, ()> {
        async move { self.refresh_and_purge().await }.boxed()
    }
}
