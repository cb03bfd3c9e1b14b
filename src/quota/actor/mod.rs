//! `OrgActor`: the single owner of one org's state — plan in force, period, billing
//! mirror — and of its counters in memory (the [`OrgView`] checks read without a
//! message), with the org's recent record answers.
//!
//! A record goes from the actor to the store, which counts it exactly once and makes it
//! durable (`record.rs`); the caller awaits that on its own thread, and duplicates still
//! in flight share the same answer. Period moves live in `roll.rs`, message handlers in
//! `handlers.rs`. The actor never touches the disk: every read and write is a future of
//! the storage interface, and the handlers that move the org between periods run
//! atomically (no other message is handled until they finish), so the org's state is
//! never seen half-moved.

mod handlers;
mod record;
mod roll;

use super::context::{ActorSlots, EngineContext};
use super::flusher::{persist_in_background, usage_writes};
use super::messages::*;
use super::view::OrgView;
use crate::domain::{BillingRecord, Metric, OrgId, PeriodKey, Plan, RequestId};
use crate::store::{LedgerWrite, OrgState};
use actix::prelude::*;
use futures_util::future::{self as future_util, FutureExt};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// What the registry loaded from the store to start an actor.
pub struct Snapshot {
    pub org: OrgId,
    pub state: OrgState,
    /// The state differs from the stored one (never stored, or moved on load).
    pub state_dirty: bool,
    /// The stored period, when loading rolled the org forward from it.
    pub rolled_from: Option<PeriodKey>,
    /// The counters of `state.period`.
    pub counters: HashMap<Metric, u64>,
    pub billing: BillingRecord,
}

/// A request id this actor has sent to the store (or is sending).
struct Known {
    fingerprint: [u8; 16],
    answer: Answer,
}

impl Known {
    fn in_flight(&self) -> bool {
        self.answer.settled().is_none()
    }
}

pub struct OrgActor {
    shared: Arc<EngineContext>,
    /// Where this actor is registered (it removes itself on retiring).
    slots: Arc<dyn ActorSlots>,
    generation: u64,
    org: OrgId,
    plan: Arc<Plan>,
    state: OrgState,
    state_dirty: bool,
    /// A roll done by loading, not yet reported to a rollover sweep, and its write.
    rolled_from: Option<(PeriodKey, Durable)>,
    billing: BillingRecord,
    view: Arc<OrgView>,
    recent: foldhash::HashMap<RequestId, Known>,
    recent_order: VecDeque<RequestId>,
    /// Commits not yet finished.
    in_flight: usize,
    touched: bool,
    /// A request other than a rollover sweep's reached this actor.
    served: bool,
    idle_ticks: u32,
    /// A sweep started this actor only to roll it: it retires once its writes are done,
    /// unless anything else came to it.
    release_requested: bool,
    retired: bool,
}

const IDLE_TICKS: u32 = 4;

fn ready_durable() -> Durable {
    future_util::ready(Ok(())).boxed().shared()
}

impl OrgActor {
    pub fn new(
        snapshot: Snapshot,
        generation: u64,
        view: Arc<OrgView>,
        shared: Arc<EngineContext>,
        slots: Arc<dyn ActorSlots>,
    ) -> Self {
        let plan = shared.catalogue.get_or_free(&snapshot.state.plan);
        Self {
            generation,
            org: snapshot.org,
            plan,
            state: snapshot.state,
            state_dirty: snapshot.state_dirty,
            rolled_from: snapshot.rolled_from.map(|p| (p, ready_durable())),
            billing: snapshot.billing,
            view,
            recent: Default::default(),
            recent_order: VecDeque::new(),
            in_flight: 0,
            touched: true,
            served: false,
            idle_ticks: 0,
            release_requested: false,
            retired: false,
            shared,
            slots,
        }
    }

    fn now_unix(&self) -> i64 {
        self.shared.clock.now().timestamp()
    }

    /// The org's counters of the current period, as the view holds them.
    fn counters(&self) -> HashMap<Metric, u64> {
        let metrics = self.shared.catalogue.metrics();
        metrics
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), self.view.used(i)))
            .collect()
    }

    /// Re-derives the plan in force from the billing mirror; returns the state write if
    /// it changed (the view shows the new plan at once).
    fn follow_plan(&mut self) -> Option<LedgerWrite> {
        let now = self.now_unix();
        self.view
            .publish_next_change(self.billing.next_change_unix(now));
        let plan = self.billing.plan_in_force(now);
        if plan == self.state.plan {
            return None;
        }
        tracing::info!(org = %self.org, from = %self.state.plan, to = %plan, "plan in force changed");
        self.state.plan = plan;
        self.plan = self.shared.catalogue.get_or_free(&self.state.plan);
        self.view.publish_plan(&self.shared.catalogue, &self.plan);
        self.state_dirty = false;
        Some(LedgerWrite::State(self.state.clone()))
    }

    fn apply_billing(
        &mut self,
        record: BillingRecord,
        fence: Option<String>,
        ctx: &mut Context<Self>,
    ) -> BillingApplied {
        self.billing = record;
        let mut writes: Vec<LedgerWrite> = fence.into_iter().map(LedgerWrite::Fence).collect();
        writes.push(LedgerWrite::Billing(Box::new(self.billing.clone())));
        writes.extend(self.follow_plan());
        if self.state_dirty {
            writes.push(self.state_write());
        }
        BillingApplied {
            plan: self.state.plan.clone(),
            durable: self.commit(ctx, writes),
        }
    }

    fn has_in_flight_work(&self) -> bool {
        self.in_flight > 0 || self.recent.values().any(Known::in_flight)
    }

    /// Stops this actor for good; the next request starts a fresh one from the store.
    fn retire(&mut self, ctx: &mut Context<Self>) {
        self.retired = true;
        let generation = self.generation;
        // Before leaving the registry: a batch that skipped this actor must see it.
        self.view.retire();
        self.slots.release(&self.org, generation);
        // Consumed units still pending go to the store now (submitted before anything
        // could load the org afresh), not at the flusher's next tick.
        let writes = usage_writes(&self.shared, &self.view.take_pending());
        if !writes.is_empty() {
            persist_in_background(self.shared.clone(), &self.org, writes);
        }
        ctx.stop();
    }

    fn state_write(&mut self) -> LedgerWrite {
        self.state_dirty = false;
        LedgerWrite::State(self.state.clone())
    }

    /// Commits `writes`; a failure retires the actor (its memory is ahead of the store).
    fn commit(&mut self, ctx: &mut Context<Self>, writes: Vec<LedgerWrite>) -> Durable {
        let pending = self.shared.backend.ledger.commit(&self.org, writes);
        let durable: Durable = async move { pending.await.map_err(EngineError::from) }
            .boxed()
            .shared();
        self.in_flight += 1;
        ctx.spawn(durable.clone().into_actor(self).map(|res, act, ctx| {
            act.in_flight -= 1;
            match res {
                Err(e) => act.retire_after_failure(&e, ctx),
                Ok(()) => act.release_if_unused(ctx),
            }
        }));
        durable
    }

    /// Retires an actor a sweep asked to release once nothing it wrote is in flight —
    /// unless a request other than the sweep's reached it (then it lives on as usual).
    fn release_if_unused(&mut self, ctx: &mut Context<Self>) {
        if !self.release_requested || self.retired || self.has_in_flight_work() {
            return;
        }
        self.release_requested = false;
        if !self.served && !self.view.take_touched() {
            self.retire(ctx);
        }
    }

    /// A write failed: memory may disagree with the store (ahead of it, or behind what
    /// a failed flush still applied), so the next request starts afresh from the store.
    fn retire_after_failure(&mut self, e: &EngineError, ctx: &mut Context<Self>) {
        if !self.retired {
            tracing::error!(org = %self.org, error = %crate::errors::chain(e), "write failed; restarting org actor from the store");
            self.retire(ctx);
        }
    }
}

impl Actor for OrgActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.shared.metrics.actors_live.inc();
        self.shared.metrics.actor_starts.inc();
        if self.state_dirty {
            let write = self.state_write();
            // A rollover sweep counting the roll done by loading waits for this write.
            let durable = self.commit(ctx, vec![write]);
            if let Some((_, pending)) = self.rolled_from.as_mut() {
                *pending = durable;
            }
        }
        let tick = self.shared.idle_ttl / IDLE_TICKS;
        ctx.run_interval(
            tick.max(std::time::Duration::from_millis(10)),
            |act, ctx| {
                if act.billing.subscription.is_some() && !act.retired {
                    if let Some(write) = act.follow_plan() {
                        // A scheduled change came due; a failed write retires the actor.
                        drop(act.commit(ctx, vec![write]));
                    }
                }
                let read = act.view.take_touched();
                if act.touched || read || act.has_in_flight_work() {
                    act.touched = false;
                    act.idle_ticks = 0;
                } else {
                    act.idle_ticks += 1;
                    if act.idle_ticks >= IDLE_TICKS && !act.retired {
                        act.shared.metrics.actor_idle_stops.inc();
                        act.retire(ctx);
                    }
                }
            },
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.shared.metrics.actors_live.dec();
    }
}
