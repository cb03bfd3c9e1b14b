//! The org-actor registry: `DashMap<OrgId, handle>`, starting an org's actor lazily from
//! the store on first use, spreading actors over one arbiter per core, and forgetting
//! actors that retire (idle eviction or a failed write).
//!
//! DashMap because lookups on the hot path must not serialize on one lock: it shards the
//! map, and the common case is a read of a shard shared with no writer.

use super::actor::{OrgActor, Snapshot};
use super::messages::EngineError;
use super::view::{CheckOutcome, OrgView};
use crate::clock::SharedClock;
use crate::domain::{Catalogue, OrgId, PeriodKey, PlanCode};
use crate::metrics::Metrics;
use crate::store::idem_filter::IdemFilter;
use crate::store::ledger::{self, OrgState};
use crate::store::writer::CommitHandle;
use crate::store::{self, orgs, Store};
use actix::prelude::*;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct OrgHandle {
    pub addr: Addr<OrgActor>,
    pub generation: u64,
    /// What the actor publishes for checks.
    pub view: Arc<OrgView>,
}

/// What every org actor shares: the store, the writer, the catalogue, the clock.
pub struct Shared {
    pub store: Store,
    pub commit: CommitHandle,
    pub catalogue: Arc<Catalogue>,
    pub clock: SharedClock,
    pub metrics: Metrics,
    pub map: DashMap<OrgId, OrgHandle>,
    pub idle_ttl: Duration,
    pub recent_capacity: usize,
    /// Which idempotency keys may be in the ledger (spares look-ups of fresh ids).
    pub idem_filter: IdemFilter,
}

pub struct Registry {
    pub shared: Arc<Shared>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    next_generation: AtomicU64,
}

impl Registry {
    /// Starts `arbiters` threads for org actors (at least one).
    pub fn new(shared: Arc<Shared>, arbiters: usize) -> (Self, Vec<Arbiter>) {
        let owned: Vec<Arbiter> = (0..arbiters.max(1)).map(|_| Arbiter::new()).collect();
        let registry = Self {
            shared,
            arbiters: owned.iter().map(Arbiter::handle).collect(),
            next_arbiter: AtomicUsize::new(0),
            next_generation: AtomicU64::new(1),
        };
        (registry, owned)
    }

    /// The org's running actor, starting it from the store if needed.
    pub async fn get(&self, org: &OrgId) -> Result<OrgHandle, EngineError> {
        if let Some(handle) = self.shared.map.get(org) {
            return Ok(handle.clone());
        }
        let snapshot = {
            let store = self.shared.store.clone();
            let now = self.shared.clock.now();
            let org = org.clone();
            store::blocking(move || load(&store, org, now))
                .await
                .map_err(EngineError::from)?
        }
        .ok_or(EngineError::OrgNotFound)?;
        Ok(match self.shared.map.entry(org.clone()) {
            Entry::Occupied(e) => e.get().clone(),
            Entry::Vacant(e) => {
                let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
                let shared = self.shared.clone();
                // Published before the actor starts, so a check right after this
                // returns already sees the loaded state.
                let view = Arc::new(OrgView::new(&shared.catalogue));
                let plan = shared.catalogue.get_or_free(&snapshot.state.plan);
                view.publish_all(
                    &shared.catalogue,
                    snapshot.state.period,
                    &plan,
                    &snapshot.counters,
                );
                let actor_view = view.clone();
                let addr = OrgActor::start_in_arbiter(&self.arbiters[i], move |_| {
                    OrgActor::new(snapshot, generation, actor_view, shared)
                });
                e.insert(OrgHandle {
                    addr,
                    generation,
                    view,
                })
                .clone()
            }
        })
    }

    /// Decides a check from the view the org's actor publishes, on the caller's thread.
    /// `metric_index` is the metric's catalogue index.
    pub async fn check(
        &self,
        org: &OrgId,
        metric_index: usize,
        cost: u64,
    ) -> Result<CheckOutcome, EngineError> {
        if let Some(handle) = self.shared.map.get(org) {
            return Ok(handle.view.check(metric_index, cost));
        }
        Ok(self.get(org).await?.view.check(metric_index, cost))
    }

    /// Sends `msg` to the org's actor, retrying on a fresh actor when the one found was
    /// retiring (its state is in the store by then).
    pub async fn send<M, R>(&self, org: &OrgId, msg: M) -> Result<R, EngineError>
    where
        M: Message<Result = Result<R, EngineError>> + Clone + Send + 'static,
        R: Send + 'static,
        OrgActor: Handler<M>,
    {
        for _ in 0..4 {
            let handle = self.get(org).await?;
            match handle.addr.send(msg.clone()).await {
                Ok(Err(EngineError::Retired)) | Err(_) => {
                    self.shared
                        .map
                        .remove_if(org, |_, h| h.generation == handle.generation);
                    tokio::task::yield_now().await;
                }
                Ok(result) => return result,
            }
        }
        Err(EngineError::Unavailable("org actor kept retiring".into()))
    }

    /// Every running org actor (for sweeps that must reach live state too).
    pub fn live_handles(&self) -> Vec<(OrgId, OrgHandle)> {
        self.shared
            .map
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    pub fn live_count(&self) -> usize {
        self.shared.map.len()
    }
}

/// Reads what an actor needs; `None` when the org does not exist. An org whose stored
/// period is older than `now` is rolled forward here (the rollover supervisor may not
/// have reached it yet, e.g. after downtime across a month boundary).
/// The plan in force is re-derived from the billing mirror here too (a scheduled change
/// may have come due while no actor held the org).
fn load(
    store: &Store,
    org: OrgId,
    now: chrono::DateTime<chrono::Utc>,
) -> store::StoreResult<Option<Snapshot>> {
    let now_unix = now.timestamp();
    let now = PeriodKey::containing(now);
    if orgs::get(&store.orgs, &org)?.is_none() {
        return Ok(None);
    }
    let (mut state, mut dirty) = match ledger::get_state(&store.ledger, &org)? {
        Some(s) => (s, false),
        None => (
            OrgState {
                plan: PlanCode::free(),
                period: now,
            },
            true,
        ),
    };
    if state.period < now {
        state.period = now;
        dirty = true;
    }
    let billing = ledger::get_billing(&store.ledger, &org)?.unwrap_or_default();
    let plan = billing.plan_in_force(now_unix);
    if plan != state.plan {
        state.plan = plan;
        dirty = true;
    }
    let counters = ledger::counters_for(&store.ledger, &org, state.period)?;
    Ok(Some(Snapshot {
        org,
        state,
        state_dirty: dirty,
        counters,
        billing,
    }))
}
