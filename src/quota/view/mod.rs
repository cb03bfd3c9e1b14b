//! `OrgView`: an org's counters in memory — the current period and, per catalogue
//! metric, the included amount and the amount used — read by checks and changed by
//! consumes on the caller's own thread, with atomics only.
//!
//! Each used counter shares its atomic with an epoch (the top 16 bits; the count is the
//! low 48): the org's actor starts a new epoch whenever it replaces the counters (a
//! period roll, a forced reset). A record that finishes adds its delta only if the epoch
//! is still the one it started in, so a record computed before a reset can never land
//! after it, and the update is one compare-and-swap, never a lock. A check therefore
//! costs a map lookup and a few loads instead of two thread wake-ups (on small virtual
//! machines a cross-thread wake-up costs tens of microseconds). Consumes — decide and
//! count in one compare-and-swap — are in `consume.rs`.

mod consume;

pub use consume::{ConsumeOutcome, Refund, Taken};

use super::decision::{decide, Decision};
use crate::domain::{Catalogue, Metric, PeriodKey, Plan};
use std::collections::HashMap;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU32, AtomicU64};

const COUNT_BITS: u32 = 48;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_MASK: u64 = 0xffff;

fn pack(epoch: u64, used: u64) -> u64 {
    (epoch << COUNT_BITS) | used.min(COUNT_MAX)
}

fn epoch_of(packed: u64) -> u64 {
    packed >> COUNT_BITS
}

fn used_of(packed: u64) -> u64 {
    packed & COUNT_MAX
}

/// A signed 48-bit count (consumed units not yet handed to the store; a refund after
/// they were can make it negative) with its epoch.
fn pack_signed(epoch: u64, value: i64) -> u64 {
    (epoch << COUNT_BITS) | (value as u64 & COUNT_MAX)
}

fn signed_of(packed: u64) -> i64 {
    ((packed << (64 - COUNT_BITS)) as i64) >> (64 - COUNT_BITS)
}

/// The epoch and period the view is in, packed so that one load reads both.
fn pack_epoch_period(epoch: u64, period: PeriodKey) -> u64 {
    (epoch << 32) | u64::from(period.index())
}

pub struct OrgView {
    period: AtomicU32,
    /// When the plan in force changes by itself next (a scheduled downgrade), in Unix
    /// ms; `i64::MAX` when nothing is scheduled. A check at or after it asks the actor to
    /// follow the plan first, instead of waiting for the actor's next tick.
    next_change_ms: AtomicI64,
    included: Box<[AtomicU64]>,
    /// Epoch (high bits) and used (low bits), per metric: records and consumes alike.
    used: Box<[AtomicU64]>,
    /// Epoch and consumed units not yet handed to the store, per metric.
    pending: Box<[AtomicU64]>,
    /// The current epoch and period together (see `pack_epoch_period`), published last
    /// by `publish_all`: a consume pairs its epoch with the period it counts in.
    epoch_period: AtomicU64,
    /// The view is in the engine's list of views with consumes to persist.
    queued: AtomicBool,
    /// Set by readers so that an org served only by checks is not evicted as idle (and
    /// an actor a sweep started is not retired under a reader).
    touched: AtomicBool,
    /// Set by readers and cleared by the shared-store sync: which views to refresh first.
    read_since_sync: AtomicBool,
    /// The actor has left the registry: a fresh one (with a fresh view) may load next.
    retired: AtomicBool,
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
            pending: zeros(),
            epoch_period: AtomicU64::new(0),
            queued: AtomicBool::new(false),
            touched: AtomicBool::new(false),
            read_since_sync: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        }
    }

    /// Replaces everything: period, the plan's amounts, the period's counters — in a new
    /// epoch, so records that started before count only through the store. Returns the
    /// consumed units of the old epoch not yet handed to the store (the caller persists
    /// them in the old period) and that period.
    pub fn publish_all(
        &self,
        catalogue: &Catalogue,
        period: PeriodKey,
        plan: &Plan,
        used: &HashMap<Metric, u64>,
    ) -> Taken {
        let old = self.epoch_period.load(Acquire);
        let epoch = ((old >> 32) + 1) & EPOCH_MASK;
        let mut left = Vec::new();
        for (i, metric) in catalogue.metrics().iter().enumerate() {
            self.included[i].store(plan.included(metric), Relaxed);
            let value = used.get(metric).copied().unwrap_or(0);
            self.used[i].store(pack(epoch, value), Release);
            let consumed = signed_of(self.pending[i].swap(pack_signed(epoch, 0), AcqRel));
            if consumed != 0 {
                left.push((i, consumed));
            }
        }
        self.period.store(period.index(), Relaxed);
        self.epoch_period
            .store(pack_epoch_period(epoch, period), Release);
        // Before the caller submits the move's writes: see `stamp`.
        fence(SeqCst);
        Taken {
            period: PeriodKey::from_index(old as u32),
            consumed: left,
        }
    }

    /// The epoch and period the counters are in (`epoch << 32 | period index`), or
    /// `None` once the actor retired. A writer that skips the actor reads it before it
    /// submits and again after (`quota::direct`): the actor publishes a new epoch, or
    /// marks the view retired, before it submits anything that replaces the counters,
    /// so an unchanged stamp proves the submission went first. The fences make that
    /// store-then-load pattern hold on both sides.
    pub fn stamp(&self) -> Option<u64> {
        fence(SeqCst);
        if self.retired.load(SeqCst) {
            return None;
        }
        Some(self.epoch_period.load(SeqCst))
    }

    /// Marks the view as no longer its org's (before the actor leaves the registry).
    pub fn retire(&self) {
        self.retired.store(true, SeqCst);
        fence(SeqCst);
    }

    /// The included amount of a metric, by catalogue index.
    pub fn included(&self, index: usize) -> u64 {
        self.included.get(index).map_or(0, |a| a.load(Relaxed))
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
        self.used.get(index).map_or(0, |a| used_of(a.load(Acquire)))
    }

    /// Adds a record's `delta` to a counter, if its epoch is still `epoch` (a record
    /// that started before a roll or reset counts only through the store).
    pub fn add_used(&self, index: usize, epoch: u64, delta: u64) {
        let Some(slot) = self.used.get(index) else {
            return;
        };
        let mut current = slot.load(Acquire);
        while epoch_of(current) == epoch {
            let next = pack(epoch, used_of(current).saturating_add(delta));
            match slot.compare_exchange_weak(current, next, AcqRel, Acquire) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Decides from the published state at `now_ms`; `index` is the metric's catalogue
    /// index.
    pub fn check(&self, index: usize, cost: u64, now_ms: i64) -> CheckOutcome {
        self.touch();
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

    /// Marks the org as in use (not idle) and read since the last sync.
    pub fn touch(&self) {
        if !self.touched.load(Relaxed) {
            self.touched.store(true, Relaxed);
        }
        if !self.read_since_sync.load(Relaxed) {
            self.read_since_sync.store(true, Relaxed);
        }
    }

    /// Whether a reader came by since the last sync (and clears the mark).
    pub fn take_read_since_sync(&self) -> bool {
        self.read_since_sync.swap(false, Relaxed)
    }

    /// Sets a counter to the shared store's `stored` total plus what this node consumed
    /// and has not handed to the store yet — if the counter is still in `epoch` (the
    /// total was read for the view's period before any roll or reset here).
    pub fn sync_used(&self, index: usize, epoch: u64, stored: u64) {
        let (Some(slot), Some(pending)) = (self.used.get(index), self.pending.get(index)) else {
            return;
        };
        let mut current = slot.load(Acquire);
        while epoch_of(current) == epoch {
            let p = pending.load(Acquire);
            let unsynced = if epoch_of(p) == epoch {
                signed_of(p)
            } else {
                0
            };
            let total = i64::try_from(stored)
                .unwrap_or(i64::MAX)
                .saturating_add(unsynced);
            let next = pack(epoch, u64::try_from(total).unwrap_or(0));
            if next == current {
                return;
            }
            match slot.compare_exchange_weak(current, next, AcqRel, Acquire) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// Whether a reader came by since the last call (and clears the mark).
    pub fn take_touched(&self) -> bool {
        self.touched.swap(false, Relaxed)
    }
}

#[cfg(test)]
mod tests;
