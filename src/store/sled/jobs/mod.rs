//! `JobQueue` on sled: a queue in one tree, with an index per state in arrival order
//! (listing, oldest job) and an index of queued jobs by the time they are due (so a poll
//! reads only what is due, however many jobs wait). Counts per state are kept in memory,
//! counted once at open and then moved with every change, so gauges never scan. Every
//! change runs on the blocking pool and ends with a flush.
//!
//! The `JobQueue` trait's implementation (each call on the blocking pool, then a flush
//! through the writer when it changed something) is in `queue.rs`.
//!
//! Keys (job ids never contain NUL):
//! - `j\0{id}`                        → the job (version byte + postcard)
//! - `s{state}\0{seq:be64}`           → id
//! - `d\0{due:be64}{seq:be64}`        → id (queued jobs only; `due` is the signed
//!   instant with its sign bit flipped, so keys sort like instants)
//!
//! Every change of a job moves its index entries in the same transaction, and changes
//! are conditional on the job as read (two processors of one job cannot both record an
//! outcome, and a newer request is never overwritten by the result of an older one).

use super::codec::{decode, encode};
use super::Inner;
use crate::store::jobs::{Inserted, Job, JobState};
use crate::store::{StoreError, StoreResult};
use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

mod queue;

pub use queue::SharedJobTree;

pub struct JobTree<P> {
    tree: sled::Tree,
    name: &'static str,
    version: u8,
    counts: [AtomicI64; 4],
    /// Claimed job ids and until when (see `claim_due`).
    leases: Mutex<HashMap<String, i64>>,
    /// One transaction on the tree at a time: sled 0.34 can deadlock under many
    /// concurrent transactions, and a queue's write rate is low.
    writing: Mutex<()>,
    /// For the flush after every change; `None` for a bare tree (upgrades, tests).
    inner: Option<Arc<Inner>>,
    _payload: PhantomData<fn() -> P>,
}

fn transaction_result<T>(r: Result<T, TransactionError<StoreError>>) -> StoreResult<T> {
    match r {
        Ok(v) => Ok(v),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(e.into()),
    }
}

fn job_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 2);
    k.extend_from_slice(b"j\0");
    k.extend_from_slice(id.as_bytes());
    k
}

fn state_prefix(state: JobState) -> [u8; 2] {
    [b's', state.tag()]
}

fn state_key(state: JobState, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(11);
    k.extend_from_slice(&state_prefix(state));
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

const DUE_PREFIX: [u8; 2] = [b'd', 0];

fn due_instant(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn due_key(due_ms: i64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&DUE_PREFIX);
    k.extend_from_slice(&due_instant(due_ms));
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

fn put_indices<P>(t: &TransactionalTree, job: &Job<P>) -> TxResult<()> {
    t.insert(state_key(job.state, job.seq), job.id.as_bytes())?;
    if job.state == JobState::Queued {
        t.insert(due_key(job.next_attempt_ms, job.seq), job.id.as_bytes())?;
    }
    Ok(())
}

fn remove_indices<P>(t: &TransactionalTree, job: &Job<P>) -> TxResult<()> {
    t.remove(state_key(job.state, job.seq))?;
    if job.state == JobState::Queued {
        t.remove(due_key(job.next_attempt_ms, job.seq))?;
    }
    Ok(())
}

impl<P: Serialize + DeserializeOwned> JobTree<P> {
    /// Opens the queue in `tree` (values tagged with schema `version`) and counts it.
    pub fn open(
        tree: sled::Tree,
        name: &'static str,
        version: u8,
        inner: Arc<Inner>,
    ) -> StoreResult<Self> {
        let mut q = Self::bare(tree, name, version)?;
        q.inner = Some(inner);
        Ok(q)
    }

    /// The queue without durability (its writes are flushed by whoever wrote them).
    pub fn bare(tree: sled::Tree, name: &'static str, version: u8) -> StoreResult<Self> {
        let counts = [0, 0, 0, 0].map(AtomicI64::new);
        for state in JobState::ALL {
            let n = tree.scan_prefix(state_prefix(state)).keys().count();
            counts[state.index()].store(n as i64, Ordering::Relaxed);
        }
        Ok(Self {
            tree,
            name,
            version,
            counts,
            leases: Mutex::new(HashMap::new()),
            writing: Mutex::new(()),
            inner: None,
            _payload: PhantomData,
        })
    }

    fn decode(&self, bytes: &[u8]) -> StoreResult<Job<P>> {
        decode(self.name, self.version, bytes)
    }

    fn moved(&self, from: Option<JobState>, to: Option<JobState>) {
        if let Some(s) = from {
            self.counts[s.index()].fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(s) = to {
            self.counts[s.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stores `job` and its index entries unless a job with its id exists.
    pub fn insert_new(&self, job: &Job<P>) -> StoreResult<Inserted<P>> {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let key = job_key(&job.id);
        let value = encode(self.version, job);
        let inserted = transaction_result(self.tree.transaction(|t| {
            if let Some(existing) = t.get(&key)? {
                return Ok(Some(self.decode(&existing).map_err(abort)?));
            }
            t.insert(key.as_slice(), value.as_slice())?;
            put_indices(t, job)?;
            Ok(None)
        }))?;
        Ok(match inserted {
            Some(existing) => Inserted::Existing(Box::new(existing)),
            None => {
                self.moved(None, Some(job.state));
                Inserted::New
            }
        })
    }

    pub fn get(&self, id: &str) -> StoreResult<Option<Job<P>>> {
        self.tree
            .get(job_key(id))?
            .map(|v| self.decode(&v))
            .transpose()
    }

    /// Replaces `expected` by `new` (same id) if the stored job is still `expected`;
    /// returns whether it was.
    pub fn replace(&self, expected: &Job<P>, new: &Job<P>) -> StoreResult<bool> {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let key = job_key(&expected.id);
        let old_value = encode(self.version, expected);
        let new_value = encode(self.version, new);
        let replaced = transaction_result(self.tree.transaction(|t| {
            if t.get(&key)?.as_deref() != Some(old_value.as_slice()) {
                return Ok(false);
            }
            remove_indices(t, expected)?;
            t.insert(key.as_slice(), new_value.as_slice())?;
            put_indices(t, new)?;
            Ok(true)
        }))?;
        if replaced {
            self.moved(Some(expected.state), Some(new.state));
            self.release(&expected.id);
        }
        Ok(replaced)
    }

    /// Removes `expected` if it is still stored as read.
    pub fn remove(&self, expected: &Job<P>) -> StoreResult<bool> {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let key = job_key(&expected.id);
        let old_value = encode(self.version, expected);
        let removed = transaction_result(self.tree.transaction(|t| {
            if t.get(&key)?.as_deref() != Some(old_value.as_slice()) {
                return Ok(false);
            }
            t.remove(key.as_slice())?;
            remove_indices(t, expected)?;
            Ok(true)
        }))?;
        if removed {
            self.moved(Some(expected.state), None);
            self.release(&expected.id);
        }
        Ok(removed)
    }

    fn job_at(&self, id: &[u8]) -> StoreResult<Option<Job<P>>> {
        let id = std::str::from_utf8(id).map_err(|e| StoreError::Corrupt {
            tree: self.name,
            problem: e.to_string(),
        })?;
        self.get(id)
    }

    /// Queued jobs due at `now_ms`, earliest first; at most `limit`. Reads only the due
    /// part of the index.
    pub fn due(&self, now_ms: i64, limit: usize) -> StoreResult<Vec<Job<P>>> {
        let end = due_key(now_ms.saturating_add(1), 0);
        let mut out = Vec::new();
        for item in self.tree.range(DUE_PREFIX.to_vec()..end) {
            if out.len() >= limit {
                break;
            }
            let (_, id) = item?;
            // An index entry whose job moved on meanwhile is skipped, not an error.
            if let Some(job) = self.job_at(&id)?.filter(|j| j.state == JobState::Queued) {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// Claims due jobs: each is kept from other claims for `lease_ms`. Only one process
    /// opens a sled store, so leases live in memory: a restart (after a crash mid-job)
    /// finds every unfinished job due at once instead of waiting for a lease to lapse.
    pub fn claim_due(&self, now_ms: i64, limit: usize, lease_ms: i64) -> StoreResult<Vec<Job<P>>> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.retain(|_, until| *until > now_ms);
        let mut out = Vec::new();
        for job in self.due(now_ms, limit.saturating_add(leases.len()))? {
            if out.len() >= limit {
                break;
            }
            if leases.contains_key(&job.id) {
                continue;
            }
            leases.insert(job.id.clone(), now_ms.saturating_add(lease_ms));
            out.push(job);
        }
        Ok(out)
    }

    /// A job changed or went: its lease (if any) ends with the claim it served.
    fn release(&self, id: &str) {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.remove(id);
    }

    /// When the earliest queued job is due, if any is queued.
    pub fn next_due_ms(&self) -> StoreResult<Option<i64>> {
        let Some((key, _)) = self.tree.scan_prefix(DUE_PREFIX).next().transpose()? else {
            return Ok(None);
        };
        let raw: [u8; 8] = key
            .get(2..10)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt {
                tree: self.name,
                problem: "short due key".into(),
            })?;
        Ok(Some((u64::from_be_bytes(raw) ^ (1 << 63)) as i64))
    }

    /// Jobs in `state`, in arrival order, after `after_seq`; at most `limit`.
    pub fn list(
        &self,
        state: JobState,
        after_seq: Option<u64>,
        limit: usize,
    ) -> StoreResult<Vec<Job<P>>> {
        let prefix = state_prefix(state);
        let start = match after_seq {
            Some(seq) => state_key(state, seq.saturating_add(1)),
            None => prefix.to_vec(),
        };
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (k, id) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            if let Some(job) = self.job_at(&id)? {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// The oldest job in `state` (by arrival), read from the front of its index.
    pub fn oldest(&self, state: JobState) -> StoreResult<Option<Job<P>>> {
        Ok(self.list(state, None, 1)?.pop())
    }

    pub fn count(&self, state: JobState) -> u64 {
        self.counts[state.index()].load(Ordering::Relaxed).max(0) as u64
    }

    /// Removes jobs in `state` finished before `cutoff_ms`, walking the state's index one
    /// job at a time (nothing is collected in memory); returns how many.
    pub fn purge_finished_before(&self, state: JobState, cutoff_ms: i64) -> StoreResult<u64> {
        let mut purged = 0;
        for item in self.tree.scan_prefix(state_prefix(state)) {
            let (_, id) = item?;
            let Some(job) = self.job_at(&id)? else {
                continue;
            };
            if job.done_ms.is_some_and(|ms| ms < cutoff_ms) && self.remove(&job)? {
                purged += 1;
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
mod tests;
