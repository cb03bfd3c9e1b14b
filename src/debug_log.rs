//! The DebugLog pipeline: requests hand entries to a bounded channel (never blocking,
//! dropping and counting when full), and one background task appends them to the store
//! in batches and trims it to capacity.
//!
//! The task wakes on a timer (`FLUSH_EVERY`), not on each entry: a request that logs
//! never wakes another thread, and a busy minute costs a few hundred store appends,
//! however many requests it carried.

use crate::metrics::Metrics;
use crate::store::{DebugEntry, DebugLogStore};
use std::cell::Cell;
use std::sync::Arc;
use tokio::sync::mpsc;

const CHANNEL: usize = 16_384;
/// How often the task moves what was logged into the store.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

#[derive(Clone)]
pub struct DebugLogSink {
    tx: mpsc::Sender<DebugEntry>,
    sample_every: u64,
    metrics: Metrics,
}

thread_local! {
    static HOT_SEEN: Cell<u64> = const { Cell::new(0) };
}

impl DebugLogSink {
    /// Whether this request goes to the log: every cold-path request, one in
    /// `sample_every` hot-path ones (counted per worker thread, so no shared counter).
    pub fn should_log(&self, hot: bool) -> bool {
        if !hot || self.sample_every <= 1 {
            return true;
        }
        HOT_SEEN.with(|n| {
            let seen = n.get().wrapping_add(1);
            n.set(seen);
            seen % self.sample_every == 0
        })
    }

    pub fn push(&self, entry: DebugEntry) {
        if self.tx.try_send(entry).is_err() {
            self.metrics.debug_log_dropped.inc();
        }
    }
}

/// Starts the writer task on the current runtime; it ends (after writing what is
/// queued) when every sink is dropped.
pub fn start(
    store: Arc<dyn DebugLogStore>,
    sample_every: u64,
    metrics: Metrics,
) -> (DebugLogSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel(CHANNEL);
    let task = actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut entries = Vec::new();
            let open = loop {
                match rx.try_recv() {
                    Ok(entry) => entries.push(entry),
                    Err(mpsc::error::TryRecvError::Empty) => break true,
                    Err(mpsc::error::TryRecvError::Disconnected) => break false,
                }
            };
            if !entries.is_empty() {
                if let Err(e) = store.append(entries).await {
                    tracing::warn!(error = %crate::errors::chain(&e), "debug log append failed");
                }
            }
            if !open {
                break;
            }
        }
    });
    let sink = DebugLogSink {
        tx,
        sample_every,
        metrics,
    };
    (sink, task)
}
