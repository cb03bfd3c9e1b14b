//! The storage interface: one trait per consistency unit, written once for every
//! backend. `sled/` implements them on the embedded database (the default), `redis/` on
//! a Redis Cluster shared by several nodes, `memory/` in process memory (unit tests),
//! and the conformance suite (`conformance/`) runs the same checks against each.
//! Nothing outside this module names a backend's types.
//!
//! Every method returns a `'static` future, so a backend may run the work wherever it
//! must (sled: its commit thread or the blocking pool; a network store: a connection)
//! and no caller ever blocks a thread on it. Writes that must survive a crash are
//! durable when their future resolves.

pub mod codec;
pub mod conformance;
pub mod faults;
pub mod jobs;
pub mod memory;
pub mod open;
pub mod redis;
pub mod sled;
pub mod stigg_jobs;
pub mod types;
pub mod webhook_jobs;

use crate::domain::{KeyId, Metric, OrgId, PeriodKey};
use futures_util::future::BoxFuture;
use jobs::{Inserted, Job, JobState};
use std::collections::HashMap;
use std::sync::Arc;
pub use types::*;

/// Why a store operation failed. Every variant keeps its cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store: the embedded database failed")]
    Sled(#[source] Arc<::sled::Error>),
    #[error("store: syncing the data files to disk failed")]
    Sync(#[source] Arc<std::io::Error>),
    #[error("store: corrupt value in {tree}: {problem}")]
    Corrupt { tree: &'static str, problem: String },
    #[error("store: reading or writing the idempotency run files failed")]
    Runs(#[source] Arc<std::io::Error>),
    #[error("store: the commit writer has stopped")]
    WriterGone,
    #[error("store: a background task failed")]
    Task(#[source] Arc<tokio::task::JoinError>),
    /// The store could not be reached or did not answer in time (a network store).
    #[error("store: unavailable: {0}")]
    Unavailable(String),
    #[error("store: Redis failed")]
    Redis(#[source] Arc<::redis::RedisError>),
    /// A fenced write found the org's billing lease held by someone else (or by no one).
    #[error("store: the billing lease was lost before the write: {0}")]
    Fenced(#[source] Arc<::redis::RedisError>),
    /// An operation this store cannot serve by construction: a bug in the caller, never
    /// worth a retry (500, unlike `Unavailable`).
    #[error("store: {0}")]
    Unsupported(String),
}

impl StoreError {
    /// The store could not be reached or did not answer in time: the caller should retry
    /// (503), as opposed to a store that answered with a failure (500).
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_cluster_error()
            }
            _ => false,
        }
    }
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> Self {
        StoreError::Sled(Arc::new(e))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Sync(Arc::new(e))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A store operation under way.
pub type StoreFuture<T> = BoxFuture<'static, StoreResult<T>>;

/// Answers gathered from several submissions, each with its position in the input, put
/// back in input order; a position nobody answered gets `missing()`.
pub fn in_input_order<T>(
    n: usize,
    answered: impl IntoIterator<Item = (usize, T)>,
    missing: impl Fn() -> T,
) -> Vec<T> {
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for (position, answer) in answered {
        if let Some(slot) = out.get_mut(position) {
            *slot = Some(answer);
        }
    }
    out.into_iter()
        .map(|a| a.unwrap_or_else(&missing))
        .collect()
}

/// Everything the quota engine keeps per org: state, billing mirror, counters per
/// period, and the idempotency entries of usage records. One org's writes of one call
/// are atomic; `record` counts each (org, request id) exactly once, however many callers
/// (or nodes) race with it.
pub trait LedgerStore: Send + Sync + 'static {
    /// The org's state, billing mirror and `period`'s counters, as stored — after every
    /// write submitted before this call.
    fn load(&self, org: &OrgId, period: PeriodKey) -> StoreFuture<StoredLedger>;
    /// One period's counters of the org.
    fn counters(&self, org: &OrgId, period: PeriodKey) -> StoreFuture<HashMap<Metric, u64>>;
    /// Counts `usage` unless its request id was recorded before; durable on success.
    fn record(&self, org: &OrgId, usage: UsageRecord) -> StoreFuture<Recorded>;
    /// Records several of one org's usage records, in order, each as `record` would (a
    /// request id met again later in the list is that earlier record's replay or
    /// conflict); answers per record, in order. By default one `record` each, sent in
    /// order and awaited together.
    fn record_many(
        &self,
        org: &OrgId,
        usages: Vec<UsageRecord>,
    ) -> BoxFuture<'static, Vec<StoreResult<Recorded>>> {
        let records: Vec<_> = usages.into_iter().map(|u| self.record(org, u)).collect();
        Box::pin(futures_util::future::join_all(records))
    }
    /// Records usage of several orgs, in order, each as `record` would; answers per
    /// record, in order. A store that orders its writes in one queue (sled's writer,
    /// the memory store) queues them before this returns, ahead of anything submitted
    /// after — what lets a batch skip its orgs' actors exactly (`quota::direct`). A
    /// shared store orders nothing across its connections anyway; there the views are
    /// set from its totals by the periodic sync. By default `record_many` per org, each
    /// org's records in their order.
    fn record_across(
        &self,
        records: Vec<(OrgId, UsageRecord)>,
    ) -> BoxFuture<'static, Vec<StoreResult<Recorded>>> {
        let n = records.len();
        let mut orgs: Vec<(OrgId, Vec<usize>, Vec<UsageRecord>)> = Vec::new();
        let mut index: HashMap<OrgId, usize> = HashMap::new();
        for (i, (org, usage)) in records.into_iter().enumerate() {
            let g = *index.entry(org.clone()).or_insert_with(|| {
                orgs.push((org, Vec::new(), Vec::new()));
                orgs.len() - 1
            });
            orgs[g].1.push(i);
            orgs[g].2.push(usage);
        }
        let each: Vec<_> = orgs
            .into_iter()
            .map(|(org, positions, usages)| {
                let answers = self.record_many(&org, usages);
                async move { (positions, answers.await) }
            })
            .collect();
        Box::pin(async move {
            let answered = futures_util::future::join_all(each).await.into_iter();
            in_input_order(
                n,
                answered.flat_map(|(positions, answers)| positions.into_iter().zip(answers)),
                || Err(StoreError::Unsupported("record not answered".into())),
            )
        })
    }
    /// Applies `writes` atomically and durably.
    fn commit(&self, org: &OrgId, writes: Vec<LedgerWrite>) -> StoreFuture<()>;
    /// Commits several orgs' writes — each org's atomically, not all together — and
    /// answers per org, in order (the consume flusher: one hand-over for every org with
    /// consumed units). By default one `commit` per org.
    fn commit_many(
        &self,
        writes: Vec<(OrgId, Vec<LedgerWrite>)>,
    ) -> BoxFuture<'static, Vec<StoreResult<()>>> {
        let commits: Vec<_> = writes
            .into_iter()
            .map(|(org, w)| self.commit(&org, w))
            .collect();
        Box::pin(futures_util::future::join_all(commits))
    }
    /// The consume flusher's write-behind (SPEC §5): as `commit_many`, except that an
    /// answer need only survive a crash of the process; a backend may make it survive a
    /// power loss a little later (sled: within a second). By default `commit_many`.
    fn commit_consumed(
        &self,
        writes: Vec<(OrgId, Vec<LedgerWrite>)>,
    ) -> BoxFuture<'static, Vec<StoreResult<()>>> {
        self.commit_many(writes)
    }
    /// Takes the lease on the supervisor's sweep into `period` for `lease_ms` — or, with
    /// the token of the lease held, extends it — so that of several nodes sharing the
    /// store one sweeps (a node that dies mid-sweep leaves it to the next once the lease
    /// runs out; the sweep is idempotent). A store one process opens always grants it.
    fn sweep_lease(
        &self,
        _period: PeriodKey,
        _token: Option<String>,
        _lease_ms: u64,
    ) -> StoreFuture<SweepLease> {
        Box::pin(std::future::ready(Ok(SweepLease::Held(String::new()))))
    }
    /// Marks the sweep into `period` done, if `token` still holds its lease: the other
    /// nodes skip it.
    fn sweep_done(&self, _period: PeriodKey, _token: String) -> StoreFuture<()> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// Up to `limit` orgs' stored states after `after`, in a stable order (sweeps).
    fn states_page(
        &self,
        after: Option<&OrgId>,
        limit: usize,
    ) -> StoreFuture<Vec<(OrgId, OrgState)>>;
    /// Forgets idempotency entries recorded before `cutoff_ms`.
    fn purge_requests(&self, cutoff_ms: i64) -> StoreFuture<Purged>;
    /// Whether looking up a new request id is already cheap (an index rebuilt at
    /// start has finished); answers stay correct either way.
    fn requests_ready(&self) -> bool;
}

/// Orgs and the Stripe customers that belong to them.
pub trait OrgDirectory: Send + Sync + 'static {
    /// Creates the org and its initial ledger `state` — atomically with its
    /// idempotency key, if any, so concurrent creates with one key make one org.
    fn create(
        &self,
        record: OrgRecord,
        idempotency: Option<(String, CreateReplay)>,
        state: OrgState,
    ) -> StoreFuture<CreateOutcome>;
    fn get(&self, org: &OrgId) -> StoreFuture<Option<OrgRecord>>;
    /// Remembers that Stripe customer `customer` is `org`'s (durably).
    fn link_customer(&self, customer: &str, org: &OrgId) -> StoreFuture<()>;
    fn org_of_customer(&self, customer: &str) -> StoreFuture<Option<OrgId>>;
    /// Takes `org`'s billing lease for `lease_ms` — or, with the `token` of a lease
    /// held, extends it — unless another holder has it: `Some(token)` then, else `None`.
    /// Several nodes sharing the store serialise an org's Stripe operations with it; a
    /// store one process opens may grant it at once (the in-process lock serialises).
    fn lease(
        &self,
        org: &OrgId,
        token: Option<String>,
        lease_ms: u64,
    ) -> StoreFuture<Option<String>>;
    /// Gives the lease up, if `token` still holds it.
    fn release(&self, org: &OrgId, token: String) -> StoreFuture<()>;
}

/// Org API keys (hashes only).
pub trait KeyStore: Send + Sync + 'static {
    /// Stores (or replaces) `records`, durably.
    fn put(&self, records: Vec<ApiKeyRecord>) -> StoreFuture<()>;
    fn get(&self, key: &KeyId) -> StoreFuture<Option<ApiKeyRecord>>;
    fn all(&self) -> StoreFuture<Vec<ApiKeyRecord>>;
    fn of_org(&self, org: &OrgId) -> StoreFuture<Vec<ApiKeyRecord>>;
    /// Keys written since `cursor` (by this process or another sharing the store) and
    /// the cursor to ask with next; `cursor` 0 asks for the current cursor only. A
    /// store written by one process alone may answer no changes.
    fn changes_since(&self, cursor: u64) -> StoreFuture<(u64, Vec<ApiKeyRecord>)>;
}

/// A durable job queue (Stripe webhook events, Stigg provisioning jobs).
pub trait JobQueue<P>: Send + Sync + 'static {
    /// A number larger than any handed out before (arrival order of new jobs).
    fn next_seq(&self) -> StoreFuture<u64>;
    /// Stores `job` unless one with its id exists (then answers that one); durable.
    fn insert_new(&self, job: Job<P>) -> StoreFuture<Inserted<P>>;
    fn get(&self, id: &str) -> StoreFuture<Option<Job<P>>>;
    /// Replaces `expected` by `new` if the stored job is still `expected`; durable.
    fn replace(&self, expected: Job<P>, new: Job<P>) -> StoreFuture<bool>;
    /// Claims up to `limit` queued jobs due at `now_ms`, earliest first: no other claim
    /// takes one for `lease_ms` or until it is replaced, so two pollers (or nodes) do
    /// not work on one job at once — and if its worker dies, it is claimable again when
    /// the lease runs out. (A store only one process opens may keep leases in memory: a
    /// restart then finds every unfinished job claimable at once. A store several nodes
    /// share judges the lease by its own clock, one clock for all of them; `now_ms`
    /// decides only which jobs are due.)
    fn claim_due(&self, now_ms: i64, limit: usize, lease_ms: i64) -> StoreFuture<Vec<Job<P>>>;
    /// Jobs in `state` in arrival order after `after_seq`.
    fn list(
        &self,
        state: JobState,
        after_seq: Option<u64>,
        limit: usize,
    ) -> StoreFuture<Vec<Job<P>>>;
    fn oldest(&self, state: JobState) -> StoreFuture<Option<Job<P>>>;
    fn count(&self, state: JobState) -> StoreFuture<u64>;
    /// Removes jobs in `state` finished before `cutoff_ms`; returns how many.
    fn purge_finished_before(&self, state: JobState, cutoff_ms: i64) -> StoreFuture<u64>;
}

/// The DebugLog: recent requests, bounded.
pub trait DebugLogStore: Send + Sync + 'static {
    /// Appends `entries`, then drops the oldest beyond the capacity.
    fn append(&self, entries: Vec<DebugEntry>) -> StoreFuture<()>;
    /// Newest first, optionally of one correlation id, at most `limit`.
    fn recent(&self, correlation_id: Option<String>, limit: usize) -> StoreFuture<Vec<DebugEntry>>;
}

/// The store as a whole: what it is, whether it works, and its lifecycle.
pub trait StoreHealth: Send + Sync + 'static {
    /// `sled`, `memory`, `redis`.
    fn backend(&self) -> &'static str;
    /// Whether other processes may write this store too (then caches follow it).
    fn shared(&self) -> bool {
        false
    }
    /// A real write, read back and made durable (smoke diagnostics).
    fn round_trip(&self) -> StoreFuture<()>;
    /// Bytes on disk, where that means something.
    fn size_on_disk(&self) -> StoreFuture<Option<u64>>;
    /// Makes every write so far durable.
    fn flush(&self) -> StoreFuture<()>;
    /// Commits what is queued, makes it durable and stops background work (shutdown).
    /// Blocking; called once, after everything else has stopped.
    fn close(&self);
}

/// One backend's implementations of every trait.
#[derive(Clone)]
pub struct Backend {
    pub ledger: Arc<dyn LedgerStore>,
    pub orgs: Arc<dyn OrgDirectory>,
    pub keys: Arc<dyn KeyStore>,
    pub webhooks: Arc<dyn JobQueue<webhook_jobs::WebhookPayload>>,
    pub stigg: Arc<dyn JobQueue<stigg_jobs::StiggPayload>>,
    pub debug_log: Arc<dyn DebugLogStore>,
    pub health: Arc<dyn StoreHealth>,
    /// Fault injection (tests only; inert unless armed).
    pub faults: Arc<faults::Faults>,
}

/// Runs blocking work on the blocking pool so async workers never stall on disk.
pub async fn blocking<T, F>(f: F) -> StoreResult<T>
where
    F: FnOnce() -> StoreResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(Arc::new(e)))?
}
