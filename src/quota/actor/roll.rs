//! Moving an org between periods: forward into a newer period with the counters stored
//! for it (rollover, seeding the clock's period), or zeroing the current period (a
//! forced reset). The old period's counters stay in the store as history.

use super::OrgActor;
use crate::domain::{Metric, PeriodKey};
use crate::quota::messages::EngineError;
use crate::store::{self, ledger};
use actix::prelude::*;
use std::collections::HashMap;
use tokio::sync::oneshot;

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
    ) -> ResponseActFuture<Self, Result<bool, EngineError>> {
        let moves = period > self.state.period || (period == self.state.period && force);
        let roll: ResponseActFuture<Self, Result<bool, EngineError>> = if moves {
            self.load_and_roll(period, force)
        } else {
            match self.rolled_from.take() {
                Some((from, durable)) if from < period => {
                    Box::pin(durable.into_actor(self).map(|res, _, _| res.map(|()| true)))
                }
                _ => Box::pin(fut::ready(Ok(false))),
            }
        };
        Box::pin(roll.map(move |res, act, ctx| {
            let untouched = !act.served && !act.view.take_touched();
            if release && untouched && !act.has_in_flight_work() && !act.retired {
                act.retire(ctx);
            }
            res
        }))
    }

    fn load_and_roll(
        &mut self,
        period: PeriodKey,
        force: bool,
    ) -> ResponseActFuture<Self, Result<bool, EngineError>> {
        let store = self.shared.store.clone();
        let org = self.org.clone();
        self.in_flight += 1;
        let load = store::blocking(move || {
            store.barrier()?;
            ledger::counters_for(&store.ledger, &org, period)
        });
        Box::pin(load.into_actor(self).then(move |loaded, act, ctx| {
            act.in_flight -= 1;
            let outcome = loaded
                .map_err(EngineError::from)
                .map(|loaded| act.apply_roll(period, force, loaded));
            let (tx, rx) = oneshot::channel();
            match outcome {
                Ok(Some(ops)) => {
                    act.rolled_from = None;
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
