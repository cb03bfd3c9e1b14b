//! The Stigg outbox's attempts: one try of an org's queued job (the customer step, then
//! the subscription step), its outcome recorded against the job version it worked on,
//! and the drain the outbox's supervisor runs over due jobs.

use super::provisioning::Provisioning;
use crate::billing::queue_supervisor::Drain;
use crate::errors::chain;
use crate::store::jobs::{FailureKind, JobState};
use crate::store::stigg_jobs::StiggJob;
use crate::store::StoreError;
use futures_util::future::{BoxFuture, FutureExt};
use std::sync::Arc;

/// Jobs looked at per pass.
const BATCH: usize = 64;
/// How long a claimed job is kept from other pollers (several tries with their
/// timeouts fit well inside it).
const LEASE_MS: i64 = 120_000;

impl Provisioning {
    /// One attempt at the org's queued job (if due, or `force`); returns the job as
    /// stored afterwards.
    pub(super) async fn run(&self, org: &str, force: bool) -> Result<Option<StiggJob>, StoreError> {
        let _guard = self.locks.lock(&org.to_owned()).await;
        self.run_locked(org, force).await
    }

    async fn run_locked(&self, org: &str, force: bool) -> Result<Option<StiggJob>, StoreError> {
        let Some(job) = self.load(org).await? else {
            return Ok(None);
        };
        let Some(client) = self.client.as_ref() else {
            return Ok(Some(job));
        };
        if job.state != JobState::Queued || (!force && job.next_attempt_ms > self.now_ms()) {
            return Ok(Some(job));
        }
        let mut payload = job.payload.clone();
        let outcome = async {
            if !payload.customer_done {
                let id = client
                    .provision_customer(
                        &payload.org,
                        &payload.name,
                        payload.email.as_deref(),
                        &payload.stripe_customer_id,
                        &payload.correlation_id,
                    )
                    .await?;
                payload.customer_done = true;
                payload.stigg_customer_id = Some(id);
            }
            client
                .provision_subscription(
                    &payload.org,
                    &payload.stigg_plan_id,
                    &payload.stripe_subscription_id,
                    payload.strategy.as_graphql(),
                    &payload.correlation_id,
                )
                .await
        }
        .await;
        let now = self.now_ms();
        payload.updated_ms = now;
        let mut progressed = job.clone();
        progressed.payload = payload;
        let next = match outcome {
            Ok(()) => {
                tracing::info!(org, plan = %progressed.payload.plan_code, correlation_id = %progressed.payload.correlation_id, "provisioned in Stigg");
                progressed.finished(JobState::Done, None, now)
            }
            Err(e) => {
                let kind = e.failure_kind();
                let next = self
                    .policy
                    .after_failure(&progressed, kind, &e.to_string(), now);
                let correlation_id = &next.payload.correlation_id;
                match (next.state, kind) {
                    (JobState::Dead, FailureKind::Permanent) => {
                        tracing::error!(org, error = %chain(&e), correlation_id = %correlation_id, "Stigg refused provisioning; not retried")
                    }
                    (JobState::Dead, _) => {
                        tracing::error!(org, attempts = next.attempts, error = %chain(&e), correlation_id = %correlation_id, "Stigg provisioning parked after its last attempt")
                    }
                    _ => {
                        tracing::warn!(org, attempts = next.attempts, error = %chain(&e), correlation_id = %correlation_id, "Stigg provisioning failed; will retry")
                    }
                }
                next
            }
        };
        if self.save(Some(job), next.clone()).await? {
            Ok(Some(next))
        } else {
            self.load(org).await
        }
    }

    async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let oldest = self.queue.oldest(JobState::Queued).await?;
        let depth = self.queue.count(JobState::Queued).await?;
        self.metrics.stigg_outbox_depth.set(depth as i64);
        let age = oldest.map_or(0, |j| ((self.now_ms() - j.created_ms) / 1000).max(0));
        self.metrics.stigg_outbox_oldest_age.set(age);
        Ok(())
    }
}

impl Drain for Provisioning {
    fn drain_once(self: Arc<Self>) -> BoxFuture<'static, bool> {
        async move {
            let claimed = self.queue.claim_due(self.now_ms(), BATCH, LEASE_MS).await;
            let due = match claimed {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::error!(error = %chain(&e), "reading the Stigg outbox failed");
                    return false;
                }
            };
            let any = !due.is_empty();
            for job in due {
                let this = self.clone();
                let org = job.id.clone();
                // Its own task: a panic is contained (the job stays queued, due again
                // when its lease runs out). The claim moved its due time on: forced.
                let ran = actix_rt::spawn(async move { this.run(&org, true).await }).await;
                match ran {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(org = %job.id, error = %chain(&e), "Stigg job not recorded");
                        return false;
                    }
                    Err(e) => {
                        tracing::error!(org = %job.id, error = %e, "Stigg job panicked");
                        return false;
                    }
                }
            }
            any
        }
        .boxed()
    }

    fn refresh(self: Arc<Self>) -> BoxFuture<'static, ()> {
        async move {
            self.metrics
                .queue_drain_runs
                .with_label_values(&["stigg"])
                .inc();
            if let Err(e) = self.refresh_gauges().await {
                tracing::warn!(error = %chain(&e), "Stigg outbox gauges not refreshed");
            }
        }
        .boxed()
    }
}
