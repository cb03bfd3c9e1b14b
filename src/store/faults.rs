//! Fault injection for tests: make the next group commits fail (before or after their
//! writes are applied), make store syncs fail, and hold the writer at a commit so a test
//! can queue more writes behind it. Inert unless a test arms it: the writer pays one
//! relaxed atomic load per batch.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Faults {
    armed: AtomicBool,
    /// Commits to fail before their batch is applied.
    fail_apply: AtomicU32,
    /// Flushes/syncs to fail (after a batch was applied, for commits).
    fail_flush: AtomicU32,
    hold: Mutex<Hold>,
    changed: Condvar,
}

#[derive(Default)]
struct Hold {
    /// Hold the writer at its next commit.
    requested: bool,
    /// The writer is waiting at a commit.
    holding: bool,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected fault: {what}"))
}

impl Faults {
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// The next `n` group commits fail before anything is applied.
    pub fn fail_next_applies(&self, n: u32) {
        self.fail_apply.store(n, Ordering::SeqCst);
        self.arm();
    }

    /// The next `n` flushes fail (a commit's batch is applied first).
    pub fn fail_next_flushes(&self, n: u32) {
        self.fail_flush.store(n, Ordering::SeqCst);
        self.arm();
    }

    /// How many of the armed flush failures are still to come (none tried them yet).
    pub fn flush_failures_left(&self) -> u32 {
        self.fail_flush.load(Ordering::SeqCst)
    }

    /// The writer stops at its next commit until `release`.
    pub fn hold_next_commit(&self) {
        self.lock().requested = true;
        self.arm();
    }

    /// Waits until the writer is held at a commit (`false` on timeout).
    pub fn wait_held(&self, timeout: Duration) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |h| !h.holding)
            .unwrap_or_else(|p| p.into_inner());
        guard.holding
    }

    pub fn release(&self) {
        let mut h = self.lock();
        h.requested = false;
        h.holding = false;
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hold> {
        self.hold.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Called by the writer before it applies a batch: holds if asked, then fails if armed.
    pub fn apply_fault(&self) -> io::Result<()> {
        if !self.is_armed() {
            return Ok(());
        }
        {
            let mut h = self.lock();
            if h.requested {
                h.holding = true;
                self.changed.notify_all();
                let _released = self
                    .changed
                    .wait_while(h, |h| h.holding)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
        if Self::take(&self.fail_apply) {
            return Err(injected("commit not applied"));
        }
        Ok(())
    }

    /// Called before every sync of the store's files.
    pub fn flush_fault(&self) -> io::Result<()> {
        if self.is_armed() && Self::take(&self.fail_flush) {
            return Err(injected("flush failed"));
        }
        Ok(())
    }
}
