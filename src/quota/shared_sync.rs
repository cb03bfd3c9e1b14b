//! Several nodes on one shared store (Redis): each node's org views are a cache. Its
//! consumes reach the store through the consume flusher (deltas, every
//! `engine.consume_flush_ms`); this task reads the shared totals back every
//! `store.redis_sync_ms` and publishes them into the views, so a node sees the other
//! nodes' consumes and records within one interval. Views read since the last pass are
//! refreshed every pass, the others every `FULL_EVERY` passes (an idle org's next check
//! is then at most that stale). A billing mirror another node changed (a plan change, a
//! webhook) reaches this node's actor the same way, and its quota follows the plan. With N nodes each admitting at rate R, what the cluster
//! can admit beyond the quota is about (N−1)·R·interval (see the README).

use super::engine::QuotaEngine;
use super::messages::AdoptBilling;
use crate::domain::{BillingRecord, OrgId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The billing mirror each live org had in the store at the last pass: a change there
/// (another node's Stripe operation or webhook) is handed to the org's actor.
pub type SeenBilling = HashMap<OrgId, BillingRecord>;

/// Every this many passes, every live view is refreshed, read or not.
const FULL_EVERY: u64 = 20;
/// Most store reads in flight at once in one pass.
const CONCURRENCY: usize = 64;

impl QuotaEngine {
    /// Refreshes the live views from the store's totals (and their actors from the
    /// store's billing mirror, when it changed); `all` includes views nobody read since
    /// the last pass. Returns how many views were refreshed.
    pub async fn sync_from_store(&self, all: bool, seen: &mut SeenBilling) -> usize {
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
                let read = ledger.load(org, period);
                async move { (org, view, epochs, read.await) }
            });
            for (org, view, epochs, result) in futures_util::future::join_all(reads).await {
                let Ok(stored) = result else {
                    failed = true;
                    continue;
                };
                if let Some(billing) = stored.billing {
                    if seen.get(org) != Some(&billing) {
                        seen.insert(org.clone(), billing.clone());
                        if let Some(handle) = self.registry().live(org) {
                            handle.addr.do_send(AdoptBilling(billing));
                        }
                    }
                }
                let totals = stored.counters;
                for (i, metric) in catalogue.metrics().iter().enumerate() {
                    if let Some(Some(epoch)) = epochs.get(i) {
                        view.sync_used(i, *epoch, totals.get(metric).copied().unwrap_or(0));
                    }
                }
            }
        }
        self.context().degraded.set_sync(failed);
        if all {
            let live = self.registry().live_orgs();
            seen.retain(|org, _| live.contains(org));
        }
        refreshed
    }
}

/// Runs `sync_from_store` every `interval` until aborted.
pub fn start(engine: Arc<QuotaEngine>, interval: Duration) -> actix_rt::task::JoinHandle<()> {
    actix_rt::spawn(async move {
        let mut tick = actix_rt::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut pass: u64 = 0;
        let mut seen = SeenBilling::new();
        let mut last: Option<std::time::Instant> = None;
        let longest = engine.context().metrics.store_sync_interval_max.clone();
        loop {
            tick.tick().await;
            // How stale a view can get is the time between passes, not the setting: a
            // starved machine stretches it, and the drift bound with it.
            let now = std::time::Instant::now();
            if let Some(gap) = last.map(|l| now.duration_since(l).as_secs_f64()) {
                if gap > longest.get() {
                    longest.set(gap);
                }
            }
            last = Some(now);
            pass = pass.wrapping_add(1);
            engine
                .sync_from_store(pass.is_multiple_of(FULL_EVERY), &mut seen)
                .await;
        }
    })
}
