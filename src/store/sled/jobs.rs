//! `JobQueue` on sled: a queue in one tree, with an index per state in arrival order
//! (listing, oldest job) and an index of queued jobs by the time they are due (so a poll
//! reads only what is due, however many jobs wait). Counts per state are kept in memory,
//! counted once at open and then moved with every change, so gauges never scan. Every
//! change runs on the blocking pool and ends with a flush.
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
use crate::store::{blocking, JobQueue, StoreError, StoreFuture, StoreResult};
use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

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

impl<P> JobTree<P>
where
    P: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Runs `f` on the blocking pool; with `durable`, flushes afterwards.
    fn run<T: Send + 'static>(
        self: &Arc<Self>,
        durable: bool,
        f: impl FnOnce(&Self) -> StoreResult<T> + Send + 'static,
    ) -> StoreFuture<T> {
        let this = self.clone();
        async move {
            let q = this.clone();
            let out = blocking(move || f(&q)).await?;
            if let (true, Some(inner)) = (durable, this.inner.clone()) {
                super::flush(inner).await?;
            }
            Ok(out)
        }
        .boxed()
    }

    /// Runs `f` on the blocking pool, then flushes if `changed` says it changed anything.
    fn run_then_flush_if<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Self) -> StoreResult<T> + Send + 'static,
        changed: impl FnOnce(&T) -> bool + Send + 'static,
    ) -> StoreFuture<T> {
        let run = self.run(false, f);
        let inner = self.inner.clone();
        async move {
            let out = run.await?;
            if let (true, Some(inner)) = (changed(&out), inner) {
                super::flush(inner).await?;
            }
            Ok(out)
        }
        .boxed()
    }
}

/// The trait is implemented on `Arc<JobTree>` handles so each call can own its tree.
pub struct SharedJobTree<P>(pub Arc<JobTree<P>>);

impl<P> JobQueue<P> for SharedJobTree<P>
where
    P: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn next_seq(&self) -> StoreFuture<u64> {
        self.0.run(false, |q| match &q.inner {
            Some(inner) => Ok(inner.db.generate_id()?),
            None => Err(StoreError::Unavailable(format!(
                "{}: an upgrade-only queue hands out no sequence numbers",
                q.name
            ))),
        })
    }

    fn insert_new(&self, job: Job<P>) -> StoreFuture<Inserted<P>> {
        self.0.run(true, move |q| q.insert_new(&job))
    }

    fn get(&self, id: &str) -> StoreFuture<Option<Job<P>>> {
        let id = id.to_owned();
        self.0.run(false, move |q| q.get(&id))
    }

    fn replace(&self, expected: Job<P>, new: Job<P>) -> StoreFuture<bool> {
        self.0.run(true, move |q| q.replace(&expected, &new))
    }

    fn claim_due(&self, now_ms: i64, limit: usize, lease_ms: i64) -> StoreFuture<Vec<Job<P>>> {
        self.0
            .run(false, move |q| q.claim_due(now_ms, limit, lease_ms))
    }

    fn list(
        &self,
        state: JobState,
        after_seq: Option<u64>,
        limit: usize,
    ) -> StoreFuture<Vec<Job<P>>> {
        self.0.run(false, move |q| q.list(state, after_seq, limit))
    }

    fn oldest(&self, state: JobState) -> StoreFuture<Option<Job<P>>> {
        self.0.run(false, move |q| q.oldest(state))
    }

    fn count(&self, state: JobState) -> StoreFuture<u64> {
        futures_util::future::ready(Ok(self.0.count(state))).boxed()
    }

    fn purge_finished_before(&self, state: JobState, cutoff_ms: i64) -> StoreFuture<u64> {
        self.0.run_then_flush_if(
            move |q| q.purge_finished_before(state, cutoff_ms),
            |purged| *purged > 0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> JobTree<String> {
        let db = sled::Config::new().temporary(true).open().unwrap();
        JobTree::bare(db.open_tree("jobs").unwrap(), "jobs", 1).unwrap()
    }

    fn job(id: &str, seq: u64, due: i64) -> Job<String> {
        let mut j = Job::queued(id.into(), seq, format!("payload of {id}"), 0);
        j.next_attempt_ms = due;
        j
    }

    #[test]
    fn a_job_is_stored_once_and_listed_in_arrival_order() {
        let q = queue();
        assert!(matches!(
            q.insert_new(&job("b", 2, 0)).unwrap(),
            Inserted::New
        ));
        assert!(matches!(
            q.insert_new(&job("a", 1, 0)).unwrap(),
            Inserted::New
        ));
        assert!(matches!(
            q.insert_new(&job("a", 3, 0)).unwrap(),
            Inserted::Existing(e) if e.seq == 1
        ));
        let ids: Vec<_> = q
            .list(JobState::Queued, None, 10)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(q.list(JobState::Queued, Some(1), 10).unwrap()[0].id, "b");
        assert_eq!(q.count(JobState::Queued), 2);
        assert_eq!(q.oldest(JobState::Queued).unwrap().unwrap().id, "a");
    }

    #[test]
    fn due_reads_only_what_is_due_including_past_instants() {
        let q = queue();
        q.insert_new(&job("later", 1, 5_000)).unwrap();
        q.insert_new(&job("now", 2, 1_000)).unwrap();
        q.insert_new(&job("long-ago", 3, -7_000)).unwrap();
        let due: Vec<_> = q
            .due(1_000, 10)
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(due, ["long-ago", "now"]);
        assert_eq!(q.due(1_000, 1).unwrap().len(), 1);
        assert_eq!(q.next_due_ms().unwrap(), Some(-7_000));
        assert_eq!(q.due(9_999, 10).unwrap().len(), 3);
    }

    #[test]
    fn replace_moves_the_indices_and_counts_and_refuses_a_stale_expectation() {
        let q = queue();
        let queued = job("a", 1, 0);
        q.insert_new(&queued).unwrap();
        let done = queued.finished(JobState::Done, None, 10);
        assert!(q.replace(&queued, &done).unwrap());
        assert!(!q.replace(&queued, &done).unwrap(), "stale");
        assert_eq!((q.count(JobState::Queued), q.count(JobState::Done)), (0, 1));
        assert!(q.due(i64::MAX - 1, 10).unwrap().is_empty());
        assert_eq!(q.get("a").unwrap().unwrap().state, JobState::Done);
        // Counts are rebuilt from the indices on open.
        let reopened = JobTree::<String>::bare(q.tree.clone(), "jobs", 1).unwrap();
        assert_eq!(reopened.count(JobState::Done), 1);
    }

    #[test]
    fn finished_jobs_older_than_the_cutoff_are_purged() {
        let q = queue();
        for (id, seq, at) in [("old", 1, 1_000), ("new", 2, 9_000)] {
            let j = job(id, seq, 0);
            q.insert_new(&j).unwrap();
            q.replace(&j, &j.finished(JobState::Done, None, at))
                .unwrap();
        }
        assert_eq!(q.purge_finished_before(JobState::Done, 5_000).unwrap(), 1);
        assert!(q.get("old").unwrap().is_none());
        assert!(q.get("new").unwrap().is_some());
        assert_eq!(q.count(JobState::Done), 1);
    }
}
