//! The consume flusher (SPEC §5): one task for the engine that hands the consumed units
//! waiting in the views' pending counts to the store every `engine.consume_flush_ms`, as
//! deltas through the group commit — write-behind, so a consume never waits for a disk.
//! A clean shutdown flushes once more; a `kill -9` loses at most what was consumed since
//! the last flush. Also the direct hand-over used when units miss a view's pending
//! counts (an actor retiring, a late consume or refund).

use super::context::EngineContext;
use super::view::Taken;
use crate::domain::OrgId;
use crate::store::LedgerWrite;
use std::sync::Arc;
use std::time::Duration;

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
    let kept = ctx.consumed.take_unpersisted();
    // The writes are needed again only if their commit fails: what a failed flush kept
    // (rare) is cloned, the views' units are rebuilt from what was taken.
    let mut again: Vec<(OrgId, Again)> = kept
        .iter()
        .map(|(org, w)| (org.clone(), Again::Kept(w.clone())))
        .collect();
    let mut writes = kept;
    for (org, view) in ctx.consumed.take() {
        let taken = view.take_pending();
        let w = usage_writes(ctx, &taken);
        if !w.is_empty() {
            again.push((org.clone(), Again::Taken(taken)));
            writes.push((org, w));
        }
    }
    let flushed = writes.len();
    if flushed > 0 {
        let results = ctx.backend.ledger.commit_consumed(writes).await;
        for ((org, again), result) in again.into_iter().zip(results) {
            if let Err(e) = result {
                // Kept, merged, for the next flush; counted in memory meanwhile.
                ctx.metrics.consume_persist_failures.inc();
                tracing::warn!(org = %org, error.cause_chain = %crate::errors::chain(&e), "consumed units not persisted yet; retried at the next flush");
                let w = match again {
                    Again::Kept(w) => w,
                    Again::Taken(taken) => usage_writes(ctx, &taken),
                };
                ctx.consumed.keep_failed(&org, w);
            }
        }
    }
    ctx.degraded.set_flush(ctx.consumed.has_unpersisted());
    flushed
}

/// How to write a flushed org's units again if their commit fails.
enum Again {
    Kept(Vec<LedgerWrite>),
    Taken(Taken),
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
