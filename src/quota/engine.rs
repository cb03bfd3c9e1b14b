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
use futures_util::stream::{self, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many orgs a sweep rolls at once (bounds actor starts and store reads in flight).
const SWEEP_CONCURRENCY: usize = 64;

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
                    Err(e) => tracing::error!(error = %e, "idempotency filter scan failed; every record reads the store"),
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

    /// Decides from memory whether `org` may spend `cost` of `metric`; never writes.
    pub async fn check(
        &self,
        org: &OrgId,
        metric: &Metric,
        cost: u64,
    ) -> Result<CheckOutcome, EngineError> {
        let started = Instant::now();
        let index = self.catalogue().metric_index(metric).ok_or_else(|| {
            EngineError::Unavailable(format!("metric {metric} is not in the catalogue"))
        })?;
        let outcome = self.registry.check(org, index, cost).await?;
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

    /// Moves every org whose current period is older than `period` into it (with
    /// `force`, also zeroes orgs already in it). Returns how many orgs changed.
    pub async fn rollover(
        &self,
        period: PeriodKey,
        force: bool,
        trigger: &'static str,
    ) -> Result<u64, EngineError> {
        let store = self.store().clone();
        let mut targets: HashSet<OrgId> = store::blocking(move || {
            let mut out = HashSet::new();
            for item in ledger::all_states(&store.ledger) {
                let (org, state) = item?;
                if state.period < period || (force && state.period == period) {
                    out.insert(org);
                }
            }
            Ok(out)
        })
        .await?;
        targets.extend(self.registry.live_handles().into_iter().map(|(org, _)| org));
        let results: Vec<Result<bool, EngineError>> = stream::iter(targets)
            .map(|org| async move {
                match self.registry.send(&org, Rollover { period, force }).await {
                    Err(EngineError::OrgNotFound) => Ok(false),
                    other => other,
                }
            })
            .buffer_unordered(SWEEP_CONCURRENCY)
            .collect()
            .await;
        let m = &self.registry.shared.metrics;
        m.rollover_runs.with_label_values(&[trigger]).inc();
        let mut updated = 0;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(true) => updated += 1,
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        m.rollover_orgs.inc_by(updated);
        tracing::info!(%period, force, trigger, updated, failed = first_error.is_some(), "rollover sweep");
        match first_error {
            Some(e) => Err(e),
            None => Ok(updated),
        }
    }

    /// A message round trip through every arbiter's probe actor.
    pub async fn ping(&self) -> Result<usize, EngineError> {
        for probe in &self.probes {
            probe
                .send(Ping)
                .await
                .map_err(|e| EngineError::Unavailable(e.to_string()))??;
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
