//! The queue of consumed units not yet in the store: the views with pending units, and
//! the units whose write failed, merged per counter. It knows nothing of the engine or
//! its context, so the context can hold it and the flusher can drain it.

use super::view::OrgView;
use crate::domain::{Metric, OrgId, PeriodKey};
use crate::store::LedgerWrite;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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

    /// The queued views, leaving the queue empty.
    pub fn take(&self) -> Vec<(OrgId, Arc<OrgView>)> {
        std::mem::take(&mut *locked(&self.queued))
    }

    /// The usage writes a failed flush kept, per org (counters that net to zero left
    /// out), leaving none kept.
    pub fn take_unpersisted(&self) -> Vec<(OrgId, Vec<LedgerWrite>)> {
        let kept = std::mem::take(&mut *locked(&self.unpersisted));
        let mut writes = Vec::with_capacity(kept.len());
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
        writes
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
