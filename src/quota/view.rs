//! `OrgView`: what an org actor publishes for the check path — the current period and,
//! per catalogue metric, the included amount and the amount used.
//!
//! The actor stays the single writer of its counters; it mirrors every change here with
//! relaxed atomic stores, and checks read them on the HTTP worker's own thread. A check
//! therefore costs a map lookup and a few loads instead of two thread wake-ups (on small
//! virtual machines a cross-thread wake-up costs tens of microseconds). A reader may see
//! a counter a moment before the actor's next store lands: the same staleness a message
//! round trip would have, since the actor answers in arrival order anyway.

use super::decision::{decide, Decision};
use crate::domain::{Catalogue, Metric, PeriodKey, Plan};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

pub struct OrgView {
    period: AtomicU32,
    /// When the plan in force changes by itself next (a scheduled downgrade), in Unix
    /// ms; `i64::MAX` when nothing is scheduled. A check at or after it asks the actor to
    /// follow the plan first, instead of waiting for the actor's next tick.
    next_change_ms: AtomicI64,
    included: Box<[AtomicU64]>,
    used: Box<[AtomicU64]>,
    /// Set by readers so that an org served only by checks is not evicted as idle (and
    /// an actor a sweep started is not retired under a reader).
    touched: AtomicBool,
}

/// A check's answer with what the RateLimit headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOutcome {
    pub decision: Decision,
    pub included: u64,
    pub used: u64,
    pub period: PeriodKey,
    /// A scheduled plan change is due and the actor has not applied it yet.
    pub plan_change_due: bool,
}

impl OrgView {
    pub fn new(catalogue: &Catalogue) -> Self {
        let zeros = || {
            catalogue
                .metrics()
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect()
        };
        Self {
            period: AtomicU32::new(0),
            next_change_ms: AtomicI64::new(i64::MAX),
            included: zeros(),
            used: zeros(),
            touched: AtomicBool::new(false),
        }
    }

    /// Publishes everything: period, the plan's amounts, the period's counters.
    pub fn publish_all(
        &self,
        catalogue: &Catalogue,
        period: PeriodKey,
        plan: &Plan,
        used: &HashMap<Metric, u64>,
    ) {
        for (i, metric) in catalogue.metrics().iter().enumerate() {
            self.included[i].store(plan.included(metric), Relaxed);
            self.used[i].store(used.get(metric).copied().unwrap_or(0), Relaxed);
        }
        self.period.store(period.index(), Relaxed);
    }

    pub fn publish_used(&self, index: usize, used: u64) {
        if let Some(slot) = self.used.get(index) {
            slot.store(used, Relaxed);
        }
    }

    /// Publishes when the plan in force next changes by itself (Unix seconds).
    pub fn publish_next_change(&self, at_unix: Option<i64>) {
        let ms = at_unix.map_or(i64::MAX, |s| s.saturating_mul(1000));
        self.next_change_ms.store(ms, Relaxed);
    }

    /// Decides from the published state at `now_ms`; `index` is the metric's catalogue
    /// index.
    pub fn check(&self, index: usize, cost: u64, now_ms: i64) -> CheckOutcome {
        if !self.touched.load(Relaxed) {
            self.touched.store(true, Relaxed);
        }
        let included = self.included.get(index).map_or(0, |a| a.load(Relaxed));
        let used = self.used.get(index).map_or(0, |a| a.load(Relaxed));
        CheckOutcome {
            decision: decide(used, included, cost),
            included,
            used,
            period: PeriodKey::from_index(self.period.load(Relaxed)),
            plan_change_due: now_ms >= self.next_change_ms.load(Relaxed),
        }
    }

    /// Whether a reader came by since the last call (and clears the mark).
    pub fn take_touched(&self) -> bool {
        self.touched.swap(false, Relaxed)
    }
}
