//! Processing one event (story 2.4): find the org, re-read the subscription from Stripe
//! and converge the org's mirror; record the outcome, or the failure with its backoff —
//! an outage of Stripe waits, other failures count toward the dead letter. The
//! supervisor's drain claims due events, so a crashed worker's event is due again when
//! its lease runs out (and no two pollers work on one event).

use super::events;
use super::{Outcome, ProcessError, Processed, Webhooks, LEASE_MS};
use crate::billing::converge::Converged;
use crate::billing::queue_supervisor::Drain;
use crate::errors::chain;
use crate::store::jobs::{FailureKind, JobState};
use crate::store::webhook_jobs::WebhookJob;
use crate::store::StoreError;
use futures_util::future::{BoxFuture, FutureExt};
use std::sync::Arc;
use std::time::Instant;

/// Events claimed per pass.
const BATCH: usize = 32;

impl Webhooks {
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
}

impl Drain for Webhooks {
    fn drain_once(self: Arc<Self>) -> BoxFuture<'static, bool> {
        async move {
            let claimed = self.queue.claim_due(self.now_ms(), BATCH, LEASE_MS).await;
            let due = match claimed {
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
