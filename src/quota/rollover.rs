//! The rollover supervisor: time-driven maintenance of the engine. It compares the
//! injected clock with the last period it rolled into and sweeps every org into the new
//! period at the boundary (and once at start, which catches downtime across a boundary);
//! it also purges expired idempotency entries. Of several nodes sharing a store, one
//! sweeps each period (under the store's sweep lease); the others count it as made
//! elsewhere.
//!
//! Polling the clock (rather than sleeping until the boundary) is what lets an injected
//! clock jump across a month and have the sweep follow within one interval.

use super::engine::QuotaEngine;
use super::sweep::Swept;
use crate::domain::PeriodKey;
use crate::shutdown::InFlight;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;

pub struct RolloverSupervisor {
    engine: Arc<QuotaEngine>,
    check_interval: Duration,
    purge_interval: Duration,
    retention_days: u32,
    rolled_into: Option<PeriodKey>,
    sweeping: bool,
    purging: bool,
    /// The sweep and the purge under way.
    in_flight: InFlight,
    stopped: bool,
    /// The clock and purge timers, cancelled at the stop.
    timers: Vec<SpawnHandle>,
}

impl RolloverSupervisor {
    pub fn new(
        engine: Arc<QuotaEngine>,
        check_interval: Duration,
        purge_interval: Duration,
        retention_days: u32,
    ) -> Self {
        Self {
            engine,
            check_interval,
            purge_interval,
            retention_days,
            rolled_into: None,
            sweeping: false,
            purging: false,
            in_flight: InFlight::default(),
            stopped: false,
            timers: Vec::new(),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = PeriodKey::containing(self.engine.clock().now());
        self.engine
            .context()
            .metrics
            .current_period
            .set(i64::from(now.year() * 100 + now.month()));
        if self.stopped || self.sweeping || self.rolled_into.is_some_and(|p| p >= now) {
            return;
        }
        self.sweeping = true;
        self.in_flight.begin();
        let engine = self.engine.clone();
        let sweep = async move { engine.supervised_rollover(now).await };
        ctx.spawn(sweep.into_actor(self).map(move |res, act, _| {
            act.sweeping = false;
            act.in_flight.end();
            match res {
                Ok(Swept::Here(_)) => act.rolled_into = Some(now),
                Ok(Swept::Elsewhere) => {
                    act.engine.context().metrics.rollover_elsewhere.inc();
                    act.rolled_into = Some(now);
                }
                // Another node sweeps now: asked again at the next tick, until it is done.
                Ok(Swept::Busy) => {}
                // Retried at the next tick.
                Err(e) => tracing::error!(error = %e, period = %now, "rollover sweep failed"),
            }
        }));
    }

    fn purge(&mut self, ctx: &mut Context<Self>) {
        if self.stopped || self.purging {
            return;
        }
        self.purging = true;
        self.in_flight.begin();
        let cutoff = self.engine.clock().now() - chrono::Duration::days(self.retention_days.into());
        let purge = self
            .engine
            .backend()
            .ledger
            .purge_requests(cutoff.timestamp_millis());
        ctx.spawn(purge.into_actor(self).map(|res, act, _| {
            act.purging = false;
            act.in_flight.end();
            match res {
                Ok(done) => {
                    let metrics = &act.engine.context().metrics;
                    metrics.idempotency_purge_runs.inc();
                    metrics.idempotency_purged.inc_by(done.purged);
                    metrics.idempotency_entries.set(done.kept as i64);
                    if done.purged > 0 {
                        tracing::info!(
                            purged = done.purged,
                            kept = done.kept,
                            "expired idempotency entries purged"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %crate::errors::chain(&e), "idempotency purge failed")
                }
            }
        }));
    }
}

impl RolloverSupervisor {
    /// Goes quiet for good once stopped. Not `ctx.stop()`: a `Supervisor` restarts a
    /// stopped actor while anyone holds its address, which would spin; without timers the
    /// actor ends by itself when the last address is dropped.
    fn quiesce(&mut self, ctx: &mut Context<Self>) {
        for timer in self.timers.drain(..) {
            ctx.cancel_future(timer);
        }
    }
}

impl Actor for RolloverSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        self.tick(ctx);
        self.timers = vec![
            ctx.run_interval(self.check_interval, |act, ctx| act.tick(ctx)),
            ctx.run_interval(self.purge_interval, |act, ctx| act.purge(ctx)),
        ];
    }
}

/// Stops the supervisor for good (shutdown), answered once the sweep or purge under way
/// has finished; nothing new starts after it.
pub struct Stop;

impl Message for Stop {
    type Result = ();
}

impl Handler<Stop> for RolloverSupervisor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        self.stopped = true;
        self.quiesce(ctx);
        Box::pin(self.in_flight.idle())
    }
}

impl Supervised for RolloverSupervisor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Work under way died with the actor: release whoever waits for it.
        if self.sweeping {
            self.in_flight.end();
        }
        if self.purging {
            self.in_flight.end();
        }
        self.sweeping = false;
        self.purging = false;
        self.timers.clear();
    }
}
