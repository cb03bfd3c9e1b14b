//! The group-commit writer: one OS thread that owns every ledger write.
//!
//! Org actors submit their writes and keep serving; the writer takes everything queued,
//! applies it as one sled batch (crash-atomic), flushes once and `fdatasync`s the data
//! file for the whole batch, and only then acknowledges each submitter. A 200 that waited
//! for its ack therefore survives `kill -9` and power loss, while the cost of the sync is
//! shared by every request that arrived during the previous one.
//!
//! A failed batch fences its submitters: each actor's writes carry the actor's fence, and
//! once a batch holding one of them fails, every later write behind the same fence is
//! refused. An actor's writes carry absolute values that include its earlier writes, so
//! none may be persisted on top of one that was not; the actor restarts from the store.
//!
//! A plain thread (not a task) because the flush blocks; an unbounded std channel
//! because submitters are actors that must never block, and the number of waiting
//! writes is already bounded by the HTTP requests in flight.

use super::ledger::LedgerOp;
use super::{Store, StoreError, StoreResult};
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

type Ack = oneshot::Sender<StoreResult<()>>;

/// Called on the writer thread when the batch holding a submission fails.
pub type FailureHook = Box<dyn FnOnce(&StoreError) + Send>;

/// Set once a batch holding a write behind it failed; later writes behind it are refused.
pub type Fence = Arc<AtomicBool>;

pub fn new_fence() -> Fence {
    Arc::new(AtomicBool::new(false))
}

struct Submission {
    ops: Vec<LedgerOp>,
    ack: Ack,
    hook: Option<FailureHook>,
    fence: Option<Fence>,
}

enum Msg {
    Commit(Submission),
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
        self.send(ops, None, None)
    }

    /// As `submit`, behind `fence`, and `on_failure` runs (on the writer thread) if the
    /// batch fails — for a submitter that does not itself await the acknowledgement.
    pub fn submit_fenced(
        &self,
        ops: Vec<LedgerOp>,
        fence: &Fence,
        on_failure: FailureHook,
    ) -> oneshot::Receiver<StoreResult<()>> {
        self.send(ops, Some(on_failure), Some(fence.clone()))
    }

    fn send(
        &self,
        ops: Vec<LedgerOp>,
        hook: Option<FailureHook>,
        fence: Option<Fence>,
    ) -> oneshot::Receiver<StoreResult<()>> {
        let (ack, rx) = oneshot::channel();
        let msg = Msg::Commit(Submission {
            ops,
            ack,
            hook,
            fence,
        });
        if let Err(mpsc::SendError(Msg::Commit(s))) = self.tx.send(msg) {
            if let Some(hook) = s.hook {
                hook(&StoreError::WriterGone);
            }
            let _ = s.ack.send(Err(StoreError::WriterGone));
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
    pub fn start(store: Store, max_batch: usize, metrics: Metrics) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("edgequota-commit".into())
            .spawn(move || run(store, rx, max_batch.max(1), metrics))?;
        Ok(Self {
            handle: CommitHandle { tx },
            thread: Some(thread),
        })
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

/// The writes of one group commit, and who to tell.
#[derive(Default)]
struct Batch {
    batch: sled::Batch,
    acks: Vec<Ack>,
    hooks: Vec<FailureHook>,
    fences: Vec<Fence>,
}

impl Batch {
    fn add(&mut self, s: Submission) {
        if s.fence.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
            let _ = s.ack.send(Err(StoreError::Fenced));
            return;
        }
        for op in s.ops {
            match op {
                LedgerOp::Put(k, v) => self.batch.insert(k, v),
                LedgerOp::Remove(k) => self.batch.remove(k),
            }
        }
        self.acks.push(s.ack);
        self.hooks.extend(s.hook);
        self.fences.extend(s.fence);
    }
}

/// Applies, flushes and syncs one batch.
fn commit(store: &Store, batch: sled::Batch) -> StoreResult<()> {
    store.faults.apply_fault()?;
    store.ledger.apply_batch(batch)?;
    let synced = store
        .db
        .flush()
        .map_err(StoreError::from)
        .and_then(|_| store.durability.sync().map_err(StoreError::from));
    match synced {
        Ok(()) => store.durability.mark_caught_up(),
        // Applied in memory but not durable: reads must flush before they answer.
        Err(_) => store.durability.mark_behind(),
    }
    synced
}

fn run(store: Store, rx: mpsc::Receiver<Msg>, max: usize, m: Metrics) {
    let mut stopping = false;
    while !stopping {
        let mut b = Batch::default();
        match rx.recv() {
            Ok(Msg::Commit(s)) => b.add(s),
            Ok(Msg::Shutdown) | Err(_) => break,
        }
        while b.acks.len() < max {
            match rx.try_recv() {
                Ok(Msg::Commit(s)) => b.add(s),
                Ok(Msg::Shutdown) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if b.acks.is_empty() {
            continue;
        }
        let started = Instant::now();
        let result = commit(&store, std::mem::take(&mut b.batch));
        m.commit_batch_size.observe(b.acks.len() as f64);
        m.commit_duration.observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            m.commit_errors.inc();
            tracing::error!(error = %crate::errors::chain(e), writes = b.acks.len(), "group commit failed");
            for fence in &b.fences {
                fence.store(true, Ordering::SeqCst);
            }
            for hook in b.hooks.drain(..) {
                hook(e);
            }
        }
        for ack in b.acks.drain(..) {
            let _ = ack.send(result.clone());
        }
    }
    if let Err(e) = store.flush_blocking() {
        tracing::error!(error = %crate::errors::chain(&e), "final flush failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Metric, OrgId, PeriodKey};
    use crate::store::{ledger, OpenOptions};

    fn store(dir: &tempfile::TempDir) -> Store {
        let options = OpenOptions {
            cache_capacity_bytes: 1 << 20,
            fdatasync: true,
        };
        Store::open(dir.path(), options).unwrap()
    }

    #[tokio::test]
    async fn acknowledged_writes_are_in_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut w = GroupCommitWriter::start(s.clone(), 16, Metrics::new()).unwrap();
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
            ledger::get_counter(&s.ledger, &org, p, &Metric::api_call()).unwrap(),
            50
        );
        w.stop();
        let late = w.handle().commit(vec![]).await;
        assert!(matches!(late, Err(StoreError::WriterGone)));
    }

    #[tokio::test]
    async fn a_failed_batch_fences_the_writes_queued_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let w = GroupCommitWriter::start(s.clone(), 16, Metrics::new()).unwrap();
        let org = OrgId::parse("org_x").unwrap();
        let p = PeriodKey::parse("2026-02").unwrap();
        let put = |n| vec![ledger::put_counter(&org, p, &Metric::api_call(), n)];
        let fence = new_fence();
        let other = new_fence();
        s.faults.hold_next_commit();
        s.faults.fail_next_applies(1);
        let first = w.handle().submit_fenced(put(10), &fence, Box::new(|_| {}));
        assert!(s.faults.wait_held(std::time::Duration::from_secs(5)));
        let behind = w.handle().submit_fenced(put(15), &fence, Box::new(|_| {}));
        s.faults.release();
        assert!(first.await.unwrap().is_err());
        assert!(matches!(behind.await.unwrap(), Err(StoreError::Fenced)));
        // Other submitters are not fenced.
        w.handle()
            .submit_fenced(put(3), &other, Box::new(|_| {}))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ledger::get_counter(&s.ledger, &org, p, &Metric::api_call()).unwrap(),
            3
        );
    }
}
