//! `QuotaEngine`: what the fronts (HTTP, gRPC) and billing call. It owns the registry of
//! org actors and the probe actors used by diagnostics, and is where a check is decided
//! (`check`, from the org's view, on the caller's thread) and where an org is created.
//! Records are in `record.rs`, consumes in `consume.rs` (persisted by `flusher.rs`),
//! the org-wide sweeps in `sweep.rs`.

use super::actor::OrgActor;
use super::context::EngineContext;
use super::messages::*;
use super::registry::Registry;
use super::view::CheckOutcome;
use crate::clock::SharedClock;
use crate::domain::{BillingRecord, Catalogue, Metric, OrgId, PeriodKey, PlanCode};
use crate::metrics::Metrics;
use crate::store::{Backend, CreateOutcome, CreateReplay, OrgRecord, OrgState, StoredLedger};
use actix::prelude::*;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct EngineConfig {
    pub arbiters: usize,
    pub idle_ttl: Duration,
    pub recent_capacity: usize,
    /// How often consumed units are handed to the store.
    pub consume_flush: Duration,
}

pub struct QuotaEngine {
    registry: Registry,
    probes: Vec<Addr<Probe>>,
    arbiters: std::sync::Mutex<Vec<Arbiter>>,
    flusher: actix_rt::task::JoinHandle<()>,
}

/// An org to create, and the caller's `Idempotency-Key`.
pub struct NewOrg {
    pub name: String,
    pub owner_user_id: String,
    pub idempotency_key: Option<String>,
}

/// What creating an org answered: the body, and whether it is a replay of a key.
pub enum Created {
    New(OrgId, Vec<u8>),
    Replayed(Vec<u8>),
}

impl QuotaEngine {
    /// Starts the arbiters; must run inside an actix `System`.
    pub fn start(
        backend: Backend,
        catalogue: Arc<Catalogue>,
        clock: SharedClock,
        metrics: Metrics,
        config: EngineConfig,
    ) -> Self {
        let decisions = super::context::DecisionCounters::new(&metrics, &catalogue);
        let records = super::context::RecordCounters::new(&metrics, &catalogue);
        let ctx = Arc::new(EngineContext {
            backend,
            catalogue,
            clock,
            metrics,
            decisions,
            records,
            idle_ttl: config.idle_ttl,
            recent_capacity: config.recent_capacity,
            consumed: Default::default(),
            degraded: Default::default(),
        });
        let flusher = super::flusher::start_flusher(ctx.clone(), config.consume_flush);
        let (registry, arbiters) = Registry::new(ctx, config.arbiters);
        let probes = arbiters
            .iter()
            .map(|a| Probe::start_in_arbiter(&a.handle(), |_| Probe))
            .collect();
        Self {
            registry,
            probes,
            arbiters: std::sync::Mutex::new(arbiters),
            flusher,
        }
    }

    pub(super) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn context(&self) -> &Arc<EngineContext> {
        &self.registry.ctx
    }

    pub fn backend(&self) -> &Backend {
        &self.registry.ctx.backend
    }

    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.registry.ctx.catalogue
    }

    pub fn clock(&self) -> &SharedClock {
        &self.registry.ctx.clock
    }

    /// Decides from memory whether `org` may spend `cost` of `metric` at `now`; never
    /// writes. An org whose actor is still in an older period is rolled into the clock's
    /// period first (and a plan change that came due is applied), so a decision is never
    /// made from stale state.
    pub async fn check(
        &self,
        org: &OrgId,
        metric: &Metric,
        cost: u64,
        now: DateTime<Utc>,
    ) -> Result<CheckOutcome, EngineError> {
        let started = Instant::now();
        let index = self.metric_index(metric)?;
        let current = PeriodKey::containing(now);
        let now_ms = now.timestamp_millis();
        let decide = |view: &super::view::OrgView| view.check(index, cost, now_ms);
        // The map guard must not live across an await: take the answer, then drop it.
        let fast = self.registry.peek(org, |h| decide(&h.view));
        let mut outcome = match fast {
            Some(outcome) => outcome,
            None => decide(&self.registry.get(org).await?.view),
        };
        if outcome.period < current || outcome.plan_change_due {
            self.registry.send(org, CatchUp).await?;
            outcome = decide(&self.registry.get(org).await?.view);
        }
        let ctx = &self.registry.ctx;
        ctx.metrics
            .decision_duration
            .observe(started.elapsed().as_secs_f64());
        ctx.decisions.check(index, outcome.decision.allow);
        Ok(outcome)
    }

    /// `metric`'s catalogue index (check and consume count per index).
    pub(super) fn metric_index(&self, metric: &Metric) -> Result<usize, EngineError> {
        self.catalogue().metric_index(metric).ok_or_else(|| {
            EngineError::Internal(format!("metric {metric} is not in the catalogue"))
        })
    }

    pub async fn seed(&self, org: &OrgId, period: PeriodKey) -> Result<SeedReply, EngineError> {
        self.registry.send(org, Seed { period }).await
    }

    pub async fn entitlements(&self, org: &OrgId) -> Result<EntitlementsView, EngineError> {
        self.registry.send(org, Entitlements).await
    }

    /// The org's billing mirror (`OrgNotFound` for an unknown org).
    pub async fn billing(&self, org: &OrgId) -> Result<BillingRecord, EngineError> {
        self.registry.send(org, ReadBilling).await
    }

    /// Stores the org's billing mirror and moves its quota to the plan it implies, both
    /// durable before returning; returns that plan. With `fence` (the billing lease's
    /// token) the store refuses the write once the lease is no longer that one.
    pub async fn apply_billing(
        &self,
        org: &OrgId,
        record: BillingRecord,
        fence: Option<String>,
    ) -> Result<PlanCode, EngineError> {
        let applied = self
            .registry
            .send(org, ApplyBilling { record, fence })
            .await?;
        applied.durable.await?;
        Ok(applied.plan)
    }

    /// Takes the billing mirror as the store holds it (written by another node sharing
    /// the store) into the org's actor, and the plan it implies.
    pub async fn adopt_stored_billing(&self, org: &OrgId) -> Result<(), EngineError> {
        let period = self.registry.ctx.current_period();
        let stored = self.backend().ledger.load(org, period).await?;
        if let Some(billing) = stored.billing {
            self.registry.send(org, AdoptBilling(billing)).await?;
        }
        Ok(())
    }

    /// The org's record (`OrgNotFound` when there is none).
    pub async fn org(&self, org: &OrgId) -> Result<OrgRecord, EngineError> {
        self.backend()
            .orgs
            .get(org)
            .await?
            .ok_or(EngineError::OrgNotFound)
    }

    /// What the store holds of the org in `period`, read without touching its actor.
    pub async fn stored(
        &self,
        org: &OrgId,
        period: PeriodKey,
    ) -> Result<StoredLedger, EngineError> {
        self.org(org).await?;
        Ok(self.backend().ledger.load(org, period).await?)
    }

    /// Creates an org (atomically with its idempotency key, if any) and its initial
    /// ledger state, durable before returning. The same key with another name or owner
    /// is a conflict.
    pub async fn create_org(
        &self,
        new: NewOrg,
        now: DateTime<Utc>,
    ) -> Result<Created, EngineError> {
        let org = OrgId::generate();
        let record = OrgRecord {
            org_id: org.clone(),
            name: new.name,
            owner_user_id: new.owner_user_id,
            created_ms: now.timestamp_millis(),
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "orgId": org.as_str(),
            "name": record.name,
            "ownerUserId": record.owner_user_id,
        }))
        .map_err(|e| EngineError::Encode {
            what: "org body",
            cause: Arc::new(e),
        })?;
        let fingerprint: [u8; 32] =
            Sha256::digest(format!("{}\0{}", record.name, record.owner_user_id)).into();
        let idempotency = new.idempotency_key.map(|k| {
            let replay = CreateReplay {
                fingerprint,
                body: body.clone(),
            };
            (k, replay)
        });
        let state = OrgState {
            plan: PlanCode::free(),
            period: PeriodKey::containing(now),
        };
        match self
            .backend()
            .orgs
            .create(record, idempotency, state)
            .await?
        {
            CreateOutcome::Created => {
                self.registry.forget_missing(&org);
                tracing::info!(org = %org, "org created");
                Ok(Created::New(org, body))
            }
            CreateOutcome::Replayed(r) if r.fingerprint == fingerprint => {
                Ok(Created::Replayed(r.body))
            }
            CreateOutcome::Replayed(_) => Err(EngineError::Conflict(
                "Idempotency-Key was already used with a different payload".into(),
            )),
        }
    }

    /// A message round trip through every arbiter's probe actor.
    pub async fn ping(&self) -> Result<usize, EngineError> {
        for probe in &self.probes {
            probe
                .send(Ping)
                .await
                .map_err(|_| EngineError::ShuttingDown)??;
        }
        Ok(self.probes.len())
    }

    /// Whether looking up a new request id is already cheap (the sled backend's filter
    /// of stored ids has been rebuilt since start).
    pub fn idempotency_filter_ready(&self) -> bool {
        self.backend().ledger.requests_ready()
    }

    /// The org's actor address (benches and tests that talk to the actor directly).
    pub async fn actor(&self, org: &OrgId) -> Result<Addr<OrgActor>, EngineError> {
        Ok(self.registry.get(org).await?.addr)
    }

    pub fn live_actors(&self) -> usize {
        self.registry.live_count()
    }

    /// Stops the consume flusher and the actor arbiters (after the fronts have drained
    /// and `flush_consumes` has run).
    pub fn stop(&self) {
        self.flusher.abort();
        let arbiters = match self.arbiters.lock() {
            Ok(mut a) => std::mem::take(&mut *a),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for a in arbiters {
            a.stop();
            let _ = a.join();
        }
    }
}

/// Answers pings on one arbiter, proving that arbiter's event loop is alive.
pub struct Probe;

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<Ping> for Probe {
    type Result = Result<(), EngineError>;
    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        Ok(())
    }
}
