//! Consume: decide and count in one step, on the caller's thread (SPEC §5). The org's
//! view admits with a compare-and-swap; the units it counted wait in the view's pending
//! counts, and the flusher (one task for the engine) hands them to the store every
//! `engine.consume_flush_ms` as deltas through the group commit — write-behind, so a
//! consume never waits for a disk. A clean shutdown flushes once more; a `kill -9`
//! loses at most what was consumed since the last flush.
//!
//! All-or-nothing requests (several descriptors of one Envoy request) consume in order
//! and give back what they took when a later part is denied.

use super::context::EngineContext;
use super::engine::QuotaEngine;
use super::messages::{CatchUp, EngineError};
use super::view::{ConsumeOutcome, OrgView, Refund, Taken};
use crate::domain::{Metric, OrgId, PeriodKey};
use crate::store::LedgerWrite;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Consumed units per counter of one org, not yet in the store.
type Deltas = HashMap<(PeriodKey, Metric), i64>;

/// The views with consumed units to persist (each at most once: a view queues itself
/// when its first pending unit arrives, and leaves when the flusher takes its units),
/// and the units whose write failed.
#[derive(Default)]
pub struct ConsumeQueue {
    queued: Mutex<Vec<(OrgId, Arc<OrgView>)>>,
    /// Units whose write failed (the store was unreachable), merged per counter and
    /// written first by the next flush: an outage delays them, never loses them, and
    /// what it holds is bounded by the live orgs' counters, not by the outage's length.
    unpersisted: Mutex<HashMap<OrgId, Deltas>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConsumeQueue {
    pub fn push(&self, org: &OrgId, view: Arc<OrgView>) {
        locked(&self.queued).push((org.clone(), view));
    }

    fn take(&self) -> Vec<(OrgId, Arc<OrgView>)> {
        std::mem::take(&mut *locked(&self.queued))
    }

    fn restore(&self, org: OrgId, deltas: Deltas) {
        let mut held = locked(&self.unpersisted);
        let mine = held.entry(org).or_default();
        for (counter, delta) in deltas {
            *mine.entry(counter).or_default() += delta;
        }
    }

    /// Keeps `writes` (usage deltas whose commit failed) for the next flush.
    pub fn keep_failed(&self, org: &OrgId, writes: Vec<LedgerWrite>) {
        let mut deltas = Deltas::new();
        add_usage(&mut deltas, writes);
        self.restore(org.clone(), deltas);
    }

    /// Whether some consumed units wait for the store to come back.
    pub fn has_unpersisted(&self) -> bool {
        !locked(&self.unpersisted).is_empty()
    }
}

/// Commits usage `writes` now, without waiting (on any runtime: consumes also arrive on
/// the gRPC front's); a failed commit keeps them for the next flush, like a failed flush.
pub fn persist_in_background(ctx: Arc<EngineContext>, org: &OrgId, writes: Vec<LedgerWrite>) {
    let commit = ctx.backend.ledger.commit(org, writes.clone());
    let org = org.clone();
    tokio::spawn(async move {
        if let Err(e) = commit.await {
            ctx.metrics.consume_persist_failures.inc();
            tracing::warn!(org = %org, error.cause_chain = %crate::errors::chain(&e), "consumed units not persisted yet; retried at the next flush");
            ctx.consumed.keep_failed(&org, writes);
        }
    });
}

/// Merges the usage deltas of `writes` into `deltas`, per counter.
fn add_usage(deltas: &mut Deltas, writes: Vec<LedgerWrite>) {
    for write in writes {
        if let LedgerWrite::Usage {
            period,
            metric,
            delta,
        } = write
        {
            *deltas.entry((period, metric)).or_default() += delta;
        }
    }
}

/// The store writes for units taken from a view.
pub fn usage_writes(ctx: &EngineContext, taken: &Taken) -> Vec<LedgerWrite> {
    let metrics = ctx.catalogue.metrics();
    taken
        .consumed
        .iter()
        .filter_map(|&(i, delta)| {
            metrics.get(i).map(|metric| LedgerWrite::Usage {
                period: taken.period,
                metric: metric.clone(),
                delta,
            })
        })
        .collect()
}

/// Hands every queued view's pending units (and those a failed flush kept) to the
/// store in one hand-over; returns how many orgs had any. A view is queued at most once,
/// so its units go as they are; an org found twice (a retired actor's view beside its
/// successor's) is simply committed twice, in order.
pub async fn flush_consumes(ctx: &EngineContext) -> usize {
    let kept = std::mem::take(&mut *locked(&ctx.consumed.unpersisted));
    let queued = ctx.consumed.take();
    let mut writes: Vec<(OrgId, Vec<LedgerWrite>)> = Vec::with_capacity(kept.len() + queued.len());
    for (org, deltas) in kept {
        let w: Vec<LedgerWrite> = deltas
            .into_iter()
            .filter(|(_, d)| *d != 0)
            .map(|((period, metric), delta)| LedgerWrite::Usage {
                period,
                metric,
                delta,
            })
            .collect();
        if !w.is_empty() {
            writes.push((org, w));
        }
    }
    for (org, view) in queued {
        let w = usage_writes(ctx, &view.take_pending());
        if !w.is_empty() {
            writes.push((org, w));
        }
    }
    let flushed = writes.len();
    if flushed > 0 {
        // The writes are needed again only if their commit fails.
        let results = ctx.backend.ledger.commit_consumed(writes.clone()).await;
        for ((org, w), result) in writes.into_iter().zip(results) {
            if let Err(e) = result {
                // Kept, merged, for the next flush; counted in memory meanwhile.
                ctx.metrics.consume_persist_failures.inc();
                tracing::warn!(org = %org, error.cause_chain = %crate::errors::chain(&e), "consumed units not persisted yet; retried at the next flush");
                ctx.consumed.keep_failed(&org, w);
            }
        }
    }
    ctx.degraded.set_flush(ctx.consumed.has_unpersisted());
    flushed
}

/// Runs the flusher every `interval` until the engine stops it.
pub fn start_flusher(
    ctx: Arc<EngineContext>,
    interval: Duration,
) -> actix_rt::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            flush_consumes(&ctx).await;
        }
    })
}

/// One part of an all-or-nothing consume.
pub struct ConsumePart<'a> {
    pub org: &'a OrgId,
    pub metric: &'a Metric,
    pub cost: u64,
}

impl QuotaEngine {
    /// Admits and counts `cost` of `metric` for `org` at `now` if it fits (the answer's
    /// `remaining` is after it); denies and counts nothing otherwise.
    pub async fn consume(
        &self,
        org: &OrgId,
        metric: &Metric,
        cost: u64,
        now: DateTime<Utc>,
    ) -> Result<ConsumeOutcome, EngineError> {
        let started = Instant::now();
        let index = self.metric_index(metric)?;
        let outcome = self.consume_one(org, index, metric, cost, now).await?;
        self.observe_consume(index, &outcome, started);
        Ok(outcome)
    }

    /// Consumes every part, or none: parts are admitted in order, and when one is
    /// denied those before it are given back. Answers per part; an unknown org fails
    /// the whole request (nothing counted).
    pub async fn consume_all(
        &self,
        parts: &[ConsumePart<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<ConsumeOutcome>, EngineError> {
        let started = Instant::now();
        let mut done: Vec<ConsumeOutcome> = Vec::with_capacity(parts.len());
        let indices = parts
            .iter()
            .map(|p| self.metric_index(p.metric))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, part) in parts.iter().enumerate() {
            let outcome = match self
                .consume_one(part.org, indices[i], part.metric, part.cost, now)
                .await
            {
                Ok(o) => o,
                Err(e) => {
                    self.give_back(&parts[..i], &done).await;
                    return Err(e);
                }
            };
            let allowed = outcome.decision.allow;
            done.push(outcome);
            if !allowed {
                self.give_back(&parts[..i], &done[..i]).await;
                // The rest are reported as a check would (nothing counted).
                for rest in &parts[i + 1..] {
                    let check = self.check(rest.org, rest.metric, rest.cost, now).await?;
                    done.push(ConsumeOutcome {
                        decision: check.decision,
                        included: check.included,
                        period: check.period,
                        epoch: 0,
                        plan_change_due: false,
                        late: false,
                        queue: false,
                    });
                }
                break;
            }
        }
        for (&index, outcome) in indices.iter().zip(&done) {
            self.observe_consume(index, outcome, started);
        }
        Ok(done)
    }

    /// `index` is `metric`'s catalogue index.
    async fn consume_one(
        &self,
        org: &OrgId,
        index: usize,
        metric: &Metric,
        cost: u64,
        now: DateTime<Utc>,
    ) -> Result<ConsumeOutcome, EngineError> {
        let current = PeriodKey::containing(now);
        let now_ms = now.timestamp_millis();
        // A view in an older period, or with a plan change due, catches up first: no
        // unit is ever counted against stale state.
        let stale = |view: &OrgView| {
            let seen = view.check(index, cost, now_ms);
            seen.period < current || seen.plan_change_due
        };
        let take = |view: &Arc<OrgView>| {
            let o = view.consume(index, cost, now_ms);
            (o, o.queue.then(|| view.clone()))
        };
        // One registry look-up on the hot path: check and take under the same peek.
        let take_if_fresh = |view: &Arc<OrgView>| (!stale(view)).then(|| take(view));
        let first = match self.registry().peek(org, |h| take_if_fresh(&h.view)) {
            Some(attempt) => attempt,
            None => take_if_fresh(&self.registry().get(org).await?.view),
        };
        let (outcome, queue) = match first {
            Some(taken) => taken,
            None => {
                self.registry().send(org, CatchUp).await?;
                match self.registry().peek(org, |h| take(&h.view)) {
                    Some(taken) => taken,
                    None => take(&self.registry().get(org).await?.view),
                }
            }
        };
        if let Some(view) = queue {
            self.context().consumed.push(org, view);
        }
        if outcome.late {
            self.persist_now(org, metric, outcome.period, cost as i64);
        }
        Ok(outcome)
    }

    /// Gives back what `outcomes` counted for `parts` (an all-or-nothing request that
    /// failed later).
    async fn give_back(&self, parts: &[ConsumePart<'_>], outcomes: &[ConsumeOutcome]) {
        for (part, outcome) in parts.iter().zip(outcomes) {
            if !outcome.decision.allow {
                continue;
            }
            let Ok(index) = self.metric_index(part.metric) else {
                continue;
            };
            let refund = self.registry().peek(part.org, |h| {
                (
                    h.view.refund(index, outcome.epoch, part.cost),
                    h.view.clone(),
                )
            });
            match refund {
                Some((Refund::Done { queue }, view)) => {
                    if queue {
                        self.context().consumed.push(part.org, view);
                    }
                }
                // The actor moved on (or retired) since: the units were handed to the
                // store with their period; take them back there.
                Some((Refund::Late, _)) | None => {
                    self.persist_now(part.org, part.metric, outcome.period, -(part.cost as i64))
                }
            }
        }
    }

    /// Persists a consume's delta directly (it missed the view's pending counts).
    fn persist_now(&self, org: &OrgId, metric: &Metric, period: PeriodKey, delta: i64) {
        let write = LedgerWrite::Usage {
            period,
            metric: metric.clone(),
            delta,
        };
        persist_in_background(self.context().clone(), org, vec![write]);
    }

    fn observe_consume(&self, index: usize, outcome: &ConsumeOutcome, started: Instant) {
        let ctx = self.context();
        ctx.metrics
            .decision_duration
            .observe(started.elapsed().as_secs_f64());
        ctx.decisions.consume(index, outcome.decision.allow);
    }

    pub(super) fn metric_index(&self, metric: &Metric) -> Result<usize, EngineError> {
        self.catalogue().metric_index(metric).ok_or_else(|| {
            EngineError::Internal(format!("metric {metric} is not in the catalogue"))
        })
    }

    /// Hands every pending consumed unit to the store now (shutdown).
    pub async fn flush_consumes(&self) -> usize {
        flush_consumes(self.context()).await
    }
}
