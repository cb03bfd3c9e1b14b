//! `OrgActor`: the single owner of one org's counters and recent idempotency entries.
//!
//! Because exactly one actor writes an org's state, no lock guards a counter; the actor
//! mirrors its current counters into an [`OrgView`] that checks read without a message.
//! A record is looked up, counted and submitted to the group-commit writer in one
//! handler call; the caller then awaits durability on its own thread. Duplicates of a
//! record still in flight share its durability future and receive the identical body.
//!
//! The idempotency look-up reads sled on this arbiter, and only when the in-memory filter
//! says the id may have been stored: a read of a cached page, and since checks never
//! queue behind it (they read the view) a slow read delays only records.

use super::messages::*;
use super::registry::Shared;
use super::view::OrgView;
use crate::domain::{BillingRecord, Metric, PeriodKey, Plan, RequestId};
use crate::store::ledger::{self, IdemEntry, OrgState};
use crate::store::{self, StoreError};
use actix::prelude::*;
use futures_util::future::{self as future_util, FutureExt};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::oneshot;

/// What the registry loaded from the store to start an actor.
pub struct Snapshot {
    pub org: crate::domain::OrgId,
    pub state: OrgState,
    /// The state differs from the stored one (never stored, or rolled on load).
    pub state_dirty: bool,
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
    org: crate::domain::OrgId,
    plan: Arc<Plan>,
    state: OrgState,
    state_dirty: bool,
    billing: BillingRecord,
    current: HashMap<Metric, u64>,
    view: Arc<OrgView>,
    /// Counters of periods other than the current one, loaded on demand. Memory is
    /// authoritative for every counter it holds (its last write may still be in flight).
    other: HashMap<(PeriodKey, Metric), u64>,
    recent: HashMap<RequestId, Known>,
    recent_order: VecDeque<RequestId>,
    /// Rollover loads and commits not yet finished.
    in_flight: usize,
    touched: bool,
    idle_ticks: u32,
    retired: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordBody {
    period_key: String,
    used: u64,
    remaining: u64,
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
            billing: snapshot.billing,
            current: snapshot.counters,
            view,
            other: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            in_flight: 0,
            touched: true,
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
        let plan = self.billing.plan_in_force(self.now_unix());
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

    /// The counter of `metric` in `period`, reading the store for a period not in memory.
    fn counter(&mut self, period: PeriodKey, metric: &Metric) -> Result<u64, StoreError> {
        if period == self.state.period {
            return Ok(self.current.get(metric).copied().unwrap_or(0));
        }
        let key = (period, metric.clone());
        if let Some(used) = self.other.get(&key) {
            return Ok(*used);
        }
        let used = ledger::get_counter(&self.shared.store.ledger, &self.org, period, metric)?;
        self.other.insert(key, used);
        Ok(used)
    }

    fn set_counter(&mut self, period: PeriodKey, metric: &Metric, used: u64) {
        if period == self.state.period {
            self.current.insert(metric.clone(), used);
            if let Some(i) = self.shared.catalogue.metric_index(metric) {
                self.view.publish_used(i, used);
            }
        } else {
            self.other.insert((period, metric.clone()), used);
        }
    }

    /// Keeps at most the configured number of answered ids, never dropping one whose
    /// write is still in flight (a duplicate must find it in memory until it is durable).
    fn remember(&mut self, request: RequestId, known: Known) {
        if self.recent.insert(request.clone(), known).is_none() {
            self.recent_order.push_back(request);
        }
        let cap = self.shared.recent_capacity;
        while self.recent_order.len() > cap {
            let Some(oldest) = self.recent_order.front() else {
                break;
            };
            if self.recent.get(oldest).is_some_and(Known::in_flight) {
                break;
            }
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    fn reply(
        known: &Known,
        fingerprint: &[u8; 16],
        replayed: bool,
    ) -> Result<PendingRecord, EngineError> {
        if &known.fingerprint != fingerprint {
            return Err(EngineError::Conflict(
                "request_id was already used with a different payload".into(),
            ));
        }
        Ok(PendingRecord {
            body: known.body.clone(),
            replayed,
            durable: known.durable.clone(),
        })
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

    /// Submits `ops`; a failure stops the actor (its memory is ahead of the store).
    fn submit(&mut self, ctx: &mut Context<Self>, ops: Vec<ledger::LedgerOp>) -> Durable {
        let addr = ctx.address();
        let rx = self.shared.commit.submit_with_hook(
            ops,
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

    fn record(
        &mut self,
        msg: Record,
        ctx: &mut Context<Self>,
    ) -> Result<PendingRecord, EngineError> {
        if let Some(known) = self.recent.get(&msg.request) {
            return Self::reply(known, &msg.fingerprint, true);
        }
        let key = ledger::idem_key(&self.org, &msg.request);
        let stored = match self.shared.idem_filter.may_contain(&key) {
            true => ledger::get_idem(&self.shared.store.ledger, &self.org, &msg.request)?,
            false => None,
        };
        if let Some(stored) = stored {
            let known = Known {
                fingerprint: stored.fingerprint,
                body: stored.body.into(),
                durable: ready_durable(),
            };
            let reply = Self::reply(&known, &msg.fingerprint, true);
            self.remember(msg.request, known);
            return reply;
        }
        let used = self
            .counter(msg.period, &msg.metric)?
            .saturating_add(msg.value);
        self.set_counter(msg.period, &msg.metric, used);
        let body = RecordBody {
            period_key: msg.period.to_string(),
            used,
            remaining: self.plan.included(&msg.metric).saturating_sub(used),
        };
        let entry = IdemEntry {
            fingerprint: msg.fingerprint,
            body: serde_json::to_vec(&body).map_err(|e| EngineError::Unavailable(e.to_string()))?,
            created_ms: msg.now_ms,
        };
        // Into the filter before the write is submitted: a duplicate that arrives after
        // this actor retires must find it through the store.
        self.shared.idem_filter.insert(&key);
        let mut ops = vec![
            ledger::put_counter(&self.org, msg.period, &msg.metric, used),
            ledger::put_idem(&self.org, &msg.request, &entry),
        ];
        if self.state_dirty {
            ops.extend(self.state_op());
        }
        let known = Known {
            fingerprint: entry.fingerprint,
            body: entry.body.into(),
            durable: self.submit(ctx, ops),
        };
        let reply = Self::reply(&known, &msg.fingerprint, false);
        self.remember(msg.request, known);
        reply
    }

    /// Moves to `period` (forward only) with counters loaded from the store for it, or
    /// with `force` zeroes the current period. Replies whether anything changed, once
    /// the change is durable.
    fn roll_to(
        &mut self,
        period: PeriodKey,
        force: bool,
    ) -> ResponseActFuture<Self, Result<bool, EngineError>> {
        if period < self.state.period || (period == self.state.period && !force) {
            return Box::pin(fut::ready(Ok(false)));
        }
        let tree = self.shared.store.ledger.clone();
        let org = self.org.clone();
        self.in_flight += 1;
        let load = store::blocking(move || ledger::counters_for(&tree, &org, period));
        Box::pin(load.into_actor(self).then(move |loaded, act, ctx| {
            act.in_flight -= 1;
            let outcome = loaded
                .map_err(EngineError::from)
                .map(|loaded| act.apply_roll(period, force, loaded));
            let (tx, rx) = oneshot::channel();
            match outcome {
                Ok(Some(ops)) => {
                    let durable = act.submit(ctx, ops);
                    act.in_flight += 1;
                    ctx.spawn(durable.into_actor(act).map(move |res, act, _| {
                        act.in_flight -= 1;
                        let _ = tx.send(res.map(|()| true));
                    }));
                }
                Ok(None) => {
                    let _ = tx.send(Ok(false));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
            async move { rx.await.unwrap_or(Err(EngineError::Retired)) }.into_actor(act)
        }))
    }

    /// Applies a roll in memory (and the view); returns the writes, or `None` if nothing
    /// changed (another roll got there first, or a forced period had nothing to zero).
    fn apply_roll(
        &mut self,
        period: PeriodKey,
        force: bool,
        mut loaded: HashMap<Metric, u64>,
    ) -> Option<Vec<ledger::LedgerOp>> {
        let mut ops = Vec::new();
        if period > self.state.period {
            self.other.retain(|(p, m), used| {
                if *p == period {
                    loaded.insert(m.clone(), *used);
                }
                *p != period
            });
            let old = self.state.period;
            for (m, used) in std::mem::replace(&mut self.current, loaded) {
                self.other.insert((old, m), used);
            }
            self.state.period = period;
            ops.extend(self.state_op());
        } else if period == self.state.period && force {
            let nonzero: Vec<Metric> = self
                .current
                .iter()
                .filter(|(_, used)| **used > 0)
                .map(|(m, _)| m.clone())
                .collect();
            for m in nonzero {
                self.current.insert(m.clone(), 0);
                ops.push(ledger::put_counter(&self.org, period, &m, 0));
            }
        }
        if ops.is_empty() {
            return None;
        }
        self.publish_all();
        Some(ops)
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
            // Nobody waits on this write; a failure reaches the actor through the hook.
            drop(self.submit(ctx, ops));
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

/// Refuses work once retired (the registry retries on a fresh actor) and marks activity.
macro_rules! refuse_if_retired {
    ($self:ident) => {
        if $self.retired {
            return Err(EngineError::Retired).into();
        }
        $self.touched = true;
    };
}

impl Handler<Record> for OrgActor {
    type Result = Result<PendingRecord, EngineError>;

    fn handle(&mut self, msg: Record, ctx: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        self.record(msg, ctx)
    }
}

impl Handler<CommitFailed> for OrgActor {
    type Result = ();

    fn handle(&mut self, msg: CommitFailed, ctx: &mut Context<Self>) {
        if !self.retired {
            tracing::error!(org = %self.org, error = %msg.0, "write failed; restarting org actor from the store");
            self.retire(ctx);
        }
    }
}

impl Handler<Seed> for OrgActor {
    type Result = ResponseActFuture<Self, Result<SeedReply, EngineError>>;

    fn handle(&mut self, msg: Seed, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Box::pin(fut::ready(Err(EngineError::Retired)));
        }
        self.touched = true;
        if msg.period < self.state.period {
            return Box::pin(fut::ready(Err(EngineError::Conflict(format!(
                "period {} is older than the org's current period {}",
                msg.period, self.state.period
            )))));
        }
        let roll = self.roll_to(msg.period, false);
        Box::pin(roll.map(|res, act, _| {
            res?;
            let used = act.current.get(&Metric::api_call()).copied().unwrap_or(0);
            Ok(SeedReply {
                used,
                remaining: act.plan.included(&Metric::api_call()).saturating_sub(used),
                period: act.state.period,
            })
        }))
    }
}

impl Handler<Rollover> for OrgActor {
    type Result = ResponseActFuture<Self, Result<bool, EngineError>>;

    fn handle(&mut self, msg: Rollover, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Box::pin(fut::ready(Err(EngineError::Retired)));
        }
        self.roll_to(msg.period, msg.force)
    }
}

impl Handler<Entitlements> for OrgActor {
    type Result = Result<EntitlementsView, EngineError>;

    fn handle(&mut self, _: Entitlements, _: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        let used: BTreeMap<Metric, u64> = self
            .plan
            .included
            .keys()
            .chain(self.current.keys())
            .map(|m| (m.clone(), self.current.get(m).copied().unwrap_or(0)))
            .collect();
        Ok(EntitlementsView {
            plan: self.plan.clone(),
            period: self.state.period,
            used,
        })
    }
}

impl Handler<ReadBilling> for OrgActor {
    type Result = Result<BillingRecord, EngineError>;

    fn handle(&mut self, _: ReadBilling, _: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        Ok(self.billing.clone())
    }
}

impl Handler<ApplyBilling> for OrgActor {
    type Result = Result<BillingApplied, EngineError>;

    fn handle(&mut self, msg: ApplyBilling, ctx: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        Ok(self.apply_billing(msg.record, ctx))
    }
}

impl Handler<Ping> for OrgActor {
    type Result = Result<(), EngineError>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        Ok(())
    }
}
