//! The DebugLog pipeline: requests hand entries to a bounded channel (never blocking,
//! dropping and counting when full), and one background task appends them to the store
//! in batches and trims it to capacity.

use crate::metrics::Metrics;
use crate::store::{DebugEntry, DebugLogStore};
use std::cell::Cell;
use std::sync::Arc;
use tokio::sync::mpsc;

const CHANNEL: usize = 8192;
const BATCH: usize = 512;

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
        let mut buf = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut buf, BATCH).await > 0 {
            let entries = std::mem::take(&mut buf);
            if let Err(e) = store.append(entries).await {
                tracing::warn!(error = %crate::errors::chain(&e), "debug log append failed");
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
