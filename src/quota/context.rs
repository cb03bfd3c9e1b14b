//! What every org actor and the engine share: the storage backend, the plan catalogue,
//! the clock, the metrics, the engine's tuning and the queue of views with consumes to
//! persist. Nothing here knows about actors or the registry, so both can depend on it.

use super::consume_queue::ConsumeQueue;
use crate::clock::SharedClock;
use crate::domain::{Catalogue, OrgId, PeriodKey};
use crate::metrics::labels::{CHECK_RESULTS, RECORD_OUTCOMES};
use crate::metrics::Metrics;
use crate::store::Backend;
use prometheus::IntCounter;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

pub struct EngineContext {
    pub backend: Backend,
    pub catalogue: Arc<Catalogue>,
    pub clock: SharedClock,
    pub metrics: Metrics,
    pub idle_ttl: Duration,
    pub recent_capacity: usize,
    /// Views with consumed units not yet handed to the store.
    pub consumed: ConsumeQueue,
    /// Whether decisions are being made without the store (see `Degraded`).
    pub degraded: Degraded,
    /// The decision counters of every catalogue metric, looked up once.
    pub decisions: DecisionCounters,
    /// The record counters, looked up once.
    pub records: RecordCounters,
}

/// `quota_checks_total` and `quota_consumes_total` per catalogue metric index, allow and
/// deny: resolved at start, so a decision bumps a counter instead of hashing its labels
/// and cloning the series on every call.
pub struct DecisionCounters {
    checks: Vec<[IntCounter; 2]>,
    consumes: Vec<[IntCounter; 2]>,
}

impl DecisionCounters {
    pub fn new(metrics: &Metrics, catalogue: &Catalogue) -> Self {
        let per = |vec: &prometheus::IntCounterVec| {
            catalogue
                .metrics()
                .iter()
                .map(|m| CHECK_RESULTS.map(|result| vec.with_label_values(&[m.as_str(), result])))
                .collect()
        };
        Self {
            checks: per(&metrics.quota_checks),
            consumes: per(&metrics.quota_consumes),
        }
    }

    pub fn check(&self, index: usize, allowed: bool) {
        if let Some(pair) = self.checks.get(index) {
            pair[usize::from(!allowed)].inc();
        }
    }

    pub fn consume(&self, index: usize, allowed: bool) {
        if let Some(pair) = self.consumes.get(index) {
            pair[usize::from(!allowed)].inc();
        }
    }
}

/// `usage_records_total` by outcome and `usage_units_total` per catalogue metric index,
/// resolved at start for the same reason: a batch bumps them for every event.
pub struct RecordCounters {
    outcomes: [IntCounter; 4],
    units: Vec<IntCounter>,
}

/// What became of one record: its place in `RECORD_OUTCOMES`, the label's values.
#[derive(Clone, Copy)]
pub enum RecordOutcome {
    Recorded = 0,
    Duplicate = 1,
    Conflict = 2,
    Failed = 3,
}

impl RecordCounters {
    pub fn new(metrics: &Metrics, catalogue: &Catalogue) -> Self {
        let outcome = |label: &str| metrics.usage_records.with_label_values(&[label]);
        Self {
            outcomes: RECORD_OUTCOMES.map(outcome),
            units: catalogue
                .metrics()
                .iter()
                .map(|m| metrics.usage_units.with_label_values(&[m.as_str()]))
                .collect(),
        }
    }

    pub fn outcome(&self, outcome: RecordOutcome) {
        self.outcomes[outcome as usize].inc();
    }

    pub fn units(&self, index: Option<usize>, value: u64) {
        if let Some(counter) = index.and_then(|i| self.units.get(i)) {
            counter.inc_by(value);
        }
    }
}

/// Decisions are being made from this node's memory alone: consumed units wait for the
/// store (a flush failed), or the shared totals could not be read back (a sync failed).
#[derive(Default)]
pub struct Degraded {
    flush: AtomicBool,
    sync: AtomicBool,
}

impl Degraded {
    pub fn set_flush(&self, failing: bool) {
        self.flush.store(failing, Relaxed);
    }

    pub fn set_sync(&self, failing: bool) {
        self.sync.store(failing, Relaxed);
    }

    pub fn is_degraded(&self) -> bool {
        self.flush.load(Relaxed) || self.sync.load(Relaxed)
    }
}

impl EngineContext {
    /// The period the clock is in: the one every decision is made in.
    pub fn current_period(&self) -> PeriodKey {
        PeriodKey::containing(self.clock.now())
    }
}

/// Where a running actor is registered: it removes itself when it retires (only its
/// own generation, never a successor's). Implemented by the registry; an actor knows
/// nothing else of it.
pub trait ActorSlots: Send + Sync + 'static {
    fn release(&self, org: &OrgId, generation: u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_outcomes_index_their_own_label() {
        for (outcome, label) in [
            (RecordOutcome::Recorded, "recorded"),
            (RecordOutcome::Duplicate, "duplicate"),
            (RecordOutcome::Conflict, "conflict"),
            (RecordOutcome::Failed, "failed"),
        ] {
            assert_eq!(RECORD_OUTCOMES[outcome as usize], label);
        }
    }
}
