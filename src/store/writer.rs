//! The group-commit writer: one OS thread that owns every ledger write.
//!
//! Org actors submit their writes and keep serving; the writer takes everything queued,
//! applies it as one sled batch (crash-atomic), calls one flush for the whole batch, and
//! only then acknowledges each submitter. A 200 that waited for its ack therefore
//! survives `kill -9` and power loss, while the cost of the fsync is shared by every
//! request that arrived during the previous one.
//!
//! A plain thread (not a task) because the flush blocks; an unbounded std channel
//! because submitters are actors that must never block, and the number of waiting
//! writes is already bounded by the HTTP requests in flight.

use super::ledger::LedgerOp;
use super::{StoreError, StoreResult};
use crate::metrics::Metrics;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

type Ack = oneshot::Sender<StoreResult<()>>;

/// Called on the writer thread when the batch holding a submission fails.
pub type FailureHook = Box<dyn FnOnce(&StoreError) + Send>;

enum Msg {
    Commit(Vec<LedgerOp>, Ack, Option<FailureHook>),
    Shutdown,
}

/// Submits writes to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct CommitHandle {
    tx: mpsc::Sender<Msg>,
}

impl CommitHandle {
    /// Queues `ops` to be applied atomically with the rest of their batch; the returned
    /// receiver resolves once they are durable (or the batch failed).
    pub fn submit(&self, ops: Vec<LedgerOp>) -> oneshot::Receiver<StoreResult<()>> {
        self.send(ops, None)
    }

    /// As `submit`, and `on_failure` runs (on the writer thread) if the batch fails —
    /// for a submitter that does not itself await the acknowledgement.
    pub fn submit_with_hook(
        &self,
        ops: Vec<LedgerOp>,
        on_failure: FailureHook,
    ) -> oneshot::Receiver<StoreResult<()>> {
        self.send(ops, Some(on_failure))
    }

    fn send(
        &self,
        ops: Vec<LedgerOp>,
        hook: Option<FailureHook>,
    ) -> oneshot::Receiver<StoreResult<()>> {
        let (ack, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Msg::Commit(_, ack, hook))) =
            self.tx.send(Msg::Commit(ops, ack, hook))
        {
            if let Some(hook) = hook {
                hook(&StoreError::WriterGone);
            }
            let _ = ack.send(Err(StoreError::WriterGone));
        }
        rx
    }

    /// Submits and waits for durability.
    pub async fn commit(&self, ops: Vec<LedgerOp>) -> StoreResult<()> {
        self.submit(ops).await.map_err(|_| StoreError::WriterGone)?
    }
}

/// The writer thread; `stop` drains what was queued before it, flushes and joins.
pub struct GroupCommitWriter {
    handle: CommitHandle,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommitWriter {
    pub fn start(db: sled::Db, ledger: sled::Tree, max_batch: usize, metrics: Metrics) -> Self {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("edgequota-commit".into())
            .spawn(move || run(db, ledger, rx, max_batch.max(1), metrics))
            .ok();
        Self {
            handle: CommitHandle { tx },
            thread,
        }
    }

    pub fn handle(&self) -> CommitHandle {
        self.handle.clone()
    }

    pub fn stop(&mut self) {
        let _ = self.handle.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for GroupCommitWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(db: sled::Db, ledger: sled::Tree, rx: mpsc::Receiver<Msg>, max: usize, m: Metrics) {
    let mut acks: Vec<Ack> = Vec::with_capacity(max);
    let mut hooks: Vec<FailureHook> = Vec::new();
    let mut stopping = false;
    while !stopping {
        let mut batch = sled::Batch::default();
        let mut add = |ops: Vec<LedgerOp>| {
            for op in ops {
                match op {
                    LedgerOp::Put(k, v) => batch.insert(k, v),
                    LedgerOp::Remove(k) => batch.remove(k),
                }
            }
        };
        match rx.recv() {
            Ok(Msg::Commit(ops, ack, hook)) => {
                add(ops);
                acks.push(ack);
                hooks.extend(hook);
            }
            Ok(Msg::Shutdown) | Err(_) => break,
        }
        while acks.len() < max {
            match rx.try_recv() {
                Ok(Msg::Commit(ops, ack, hook)) => {
                    add(ops);
                    acks.push(ack);
                    hooks.extend(hook);
                }
                Ok(Msg::Shutdown) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let result = ledger
            .apply_batch(batch)
            .and_then(|()| db.flush().map(|_| ()))
            .map_err(StoreError::from);
        m.commit_batch_size.observe(acks.len() as f64);
        m.commit_duration.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            m.commit_errors.inc();
            tracing::error!(error = %e, writes = acks.len(), "group commit failed");
            for hook in hooks.drain(..) {
                hook(e);
            }
        }
        hooks.clear();
        for ack in acks.drain(..) {
            let _ = ack.send(result.clone());
        }
    }
    if let Err(e) = db.flush() {
        tracing::error!(error = %e, "final flush failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Metric, OrgId, PeriodKey};
    use crate::store::ledger;

    #[tokio::test]
    async fn acknowledged_writes_are_in_the_tree() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("ledger").unwrap();
        let mut w = GroupCommitWriter::start(db.clone(), tree.clone(), 16, Metrics::new());
        let org = OrgId::parse("org_x").unwrap();
        let p = PeriodKey::parse("2026-02").unwrap();
        let waits: Vec<_> = (1..=50u64)
            .map(|i| {
                w.handle()
                    .submit(vec![ledger::put_counter(&org, p, &Metric::api_call(), i)])
            })
            .collect();
        for rx in waits {
            rx.await.unwrap().unwrap();
        }
        assert_eq!(
            ledger::get_counter(&tree, &org, p, &Metric::api_call()).unwrap(),
            50
        );
        w.stop();
        let late = w.handle().commit(vec![]).await;
        assert!(matches!(late, Err(StoreError::WriterGone)));
    }
}
