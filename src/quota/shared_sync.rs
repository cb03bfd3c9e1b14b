//! Several nodes on one shared store (Redis): each node's org views are a cache. Its
//! consumes reach the store through the consume flusher (deltas, every
//! `engine.consume_flush_ms`); this task reads the shared totals back every
//! `store.redis_sync_ms` and publishes them into the views, so a node sees the other
//! nodes' consumes and records within one interval. Views read since the last pass are
//! refreshed every pass, the others every `FULL_EVERY` passes (an idle org's next check
//! is then at most that stale). With N nodes each admitting at rate R, what the cluster
//! can admit beyond the quota is about (N−1)·R·interval (see the README).

use super::engine::QuotaEngine;
use std::sync::Arc;
use std::time::Duration;

/// Every this many passes, every live view is refreshed, read or not.
const FULL_EVERY: u64 = 20;
/// Most store reads in flight at once in one pass.
const CONCURRENCY: usize = 64;

impl QuotaEngine {
    /// Refreshes the live views from the store's totals; `all` includes views nobody
    /// read since the last pass. Returns how many views were refreshed.
    pub async fn sync_from_store(&self, all: bool) -> usize {
        let catalogue = self.catalogue().clone();
        let ledger = self.backend().ledger.clone();
        let views: Vec<_> = self
            .registry()
            .live_views()
            .into_iter()
            .filter(|(_, v)| v.take_read_since_sync() || all)
            .collect();
        let refreshed = views.len();
        let mut failed = false;
        for chunk in views.chunks(CONCURRENCY) {
            let reads = chunk.iter().map(|(org, view)| {
                let period = view.period();
                // Read before the totals: a roll or reset meanwhile changes the epoch, and
                // the stale totals are then dropped.
                let epochs: Vec<Option<u64>> = (0..catalogue.metrics().len())
                    .map(|i| view.epoch(i))
                    .collect();
                let read = ledger.counters(org, period);
                async move { (view, epochs, read.await) }
            });
            for (view, epochs, result) in futures_util::future::join_all(reads).await {
                let Ok(totals) = result else {
                    failed = true;
                    continue;
                };
                for (i, metric) in catalogue.metrics().iter().enumerate() {
                    if let Some(Some(epoch)) = epochs.get(i) {
                        view.sync_used(i, *epoch, totals.get(metric).copied().unwrap_or(0));
                    }
                }
            }
        }
        self.context().degraded.set_sync(failed);
        refreshed
    }
}

/// Runs `sync_from_store` every `interval` until aborted.
pub fn start(engine: Arc<QuotaEngine>, interval: Duration) -> actix_rt::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut pass: u64 = 0;
        loop {
            tick.tick().await;
            pass = pass.wrapping_add(1);
            engine
                .sync_from_store(pass.is_multiple_of(FULL_EVERY))
                .await;
        }
    })
}
