//! Consume: decide and count in one step, on the caller's thread (SPEC §5). The org's
//! view admits with a compare-and-swap; the units it counted wait in the view's pending
//! counts until the flusher (`flusher.rs`) hands them to the store.
//!
//! All-or-nothing requests (several descriptors of one Envoy request) consume in order
//! and give back what they took when a later part is denied.

use super::engine::QuotaEngine;
use super::flusher::{flush_consumes, persist_in_background};
use super::messages::{CatchUp, EngineError};
use super::view::{ConsumeOutcome, OrgView, Refund};
use crate::domain::{Metric, OrgId, PeriodKey};
use crate::store::LedgerWrite;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Instant;

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

    /// Hands every pending consumed unit to the store now (shutdown).
    pub async fn flush_consumes(&self) -> usize {
        flush_consumes(self.context()).await
    }
}
