//! When the writer folds the ledger's log into sled — every 30 s or once the log has
//! grown — and how: the log is sealed (what the checkpoint owes is fixed: the counters
//! dirty then, the idempotency entries in memory then), a chunk of those counters is
//! stored per pass between group commits, the frozen entries are written as runs by
//! their own thread meanwhile, and once both are done sled is flushed and the sealed
//! segments deleted. Also when it syncs frames that write-behind commits left unsynced.

use crate::metrics::Metrics;
use crate::store::sled::{idem, lock, Inner};
use crate::store::StoreResult;
use std::time::{Duration, Instant};

/// How often the log is folded into sled, at most. Each checkpoint stores every counter
/// moved since the last (with 10,000 busy orgs, 10,000 sled inserts at ~15 µs each), so a
/// longer interval is less CPU (databases checkpoint every few minutes for the same
/// reason); the log it leaves to replay after a crash stays bounded by `WAL_CAP_BYTES`.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
/// Dirty counters a checkpoint stores per pass (about 15 ms of sled inserts).
const CHECKPOINT_CHUNK: usize = 1_000;
/// The longest a write-behind frame waits for its sync (what a power loss can take of
/// the consumes; a crash of the process takes none of them, the kernel holds them).
pub(super) const SOON: Duration = Duration::from_secs(1);
/// The longest the writer sleeps with nothing queued (a due checkpoint still runs).
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// How long a checkpoint waits before it looks again at what it waits for (the frozen
/// entries' runs).
const RECHECK: Duration = Duration::from_millis(20);
/// How long a failed checkpoint waits before it tries again (a failing disk is retried
/// at this pace, not after every commit).
const RETRY: Duration = Duration::from_secs(1);

/// The writer's checkpoint state.
pub(super) struct Checkpoints {
    last: Instant,
    /// The checkpoint in progress: the idempotency tables it waits for.
    sealed: Option<idem::Sealed>,
    /// No pass before this (waiting for runs, or after a failure).
    not_before: Option<Instant>,
}

impl Checkpoints {
    pub(super) fn new() -> Self {
        Self {
            last: Instant::now(),
            sealed: None,
            not_before: None,
        }
    }

    fn pause(&mut self, wait: Duration) {
        self.not_before = Some(Instant::now() + wait);
    }
}

/// How long the writer may wait for a message: less when a frame waits for its sync,
/// none while a checkpoint has counters to store (an idle writer stores them at once).
pub(super) fn idle_wake(inner: &Inner, state: &Checkpoints) -> Duration {
    let wake = match lock(&inner.wal).unsynced_for() {
        Some(waited) => SOON.saturating_sub(waited).min(IDLE_WAKE),
        None => IDLE_WAKE,
    };
    if state.sealed.is_none() {
        return wake;
    }
    let until = state.not_before.map_or(Duration::ZERO, |at| {
        at.saturating_duration_since(Instant::now())
    });
    wake.min(until)
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

/// Runs one pass of a checkpoint when one is due or in progress: the start (the seal),
/// a chunk of the counters it owes, or its end once the frozen entries are runs. A
/// failure keeps the sealed segments (still durable) and is retried a moment later.
pub(super) fn if_due(inner: &Inner, state: &mut Checkpoints, m: &Metrics) {
    if state.not_before.is_some_and(|at| Instant::now() < at) {
        return;
    }
    state.not_before = None;
    let started = Instant::now();
    let sealed = match state.sealed.take() {
        Some(sealed) => sealed,
        None => {
            let wal_len = lock(&inner.wal).len();
            if state.last.elapsed() < CHECKPOINT_EVERY && wal_len < inner.wal_cap_bytes {
                return;
            }
            if wal_len == 0 && !inner.has_dirty() && !lock(&inner.wal).has_sealed() {
                state.last = Instant::now();
                return;
            }
            match seal(inner) {
                Ok(sealed) => sealed,
                Err(e) => return failed(state, m, &e),
            }
        }
    };
    match pass(inner, &sealed) {
        Ok(true) => {
            state.last = Instant::now();
            m.checkpoint_duration
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(false) => {
            if !inner.has_due() {
                // Only the runs are awaited: look again soon, not after every commit.
                state.pause(RECHECK);
            }
            state.sealed = Some(sealed);
            m.checkpoint_duration
                .observe(started.elapsed().as_secs_f64());
        }
        Err(e) => {
            state.sealed = Some(sealed);
            failed(state, m, &e);
        }
    }
}

fn failed(state: &mut Checkpoints, m: &Metrics, e: &crate::store::StoreError) {
    m.commit_errors.inc();
    tracing::warn!(error = %crate::errors::chain(e), "ledger checkpoint failed; the log keeps the writes and the checkpoint is retried");
    state.pause(RETRY);
}

/// Seals the log; the counters dirty now and the entries in memory now are what the
/// checkpoint owes (the writer thread's: no commit can come in between).
fn seal(inner: &Inner) -> StoreResult<idem::Sealed> {
    lock(&inner.wal).seal()?;
    lock(&inner.counters).seal();
    Ok(inner.idem.seal())
}

/// One step of the checkpoint in progress; true once it is done.
fn pass(inner: &Inner, sealed: &idem::Sealed) -> StoreResult<bool> {
    if !inner.apply_dirty_some(CHECKPOINT_CHUNK, true)? || !inner.idem.written(sealed) {
        return Ok(false);
    }
    inner.db.flush()?;
    inner.durability.sync()?;
    lock(&inner.wal).drop_sealed()?;
    Ok(true)
}
