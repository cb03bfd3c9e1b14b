//! Stigg provisioning (story 1.4) through a durable outbox: a request is checked against
//! the org's billing mirror, written to the outbox (flushed), then tried a few times with
//! short backoff while the caller waits. What still fails stays queued, and the outbox's
//! supervisor retries it (`outbox.rs`) — across restarts — until Stigg accepts it or it
//! is parked. Plan changes made through Stripe (upgrade, scheduled downgrade,
//! cancellation) enqueue a re-provisioning of the same org the same way.

use super::client::StiggClient;
use crate::billing::locks::KeyedLocks;
use crate::billing::queue_supervisor::Waker;
use crate::config::StiggSettings;
use crate::domain::{OrgId, PlanCode};
use crate::errors::chain;
use crate::metrics::Metrics;
use crate::quota::{EngineError, QuotaEngine};
use crate::store::jobs::{Inserted, Job, JobState, RetryPolicy};
use crate::store::stigg_jobs::{StiggJob, StiggPayload, Strategy};
use crate::store::{JobQueue, StoreError};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("Stigg is not configured: set stigg.api_key (EDGEQUOTA__STIGG__API_KEY)")]
    NotConfigured,
    #[error("{field} {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stigg kept failing; the job stays queued in the outbox.
    #[error("Stigg provisioning failed: {0}; the request is kept and retried in the background")]
    Pending(String),
    /// Stigg refused the request; the job is parked as failed.
    #[error("Stigg refused the provisioning: {0}")]
    Refused(String),
}

pub struct ProvisionRequest {
    pub org: OrgId,
    pub stripe_customer_id: String,
    pub stripe_subscription_id: String,
    pub plan_code: String,
    pub correlation_id: String,
}

pub struct Provisioning {
    pub(super) client: Option<StiggClient>,
    pub(super) engine: Arc<QuotaEngine>,
    pub(super) queue: Arc<dyn JobQueue<StiggPayload>>,
    pub(super) metrics: Metrics,
    pub(super) settings: StiggSettings,
    pub(super) policy: RetryPolicy,
    /// One attempt per org at a time (the request's own tries and the supervisor's).
    pub(super) locks: KeyedLocks<String>,
    pub(super) waker: Waker,
}

impl Provisioning {
    pub fn new(
        client: Option<StiggClient>,
        engine: Arc<QuotaEngine>,
        metrics: Metrics,
        settings: StiggSettings,
    ) -> Self {
        let policy = RetryPolicy {
            max_attempts: settings.max_attempts,
            base: Duration::from_millis(settings.retry_base_ms),
            max: Duration::from_millis(settings.retry_max_ms),
            outage_budget: Duration::from_secs(settings.outage_budget_hours * 3600),
            outage_retry_max: Duration::from_millis(settings.outage_retry_max_ms),
        };
        Self {
            queue: engine.backend().stigg.clone(),
            client,
            engine,
            metrics,
            settings,
            policy,
            locks: KeyedLocks::default(),
            waker: Waker::default(),
        }
    }

    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    pub fn is_configured(&self) -> bool {
        self.client.is_some()
    }

    pub(super) fn now_ms(&self) -> i64 {
        self.engine.clock().now().timestamp_millis()
    }

    pub(super) async fn load(&self, org: &str) -> Result<Option<StiggJob>, StoreError> {
        self.queue.get(org).await
    }

    /// Stores `job` in place of `expected` (`None`: no job stored yet), durably; `false`
    /// if another request replaced the job meanwhile.
    pub(super) async fn save(
        &self,
        expected: Option<StiggJob>,
        job: StiggJob,
    ) -> Result<bool, StoreError> {
        match expected {
            Some(old) => self.queue.replace(old, job).await,
            None => Ok(matches!(self.queue.insert_new(job).await?, Inserted::New)),
        }
    }

    /// The job for `payload` replacing `previous` (or new), due at `due_ms`.
    async fn next_job(
        &self,
        previous: Option<&StiggJob>,
        payload: StiggPayload,
        now: i64,
        due_ms: i64,
    ) -> Result<StiggJob, StoreError> {
        let mut job = match previous {
            Some(p) => p.requeued(payload, now),
            None => Job::queued(
                payload.org.clone(),
                self.queue.next_seq().await?,
                payload,
                now,
            ),
        };
        job.next_attempt_ms = due_ms;
        Ok(job)
    }

    /// Story 1.4: checks the request against the org's mirror, stores it in the outbox,
    /// and tries it now a few times. Returns the Stigg customer id once provisioned.
    pub async fn provision(&self, req: ProvisionRequest) -> Result<String, ProvisionError> {
        if self.client.is_none() {
            return Err(ProvisionError::NotConfigured);
        }
        let catalogue = self.engine.catalogue().clone();
        let plan = catalogue
            .get(&PlanCode::new(&req.plan_code))
            .cloned()
            .ok_or_else(|| ProvisionError::Invalid {
                field: "planCode",
                problem: format!("is not a known plan ({:?})", req.plan_code),
            })?;
        let org_record = match self.engine.org(&req.org).await {
            Ok(record) => record,
            Err(EngineError::OrgNotFound) => {
                return Err(ProvisionError::NotFound(format!(
                    "org {} not found",
                    req.org
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let mirror = self.engine.billing(&req.org).await?;
        if mirror.customer_id.as_deref() != Some(req.stripe_customer_id.as_str()) {
            return Err(ProvisionError::NotFound(format!(
                "Stripe customer {} is not this org's",
                req.stripe_customer_id
            )));
        }
        if mirror.subscription.as_ref().map(|s| s.id.as_str())
            != Some(req.stripe_subscription_id.as_str())
        {
            return Err(ProvisionError::NotFound(format!(
                "Stripe subscription {} is not this org's",
                req.stripe_subscription_id
            )));
        }
        let org = req.org.as_str().to_owned();
        let version = loop {
            let previous = self.load(&org).await?;
            let now = self.now_ms();
            let payload = StiggPayload {
                org: org.clone(),
                name: org_record.name.clone(),
                email: mirror.email.clone(),
                stripe_customer_id: req.stripe_customer_id.clone(),
                stripe_subscription_id: req.stripe_subscription_id.clone(),
                plan_code: plan.code.to_string(),
                stigg_plan_id: plan.stigg_plan_id.clone(),
                strategy: Strategy::Immediate,
                version: previous.as_ref().map_or(1, |p| p.payload.version + 1),
                // Provisioning the customer again is harmless (a duplicate is success),
                // and it refreshes its name and billing id in Stigg.
                customer_done: false,
                stigg_customer_id: previous
                    .as_ref()
                    .and_then(|p| p.payload.stigg_customer_id.clone()),
                correlation_id: req.correlation_id.clone(),
                updated_ms: now,
            };
            let version = payload.version;
            // The caller's own tries come first; the supervisor takes over after them
            // (or after a crash during them).
            let due = now + self.request_window_ms();
            let job = self.next_job(previous.as_ref(), payload, now, due).await?;
            if self.save(previous, job).await? {
                break version;
            }
        };
        tracing::info!(org = %org, plan = %plan.code, correlation_id = %req.correlation_id, "Stigg provisioning queued");
        let mut delay = Duration::from_millis(self.settings.request_backoff_ms);
        for attempt in 1..=self.settings.request_attempts {
            let Some(now) = self.run(&org, true).await? else {
                break;
            };
            let customer_id = now
                .payload
                .stigg_customer_id
                .clone()
                .unwrap_or_else(|| org.clone());
            if now.payload.version != version {
                // A newer request took over; it reports for itself.
                return Ok(customer_id);
            }
            match now.state {
                JobState::Done | JobState::Ignored => return Ok(customer_id),
                JobState::Dead => {
                    return Err(ProvisionError::Refused(now.last_error.unwrap_or_default()))
                }
                JobState::Queued if attempt < self.settings.request_attempts => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                JobState::Queued => {
                    self.waker.wake();
                    return Err(ProvisionError::Pending(
                        now.last_error.unwrap_or_else(|| "no answer".into()),
                    ));
                }
            }
        }
        self.waker.wake();
        Err(ProvisionError::Pending("not attempted".into()))
    }

    /// The org's provisioning job, if it ever asked for one.
    pub async fn status(&self, org: &OrgId) -> Result<Option<StiggJob>, StoreError> {
        self.load(org.as_str()).await
    }

    /// Re-provisions an org already provisioned in Stigg after its plan changed in
    /// Stripe (nothing for orgs that never asked to be provisioned, or without Stigg).
    pub async fn plan_changed(&self, org: &OrgId, plan: &PlanCode, strategy: Strategy) {
        if self.client.is_none() {
            return;
        }
        let Some(stigg_plan) = self.engine.catalogue().get(plan).cloned() else {
            return;
        };
        let result: Result<(), ProvisionError> = async {
            let Some(previous) = self.load(org.as_str()).await? else {
                return Ok(());
            };
            let subscription = self
                .engine
                .billing(org)
                .await?
                .subscription
                .map_or(previous.payload.stripe_subscription_id.clone(), |s| s.id);
            let now = self.now_ms();
            let payload = StiggPayload {
                plan_code: plan.to_string(),
                stigg_plan_id: stigg_plan.stigg_plan_id.clone(),
                strategy,
                stripe_subscription_id: subscription,
                version: previous.payload.version + 1,
                updated_ms: now,
                ..previous.payload.clone()
            };
            let job = self.next_job(Some(&previous), payload, now, now).await?;
            if self.save(Some(previous), job).await? {
                tracing::info!(%org, %plan, strategy = strategy.as_graphql(), "Stigg re-provisioning queued");
                self.waker.wake();
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(%org, error = %chain(&e), "could not queue Stigg re-provisioning");
        }
    }

    /// How long a request's own tries may take (timeouts plus backoffs).
    fn request_window_ms(&self) -> i64 {
        let tries = u64::from(self.settings.request_attempts);
        let backoffs = self
            .settings
            .request_backoff_ms
            .saturating_mul((1 << tries) - 1);
        (tries * self.settings.timeout_ms + backoffs) as i64
    }
}
