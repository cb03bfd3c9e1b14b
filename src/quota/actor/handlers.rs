//! The messages an org actor answers. Every request that reads or changes the org's
//! counters first brings the org into the clock's period (a live actor may still be in
//! the previous one for a moment after a boundary), so nothing is decided from stale
//! counters; a period after the clock's is refused.

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

type Reply<T> = ResponseActFuture<OrgActor, Result<T, EngineError>>;

impl OrgActor {
    /// Rolls forward to the clock's period if this actor is still in an older one, and
    /// applies a scheduled plan change that came due.
    fn catch_up(&mut self, ctx: &mut Context<Self>) -> Reply<bool> {
        if let Some(op) = self.follow_plan() {
            // The view is already republished; a failed write retires the actor.
            drop(self.submit(ctx, vec![op]));
        }
        let current = self.shared.current_period();
        if current > self.state.period {
            self.roll_to(current, false, false)
        } else {
            Box::pin(fut::ready(Ok(false)))
        }
    }

    fn entitlements_view(&self) -> EntitlementsView {
        let used: BTreeMap<Metric, u64> = self
            .plan
            .included
            .keys()
            .chain(self.current.keys())
            .map(|m| (m.clone(), self.current.get(m).copied().unwrap_or(0)))
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
        self.record(msg, ctx)
    }
}

impl Handler<CommitFailed> for OrgActor {
    type Result = ();

    fn handle(&mut self, msg: CommitFailed, ctx: &mut Context<Self>) {
        if !self.retired {
            tracing::error!(org = %self.org, error = %crate::errors::chain(&msg.0), "write failed; restarting org actor from the store");
            self.retire(ctx);
        }
    }
}

impl Handler<Seed> for OrgActor {
    type Result = Reply<SeedReply>;

    fn handle(&mut self, msg: Seed, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Box::pin(fut::ready(Err(EngineError::Retired)));
        }
        self.touched = true;
        self.served = true;
        let current = self.shared.current_period();
        if msg.period > current {
            return Box::pin(fut::ready(Err(after_current(msg.period, current))));
        }
        Box::pin(self.catch_up(ctx).map(move |res, act, _| {
            res?;
            if msg.period < act.state.period {
                return Err(EngineError::Conflict(format!(
                    "period {} is older than the org's current period {}",
                    msg.period, act.state.period
                )));
            }
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
    type Result = Reply<bool>;

    fn handle(&mut self, msg: Rollover, _: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Box::pin(fut::ready(Err(EngineError::Retired)));
        }
        self.roll_to(msg.period, msg.force, msg.release)
    }
}

impl Handler<CatchUp> for OrgActor {
    type Result = Reply<()>;

    fn handle(&mut self, _: CatchUp, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Box::pin(fut::ready(Err(EngineError::Retired)));
        }
        self.touched = true;
        self.served = true;
        Box::pin(self.catch_up(ctx).map(|res, _, _| res.map(drop)))
    }
}

impl Handler<Entitlements> for OrgActor {
    type Result = Reply<EntitlementsView>;

    fn handle(&mut self, _: Entitlements, ctx: &mut Context<Self>) -> Self::Result {
        if self.retired {
            return Box::pin(fut::ready(Err(EngineError::Retired)));
        }
        self.touched = true;
        self.served = true;
        Box::pin(
            self.catch_up(ctx)
                .map(|res, act, _| res.map(|_| act.entitlements_view())),
        )
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
