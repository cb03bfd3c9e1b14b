//! Keeping the runs few: a background thread merges runs of similar size (a frozen
//! table or a checkpoint adds one run each time), so a look-up probes a few dozen
//! filters at most however long the service has run; the thread that writes frozen
//! tables; and the rewrite both merges and the purge use (a streaming k-way merge, so
//! memory holds one block per input, never a run).

use super::run::{io, Entry, Run, RunWriter};
use super::{hash, IdemRuns};
use crate::store::StoreResult;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Weak};
use std::thread::JoinHandle;

/// Runs merged at once, and the size ratio between tiers: with 8, a look-up probes at
/// most ~7 runs per tier, and an entry is rewritten once per tier (log8 of the runs'
/// growth: 5 times from a 1,000-entry run to a 30-million-entry one).
const FANIN: usize = 8;

pub(super) struct Maintainer {
    tx: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Maintainer {
    /// The merges, run when a run is added.
    pub(super) fn merges(runs: Weak<IdemRuns>) -> std::io::Result<Self> {
        Self::start("edgequota-idem-merge", runs, |runs| {
            if let Err(e) = compact(runs) {
                tracing::error!(error = %crate::errors::chain(&e), "merging idempotency runs failed; look-ups stay correct, only slower, and the next checkpoint retries");
            }
        })
    }

    /// The writes of frozen tables (a thread of their own: a merge can take seconds).
    pub(super) fn frozen_writes(runs: Weak<IdemRuns>) -> std::io::Result<Self> {
        Self::start("edgequota-idem-run", runs, |runs| {
            if let Err(e) = runs.write_frozen() {
                tracing::warn!(error = %crate::errors::chain(&e), "writing idempotency entries as a run failed; they stay in memory and in the log, and the next checkpoint writes them");
            }
        })
    }

    fn start(name: &str, runs: Weak<IdemRuns>, job: fn(&IdemRuns)) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    while rx.try_recv().is_ok() {}
                    let Some(runs) = runs.upgrade() else { break };
                    job(&runs);
                }
            })?;
        Ok(Self { tx, thread })
    }

    pub(super) fn nudge(&self) {
        let _ = self.tx.send(());
    }

    pub(super) fn join(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// The next entry of a run, with its hash.
fn next(it: &mut impl Iterator<Item = StoreResult<Entry>>) -> StoreResult<Option<(u64, Entry)>> {
    it.next().transpose().map(|e| e.map(|e| (hash(&e.0), e)))
}

/// Runs within a factor of `FANIN` in size share a tier.
fn tier(count: u64) -> u32 {
    (64 - (count / 1024).leading_zeros()) / FANIN.trailing_zeros()
}

/// The oldest `FANIN` consecutive runs of one tier, if there are that many.
fn group(runs: &[Arc<Run>]) -> Option<Vec<Arc<Run>>> {
    let mut start = 0;
    for i in 0..runs.len() {
        if tier(runs[i].count) != tier(runs[start].count) {
            start = i;
        }
        if i + 1 - start == FANIN {
            return Some(runs[start..=i].to_vec());
        }
    }
    None
}

fn compact(runs: &IdemRuns) -> StoreResult<()> {
    loop {
        let _held = super::lock(&runs.maintenance);
        if runs.stopping.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(inputs) = group(&runs.list()) else {
            return Ok(());
        };
        rewrite(runs, &inputs, None)?;
    }
}

/// Writes the entries of `inputs` (oldest first) as one run that replaces them, minus
/// those created before `cutoff_ms`; returns how many it kept. For a key in several
/// inputs the newest input's entry wins. Abandoned (inputs kept, their count returned)
/// when the store stops meanwhile. Call with `maintenance` held.
pub(super) fn rewrite(
    runs: &IdemRuns,
    inputs: &[Arc<Run>],
    cutoff_ms: Option<i64>,
) -> StoreResult<u64> {
    let ids: Vec<u64> = inputs.iter().map(|r| r.id).collect();
    let expected: u64 = inputs.iter().map(|r| r.count).sum();
    let mut out = RunWriter::create(&runs.dir, runs.new_id(), expected, ids.clone()).map_err(io)?;
    let mut iters: Vec<_> = inputs.iter().map(|r| r.entries()).collect();
    let mut heads: Vec<Option<(u64, Entry)>> =
        iters.iter_mut().map(next).collect::<StoreResult<_>>()?;
    let mut taken = 0u64;
    loop {
        let mut best: Option<(usize, (u64, &[u8]))> = None;
        for (i, head) in heads.iter().enumerate() {
            if let Some((h, (k, _))) = head {
                let at = (*h, k.as_slice());
                if best.is_none_or(|(_, b)| at <= b) {
                    best = Some((i, at));
                }
            }
        }
        let Some((winner, (h, key))) = best.map(|(i, (h, k))| (i, (h, k.to_vec()))) else {
            break;
        };
        let mut chosen = None;
        for (i, it) in iters.iter_mut().enumerate() {
            if heads[i]
                .as_ref()
                .is_some_and(|(hh, (k, _))| *hh == h && *k == key)
            {
                let head = std::mem::replace(&mut heads[i], next(it)?);
                if i == winner {
                    chosen = head.map(|(_, e)| e);
                }
            }
        }
        if let Some(entry) = chosen.filter(|(_, e)| cutoff_ms.is_none_or(|c| e.created_ms >= c)) {
            out.push(h, &entry.0, &entry.1).map_err(io)?;
        }
        taken += 1;
        if taken.is_multiple_of(4096) && runs.stopping.load(Ordering::Relaxed) {
            // Dropping the writer removes its unfinished file.
            return Ok(expected);
        }
    }
    let run = out.finish()?;
    let kept = run.count;
    if kept == 0 {
        runs.replace(&ids, None)?;
        std::fs::remove_file(&run.path).map_err(io)?;
    } else {
        runs.replace(&ids, Some(run))?;
    }
    Ok(kept)
}
