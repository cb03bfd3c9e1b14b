//! The group-commit writer: one OS thread that owns every ledger write and decides every
//! usage record.
//!
//! Callers submit and keep serving; the writer takes everything queued, turns it into
//! one sled batch (crash-atomic) — counting each record's delta onto the stored total
//! unless its request id was recorded before — flushes once and `fdatasync`s for the
//! whole batch, and only then answers each submitter. A 200 that waited for its answer
//! therefore survives `kill -9` and power loss, while the sync's cost is shared by every
//! request that arrived during the previous one. Because one thread decides, a request
//! id is counted once however many callers race with it, and a replay is answered only
//! after a flush covered what it read.
//!
//! Reads that must see every write submitted before them (an actor loading its org)
//! are queued too and run after the batch ahead of them.
//!
//! A plain thread (not a task) because the flush blocks; an unbounded std channel
//! because submitters must never block, and the number of waiting writes is already
//! bounded by the HTTP requests in flight.

use super::ledger::{self, IdemEntry};
use super::Inner;
use crate::domain::OrgId;
use crate::metrics::Metrics;
use crate::store::{record_body, LedgerWrite, Recorded, StoreError, StoreResult, UsageRecord};
use std::collections::HashMap;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

/// A record's answer body.
type Body = Arc<[u8]>;

/// A read run on the writer thread after the writes queued before it.
pub type Read = Box<dyn FnOnce(&Inner) + Send>;

enum Msg {
    Record(OrgId, UsageRecord, oneshot::Sender<StoreResult<Recorded>>),
    Commit(OrgId, Vec<LedgerWrite>, oneshot::Sender<StoreResult<()>>),
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

enum Answer {
    Record(
        oneshot::Sender<StoreResult<Recorded>>,
        StoreResult<Recorded>,
    ),
    Commit(oneshot::Sender<StoreResult<()>>),
    Flush(oneshot::Sender<StoreResult<()>>),
}

/// One group commit under construction: the sled batch, the totals and idempotency
/// entries it has written so far (later writes of the same batch build on them), and
/// who to answer once it is durable.
struct Batch<'a> {
    inner: &'a Inner,
    batch: sled::Batch,
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
        if let Some(t) = self.totals.get(key) {
            return Ok(*t);
        }
        match self.inner.ledger.get(key)? {
            Some(v) => ledger::decode_counter(&v),
            None => Ok(0),
        }
    }

    fn add_to(&mut self, key: Vec<u8>, delta: u64) -> StoreResult<u64> {
        let total = self.total(&key)?.saturating_add(delta);
        self.batch
            .insert(key.as_slice(), ledger::encode_counter(total));
        self.totals.insert(key, total);
        self.writes += 1;
        Ok(total)
    }

    fn add_signed(&mut self, key: Vec<u8>, delta: i64) -> StoreResult<u64> {
        if delta >= 0 {
            return self.add_to(key, delta.unsigned_abs());
        }
        let total = self.total(&key)?.saturating_sub(delta.unsigned_abs());
        self.batch
            .insert(key.as_slice(), ledger::encode_counter(total));
        self.totals.insert(key, total);
        self.writes += 1;
        Ok(total)
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
        let total = self.add_to(ledger::counter_key(org, u.period, &u.metric), u.delta)?;
        let body = record_body(u.period, total, u.included);
        let entry = IdemEntry {
            fingerprint: u.fingerprint,
            body: body.to_vec(),
            created_ms: u.now_ms,
        };
        // Into the filter before it is stored: a later look-up must not skip the store.
        self.inner.filter.insert(&key);
        self.batch
            .insert(key.as_slice(), ledger::encode_idem(&entry));
        self.requests.insert(key, (u.fingerprint, body.clone()));
        Ok(Recorded::New { body, total })
    }

    fn commit(&mut self, org: &OrgId, writes: Vec<LedgerWrite>) -> StoreResult<()> {
        for w in writes {
            match w {
                LedgerWrite::State(s) => {
                    self.batch
                        .insert(ledger::state_key(org), ledger::encode_state(&s));
                }
                LedgerWrite::Billing(b) => {
                    self.batch
                        .insert(ledger::billing_key(org), ledger::encode_billing(&b));
                }
                LedgerWrite::Usage {
                    period,
                    metric,
                    delta,
                } => {
                    self.add_signed(ledger::counter_key(org, period, &metric), delta)?;
                }
                LedgerWrite::Zero { period, metric } => {
                    let key = ledger::counter_key(org, period, &metric);
                    self.batch.insert(key.as_slice(), ledger::encode_counter(0));
                    self.totals.insert(key, 0);
                }
            }
            self.writes += 1;
        }
        Ok(())
    }

    /// Applies, flushes and syncs (a batch of replays alone still flushes if an earlier
    /// flush failed: what they read must be durable before they are answered).
    fn finish(self, m: &Metrics) {
        let Batch {
            inner,
            batch,
            writes,
            answers,
            reads,
            flush_asked,
            ..
        } = self;
        if !answers.is_empty() {
            let started = Instant::now();
            let result = if writes > 0 {
                apply(inner, batch)
            } else if flush_asked {
                flush_now(inner)
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
                }
            }
        }
        for read in reads {
            read(inner);
        }
    }
}

fn apply(inner: &Inner, batch: sled::Batch) -> StoreResult<()> {
    inner.faults.apply_fault()?;
    inner.ledger.apply_batch(batch)?;
    flush_now(inner)
}

/// Flushes every tree and syncs, recording whether the disk is behind what was applied.
fn flush_now(inner: &Inner) -> StoreResult<()> {
    let synced = inner
        .db
        .flush()
        .map_err(StoreError::from)
        .and_then(|_| inner.durability.sync().map_err(StoreError::from));
    match synced {
        Ok(()) => inner.durability.mark_caught_up(),
        // Applied in memory but not durable: reads must flush before they answer.
        Err(_) => inner.durability.mark_behind(),
    }
    synced
}

fn run(inner: &Inner, rx: mpsc::Receiver<Msg>, max: usize, m: Metrics) {
    let mut stopping = false;
    while !stopping {
        let mut b = Batch::new(inner);
        match rx.recv() {
            Ok(msg) => stopping = !b.add(msg),
            Err(_) => stopping = true,
        }
        while !stopping && b.answers.len() + b.reads.len() < max {
            match rx.try_recv() {
                Ok(msg) => stopping = !b.add(msg),
                Err(_) => break,
            }
        }
        b.finish(&m);
    }
    if let Err(e) = inner.flush_blocking() {
        tracing::error!(error = %crate::errors::chain(&e), "final flush failed");
    }
}
