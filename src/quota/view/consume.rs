//! Consumes on the view: decide and count in one compare-and-swap on the caller's
//! thread, so N concurrent consumes never admit more than the included amount; the
//! units counted are also added to the metric's pending count, which the engine's
//! flusher hands to the store (write-behind) and the actor takes with it when it moves
//! the org to another period.
//!
//! A consume pairs its epoch with the period it counts in (`epoch_period`). If the actor
//! starts a new epoch between the two compare-and-swaps (a roll or reset at that very
//! moment), the units are not in any pending count: the consume says so (`late`), and
//! the engine persists them itself in the period they were admitted in.

use super::{epoch_of, pack, pack_signed, signed_of, used_of, OrgView};
use crate::domain::PeriodKey;
use crate::quota::decision::{decide, Decision};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Release};

/// What a consume (or a refund) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeOutcome {
    pub decision: Decision,
    pub included: u64,
    pub period: PeriodKey,
    /// The epoch the units were counted in (a refund must name it).
    pub epoch: u64,
    /// A scheduled plan change is due and the actor has not applied it yet.
    pub plan_change_due: bool,
    /// The units are counted in the view but in no pending count: persist them in
    /// `period` directly.
    pub late: bool,
    /// The view had nothing pending before: it must be queued for the flusher.
    pub queue: bool,
}

/// What a refund did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refund {
    /// Given back in the view; `queue` as for a consume.
    Done { queue: bool },
    /// The view has moved to another epoch since the consume: the caller persists the
    /// refund (a negative delta) in the consume's period itself.
    Late,
}

/// Consumed units taken from a view to persist: per metric index, in `period`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub period: PeriodKey,
    pub consumed: Vec<(usize, i64)>,
}

impl OrgView {
    fn current_epoch_period(&self) -> (u64, PeriodKey) {
        let ep = self.epoch_period.load(Acquire);
        (ep >> 32, PeriodKey::from_index(ep as u32))
    }

    /// Admits `cost` of metric `index` if it fits, counting it at once; denies (and
    /// counts nothing) otherwise.
    pub fn consume(&self, index: usize, cost: u64, now_ms: i64) -> ConsumeOutcome {
        self.touch();
        let included = self.included.get(index).map_or(0, |a| a.load(Acquire));
        let plan_change_due = now_ms >= self.next_change_ms.load(Acquire);
        let (Some(slot), Some(pending)) = (self.used.get(index), self.pending.get(index)) else {
            return ConsumeOutcome {
                decision: decide(0, 0, cost),
                included: 0,
                period: self.period(),
                epoch: 0,
                plan_change_due,
                late: false,
                queue: false,
            };
        };
        loop {
            let (epoch, period) = self.current_epoch_period();
            let current = slot.load(Acquire);
            if epoch_of(current) != epoch {
                // A new epoch is being published: read it again.
                std::hint::spin_loop();
                continue;
            }
            let used = used_of(current);
            let decision = decide(used, included, cost);
            let mut outcome = ConsumeOutcome {
                decision,
                included,
                period,
                epoch,
                plan_change_due,
                late: false,
                queue: false,
            };
            if !decision.allow {
                return outcome;
            }
            let next = pack(epoch, used.saturating_add(cost));
            if slot
                .compare_exchange_weak(current, next, AcqRel, Acquire)
                .is_err()
            {
                continue;
            }
            outcome.decision.remaining = decision.remaining - cost;
            match add_pending(pending, epoch, cost as i64) {
                Some(before) => outcome.queue = before == 0 && !self.queued.swap(true, AcqRel),
                None => outcome.late = true,
            }
            return outcome;
        }
    }

    /// Gives back `cost` units a consume of `epoch` counted (an all-or-nothing request
    /// whose other part was denied).
    pub fn refund(&self, index: usize, epoch: u64, cost: u64) -> Refund {
        let (Some(slot), Some(pending)) = (self.used.get(index), self.pending.get(index)) else {
            return Refund::Done { queue: false };
        };
        let mut current = slot.load(Acquire);
        loop {
            if epoch_of(current) != epoch {
                return Refund::Late;
            }
            let next = pack(epoch, used_of(current).saturating_sub(cost));
            match slot.compare_exchange_weak(current, next, AcqRel, Acquire) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        match add_pending(pending, epoch, -(cost as i64)) {
            Some(before) => Refund::Done {
                queue: before == 0 && !self.queued.swap(true, AcqRel),
            },
            None => Refund::Late,
        }
    }

    /// Takes every pending count of the current epoch (the flusher persists them). The
    /// view leaves the flusher's list first, so a consume after this queues it again.
    pub fn take_pending(&self) -> Taken {
        self.queued.store(false, Release);
        let (epoch, period) = self.current_epoch_period();
        let mut consumed = Vec::new();
        for (i, pending) in self.pending.iter().enumerate() {
            let mut current = pending.load(Acquire);
            // Another epoch: `publish_all` took (or will take) these with the period.
            while epoch_of(current) == epoch && signed_of(current) != 0 {
                match pending.compare_exchange_weak(current, pack_signed(epoch, 0), AcqRel, Acquire)
                {
                    Ok(_) => {
                        consumed.push((i, signed_of(current)));
                        break;
                    }
                    Err(seen) => current = seen,
                }
            }
        }
        Taken { period, consumed }
    }

    /// Whether any metric has consumed units not yet handed to the store.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| signed_of(p.load(Acquire)) != 0)
    }
}

/// Adds `delta` to a pending count of `epoch`; the count before, or `None` if the count
/// is in another epoch.
fn add_pending(pending: &AtomicU64, epoch: u64, delta: i64) -> Option<i64> {
    let mut current = pending.load(Acquire);
    loop {
        if epoch_of(current) != epoch {
            return None;
        }
        let before = signed_of(current);
        let next = pack_signed(epoch, before.saturating_add(delta));
        match pending.compare_exchange_weak(current, next, AcqRel, Acquire) {
            Ok(_) => return Some(before),
            Err(seen) => current = seen,
        }
    }
}
