//! Replay (story 8.1), the admin listing, and the queue's upkeep: gauges from the
//! queue's counts and its oldest queued event (no scan), and the hourly purge of
//! finished events past the retention.

use super::events;
use super::{ProcessError, Replayed, Webhooks};
use crate::billing::stripe::StripeFailure;
use crate::billing::BillingError;
use crate::errors::chain;
use crate::store::jobs::JobState;
use crate::store::webhook_jobs::WebhookJob;
use crate::store::StoreError;
use std::time::{Duration, Instant};

impl Webhooks {
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
                ProcessError::Failed(BillingError::Upstream(StripeFailure::Broken(format!(
                    "Stripe returned an unreadable event {id}: {e}"
                ))))
            })?;
            let event = self.new_event(&parsed, raw, true).await?;
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
        self.queue.list(state, after, limit).await
    }

    /// Refreshes the queue gauges from the queue's counts and the oldest queued event
    /// (no scan), and at most hourly purges processed and ignored events past the
    /// retention, one at a time (dead letters are kept until replayed; Stripe's events
    /// API can still serve a purged event for 30 days).
    pub(super) async fn refresh_and_purge(&self) {
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
            let cutoff = self.now_ms() - i64::from(self.settings.retention_days) * 86_400_000;
            let purged = async {
                let mut n = 0;
                for state in [JobState::Done, JobState::Ignored] {
                    n += self.queue.purge_finished_before(state, cutoff).await?;
                }
                Ok::<_, StoreError>(n)
            }
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
        let oldest = self.queue.oldest(JobState::Queued).await?;
        let depth = self.queue.count(JobState::Queued).await?;
        self.metrics.webhook_queue_depth.set(depth as i64);
        let age = oldest.map_or(0, |e| ((self.now_ms() - e.created_ms) / 1000).max(0));
        self.metrics.webhook_oldest_queued_age.set(age);
        let dead = self.queue.count(JobState::Dead).await?;
        self.metrics.webhook_dead_letters.set(dead as i64);
        Ok(())
    }
}
