//! `OrgActor`: the single owner of one org's counters and recent idempotency entries.
//!
//! Because exactly one actor writes an org's state, no lock guards a counter. Checks are
//! answered from memory. A record is counted in memory, submitted to the group-commit
//! writer, and answered only after the writer reports it durable. Duplicates of a record
//! still in flight wait for its outcome and receive the identical body. Store reads
//! (idempotency look-ups, counters of other periods) run on the blocking pool so that the
//! arbiter thread keeps answering checks for its other orgs meanwhile.

use super::decision::decide;
use super::messages::*;
use super::registry::Shared;
use crate::domain::{Metric, PeriodKey, Plan, PlanCode, RequestId};
use crate::store::ledger::{self, IdemEntry, OrgState};
use crate::store::{self, StoreError};
use actix::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// What the registry loaded from the store to start an actor.
pub struct Snapshot {
    pub org: crate::domain::OrgId,
    pub state: OrgState,
    /// The state differs from the stored one (never stored, or rolled on load).
    pub state_dirty: bool,
    pub counters: HashMap<Metric, u64>,
}

type Waiter = ([u8; 16], oneshot::Sender<Result<RecordReply, EngineError>>);

pub struct OrgActor {
    shared: Arc<Shared>,
    generation: u64,
    org: crate::domain::OrgId,
    plan: Arc<Plan>,
    state: OrgState,
    state_dirty: bool,
    current: HashMap<Metric, u64>,
    /// Counters of periods other than the current one, loaded on demand.
    other: HashMap<(PeriodKey, Metric), u64>,
    recent: HashMap<RequestId, IdemEntry>,
    recent_order: VecDeque<RequestId>,
    pending: HashMap<RequestId, Vec<Waiter>>,
    /// Store reads and writes not yet finished; the actor is not evicted while any are.
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

impl OrgActor {
    pub fn new(snapshot: Snapshot, generation: u64, shared: Arc<Shared>) -> Self {
        let plan = shared.catalogue.get_or_free(&snapshot.state.plan);
        Self {
            generation,
            org: snapshot.org,
            plan,
            state: snapshot.state,
            state_dirty: snapshot.state_dirty,
            current: snapshot.counters,
            other: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            pending: HashMap::new(),
            in_flight: 0,
            touched: true,
            idle_ticks: 0,
            retired: false,
            shared,
        }
    }

    fn used(&self, period: PeriodKey, metric: &Metric) -> Option<u64> {
        if period == self.state.period {
            Some(self.current.get(metric).copied().unwrap_or(0))
        } else {
            self.other.get(&(period, metric.clone())).copied()
        }
    }

    fn add_usage(&mut self, period: PeriodKey, metric: &Metric, value: u64) -> u64 {
        let slot = if period == self.state.period {
            self.current.entry(metric.clone()).or_insert(0)
        } else {
            self.other.entry((period, metric.clone())).or_insert(0)
        };
        *slot = slot.saturating_add(value);
        *slot
    }

    fn remember(&mut self, request: RequestId, entry: IdemEntry) {
        let cap = self.shared.recent_capacity;
        if cap == 0 {
            return;
        }
        if self.recent.insert(request.clone(), entry).is_none() {
            self.recent_order.push_back(request);
            while self.recent_order.len() > cap {
                if let Some(old) = self.recent_order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    fn replay(entry: &IdemEntry, fingerprint: &[u8; 16]) -> Result<RecordReply, EngineError> {
        if &entry.fingerprint == fingerprint {
            Ok(RecordReply {
                body: entry.body.as_slice().into(),
                replayed: true,
            })
        } else {
            Err(EngineError::Conflict(
                "request_id was already used with a different payload".into(),
            ))
        }
    }

    /// Answers everyone waiting on `request`: the first submitter gets the fresh body,
    /// duplicates the same body marked as a replay (or a conflict if their payload differs).
    fn resolve(&mut self, request: &RequestId, entry: &IdemEntry, fresh: bool) {
        for (i, (fp, tx)) in self
            .pending
            .remove(request)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let mut reply = Self::replay(entry, &fp);
            if let Ok(r) = &mut reply {
                r.replayed = !(fresh && i == 0);
            }
            let _ = tx.send(reply);
        }
    }

    fn fail(&mut self, request: &RequestId, error: EngineError) {
        for (_, tx) in self.pending.remove(request).unwrap_or_default() {
            let _ = tx.send(Err(error.clone()));
        }
    }

    /// A failed durable write leaves memory ahead of the store: stop, so the next request
    /// starts a fresh actor from what is actually stored.
    fn poison(&mut self, ctx: &mut Context<Self>, error: &StoreError) {
        tracing::error!(org = %self.org, error = %error, "write failed; restarting org actor from the store");
        self.retire(ctx);
    }

    fn retire(&mut self, ctx: &mut Context<Self>) {
        self.retired = true;
        let generation = self.generation;
        self.shared
            .map
            .remove_if(&self.org, |_, handle| handle.generation == generation);
        for request in self.pending.keys().cloned().collect::<Vec<_>>() {
            self.fail(&request, EngineError::Retired);
        }
        ctx.stop();
    }

    fn state_op(&mut self) -> Vec<ledger::LedgerOp> {
        self.state_dirty = false;
        vec![ledger::put_state(&self.org, &self.state)]
    }

    /// Submits `ops` and runs `then` in the actor once they are durable; a failure
    /// poisons the actor and is passed to `then`.
    fn commit<F>(&mut self, ctx: &mut Context<Self>, ops: Vec<ledger::LedgerOp>, then: F)
    where
        F: FnOnce(&mut Self, &mut Context<Self>, Result<(), StoreError>) + 'static,
    {
        self.in_flight += 1;
        let rx = self.shared.commit.submit(ops);
        let fut = async move { rx.await.unwrap_or(Err(StoreError::WriterGone)) };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.in_flight -= 1;
            if let Err(e) = &res {
                act.poison(ctx, e);
            }
            then(act, ctx, res);
        }));
    }

    fn after_lookup(
        &mut self,
        msg: Record,
        looked_up: Result<(Option<IdemEntry>, Option<u64>), StoreError>,
        ctx: &mut Context<Self>,
    ) {
        let (found, stored_counter) = match looked_up {
            Ok(v) => v,
            Err(e) => return self.fail(&msg.request, e.into()),
        };
        if let Some(entry) = found {
            self.shared
                .metrics
                .usage_records
                .with_label_values(&["duplicate"])
                .inc();
            self.resolve(&msg.request, &entry, false);
            self.remember(msg.request, entry);
            return;
        }
        if let Some(c) = stored_counter {
            // Another record may have loaded (and bumped) it meanwhile, or a rollover may
            // have made its period current: memory wins in both cases.
            if msg.period != self.state.period {
                self.other
                    .entry((msg.period, msg.metric.clone()))
                    .or_insert(c);
            }
        }
        let used = self.add_usage(msg.period, &msg.metric, msg.value);
        let remaining = self.plan.included(&msg.metric).saturating_sub(used);
        let body = RecordBody {
            period_key: msg.period.to_string(),
            used,
            remaining,
        };
        let entry = IdemEntry {
            fingerprint: msg.fingerprint,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            created_ms: msg.now_ms,
        };
        let mut ops = vec![ledger::put_counter(
            &self.org,
            msg.period,
            &msg.metric,
            used,
        )];
        ops.extend(ledger::put_idem(&self.org, &msg.request, &entry));
        if self.state_dirty {
            ops.extend(self.state_op());
        }
        self.commit(ctx, ops, move |act, _, res| match res {
            Ok(()) => {
                let m = &act.shared.metrics;
                m.usage_records.with_label_values(&["recorded"]).inc();
                m.usage_units
                    .with_label_values(&[msg.metric.as_str()])
                    .inc_by(msg.value);
                act.resolve(&msg.request, &entry, true);
                act.remember(msg.request, entry);
            }
            Err(e) => {
                act.shared
                    .metrics
                    .usage_records
                    .with_label_values(&["failed"])
                    .inc();
                act.fail(&msg.request, e.into());
            }
        });
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
            let outcome: Result<(bool, Vec<ledger::LedgerOp>), EngineError> = (|| {
                let loaded = loaded?;
                if period < act.state.period {
                    return Ok((false, Vec::new()));
                }
                let mut ops = Vec::new();
                if period > act.state.period {
                    // Memory is authoritative for every counter it holds (writes of
                    // those may still be in flight), so it wins over what was loaded, and
                    // the outgoing period's counters stay in memory for late records.
                    let mut counters = loaded;
                    act.other.retain(|(p, m), used| {
                        if *p == period {
                            counters.insert(m.clone(), *used);
                        }
                        *p != period
                    });
                    let old = act.state.period;
                    for (m, used) in std::mem::replace(&mut act.current, counters) {
                        act.other.insert((old, m), used);
                    }
                    act.state.period = period;
                    ops.extend(act.state_op());
                } else {
                    // force within the current period
                    let nonzero: Vec<Metric> = act
                        .current
                        .iter()
                        .filter(|(_, used)| **used > 0)
                        .map(|(m, _)| m.clone())
                        .collect();
                    if nonzero.is_empty() {
                        return Ok((false, Vec::new()));
                    }
                    for m in nonzero {
                        act.current.insert(m.clone(), 0);
                        ops.push(ledger::put_counter(&act.org, period, &m, 0));
                    }
                }
                Ok((true, ops))
            })();
            let (tx, rx) = oneshot::channel();
            match outcome {
                Ok((true, ops)) => act.commit(ctx, ops, move |_, _, res| {
                    let _ = tx.send(res.map(|()| true).map_err(EngineError::from));
                }),
                other => {
                    let _ = tx.send(other.map(|(changed, _)| changed));
                }
            }
            async move { rx.await.unwrap_or(Err(EngineError::Retired)) }.into_actor(act)
        }))
    }

    pub fn set_plan(&mut self, code: &PlanCode) {
        self.plan = self.shared.catalogue.get_or_free(code);
        self.state.plan = self.plan.code.clone();
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
            self.commit(ctx, ops, |_, _, _| {});
        }
        let tick = self.shared.idle_ttl / IDLE_TICKS;
        ctx.run_interval(
            tick.max(std::time::Duration::from_millis(10)),
            |act, ctx| {
                if act.touched || act.in_flight > 0 || !act.pending.is_empty() {
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

macro_rules! refuse_if_retired {
    ($self:ident) => {
        if $self.retired {
            return Err(EngineError::Retired).into();
        }
        $self.touched = true;
    };
}

impl Handler<Check> for OrgActor {
    type Result = Result<CheckOutcome, EngineError>;

    fn handle(&mut self, msg: Check, _: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        let started = Instant::now();
        let included = self.plan.included(&msg.metric);
        let used = self.current.get(&msg.metric).copied().unwrap_or(0);
        let decision = decide(used, included, msg.cost);
        let m = &self.shared.metrics;
        m.decision_duration.observe(started.elapsed().as_secs_f64());
        m.quota_checks
            .with_label_values(&[
                msg.metric.as_str(),
                if decision.allow { "allow" } else { "deny" },
            ])
            .inc();
        Ok(CheckOutcome {
            decision,
            included,
            used,
            period: self.state.period,
        })
    }
}

impl Handler<Record> for OrgActor {
    type Result = ResponseFuture<Result<RecordReply, EngineError>>;

    fn handle(&mut self, msg: Record, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Box::pin(async { Err(EngineError::Retired) });
        }
        self.touched = true;
        if let Some(entry) = self.recent.get(&msg.request) {
            let reply = Self::replay(entry, &msg.fingerprint);
            let outcome = if reply.is_ok() {
                "duplicate"
            } else {
                "conflict"
            };
            self.shared
                .metrics
                .usage_records
                .with_label_values(&[outcome])
                .inc();
            return Box::pin(async move { reply });
        }
        let (tx, rx) = oneshot::channel();
        let answer = Box::pin(async move { rx.await.unwrap_or(Err(EngineError::Retired)) });
        if let Some(waiters) = self.pending.get_mut(&msg.request) {
            waiters.push((msg.fingerprint, tx));
            return answer;
        }
        self.pending
            .insert(msg.request.clone(), vec![(msg.fingerprint, tx)]);
        let tree = self.shared.store.ledger.clone();
        let (org, request) = (self.org.clone(), msg.request.clone());
        let counter_needed = self.used(msg.period, &msg.metric).is_none();
        let (period, metric) = (msg.period, msg.metric.clone());
        self.in_flight += 1;
        let lookup = store::blocking(move || {
            let found = ledger::get_idem(&tree, &org, &request)?;
            let counter = match (&found, counter_needed) {
                (None, true) => Some(ledger::get_counter(&tree, &org, period, &metric)?),
                _ => None,
            };
            Ok((found, counter))
        });
        ctx.spawn(lookup.into_actor(self).map(move |res, act, ctx| {
            act.in_flight -= 1;
            act.after_lookup(msg, res, ctx);
        }));
        answer
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

impl Handler<Ping> for OrgActor {
    type Result = Result<(), EngineError>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        Ok(())
    }
}
