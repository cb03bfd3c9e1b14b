//! The messages an org actor answers. Every request that reads or changes the org's
//! counters first brings the org into the clock's period (a live actor may still be in
//! the previous one for a moment after a boundary) and applies a plan change that came
//! due, so nothing is decided from stale state; a period after the clock's is refused.
//! Handlers that may move the org between periods are atomic.

use super::roll::Reply;
use super::OrgActor;
use crate::domain::{BillingRecord, Metric, PeriodKey};
use crate::quota::messages::*;
use actix::prelude::*;
use std::collections::BTreeMap;

/// Refuses work once retired (the registry retries on a fresh actor) and marks activity.
macro_rules! refuse_if_retired {
    ($self:ident) => {
        if $self.retired {
            return Err(EngineError::Retired).into();
        }
        $self.touched = true;
        $self.served = true;
    };
}

/// As `refuse_if_retired`, for atomic handlers.
macro_rules! atomic_refuse_if_retired {
    ($self:ident) => {
        if $self.retired {
            return AtomicResponse::new(Box::pin(fut::ready(Err(EngineError::Retired))));
        }
        $self.touched = true;
        $self.served = true;
    };
}

impl OrgActor {
    /// Applies a plan change that came due, and rolls forward to the clock's period if
    /// this actor is still in an older one.
    fn catch_up(&mut self, ctx: &mut Context<Self>) -> Reply<bool> {
        if let Some(write) = self.follow_plan() {
            // The view already shows the plan; a failed write retires the actor.
            drop(self.commit(ctx, vec![write]));
        }
        let current = self.shared.current_period();
        if current > self.state.period {
            self.roll_to(current, false, false, ctx)
        } else {
            Box::pin(fut::ready(Ok(false)))
        }
    }

    fn entitlements_view(&self) -> EntitlementsView {
        let counters = self.counters();
        let used: BTreeMap<Metric, u64> = counters
            .into_iter()
            .filter(|(m, used)| *used > 0 || self.plan.included.contains_key(m))
            .collect();
        EntitlementsView {
            plan: self.plan.clone(),
            period: self.state.period,
            used,
        }
    }
}

fn after_current(period: PeriodKey, current: PeriodKey) -> EngineError {
    EngineError::Conflict(format!(
        "period {period} is after the current period {current}; only the current period can be used"
    ))
}

impl Handler<Record> for OrgActor {
    type Result = Result<PendingRecord, EngineError>;

    fn handle(&mut self, msg: Record, ctx: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        self.record_many(vec![msg], ctx)
            .pop()
            .ok_or_else(|| EngineError::Internal("record not answered".into()))
    }
}

impl Handler<RecordBatch> for OrgActor {
    type Result = Result<Vec<PendingRecord>, EngineError>;

    fn handle(&mut self, msg: RecordBatch, ctx: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        Ok(self.record_many(msg.0, ctx))
    }
}

impl Handler<RetireAfterFailure> for OrgActor {
    type Result = ();

    fn handle(&mut self, msg: RetireAfterFailure, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        match msg.error {
            Some(e) => self.retire_after_failure(&e, ctx),
            None if !self.retired => self.retire(ctx),
            None => {}
        }
    }
}

impl Handler<Seed> for OrgActor {
    type Result = AtomicResponse<Self, Result<SeedReply, EngineError>>;

    fn handle(&mut self, msg: Seed, ctx: &mut Context<Self>) -> Self::Result {
        atomic_refuse_if_retired!(self);
        let current = self.shared.current_period();
        if msg.period > current {
            let refused = Err(after_current(msg.period, current));
            return AtomicResponse::new(Box::pin(fut::ready(refused)));
        }
        AtomicResponse::new(Box::pin(self.catch_up(ctx).map(move |res, act, _| {
            res?;
            if msg.period < act.state.period {
                return Err(EngineError::Conflict(format!(
                    "period {} is older than the org's current period {}",
                    msg.period, act.state.period
                )));
            }
            let index = act.shared.catalogue.metric_index(&Metric::api_call());
            let used = index.map_or(0, |i| act.view.used(i));
            Ok(SeedReply {
                used,
                remaining: act.plan.included(&Metric::api_call()).saturating_sub(used),
                period: act.state.period,
            })
        })))
    }
}

impl Handler<Rollover> for OrgActor {
    type Result = AtomicResponse<Self, Result<bool, EngineError>>;

    fn handle(&mut self, msg: Rollover, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return AtomicResponse::new(Box::pin(fut::ready(Err(EngineError::Retired))));
        }
        AtomicResponse::new(self.roll_to(msg.period, msg.force, msg.release, ctx))
    }
}

impl Handler<CatchUp> for OrgActor {
    type Result = AtomicResponse<Self, Result<(), EngineError>>;

    fn handle(&mut self, _: CatchUp, ctx: &mut Context<Self>) -> Self::Result {
        atomic_refuse_if_retired!(self);
        AtomicResponse::new(Box::pin(self.catch_up(ctx).map(|res, _, _| res.map(drop))))
    }
}

impl Handler<Entitlements> for OrgActor {
    type Result = AtomicResponse<Self, Result<EntitlementsView, EngineError>>;

    fn handle(&mut self, _: Entitlements, ctx: &mut Context<Self>) -> Self::Result {
        atomic_refuse_if_retired!(self);
        AtomicResponse::new(Box::pin(
            self.catch_up(ctx)
                .map(|res, act, _| res.map(|_| act.entitlements_view())),
        ))
    }
}

impl Handler<ReadBilling> for OrgActor {
    type Result = Result<BillingRecord, EngineError>;

    fn handle(&mut self, _: ReadBilling, _: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        Ok(self.billing.clone())
    }
}

impl Handler<AdoptBilling> for OrgActor {
    type Result = Result<(), EngineError>;

    fn handle(&mut self, msg: AdoptBilling, ctx: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        if msg.0 != self.billing {
            self.billing = msg.0;
            if let Some(write) = self.follow_plan() {
                // The commit is driven (and a failure handled) by the actor itself.
                drop(self.commit(ctx, vec![write]));
            }
        }
        Ok(())
    }
}

impl Handler<ApplyBilling> for OrgActor {
    type Result = Result<BillingApplied, EngineError>;

    fn handle(&mut self, msg: ApplyBilling, ctx: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        Ok(self.apply_billing(msg.record, msg.fence, ctx))
    }
}

impl Handler<Ping> for OrgActor {
    type Result = Result<(), EngineError>;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> Self::Result {
        refuse_if_retired!(self);
        Ok(())
    }
}
