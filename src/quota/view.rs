//! `OrgView`: an org's counters in memory — the current period and, per catalogue
//! metric, the included amount and the amount used — read by checks on the caller's own
//! thread and written with atomics only.
//!
//! Each used counter shares its atomic with an epoch (the top 16 bits; the count is the
//! low 48): the org's actor starts a new epoch whenever it replaces the counters (a
//! period roll, a forced reset). A record that finishes updates its counter only if the
//! epoch is still the one it started in, so a record computed before a reset can never
//! land after it, and the update is one compare-and-swap, never a lock. A check therefore
//! costs a map lookup and a few loads instead of two thread wake-ups (on small virtual
//! machines a cross-thread wake-up costs tens of microseconds).

use super::decision::{decide, Decision};
use crate::domain::{Catalogue, Metric, PeriodKey, Plan};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

const COUNT_BITS: u32 = 48;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

fn pack(epoch: u64, used: u64) -> u64 {
    (epoch << COUNT_BITS) | used.min(COUNT_MAX)
}

fn epoch_of(packed: u64) -> u64 {
    packed >> COUNT_BITS
}

fn used_of(packed: u64) -> u64 {
    packed & COUNT_MAX
}

pub struct OrgView {
    period: AtomicU32,
    /// When the plan in force changes by itself next (a scheduled downgrade), in Unix
    /// ms; `i64::MAX` when nothing is scheduled. A check at or after it asks the actor to
    /// follow the plan first, instead of waiting for the actor's next tick.
    next_change_ms: AtomicI64,
    included: Box<[AtomicU64]>,
    /// Epoch (high bits) and used (low bits), per metric.
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

    /// Replaces everything: period, the plan's amounts, the period's counters — in a new
    /// epoch, so records that started before count only through the store.
    pub fn publish_all(
        &self,
        catalogue: &Catalogue,
        period: PeriodKey,
        plan: &Plan,
        used: &HashMap<Metric, u64>,
    ) {
        for (i, metric) in catalogue.metrics().iter().enumerate() {
            self.included[i].store(plan.included(metric), Relaxed);
            let epoch = epoch_of(self.used[i].load(Relaxed)).wrapping_add(1) & 0xffff;
            let value = used.get(metric).copied().unwrap_or(0);
            self.used[i].store(pack(epoch, value), Relaxed);
        }
        self.period.store(period.index(), Relaxed);
    }

    /// Publishes a new plan's included amounts (counters unchanged).
    pub fn publish_plan(&self, catalogue: &Catalogue, plan: &Plan) {
        for (i, metric) in catalogue.metrics().iter().enumerate() {
            self.included[i].store(plan.included(metric), Relaxed);
        }
    }

    /// Publishes when the plan in force next changes by itself (Unix seconds).
    pub fn publish_next_change(&self, at_unix: Option<i64>) {
        let ms = at_unix.map_or(i64::MAX, |s| s.saturating_mul(1000));
        self.next_change_ms.store(ms, Relaxed);
    }

    /// The epoch of a metric's counter (captured when a record starts).
    pub fn epoch(&self, index: usize) -> Option<u64> {
        self.used.get(index).map(|a| epoch_of(a.load(Relaxed)))
    }

    pub fn period(&self) -> PeriodKey {
        PeriodKey::from_index(self.period.load(Relaxed))
    }

    pub fn used(&self, index: usize) -> u64 {
        self.used.get(index).map_or(0, |a| used_of(a.load(Relaxed)))
    }

    /// Raises a counter to `total` (a record's total after it was stored), if its epoch
    /// is still `epoch`; a lower total (an older record finishing late) changes nothing.
    pub fn raise_used(&self, index: usize, epoch: u64, total: u64) {
        let Some(slot) = self.used.get(index) else {
            return;
        };
        let mut current = slot.load(Relaxed);
        while epoch_of(current) == epoch && used_of(current) < total {
            match slot.compare_exchange_weak(current, pack(epoch, total), Relaxed, Relaxed) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Decides from the published state at `now_ms`; `index` is the metric's catalogue
    /// index.
    pub fn check(&self, index: usize, cost: u64, now_ms: i64) -> CheckOutcome {
        if !self.touched.load(Relaxed) {
            self.touched.store(true, Relaxed);
        }
        let included = self.included.get(index).map_or(0, |a| a.load(Relaxed));
        let used = self.used(index);
        CheckOutcome {
            decision: decide(used, included, cost),
            included,
            used,
            period: self.period(),
            plan_change_due: now_ms >= self.next_change_ms.load(Relaxed),
        }
    }

    /// Whether a reader came by since the last call (and clears the mark).
    pub fn take_touched(&self) -> bool {
        self.touched.swap(false, Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> (Catalogue, OrgView) {
        let c = Catalogue::from_toml(crate::config::DEFAULT_PLANS_TOML).unwrap();
        let v = OrgView::new(&c);
        v.publish_all(
            &c,
            PeriodKey::parse("2026-03").unwrap(),
            &c.free(),
            &HashMap::new(),
        );
        (c, v)
    }

    #[test]
    fn a_record_from_an_older_epoch_never_lands_after_a_reset() {
        let (c, v) = view();
        let epoch = v.epoch(0).unwrap();
        v.raise_used(0, epoch, 10);
        assert_eq!(v.used(0), 10);
        v.raise_used(0, epoch, 4);
        assert_eq!(v.used(0), 10, "an older, lower total changes nothing");
        // A forced reset: a new epoch at 0; the late record of the old epoch is ignored.
        let mut zero = HashMap::new();
        zero.insert(Metric::api_call(), 0);
        v.publish_all(&c, v.period(), &c.free(), &zero);
        v.raise_used(0, epoch, 12);
        assert_eq!(v.used(0), 0);
        v.raise_used(0, v.epoch(0).unwrap(), 3);
        assert_eq!(v.used(0), 3);
        assert!(v.check(0, 997, 0).decision.allow);
        assert!(!v.check(0, 998, 0).decision.allow);
    }
}
