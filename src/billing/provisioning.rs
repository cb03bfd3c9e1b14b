//! Stigg provisioning (story 1.4) through a durable outbox: a request is checked against
//! the org's billing mirror, written to the outbox (flushed), then tried a few times with
//! short backoff while the caller waits. What still fails stays pending, and the outbox's
//! supervisor retries it with exponential backoff — across restarts — until Stigg accepts
//! it or refuses it for good. Plan changes made through Stripe (upgrade, scheduled
//! downgrade, cancellation) enqueue a re-provisioning of the same org the same way.

use super::locks::KeyedLocks;
use super::queue_supervisor::{backoff_ms, Drain, Waker};
use super::stigg::{StiggClient, StiggFailure};
use crate::config::StiggSettings;
use crate::domain::{OrgId, PlanCode};
use crate::metrics::Metrics;
use crate::quota::{EngineError, QuotaEngine};
use crate::store::outbox::{self, JobState, ProvisionJob, Strategy};
use crate::store::{self, orgs, StoreError};
use futures_util::future::{BoxFuture, FutureExt};
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
    /// Stigg kept failing; the job stays pending in the outbox.
    #[error("Stigg provisioning failed: {0}; the request is kept and retried in the background")]
    Pending(String),
    /// Stigg refused the request; the job is marked failed.
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
    client: Option<StiggClient>,
    engine: Arc<QuotaEngine>,
    metrics: Metrics,
    settings: StiggSettings,
    /// One attempt per org at a time (the request's own tries and the supervisor's).
    locks: KeyedLocks<String>,
    waker: Waker,
}

impl Provisioning {
    pub fn new(
        client: Option<StiggClient>,
        engine: Arc<QuotaEngine>,
        metrics: Metrics,
        settings: StiggSettings,
    ) -> Self {
        Self {
            client,
            engine,
            metrics,
            settings,
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

    fn now_ms(&self) -> i64 {
        self.engine.clock().now().timestamp_millis()
    }

    fn tree(&self) -> sled::Tree {
        self.engine.store().stigg_outbox.clone()
    }

    async fn load(&self, org: &str) -> Result<Option<ProvisionJob>, StoreError> {
        let (tree, org) = (self.tree(), org.to_owned());
        store::blocking(move || outbox::get(&tree, &org)).await
    }

    /// Stores `job` over the version `expected`, durably; `false` if another request
    /// replaced the job meanwhile.
    async fn save(&self, expected: Option<u64>, job: ProvisionJob) -> Result<bool, StoreError> {
        let tree = self.tree();
        let saved = store::blocking(move || outbox::put_if_version(&tree, expected, &job)).await?;
        self.engine.store().flush().await?;
        Ok(saved)
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
        let org_record = {
            let store = self.engine.store().clone();
            let org = req.org.clone();
            store::blocking(move || orgs::get(&store.orgs, &org)).await?
        }
        .ok_or_else(|| ProvisionError::NotFound(format!("org {} not found", req.org)))?;
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
        let job = loop {
            let previous = self.load(&org).await?;
            let now = self.now_ms();
            let job = ProvisionJob {
                org: org.clone(),
                name: org_record.name.clone(),
                email: mirror.email.clone(),
                stripe_customer_id: req.stripe_customer_id.clone(),
                stripe_subscription_id: req.stripe_subscription_id.clone(),
                plan_code: plan.code.to_string(),
                stigg_plan_id: plan.stigg_plan_id.clone(),
                strategy: Strategy::Immediate,
                state: JobState::Pending,
                version: previous.as_ref().map_or(1, |p| p.version + 1),
                attempts: 0,
                last_error: None,
                // The caller's own tries come first; the supervisor takes over after
                // them (or after a crash during them).
                next_attempt_ms: now + self.request_window_ms(),
                // Provisioning the customer again is harmless (a duplicate is success),
                // and it refreshes its name and billing id in Stigg.
                customer_done: false,
                stigg_customer_id: previous.as_ref().and_then(|p| p.stigg_customer_id.clone()),
                created_ms: now,
                updated_ms: now,
                correlation_id: req.correlation_id.clone(),
            };
            if self.save(previous.map(|p| p.version), job.clone()).await? {
                break job;
            }
        };
        tracing::info!(org = %org, plan = %job.plan_code, correlation_id = %job.correlation_id, "Stigg provisioning queued");
        let mut delay = Duration::from_millis(self.settings.request_backoff_ms);
        for attempt in 1..=self.settings.request_attempts {
            let Some(now) = self.run(&org, true).await? else {
                break;
            };
            if now.version != job.version {
                // A newer request took over; it reports for itself.
                return Ok(now.stigg_customer_id.unwrap_or(org));
            }
            match now.state {
                JobState::Provisioned => return Ok(now.stigg_customer_id.unwrap_or(org)),
                JobState::Failed => {
                    return Err(ProvisionError::Refused(now.last_error.unwrap_or_default()))
                }
                JobState::Pending if attempt < self.settings.request_attempts => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                JobState::Pending => {
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
    pub async fn status(&self, org: &OrgId) -> Result<Option<ProvisionJob>, StoreError> {
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
                .map_or(previous.stripe_subscription_id.clone(), |s| s.id);
            let now = self.now_ms();
            let job = ProvisionJob {
                plan_code: plan.to_string(),
                stigg_plan_id: stigg_plan.stigg_plan_id.clone(),
                strategy,
                stripe_subscription_id: subscription,
                state: JobState::Pending,
                version: previous.version + 1,
                attempts: 0,
                last_error: None,
                next_attempt_ms: now,
                updated_ms: now,
                ..previous.clone()
            };
            if self.save(Some(previous.version), job).await? {
                tracing::info!(%org, %plan, strategy = strategy.as_graphql(), "Stigg re-provisioning queued");
                self.waker.wake();
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(%org, error = %e, "could not queue Stigg re-provisioning");
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

    /// One attempt at the org's pending job (if due, or `force`); returns the job as
    /// stored afterwards.
    async fn run(&self, org: &str, force: bool) -> Result<Option<ProvisionJob>, StoreError> {
        let _guard = self.locks.lock(&org.to_owned()).await;
        self.run_locked(org, force).await
    }

    async fn run_locked(&self, org: &str, force: bool) -> Result<Option<ProvisionJob>, StoreError> {
        let Some(job) = self.load(org).await? else {
            return Ok(None);
        };
        let Some(client) = self.client.as_ref() else {
            return Ok(Some(job));
        };
        if job.state != JobState::Pending || (!force && job.next_attempt_ms > self.now_ms()) {
            return Ok(Some(job));
        }
        let mut next = job.clone();
        let outcome = async {
            if !next.customer_done {
                let id = client
                    .provision_customer(
                        &next.org,
                        &next.name,
                        next.email.as_deref(),
                        &next.stripe_customer_id,
                        &next.correlation_id,
                    )
                    .await?;
                next.customer_done = true;
                next.stigg_customer_id = Some(id);
            }
            client
                .provision_subscription(
                    &next.org,
                    &next.stigg_plan_id,
                    &next.stripe_subscription_id,
                    next.strategy.as_graphql(),
                    &next.correlation_id,
                )
                .await
        }
        .await;
        next.attempts += 1;
        next.updated_ms = self.now_ms();
        match outcome {
            Ok(()) => {
                next.state = JobState::Provisioned;
                next.last_error = None;
                tracing::info!(org, plan = %next.plan_code, correlation_id = %next.correlation_id, "provisioned in Stigg");
            }
            Err(StiggFailure::Permanent(e)) => {
                next.state = JobState::Failed;
                next.last_error = Some(format!("Stigg refused the request: {e}"));
                tracing::error!(org, error = %e, correlation_id = %next.correlation_id, "Stigg refused provisioning; not retried");
            }
            Err(StiggFailure::Transient(e)) => {
                next.last_error = Some(format!("Stigg is unavailable: {e}"));
                next.next_attempt_ms = self.now_ms()
                    + backoff_ms(
                        self.settings.retry_base_ms,
                        next.attempts,
                        self.settings.retry_max_ms,
                    ) as i64;
                tracing::warn!(org, attempts = next.attempts, error = %e, correlation_id = %next.correlation_id, "Stigg provisioning failed; will retry");
            }
        }
        if self.save(Some(job.version), next.clone()).await? {
            Ok(Some(next))
        } else {
            self.load(org).await
        }
    }

    async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let tree = self.tree();
        let pending = store::blocking(move || outbox::pending(&tree, usize::MAX)).await?;
        self.metrics.stigg_outbox_depth.set(pending.len() as i64);
        let oldest = pending.iter().map(|j| j.created_ms).min();
        let age = oldest.map_or(0, |ms| ((self.now_ms() - ms) / 1000).max(0));
        self.metrics.stigg_outbox_oldest_age.set(age);
        Ok(())
    }
}

/// Jobs looked at per pass.
const BATCH: usize = 64;

impl Drain for Provisioning {
    fn drain_once(self: Arc<Self>) -> BoxFuture<'static, bool> {
        async move {
            let tree = self.tree();
            let now = self.now_ms();
            let due = match store::blocking(move || outbox::pending(&tree, usize::MAX)).await {
                Ok(jobs) => jobs
                    .into_iter()
                    .filter(|j| j.next_attempt_ms <= now)
                    .take(BATCH)
                    .collect::<Vec<_>>(),
                Err(e) => {
                    tracing::error!(error = %e, "reading the Stigg outbox failed");
                    return false;
                }
            };
            let any = !due.is_empty();
            for job in due {
                let this = self.clone();
                let org = job.org.clone();
                // Its own task: a panic is contained (the job stays pending).
                let ran = actix_rt::spawn(async move { this.run(&org, false).await }).await;
                match ran {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::error!(org = %job.org, error = %e, "Stigg job not recorded");
                        return false;
                    }
                    Err(e) => {
                        tracing::error!(org = %job.org, error = %e, "Stigg job panicked");
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
            if let Err(e) = self.refresh_gauges().await {
                tracing::warn!(error = %e, "Stigg outbox gauges not refreshed");
            }
        }
        .boxed()
    }
}
