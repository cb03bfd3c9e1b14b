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
//! Write-behind commits (consumed units) are answered once their frame is written and
//! synced with the next batch that asks for a sync, or within a second.
//!
//! Counters stay out of the tree until a checkpoint (every 30 s, when the log passes
//! its size cap, on an explicit flush, at stop) writes each once, whatever number of
//! commits moved it; the checkpoint flushes sled and then empties the log.
//!
//! Reads that must see every write submitted before them (an actor loading its org)
//! are queued too and run after the batch ahead of them.
//!
//! A plain thread (not a task) because syncs block; an unbounded std channel because
//! submitters must never block, and the number of waiting writes is already bounded by
//! the HTTP requests in flight.

mod batch;
mod checkpoint;
mod in_batch;

use super::Inner;
use crate::domain::OrgId;
use crate::metrics::Metrics;
use crate::store::{LedgerWrite, Recorded, StoreError, StoreResult, UsageRecord};
use batch::Batch;
use std::future::Future;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// A read run on the writer thread after the writes queued before it.
pub type Read = Box<dyn FnOnce(&Inner) + Send>;

/// When a commit's answer may be sent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Durable {
    /// Once its frame is synced: it survives a power loss.
    Now,
    /// Once its frame is written: it survives a crash of the process, and a power loss
    /// once the next sync ran (write-behind consumes, SPEC §5).
    Soon,
}

enum Msg {
    /// One org's records, in order; answered per record.
    Records(
        OrgId,
        Vec<UsageRecord>,
        oneshot::Sender<Vec<StoreResult<Recorded>>>,
    ),
    /// Several orgs' records, in order; answered per record.
    RecordsAcross(
        Vec<(OrgId, UsageRecord)>,
        oneshot::Sender<Vec<StoreResult<Recorded>>>,
    ),
    /// Each org's writes, atomically per org; answered per org, in order.
    CommitMany(
        Vec<(OrgId, Vec<LedgerWrite>)>,
        Durable,
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
    /// Records one org's `usages` in order; answers per record once they are durable.
    pub fn records(
        &self,
        org: OrgId,
        usages: Vec<UsageRecord>,
    ) -> oneshot::Receiver<Vec<StoreResult<Recorded>>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::Records(_, usages, tx))) =
            self.tx.send(Msg::Records(org, usages, tx))
        {
            let _ = tx.send(usages.iter().map(|_| Err(StoreError::WriterGone)).collect());
        }
        rx
    }

    /// Records several orgs' `records` in order in one hand-over; answers per record
    /// once they are durable.
    pub fn records_across(
        &self,
        records: Vec<(OrgId, UsageRecord)>,
    ) -> oneshot::Receiver<Vec<StoreResult<Recorded>>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::RecordsAcross(records, tx))) =
            self.tx.send(Msg::RecordsAcross(records, tx))
        {
            let _ = tx.send(
                records
                    .iter()
                    .map(|_| Err(StoreError::WriterGone))
                    .collect(),
            );
        }
        rx
    }

    /// Commits one org's writes atomically; resolves once they are durable.
    pub fn commit(
        &self,
        org: OrgId,
        writes: Vec<LedgerWrite>,
    ) -> impl Future<Output = StoreResult<()>> + Send + 'static {
        let answer = self.commit_many(vec![(org, writes)]);
        async move {
            let mut each = answer.await.map_err(|_| StoreError::WriterGone)?;
            each.pop().unwrap_or(Err(StoreError::WriterGone))
        }
    }

    /// Commits each org's writes (each org's atomically) in one hand-over; answers per
    /// org, in order, once they are durable.
    pub fn commit_many(
        &self,
        writes: Vec<(OrgId, Vec<LedgerWrite>)>,
    ) -> oneshot::Receiver<Vec<StoreResult<()>>> {
        self.hand_over(writes, Durable::Now)
    }

    /// As `commit_many`, but answers once the writes survive a crash of the process;
    /// they survive a power loss within `checkpoint::SOON` (the consume flusher's
    /// write-behind: a sync per flush would cost every consume a disk flush's share).
    pub fn commit_consumed(
        &self,
        writes: Vec<(OrgId, Vec<LedgerWrite>)>,
    ) -> oneshot::Receiver<Vec<StoreResult<()>>> {
        self.hand_over(writes, Durable::Soon)
    }

    fn hand_over(
        &self,
        writes: Vec<(OrgId, Vec<LedgerWrite>)>,
        durable: Durable,
    ) -> oneshot::Receiver<Vec<StoreResult<()>>> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::CommitMany(writes, _, tx))) =
            self.tx.send(Msg::CommitMany(writes, durable, tx))
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

fn run(inner: &Inner, rx: mpsc::Receiver<Msg>, max: usize, m: Metrics) {
    let mut stopping = false;
    let mut checkpoints = checkpoint::Checkpoints::new();
    let mut hint = batch::SizeHint::default();
    while !stopping {
        let mut b = Batch::new(inner, hint);
        match rx.recv_timeout(checkpoint::idle_wake(inner, &checkpoints)) {
            Ok(msg) => stopping = !b.add(msg),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => stopping = true,
        }
        while !stopping && b.len() < max {
            match rx.try_recv() {
                Ok(msg) => stopping = !b.add(msg),
                Err(_) => break,
            }
        }
        hint = b.finish(&m);
        checkpoint::sync_if_due(inner, &m);
        checkpoint::if_due(inner, &mut checkpoints, &m);
    }
    if let Err(e) = inner.checkpoint() {
        tracing::error!(error = %crate::errors::chain(&e), "final checkpoint failed; the log keeps the writes for the next start");
    }
}
