//! Stripe webhooks (stories 2.3, 2.4, 8.1): durable signed intake, processing of one
//! event (convergence of the org's mirror with Stripe), retries with backoff into dead
//! letters, replay, and the admin listing. A `queue_supervisor` drains the queue.
//!
//! An event is acknowledged (202) only after it is stored and the store flushed, so an
//! acknowledged event survives a crash and is processed after restart.

use super::events::{self, EventRef};
use super::lifecycle::{BillingError, BillingService};
use super::queue_supervisor::{backoff_ms, Drain, Waker};
use super::signature::{self, SignatureError};
use crate::clock::SharedClock;
use crate::config::{Secret, WebhookSettings};
use crate::metrics::Metrics;
use crate::store::webhooks::{self as queue, EventState, Inserted, WebhookEvent};
use crate::store::{self, Store, StoreError};
use futures_util::future::{BoxFuture, FutureExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("no webhook signing secret is configured: set stripe.webhook_secrets (EDGEQUOTA__STRIPE__WEBHOOK_SECRETS)")]
    NotConfigured,
    #[error("{0}")]
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
    #[error("{0}")]
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
    billing: Arc<BillingService>,
    clock: SharedClock,
    metrics: Metrics,
    secrets: Vec<Secret>,
    settings: WebhookSettings,
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
        Self {
            store,
            billing,
            clock,
            metrics,
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
            settings,
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

    /// Story 2.3: verify, store durably, then acknowledge. The same event again is
    /// acknowledged the same way and stored (and queued) once.
    pub async fn receive(
        &self,
        signature_header: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Accepted, ReceiveError> {
        if self.secrets.is_empty() {
            return Err(ReceiveError::NotConfigured);
        }
        let now = self.clock.now();
        let checked = signature::verify(
            signature_header,
            &body,
            &self.secrets,
            now.timestamp(),
            self.settings.tolerance_secs,
        );
        if let Err(e) = checked {
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
        let duplicate = matches!(inserted, Inserted::Duplicate(_));
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
    ) -> Result<WebhookEvent, StoreError> {
        let now = self.now_ms();
        Ok(WebhookEvent {
            id: parsed.id.clone(),
            event_type: parsed.event_type.clone(),
            raw,
            seq: self.store.db.generate_id()?,
            received_ms: now,
            state: if queued {
                EventState::Queued
            } else {
                EventState::Ignored
            },
            attempts: 0,
            last_error: (!queued).then(|| "event type not tracked".to_owned()),
            next_attempt_ms: now,
            done_ms: (!queued).then_some(now),
        })
    }

    async fn insert_durably(&self, event: WebhookEvent) -> Result<Inserted, StoreError> {
        let tree = self.store.webhooks.clone();
        let inserted = store::blocking(move || queue::insert(&tree, &event)).await?;
        self.store.flush().await?;
        Ok(inserted)
    }

    pub async fn get(&self, id: &str) -> Result<Option<WebhookEvent>, StoreError> {
        let tree = self.store.webhooks.clone();
        let id = id.to_owned();
        store::blocking(move || queue::get(&tree, &id)).await
    }

    /// Queued events whose backoff has passed, in arrival order.
    pub async fn due(&self, limit: usize) -> Result<Vec<WebhookEvent>, StoreError> {
        let tree = self.store.webhooks.clone();
        let now = self.now_ms();
        // Scan past not-yet-due events so one failing event does not hold up the rest.
        let all =
            store::blocking(move || queue::list(&tree, EventState::Queued, None, 10_000)).await?;
        Ok(all
            .into_iter()
            .filter(|e| e.next_attempt_ms <= now)
            .take(limit)
            .collect())
    }

    /// Story 2.4: processes one event now; records the outcome (or the failure, with
    /// backoff, or as a dead letter after the last attempt).
    pub async fn process(&self, id: &str) -> Result<Processed, ProcessError> {
        let event = self
            .get(id)
            .await?
            .ok_or_else(|| ProcessError::NotFound(id.to_owned()))?;
        match event.state {
            EventState::Processed => return Ok(Processed::Converged),
            EventState::Ignored => return Ok(Processed::Ignored),
            EventState::Queued | EventState::Dead => {}
        }
        let started = Instant::now();
        let outcome = self.handle(&event).await;
        self.metrics
            .webhook_processing_duration
            .observe(started.elapsed().as_secs_f64());
        let family = events::family(&event.event_type);
        match outcome {
            Outcome::Done(result, note) => {
                let mut done = event.clone();
                done.state = match result {
                    Processed::Converged => EventState::Processed,
                    Processed::Ignored => EventState::Ignored,
                };
                done.attempts += 1;
                done.last_error = note;
                done.done_ms = Some(self.now_ms());
                self.replace(&event, &done).await?;
                self.count(family, done.state.as_str());
                Ok(result)
            }
            Outcome::Failed(e) => {
                self.record_failure(&event, &e.to_string()).await?;
                Err(ProcessError::Failed(e))
            }
        }
    }

    /// Counts a failed attempt of `event`: queued again after a backoff, or dead.
    pub async fn record_failure(
        &self,
        event: &WebhookEvent,
        error: &str,
    ) -> Result<(), StoreError> {
        let mut next = event.clone();
        next.attempts += 1;
        next.last_error = Some(error.to_owned());
        let family = events::family(&event.event_type);
        if next.attempts >= self.settings.max_attempts {
            next.state = EventState::Dead;
            next.done_ms = Some(self.now_ms());
            tracing::error!(event = %event.id, attempts = next.attempts, error, "webhook event parked as a dead letter");
            self.count(family, "dead");
        } else {
            next.state = EventState::Queued;
            next.next_attempt_ms = self.now_ms()
                + backoff_ms(
                    self.settings.retry_base_ms,
                    next.attempts,
                    self.settings.retry_max_ms,
                ) as i64;
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
                if let Err(e) = self.record_failure(&event, "processing panicked").await {
                    tracing::error!(event = %id, error = %e, "could not record the failure");
                }
            }
        }
    }

    async fn replace(&self, old: &WebhookEvent, new: &WebhookEvent) -> Result<(), StoreError> {
        let tree = self.store.webhooks.clone();
        let (old, new) = (old.clone(), new.clone());
        let id = old.id.clone();
        let replaced = store::blocking(move || queue::replace(&tree, &old, &new)).await?;
        if !replaced {
            // Another processor recorded an outcome first; its record stands.
            tracing::debug!(event = %id, "event changed while processing; keeping the other outcome");
        }
        self.store.flush().await
    }

    async fn handle(&self, event: &WebhookEvent) -> Outcome {
        let parsed = match events::parse(&event.raw) {
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
            Ok(_) => Outcome::Done(Processed::Converged, None),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Story 8.1: re-queues stored events; fetches the others from Stripe's events API.
    pub async fn replay(&self, ids: &[String]) -> Result<Replayed, ProcessError> {
        let mut enqueued = 0;
        let mut missing = Vec::new();
        for id in ids {
            if let Some(event) = self.get(id).await? {
                let mut again = event.clone();
                again.state = EventState::Queued;
                again.attempts = 0;
                again.last_error = None;
                again.next_attempt_ms = self.now_ms();
                again.done_ms = None;
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
                ProcessError::Failed(BillingError::Upstream(format!(
                    "Stripe returned an unreadable event {id}: {e}"
                )))
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
        state: EventState,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<WebhookEvent>, StoreError> {
        let tree = self.store.webhooks.clone();
        store::blocking(move || queue::list(&tree, state, after, limit)).await
    }

    /// Refreshes the queue gauges (depth, oldest age, dead letters), and at most hourly
    /// purges processed and ignored events past the retention (dead letters are kept
    /// until replayed; Stripe's events API can still serve a purged event for 30 days).
    async fn refresh_gauges_logged(&self) {
        if let Err(e) = self.refresh_gauges().await {
            tracing::warn!(error = %e, "webhook gauges not refreshed");
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
            let tree = self.store.webhooks.clone();
            let cutoff = self.now_ms() - i64::from(self.settings.retention_days) * 86_400_000;
            let purged = store::blocking(move || {
                let mut n = 0;
                for state in [EventState::Processed, EventState::Ignored] {
                    n += queue::purge_done_before(&tree, state, cutoff)?;
                }
                Ok(n)
            })
            .await;
            match purged {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(purged = n, "finished webhook events past retention purged")
                }
                Err(e) => tracing::warn!(error = %e, "webhook purge failed"),
            }
        }
    }

    /// Refreshes the queue gauges (depth, oldest age, dead letters).
    pub async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let tree = self.store.webhooks.clone();
        let (depth, oldest, dead) = store::blocking(move || {
            let oldest = queue::list(&tree, EventState::Queued, None, 1)?;
            Ok((
                queue::count(&tree, EventState::Queued),
                oldest.first().map(|e| e.received_ms),
                queue::count(&tree, EventState::Dead),
            ))
        })
        .await?;
        self.metrics.webhook_queue_depth.set(depth as i64);
        let age = oldest.map_or(0, |ms| ((self.now_ms() - ms) / 1000).max(0));
        self.metrics.webhook_oldest_queued_age.set(age);
        self.metrics.webhook_dead_letters.set(dead as i64);
        Ok(())
    }
}

/// Events taken from the queue per pass.
const BATCH: usize = 32;

impl Drain for Webhooks {
    fn drain_once(self: Arc<Self>) -> BoxFuture<'static, bool> {
        async move {
            let due = match self.due(BATCH).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(error = %e, "reading the webhook queue failed");
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
        async move { self.refresh_gauges_logged().await }.boxed()
    }
}
