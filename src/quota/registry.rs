//! The org-actor registry: `DashMap<OrgId, handle>`, starting an org's actor lazily from
//! the store on first use, spreading actors over one arbiter per core, and forgetting
//! actors that retire (idle eviction or a failed write).
//!
//! DashMap because lookups on the hot path must not serialize on one lock: it shards the
//! map, and the common case is a read of a shard shared with no writer.
//!
//! Unknown org ids are what a gateway forwarding untrusted input sends most: each would
//! cost a store read on the blocking pool. So misses are remembered for a few seconds (a
//! bounded map, cleared for an org when it is created), and cold loads are capped, so
//! however many unknown ids arrive, they cannot occupy the whole blocking pool.

use super::actor::{OrgActor, Snapshot};
use super::context::{ActorSlots, EngineContext};
use super::messages::{EngineError, RetireAfterFailure};
use super::view::OrgView;
use crate::domain::{OrgId, PeriodKey, PlanCode};
use crate::store::{OrgState, StoredLedger};
use actix::prelude::*;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How long an unknown org id is answered from memory.
const MISSING_TTL: Duration = Duration::from_secs(5);
/// Most unknown ids remembered at once.
const MISSING_CAPACITY: usize = 16_384;
/// Most org loads from the store in flight at once.
const COLD_LOADS: usize = 32;

#[derive(Clone)]
pub struct OrgHandle {
    pub addr: Addr<OrgActor>,
    pub generation: u64,
    /// What the actor publishes for checks.
    pub view: Arc<OrgView>,
}

/// The running actors by org. Only the registry adds to it; an actor removes only
/// its own entry, through `ActorSlots`.
#[derive(Default)]
pub struct OrgMap(DashMap<OrgId, OrgHandle, RandomState>);

impl ActorSlots for OrgMap {
    fn release(&self, org: &OrgId, generation: u64) {
        self.0.remove_if(org, |_, h| h.generation == generation);
    }
}

pub struct Registry {
    pub ctx: Arc<EngineContext>,
    map: Arc<OrgMap>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    next_generation: AtomicU64,
    missing: DashMap<OrgId, Instant, RandomState>,
    cold_loads: Semaphore,
}

impl Registry {
    /// Starts `arbiters` threads for org actors (at least one).
    pub fn new(ctx: Arc<EngineContext>, arbiters: usize) -> (Self, Vec<Arbiter>) {
        let owned: Vec<Arbiter> = (0..arbiters.max(1)).map(|_| Arbiter::new()).collect();
        let registry = Self {
            ctx,
            map: Arc::default(),
            arbiters: owned.iter().map(Arbiter::handle).collect(),
            next_arbiter: AtomicUsize::new(0),
            next_generation: AtomicU64::new(1),
            missing: DashMap::default(),
            cold_loads: Semaphore::new(COLD_LOADS),
        };
        (registry, owned)
    }

    fn known_missing(&self, org: &OrgId) -> bool {
        self.missing
            .get(org)
            .is_some_and(|at| at.elapsed() < MISSING_TTL)
    }

    fn remember_missing(&self, org: &OrgId) {
        if self.missing.len() >= MISSING_CAPACITY {
            self.missing.retain(|_, at| at.elapsed() < MISSING_TTL);
            if self.missing.len() >= MISSING_CAPACITY {
                return;
            }
        }
        self.missing.insert(org.clone(), Instant::now());
    }

    /// An org was created: it must not be answered "unknown" from memory.
    pub fn forget_missing(&self, org: &OrgId) {
        self.missing.remove(org);
    }

    /// `f` of the org's running actor, if it has one, without cloning its handle (the
    /// hot path; the map's shard guard is held only during `f`).
    pub fn peek<T>(&self, org: &OrgId, f: impl FnOnce(&OrgHandle) -> T) -> Option<T> {
        self.map.0.get(org).map(|h| f(&h))
    }

    /// The org's running actor, if it has one (no store access).
    pub fn live(&self, org: &OrgId) -> Option<OrgHandle> {
        self.map.0.get(org).map(|h| h.clone())
    }

    /// The org's running actor, starting it from the store if needed.
    pub async fn get(&self, org: &OrgId) -> Result<OrgHandle, EngineError> {
        if let Some(handle) = self.live(org) {
            return Ok(handle);
        }
        let loads = &self.ctx.metrics.org_loads;
        if self.known_missing(org) {
            loads.with_label_values(&["unknown_cached"]).inc();
            return Err(EngineError::OrgNotFound);
        }
        let snapshot = {
            let _permit = self
                .cold_loads
                .acquire()
                .await
                .map_err(|_| EngineError::ShuttingDown)?;
            if let Some(handle) = self.live(org) {
                return Ok(handle);
            }
            let now = self.ctx.clock.now();
            match self.ctx.backend.orgs.get(org).await? {
                None => None,
                Some(_) => {
                    let period = PeriodKey::containing(now);
                    let stored = self.ctx.backend.ledger.load(org, period).await?;
                    Some(snapshot(org.clone(), stored, now))
                }
            }
        };
        let Some(snapshot) = snapshot else {
            loads.with_label_values(&["unknown"]).inc();
            self.remember_missing(org);
            return Err(EngineError::OrgNotFound);
        };
        loads.with_label_values(&["loaded"]).inc();
        Ok(match self.map.0.entry(org.clone()) {
            Entry::Occupied(e) => e.get().clone(),
            Entry::Vacant(e) => {
                let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                let i = self.next_arbiter.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
                let ctx = self.ctx.clone();
                let slots: Arc<dyn ActorSlots> = self.map.clone();
                // Published before the actor starts, so a check right after this
                // returns already sees the loaded state.
                let view = Arc::new(OrgView::new(&ctx.catalogue));
                let plan = ctx.catalogue.get_or_free(&snapshot.state.plan);
                // A fresh view: nothing consumed yet, nothing handed over.
                let _ = view.publish_all(
                    &ctx.catalogue,
                    snapshot.state.period,
                    &plan,
                    &snapshot.counters,
                );
                let now_unix = ctx.clock.now().timestamp();
                view.publish_next_change(snapshot.billing.next_change_unix(now_unix));
                let actor_view = view.clone();
                let addr = OrgActor::start_in_arbiter(&self.arbiters[i], move |_| {
                    OrgActor::new(snapshot, generation, actor_view, ctx, slots)
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
                    self.map.release(org, handle.generation);
                    tokio::task::yield_now().await;
                }
                Ok(result) => return result,
            }
        }
        Err(EngineError::Internal("org actor kept retiring".into()))
    }

    /// Retires the org's actor of `generation` (if it still runs) and waits until it
    /// has: messages queued before this one are handled first, so the store has seen
    /// everything the old actor sent before a fresh one loads.
    pub async fn retire_after_failure(&self, org: &OrgId, generation: u64) {
        let Some(handle) = self.live(org).filter(|h| h.generation == generation) else {
            return;
        };
        let _ = handle
            .addr
            .send(RetireAfterFailure {
                generation,
                error: None,
            })
            .await;
    }

    /// Every running org actor's id.
    pub fn live_orgs(&self) -> std::collections::HashSet<OrgId> {
        self.map.0.iter().map(|e| e.key().clone()).collect()
    }

    /// Every running org actor's view.
    pub fn live_views(&self) -> Vec<(OrgId, Arc<OrgView>)> {
        self.map
            .0
            .iter()
            .map(|e| (e.key().clone(), e.value().view.clone()))
            .collect()
    }

    pub fn live_count(&self) -> usize {
        self.map.0.len()
    }
}

/// An actor's starting state from what is stored. The org is put in the clock's period
/// here: an org stored in an older one is rolled forward (the rollover supervisor may
/// not have reached it yet, e.g. after downtime across a boundary), and one stored in a
/// later one (written before future periods were refused) is moved back, so that no
/// decision is ever made outside the clock's period. (The counters loaded are those of
/// the clock's period.) The plan in force is re-derived from the billing mirror too (a
/// scheduled change may have come due while no actor held the org).
fn snapshot(org: OrgId, stored: StoredLedger, now: chrono::DateTime<chrono::Utc>) -> Snapshot {
    let now_unix = now.timestamp();
    let now = PeriodKey::containing(now);
    let (mut state, mut dirty) = match stored.state {
        Some(s) => (s, false),
        None => (
            OrgState {
                plan: PlanCode::free(),
                period: now,
            },
            true,
        ),
    };
    let mut rolled_from = None;
    if state.period != now {
        if state.period < now {
            rolled_from = Some(state.period);
        } else {
            tracing::warn!(org = %org, stored = %state.period, current = %now, "org stored in a future period; moved back to the clock's");
        }
        state.period = now;
        dirty = true;
    }
    let billing = stored.billing.unwrap_or_default();
    let plan = billing.plan_in_force(now_unix);
    if plan != state.plan {
        state.plan = plan;
        dirty = true;
    }
    Snapshot {
        org,
        state,
        state_dirty: dirty,
        rolled_from,
        counters: stored.counters,
        billing,
    }
}
