//! The group-commit writer: one OS thread that owns every ledger write and decides every
//! usage record.
//!
//! Callers submit and keep serving; the writer takes everything queued, applies it as one
//! sled batch — counting each record's delta onto the stored total unless its request id
//! was recorded before — appends the batch's final values to the write-ahead log as one
//! frame and `fdatasync`s it, and only then answers each submitter. A 200 that waited for
//! its answer therefore survives `kill -9` and power loss, while the sync's cost is
//! shared by every request that arrived during the previous one. Because one thread
//! decides, a request id is counted once however many callers race with it, and a replay
//! is answered only after a sync covered what it read.
//!
//! Counters stay out of the tree until a checkpoint (every 5 s, when the log passes
//! its size cap, on an explicit flush, at stop) writes each once, whatever number of
//! commits moved it; the checkpoint flushes sled and then empties the log.
//!
//! Reads that must see every write submitted before them (an actor loading its org)
//! are queued too and run after the batch ahead of them.
//!
//! A plain thread (not a task) because syncs block; an unbounded std channel because
//! submitters must never block, and the number of waiting writes is already bounded by
//! the HTTP requests in flight.

use super::ledger::{self, IdemEntry};
use super::wal::Ops;
use super::Inner;
use crate::domain::OrgId;
use crate::metrics::Metrics;
use crate::store::{record_body, LedgerWrite, Recorded, StoreError, StoreResult, UsageRecord};
use std::collections::HashMap;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the log is folded into sled, at most. Each checkpoint stores every counter
/// moved since the last (with 10,000 busy orgs, 10,000 sled inserts at ~15 µs each), so a
/// longer interval is less CPU; the log it leaves to replay after a crash stays bounded
/// by `WAL_CAP_BYTES`.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Dirty counters a checkpoint stores per pass (about 15 ms of sled inserts).
const CHECKPOINT_CHUNK: usize = 1_000;
/// The longest the writer sleeps with nothing queued (a due checkpoint still runs).
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// The log's size that forces a checkpoint (it bounds replay time and disk use).
const WAL_CAP_BYTES: u64 = 64 << 20;
use tokio::sync::oneshot;

/// A record's answer body.
type Body = Arc<[u8]>;

/// A read run on the writer thread after the writes queued before it.
pub type Read = Box<dyn FnOnce(&Inner) + Send>;

enum Msg {
    Record(OrgId, UsageRecord, oneshot::Sender<StoreResult<Recorded>>),
    Commit(OrgId, Vec<LedgerWrite>, oneshot::Sender<StoreResult<()>>),
    CommitMany(
        Vec<(OrgId, Vec<LedgerWrite>)>,
        oneshot::Sender<Vec<StoreResult<()>>>,
    ),
    /// Make everything written so far (in any tree) durable.
    Flush(oneshot::Sender<StoreResult<()>>),
    Read(Read),
    Shutdown,
}

/// Submits to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct CommitHandle {
    tx: mpsc::Sender<Msg>,
}

impl CommitHandle {
    pub fn record(
        &self,
        org: OrgId,
        usage: UsageRecord,
    ) -> oneshot::Receiver<StoreResult<Recorded>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::Record(_, _, tx))) =
            self.tx.send(Msg::Record(org, usage, tx))
        {
            let _ = tx.send(Err(StoreError::WriterGone));
        }
        rx
    }

    pub fn commit(
        &self,
        org: OrgId,
        writes: Vec<LedgerWrite>,
    ) -> oneshot::Receiver<StoreResult<()>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::Commit(_, _, tx))) =
            self.tx.send(Msg::Commit(org, writes, tx))
        {
            let _ = tx.send(Err(StoreError::WriterGone));
        }
        rx
    }

    /// Commits each org's writes (each org's atomically) in one hand-over; answers per
    /// org, in order.
    pub fn commit_many(
        &self,
        writes: Vec<(OrgId, Vec<LedgerWrite>)>,
    ) -> oneshot::Receiver<Vec<StoreResult<()>>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::CommitMany(writes, tx))) =
            self.tx.send(Msg::CommitMany(writes, tx))
        {
            let _ = tx.send(writes.iter().map(|_| Err(StoreError::WriterGone)).collect());
        }
        rx
    }

    /// Resolves once every write made before it, in any tree, is durable — with the
    /// next group commit's flush, shared by everyone waiting (sled must not be flushed
    /// from many threads at once: concurrent flushes and transactions can deadlock it).
    pub fn flush(&self) -> oneshot::Receiver<StoreResult<()>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::Flush(tx))) = self.tx.send(Msg::Flush(tx)) {
            let _ = tx.send(Err(StoreError::WriterGone));
        }
        rx
    }

    /// Queues `read`; `false` if the writer has stopped (the read never runs).
    pub fn read(&self, read: Read) -> bool {
        self.tx.send(Msg::Read(read)).is_ok()
    }
}

/// The writer thread; `stop` drains what was queued before it, flushes and joins.
pub struct GroupCommitWriter {
    handle: CommitHandle,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommitWriter {
    pub fn start(inner: Arc<Inner>, max_batch: usize, metrics: Metrics) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("edgequota-commit".into())
            .spawn(move || run(&inner, rx, max_batch.max(1), metrics))?;
        Ok(Self {
            handle: CommitHandle { tx },
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    pub fn handle(&self) -> CommitHandle {
        self.handle.clone()
    }

    pub fn stop(&self) {
        let _ = self.handle.tx.send(Msg::Shutdown);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for GroupCommitWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `total + delta`, saturating at 0 and `u64::MAX`.
fn add_signed(total: u64, delta: i64) -> u64 {
    if delta >= 0 {
        total.saturating_add(delta.unsigned_abs())
    } else {
        total.saturating_sub(delta.unsigned_abs())
    }
}

enum Answer {
    Record(
        oneshot::Sender<StoreResult<Recorded>>,
        StoreResult<Recorded>,
    ),
    Commit(oneshot::Sender<StoreResult<()>>),
    /// Per org: its own failure, or `Ok` to be answered with the batch's outcome.
    Many(oneshot::Sender<Vec<StoreResult<()>>>, Vec<StoreResult<()>>),
    Flush(oneshot::Sender<StoreResult<()>>),
}

/// One group commit under construction: the sled batch and the log frame mirroring it,
/// the counter totals and idempotency entries it has written so far (later writes of the
/// same batch build on them), and who to answer once it is durable.
struct Batch<'a> {
    inner: &'a Inner,
    batch: sled::Batch,
    ops: Ops,
    writes: usize,
    totals: HashMap<Vec<u8>, u64>,
    /// Request ids recorded by this batch: their fingerprint and answer.
    requests: HashMap<Vec<u8>, ([u8; 16], Body)>,
    answers: Vec<Answer>,
    reads: Vec<Read>,
    /// Someone waits for a flush of writes made outside this batch.
    flush_asked: bool,
}

impl<'a> Batch<'a> {
    fn new(inner: &'a Inner) -> Self {
        Self {
            inner,
            batch: sled::Batch::default(),
            ops: Ops::default(),
            writes: 0,
            totals: HashMap::new(),
            requests: HashMap::new(),
            answers: Vec::new(),
            reads: Vec::new(),
            flush_asked: false,
        }
    }

    fn add(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Record(org, usage, tx) => {
                let outcome = self.record(&org, usage);
                self.answers.push(Answer::Record(tx, outcome));
            }
            Msg::Commit(org, writes, tx) => match self.commit(&org, writes) {
                Ok(()) => self.answers.push(Answer::Commit(tx)),
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            },
            Msg::CommitMany(writes, tx) => {
                let each = writes
                    .into_iter()
                    .map(|(org, w)| self.commit(&org, w))
                    .collect();
                self.answers.push(Answer::Many(tx, each));
            }
            Msg::Flush(tx) => {
                self.flush_asked = true;
                self.answers.push(Answer::Flush(tx));
            }
            Msg::Read(read) => self.reads.push(read),
            Msg::Shutdown => return false,
        }
        true
    }

    fn total(&mut self, key: &[u8]) -> StoreResult<u64> {
        match self.totals.get(key) {
            Some(t) => Ok(*t),
            None => self.inner.counter(key),
        }
    }

    /// Adds `delta` to a counter; returns the total.
    fn add_signed(&mut self, key: Vec<u8>, delta: i64) -> StoreResult<u64> {
        let total = add_signed(self.total(&key)?, delta);
        self.totals.insert(key, total);
        self.writes += 1;
        Ok(total)
    }

    /// Puts a non-counter value, in the tree's batch and in the log's frame.
    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.ops.put(key, &value);
        self.batch.insert(key, value);
        self.writes += 1;
    }

    fn record(&mut self, org: &OrgId, u: UsageRecord) -> StoreResult<Recorded> {
        let key = ledger::idem_key(org, &u.request);
        let seen = match self.requests.get(&key) {
            Some((fingerprint, body)) => Some((*fingerprint, body.clone())),
            None if self.inner.filter.may_contain(&key) => self
                .inner
                .ledger
                .get(&key)?
                .map(|v| ledger::decode_idem(&v))
                .transpose()?
                .map(|e| (e.fingerprint, e.body.into())),
            None => None,
        };
        if let Some((fingerprint, body)) = seen {
            return Ok(if fingerprint == u.fingerprint {
                Recorded::Replayed { body }
            } else {
                Recorded::Conflict
            });
        }
        let delta = i64::try_from(u.delta).unwrap_or(i64::MAX);
        let total = self.add_signed(ledger::counter_key(org, u.period, &u.metric), delta)?;
        let body = record_body(u.period, total, u.included);
        let entry = IdemEntry {
            fingerprint: u.fingerprint,
            body: body.to_vec(),
            created_ms: u.now_ms,
        };
        // Into the filter before it is stored: a later look-up must not skip the store.
        self.inner.filter.insert(&key);
        self.put(&key, ledger::encode_idem(&entry));
        self.requests.insert(key, (u.fingerprint, body.clone()));
        Ok(Recorded::New { body, total })
    }

    /// Adds one org's writes, all or none: the counters are computed before anything
    /// goes into the batch, so a failed read leaves the batch as it was.
    fn commit(&mut self, org: &OrgId, writes: Vec<LedgerWrite>) -> StoreResult<()> {
        let mut counters: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut puts = Vec::new();
        for w in writes {
            match w {
                LedgerWrite::State(s) => {
                    puts.push((ledger::state_key(org), ledger::encode_state(&s)))
                }
                LedgerWrite::Billing(b) => {
                    puts.push((ledger::billing_key(org), ledger::encode_billing(&b)))
                }
                LedgerWrite::Usage {
                    period,
                    metric,
                    delta,
                } => {
                    let key = ledger::counter_key(org, period, &metric);
                    let before = match counters.iter().rev().find(|(k, _)| *k == key) {
                        Some((_, t)) => *t,
                        None => self.total(&key)?,
                    };
                    counters.push((key, add_signed(before, delta)));
                }
                // One process: the in-process billing lock is the whole lease.
                LedgerWrite::Fence(_) => {}
                LedgerWrite::Zero { period, metric } => {
                    counters.push((ledger::counter_key(org, period, &metric), 0));
                }
            }
        }
        for (key, value) in puts {
            self.put(&key, value);
        }
        for (key, total) in counters {
            self.totals.insert(key, total);
            self.writes += 1;
        }
        Ok(())
    }

    /// Applies, logs and syncs (a batch of replays alone still syncs if an earlier sync
    /// failed: what they read must be durable before they are answered).
    fn finish(self, m: &Metrics) {
        let Batch {
            inner,
            batch,
            ops,
            writes,
            totals,
            answers,
            reads,
            flush_asked,
            ..
        } = self;
        if !answers.is_empty() {
            let started = Instant::now();
            let result = if writes > 0 {
                apply(inner, batch, ops, totals, flush_asked)
            } else if flush_asked {
                inner.checkpoint()
            } else {
                inner.barrier()
            };
            m.commit_batch_size.observe(answers.len() as f64);
            m.commit_duration.observe(started.elapsed().as_secs_f64());
            if let Err(e) = &result {
                m.commit_errors.inc();
                tracing::error!(error = %crate::errors::chain(e), writes = answers.len(), "group commit failed");
            }
            for answer in answers {
                match (answer, &result) {
                    (Answer::Record(tx, outcome), Ok(())) => drop(tx.send(outcome)),
                    (Answer::Commit(tx) | Answer::Flush(tx), Ok(())) => drop(tx.send(Ok(()))),
                    (Answer::Record(tx, _), Err(e)) => drop(tx.send(Err(e.clone()))),
                    (Answer::Commit(tx) | Answer::Flush(tx), Err(e)) => {
                        drop(tx.send(Err(e.clone())))
                    }
                    (Answer::Many(tx, each), Ok(())) => drop(tx.send(each)),
                    (Answer::Many(tx, each), Err(e)) => {
                        drop(tx.send(each.iter().map(|_| Err(e.clone())).collect()))
                    }
                }
            }
        }
        for read in reads {
            read(inner);
        }
    }
}

/// Applies a batch to memory (the tree, the dirty counters) and makes it durable: one
/// log frame and its sync, or a checkpoint when asked to flush or when an earlier sync
/// failed (the log alone no longer proves durability then).
fn apply(
    inner: &Inner,
    batch: sled::Batch,
    mut ops: Ops,
    totals: HashMap<Vec<u8>, u64>,
    flush_asked: bool,
) -> StoreResult<()> {
    inner.faults.apply_fault()?;
    for (key, total) in &totals {
        ops.put(key, &ledger::encode_counter(*total));
    }
    inner.ledger.apply_batch(batch)?;
    let mut counters = super::lock(&inner.counters);
    for (key, total) in totals {
        counters.commit(key, total);
    }
    drop(counters);
    let logged = if ops.is_empty() {
        Ok(())
    } else {
        let mut wal = super::lock(&inner.wal);
        wal.append(&ops)
            .and_then(|()| inner.faults.flush_fault())
            .and_then(|()| wal.sync())
            .map_err(StoreError::from)
    };
    match logged {
        Ok(()) if flush_asked || inner.durability.is_behind() => inner.checkpoint(),
        Ok(()) => Ok(()),
        Err(e) => {
            // Applied in memory but not durable: reads must checkpoint before answering.
            inner.durability.mark_behind();
            Err(e)
        }
    }
}

/// Folds the log into sled when it is due: the dirty counters a chunk per pass (a pass
/// runs between group commits, so no commit waits for all of them), then the flush and
/// the log emptied. A failure keeps the log (still durable) for the next try.
fn checkpoint_if_due(inner: &Inner, last: &mut Instant, m: &Metrics) {
    let wal_len = super::lock(&inner.wal).len();
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

fn run(inner: &Inner, rx: mpsc::Receiver<Msg>, max: usize, m: Metrics) {
    let mut stopping = false;
    let mut last_checkpoint = Instant::now();
    while !stopping {
        let mut b = Batch::new(inner);
        match rx.recv_timeout(IDLE_WAKE) {
            Ok(msg) => stopping = !b.add(msg),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => stopping = true,
        }
        while !stopping && b.answers.len() + b.reads.len() < max {
            match rx.try_recv() {
                Ok(msg) => stopping = !b.add(msg),
                Err(_) => break,
            }
        }
        b.finish(&m);
        checkpoint_if_due(inner, &mut last_checkpoint, &m);
    }
    if let Err(e) = inner.checkpoint() {
        tracing::error!(error = %crate::errors::chain(&e), "final checkpoint failed; the log keeps the writes for the next start");
    }
}
