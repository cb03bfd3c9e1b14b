//! Moving an org between periods: forward into a newer period with the counters stored
//! for it (rollover, seeding the clock's period), or zeroing the current period (a
//! forced reset). The old period's counters stay in the store as history. Callers run
//! these atomically (`AtomicResponse`): no other message interleaves with a move.

use super::OrgActor;
use crate::domain::PeriodKey;
use crate::quota::flusher::usage_writes;
use crate::quota::messages::EngineError;
use crate::store::LedgerWrite;
use actix::prelude::*;
use std::collections::HashMap;

pub(super) type Reply<T> = ResponseActFuture<OrgActor, Result<T, EngineError>>;

impl OrgActor {
    /// Moves to `period` (forward only) with counters loaded from the store for it, or
    /// with `force` zeroes the current period. Replies whether anything changed — a roll
    /// done by loading this actor counts once — once the change is durable. With
    /// `release` (a sweep started this actor only to roll it) the actor retires after,
    /// unless anything else came to it meanwhile, so a sweep holds few actors at a time.
    pub(super) fn roll_to(
        &mut self,
        period: PeriodKey,
        force: bool,
        release: bool,
        ctx: &mut Context<Self>,
    ) -> Reply<bool> {
        let roll: Reply<bool> = if period > self.state.period {
            self.roll_forward(period)
        } else if period == self.state.period && force {
            self.zero_current(ctx)
        } else {
            match self.rolled_from.take() {
                Some((from, durable)) if from < period => {
                    Box::pin(durable.into_actor(self).map(|res, _, _| res.map(|()| true)))
                }
                _ => Box::pin(fut::ready(Ok(false))),
            }
        };
        Box::pin(roll.map(move |res, act, ctx| {
            if release {
                act.release_requested = true;
                act.release_if_unused(ctx);
            }
            res
        }))
    }

    fn roll_forward(&mut self, period: PeriodKey) -> Reply<bool> {
        let load = self.shared.backend.ledger.counters(&self.org, period);
        Box::pin(load.into_actor(self).then(move |loaded, act, ctx| {
            let result: Reply<bool> = match loaded {
                Ok(counters) => {
                    act.state.period = period;
                    act.rolled_from = None;
                    // Units consumed in the old period and not yet persisted go with it.
                    let left =
                        act.view
                            .publish_all(&act.shared.catalogue, period, &act.plan, &counters);
                    let mut writes = usage_writes(&act.shared, &left);
                    writes.push(act.state_write());
                    let durable = act.commit(ctx, writes);
                    Box::pin(durable.into_actor(act).map(|res, _, _| res.map(|()| true)))
                }
                Err(e) => Box::pin(fut::ready(Err(EngineError::from(e)))),
            };
            result
        }))
    }

    /// Zeroes every counter of the current period (records already on their way are
    /// zeroed too: the store applies them first, and the view ignores their totals).
    fn zero_current(&mut self, ctx: &mut Context<Self>) -> Reply<bool> {
        let changed = self.counters().values().any(|used| *used > 0);
        let left = self.view.publish_all(
            &self.shared.catalogue,
            self.state.period,
            &self.plan,
            &HashMap::new(),
        );
        // Consumed units not yet persisted are stored first, then zeroed with the rest.
        let mut writes = usage_writes(&self.shared, &left);
        writes.extend(
            self.shared
                .catalogue
                .metrics()
                .iter()
                .map(|m| LedgerWrite::Zero {
                    period: self.state.period,
                    metric: m.clone(),
                }),
        );
        let durable = self.commit(ctx, writes);
        Box::pin(
            durable
                .into_actor(self)
                .map(move |res, _, _| res.map(|()| changed)),
        )
    }
}
