//! When the writer folds the ledger's log into sled — every 30 s or once the log has
//! grown, a chunk of dirty counters per pass between group commits, then the flush and
//! the emptied log (`Inner::checkpoint`) — and when it syncs frames that write-behind
//! commits left unsynced.

use crate::metrics::Metrics;
use crate::store::sled::{lock, Inner};
use std::time::{Duration, Instant};

/// How often the log is folded into sled, at most. Each checkpoint stores every counter
/// moved since the last (with 10,000 busy orgs, 10,000 sled inserts at ~15 µs each), so a
/// longer interval is less CPU (databases checkpoint every few minutes for the same
/// reason); the log it leaves to replay after a crash stays bounded by `WAL_CAP_BYTES`.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
/// Dirty counters a checkpoint stores per pass (about 15 ms of sled inserts).
const CHECKPOINT_CHUNK: usize = 1_000;
/// The log's size that forces a checkpoint (it bounds replay time and disk use).
const WAL_CAP_BYTES: u64 = 64 << 20;
/// The longest a write-behind frame waits for its sync (what a power loss can take of
/// the consumes; a crash of the process takes none of them, the kernel holds them).
pub(super) const SOON: Duration = Duration::from_secs(1);
/// The longest the writer sleeps with nothing queued (a due checkpoint still runs).
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// How long the writer may wait for a message: less when a frame waits for its sync.
pub(super) fn idle_wake(inner: &Inner) -> Duration {
    match lock(&inner.wal).unsynced_for() {
        Some(waited) => SOON.saturating_sub(waited).min(IDLE_WAKE),
        None => IDLE_WAKE,
    }
}

/// Syncs the log if a write-behind frame has waited `SOON` for it. A failed sync marks
/// the store behind (only a checkpoint proves durability after that) and is tried again
/// a `SOON` later.
pub(super) fn sync_if_due(inner: &Inner, m: &Metrics) {
    let mut wal = lock(&inner.wal);
    if wal.unsynced_for().is_none_or(|waited| waited < SOON) {
        return;
    }
    if let Err(e) = inner.faults.flush_fault().and_then(|()| wal.sync()) {
        wal.retry_sync_later();
        drop(wal);
        inner.durability.mark_behind();
        m.commit_errors.inc();
        tracing::warn!(error = %crate::errors::chain(&e), "syncing write-behind commits failed; the next checkpoint retries");
    }
}

/// Folds the log into sled when it is due: the dirty counters a chunk per pass (a pass
/// runs between group commits, so no commit waits for all of them), then the flush and
/// the log emptied. A failure keeps the log (still durable) for the next try.
pub(super) fn if_due(inner: &Inner, last: &mut Instant, m: &Metrics) {
    let wal_len = lock(&inner.wal).len();
    if last.elapsed() < CHECKPOINT_EVERY && wal_len < WAL_CAP_BYTES {
        return;
    }
    if wal_len == 0 && !inner.has_dirty() {
        *last = Instant::now();
        return;
    }
    let started = Instant::now();
    match inner.apply_dirty_some(CHECKPOINT_CHUNK) {
        // More to store: the next pass goes on (still due).
        Ok(false) => {
            m.checkpoint_duration
                .observe(started.elapsed().as_secs_f64());
            return;
        }
        Ok(true) => {}
        Err(e) => {
            m.commit_errors.inc();
            tracing::warn!(error = %crate::errors::chain(&e), "ledger checkpoint failed; the log keeps the writes and the next checkpoint retries");
            *last = Instant::now();
            return;
        }
    }
    *last = Instant::now();
    let result = inner.checkpoint();
    m.checkpoint_duration
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = result {
        m.commit_errors.inc();
        tracing::warn!(error = %crate::errors::chain(&e), "ledger checkpoint failed; the log keeps the writes and the next checkpoint retries");
    }
}
