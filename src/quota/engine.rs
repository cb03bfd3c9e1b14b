//! `QuotaEngine`: the façade the HTTP layer calls. It owns the registry of org actors,
//! the probe actors used by diagnostics, and the org-wide sweeps (rollover, forced reset).

use super::actor::OrgActor;
use super::messages::*;
use super::registry::{Registry, Shared};
use super::view::CheckOutcome;
use crate::clock::SharedClock;
use crate::domain::{BillingRecord, Catalogue, Metric, OrgId, PeriodKey, PlanCode};
use crate::metrics::Metrics;
use crate::store::idem_filter::IdemFilter;
use crate::store::ledger::{self, OrgState};
use crate::store::orgs::{self, CreateOutcome, CreateReplay, OrgRecord};
use crate::store::writer::CommitHandle;
use crate::store::{self, Store};
use actix::prelude::*;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct EngineConfig {
    pub arbiters: usize,
    pub idle_ttl: Duration,
    pub recent_capacity: usize,
    pub idempotency_filter_bits_log2: u32,
}

pub struct QuotaEngine {
    registry: Registry,
    probes: Vec<Addr<Probe>>,
    arbiters: std::sync::Mutex<Vec<Arbiter>>,
}

impl QuotaEngine {
    /// Starts the arbiters; must run inside an actix `System`.
    pub fn start(
        store: Store,
        commit: CommitHandle,
        catalogue: Arc<Catalogue>,
        clock: SharedClock,
        metrics: Metrics,
        config: EngineConfig,
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            commit,
            catalogue,
            clock,
            metrics,
            map: DashMap::new(),
            idle_ttl: config.idle_ttl,
            recent_capacity: config.recent_capacity,
            idem_filter: IdemFilter::new(config.idempotency_filter_bits_log2),
        });
        // The filter answers "maybe" (so records read the store) until this scan is done.
        let build = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("edgequota-idem-filter".into())
            .spawn(move || {
                let started = Instant::now();
                match build.idem_filter.build_from(&build.store.ledger) {
                    Ok(Some(keys)) => {
                        build.metrics.idempotency_entries.set(keys as i64);
                        tracing::info!(
                            keys,
                            ms = started.elapsed().as_millis() as u64,
                            "idempotency filter ready"
                        )
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %crate::errors::chain(&e), "idempotency filter scan failed; every record reads the store"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "idempotency filter not built; every record reads the store");
        }
        let (registry, arbiters) = Registry::new(shared, config.arbiters);
        let probes = arbiters
            .iter()
            .map(|a| Probe::start_in_arbiter(&a.handle(), |_| Probe))
            .collect();
        Self {
            registry,
            probes,
            arbiters: std::sync::Mutex::new(arbiters),
        }
    }

    pub(super) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.registry.shared
    }

    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.registry.shared.catalogue
    }

    pub fn clock(&self) -> &SharedClock {
        &self.registry.shared.clock
    }

    pub fn store(&self) -> &Store {
        &self.registry.shared.store
    }

    /// Decides from memory whether `org` may spend `cost` of `metric` at `now`; never
    /// writes. An org whose actor is still in an older period is rolled into the clock's
    /// period first, so a decision is never made from stale counters.
    pub async fn check(
        &self,
        org: &OrgId,
        metric: &Metric,
        cost: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<CheckOutcome, EngineError> {
        let started = Instant::now();
        let index = self.catalogue().metric_index(metric).ok_or_else(|| {
            EngineError::Internal(format!("metric {metric} is not in the catalogue"))
        })?;
        let current = PeriodKey::containing(now);
        let now_ms = now.timestamp_millis();
        let decide = |view: &super::view::OrgView| view.check(index, cost, now_ms);
        // The map guard must not live across an await: take the answer, then drop it.
        let fast = self.registry.shared.map.get(org).map(|h| decide(&h.view));
        let mut outcome = match fast {
            Some(outcome) => outcome,
            None => decide(&self.registry.get(org).await?.view),
        };
        if outcome.period < current || outcome.plan_change_due {
            self.registry.send(org, CatchUp).await?;
            outcome = decide(&self.registry.get(org).await?.view);
        }
        let m = &self.registry.shared.metrics;
        m.decision_duration.observe(started.elapsed().as_secs_f64());
        let result = if outcome.decision.allow {
            "allow"
        } else {
            "deny"
        };
        m.quota_checks
            .with_label_values(&[metric.as_str(), result])
            .inc();
        Ok(outcome)
    }

    /// Records usage once per request id; returns only once the record is durable.
    pub async fn record(&self, org: &OrgId, record: Record) -> Result<RecordReply, EngineError> {
        let m = &self.registry.shared.metrics;
        let (metric, value) = (record.metric.clone(), record.value);
        let pending = match self.registry.send(org, record).await {
            Ok(p) => p,
            Err(e @ EngineError::Conflict(_)) => {
                m.usage_records.with_label_values(&["conflict"]).inc();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if let Err(e) = pending.durable.await {
            m.usage_records.with_label_values(&["failed"]).inc();
            return Err(e);
        }
        if pending.replayed {
            m.usage_records.with_label_values(&["duplicate"]).inc();
        } else {
            m.usage_records.with_label_values(&["recorded"]).inc();
            m.idempotency_entries.inc();
            m.usage_units
                .with_label_values(&[metric.as_str()])
                .inc_by(value);
        }
        Ok(RecordReply {
            body: pending.body,
            replayed: pending.replayed,
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
    /// durable before returning; returns that plan.
    pub async fn apply_billing(
        &self,
        org: &OrgId,
        record: BillingRecord,
    ) -> Result<PlanCode, EngineError> {
        let applied = self.registry.send(org, ApplyBilling { record }).await?;
        applied.durable.await?;
        Ok(applied.plan)
    }

    /// Creates an org (atomically with its idempotency key, if any) and its initial
    /// ledger state, durable before returning.
    pub async fn create_org(
        &self,
        record: OrgRecord,
        idempotency: Option<(String, CreateReplay)>,
    ) -> Result<CreateOutcome, EngineError> {
        let store = self.store().clone();
        let org = record.org_id.clone();
        let outcome = store::blocking(move || {
            orgs::create(
                &store.orgs,
                &store.org_idem,
                &record,
                idempotency.as_ref().map(|(k, r)| (k.as_str(), r.clone())),
            )
        })
        .await?;
        if let CreateOutcome::Created = outcome {
            self.registry.forget_missing(&org);
            let state = OrgState {
                plan: PlanCode::free(),
                period: PeriodKey::containing(self.clock().now()),
            };
            // The commit's flush also makes the org record above durable.
            self.registry
                .shared
                .commit
                .commit(vec![ledger::put_state(&org, &state)])
                .await?;
        }
        Ok(outcome)
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

    /// Whether the idempotency filter has been rebuilt from the store since start.
    pub fn idempotency_filter_ready(&self) -> bool {
        self.registry.shared.idem_filter.is_ready()
    }

    /// The org's actor address (benches and tests that talk to the actor directly).
    pub async fn actor(&self, org: &OrgId) -> Result<Addr<OrgActor>, EngineError> {
        Ok(self.registry.get(org).await?.addr)
    }

    pub fn live_actors(&self) -> usize {
        self.registry.live_count()
    }

    /// Stops the actor arbiters (after the HTTP server has drained).
    pub fn stop(&self) {
        self.registry.shared.idem_filter.abandon();
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
