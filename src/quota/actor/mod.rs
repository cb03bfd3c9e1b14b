//! `OrgActor`: the single owner of one org's counters and recent idempotency entries.
//!
//! Because exactly one actor writes an org's state, no lock guards a counter; the actor
//! mirrors its current counters into an [`OrgView`] that checks read without a message.
//! A record is looked up, counted and submitted to the group-commit writer in one
//! handler call (`record.rs`); the caller then awaits durability on its own thread.
//! Duplicates of a record still in flight share its durability future and receive the
//! identical body. Period moves live in `roll.rs`, message handlers in `handlers.rs`.
//!
//! Every write the actor submits is behind its fence: once one fails, the writer refuses
//! the rest and the actor retires, so the next request starts from what is stored.

mod handlers;
mod record;
mod roll;

use super::messages::*;
use super::registry::Shared;
use super::view::OrgView;
use crate::domain::{BillingRecord, Metric, OrgId, PeriodKey, Plan, RequestId};
use crate::store::ledger::{self, OrgState};
use crate::store::writer::{new_fence, Fence};
use crate::store::StoreError;
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
    pub counters: HashMap<Metric, u64>,
    pub billing: BillingRecord,
}

/// A request id this actor has answered (or is answering).
struct Known {
    fingerprint: [u8; 16],
    body: Arc<[u8]>,
    durable: Durable,
}

impl Known {
    /// Polls the shared future once, so the answer does not depend on whether the
    /// original caller is still awaiting it.
    fn in_flight(&self) -> bool {
        self.durable.clone().now_or_never().is_none()
    }
}

pub struct OrgActor {
    shared: Arc<Shared>,
    generation: u64,
    org: OrgId,
    plan: Arc<Plan>,
    state: OrgState,
    state_dirty: bool,
    /// A roll done by loading, not yet reported to a rollover sweep, and its write.
    rolled_from: Option<(PeriodKey, Durable)>,
    billing: BillingRecord,
    current: HashMap<Metric, u64>,
    view: Arc<OrgView>,
    fence: Fence,
    /// Counters of periods other than the current one, loaded on demand. Memory is
    /// authoritative for every counter it holds (its last write may still be in flight).
    other: HashMap<(PeriodKey, Metric), u64>,
    recent: HashMap<RequestId, Known>,
    recent_order: VecDeque<RequestId>,
    /// Rollover loads and commits not yet finished.
    in_flight: usize,
    touched: bool,
    /// A request other than a rollover sweep's reached this actor.
    served: bool,
    idle_ticks: u32,
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
        shared: Arc<Shared>,
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
            current: snapshot.counters,
            view,
            fence: new_fence(),
            other: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            in_flight: 0,
            touched: true,
            served: false,
            idle_ticks: 0,
            retired: false,
            shared,
        }
    }

    fn publish_all(&self) {
        self.view.publish_all(
            &self.shared.catalogue,
            self.state.period,
            &self.plan,
            &self.current,
        );
    }

    fn now_unix(&self) -> i64 {
        self.shared.clock.now().timestamp()
    }

    /// Re-derives the plan in force from the billing mirror; returns the state write if
    /// it changed (the view is republished at once).
    fn follow_plan(&mut self) -> Option<ledger::LedgerOp> {
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
        self.publish_all();
        self.state_dirty = false;
        Some(ledger::put_state(&self.org, &self.state))
    }

    fn apply_billing(&mut self, record: BillingRecord, ctx: &mut Context<Self>) -> BillingApplied {
        self.billing = record;
        let mut ops = vec![ledger::put_billing(&self.org, &self.billing)];
        ops.extend(self.follow_plan());
        if self.state_dirty {
            ops.extend(self.state_op());
        }
        BillingApplied {
            plan: self.state.plan.clone(),
            durable: self.submit(ctx, ops),
        }
    }

    fn has_in_flight_work(&self) -> bool {
        self.in_flight > 0 || self.recent.values().any(Known::in_flight)
    }

    /// Stops this actor for good; the next request starts a fresh one from the store.
    fn retire(&mut self, ctx: &mut Context<Self>) {
        self.retired = true;
        let generation = self.generation;
        self.shared
            .map
            .remove_if(&self.org, |_, handle| handle.generation == generation);
        ctx.stop();
    }

    fn state_op(&mut self) -> Vec<ledger::LedgerOp> {
        self.state_dirty = false;
        vec![ledger::put_state(&self.org, &self.state)]
    }

    /// Submits `ops` behind this actor's fence; a failure stops the actor (its memory is
    /// ahead of the store).
    fn submit(&mut self, ctx: &mut Context<Self>, ops: Vec<ledger::LedgerOp>) -> Durable {
        let addr = ctx.address();
        let rx = self.shared.commit.submit_fenced(
            ops,
            &self.fence,
            Box::new(move |e: &StoreError| addr.do_send(CommitFailed(e.clone()))),
        );
        async move {
            rx.await
                .map_err(|_| EngineError::Store(StoreError::WriterGone))?
                .map_err(EngineError::Store)
        }
        .boxed()
        .shared()
    }
}

impl Actor for OrgActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.shared.metrics.actors_live.inc();
        self.shared.metrics.actor_starts.inc();
        if self.state_dirty {
            let ops = self.state_op();
            // A failure reaches the actor through the fence's hook; a rollover sweep
            // counting the roll done by loading waits for this write.
            let durable = self.submit(ctx, ops);
            if let Some((_, pending)) = self.rolled_from.as_mut() {
                *pending = durable;
            }
        }
        let tick = self.shared.idle_ttl / IDLE_TICKS;
        ctx.run_interval(
            tick.max(std::time::Duration::from_millis(10)),
            |act, ctx| {
                if act.billing.subscription.is_some() && !act.retired {
                    if let Some(op) = act.follow_plan() {
                        // A scheduled change came due; a failed write retires the actor.
                        drop(act.submit(ctx, vec![op]));
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
