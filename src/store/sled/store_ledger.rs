//! `LedgerStore` on sled: records and commits go to the group-commit writer; loads that
//! must see every earlier write are queued behind them on the same thread; page reads
//! and the purge run on the blocking pool. The idempotency filter is rebuilt from the
//! stored keys at start, on its own thread.

use super::writer::{CommitHandle, GroupCommitWriter};
use super::{ledger, Inner};
use crate::domain::{Metric, OrgId, PeriodKey};
use crate::metrics::Metrics;
use crate::store::{
    blocking, LedgerStore, LedgerWrite, OrgState, Purged, Recorded, StoreError, StoreFuture,
    StoreResult, StoredLedger, UsageRecord,
};
use futures_util::FutureExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

pub struct SledLedger {
    inner: Arc<Inner>,
    commit: CommitHandle,
    _writer: Arc<GroupCommitWriter>,
}

impl SledLedger {
    pub fn start(inner: Arc<Inner>, writer: Arc<GroupCommitWriter>, metrics: Metrics) -> Self {
        // The filter answers "maybe" (so records read the store) until this scan is done.
        let build = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("edgequota-idem-filter".into())
            .spawn(move || {
                let started = Instant::now();
                match build.filter.build_from(&build.ledger) {
                    Ok(Some(keys)) => {
                        let total = keys + build.idem.count();
                        metrics.idempotency_entries.set(total as i64);
                        let ms = started.elapsed().as_millis() as u64;
                        tracing::info!(keys, ms, "idempotency filter ready");
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %crate::errors::chain(&e), "idempotency filter scan failed; every record reads the store"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "idempotency filter not built; every record reads the store");
        }
        Self {
            commit: writer.handle(),
            inner,
            _writer: writer,
        }
    }

    /// Runs `f` on the writer thread after the writes queued before it.
    fn queued_read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> StoreResult<T> + Send + 'static,
    ) -> StoreFuture<T> {
        let (tx, rx) = oneshot::channel();
        let queued = self.commit.read(Box::new(move |inner| {
            let _ = tx.send(f(inner));
        }));
        async move {
            if !queued {
                return Err(StoreError::WriterGone);
            }
            rx.await.map_err(|_| StoreError::WriterGone)?
        }
        .boxed()
    }
}

impl Drop for SledLedger {
    fn drop(&mut self) {
        self.inner.filter.abandon();
        self.inner.idem.stop();
    }
}

impl LedgerStore for SledLedger {
    fn load(&self, org: &OrgId, period: PeriodKey) -> StoreFuture<StoredLedger> {
        let org = org.clone();
        self.queued_read(move |inner| {
            inner.barrier()?;
            inner.apply_dirty()?;
            Ok(StoredLedger {
                state: ledger::get_state(&inner.ledger, &org)?,
                billing: ledger::get_billing(&inner.ledger, &org)?,
                counters: ledger::counters_for(&inner.ledger, &org, period)?,
            })
        })
    }

    fn counters(&self, org: &OrgId, period: PeriodKey) -> StoreFuture<HashMap<Metric, u64>> {
        let org = org.clone();
        self.queued_read(move |inner| {
            inner.barrier()?;
            inner.apply_dirty()?;
            ledger::counters_for(&inner.ledger, &org, period)
        })
    }

    fn record(&self, org: &OrgId, usage: UsageRecord) -> StoreFuture<Recorded> {
        let rx = self.commit.records(org.clone(), vec![usage]);
        async move {
            let mut each = rx.await.map_err(|_| StoreError::WriterGone)?;
            each.pop().unwrap_or(Err(StoreError::WriterGone))
        }
        .boxed()
    }

    fn record_many(
        &self,
        org: &OrgId,
        usages: Vec<UsageRecord>,
    ) -> futures_util::future::BoxFuture<'static, Vec<StoreResult<Recorded>>> {
        answers(usages.len(), self.commit.records(org.clone(), usages))
    }

    fn record_across(
        &self,
        records: Vec<(OrgId, UsageRecord)>,
    ) -> futures_util::future::BoxFuture<'static, Vec<StoreResult<Recorded>>> {
        answers(records.len(), self.commit.records_across(records))
    }

    fn commit(&self, org: &OrgId, writes: Vec<LedgerWrite>) -> StoreFuture<()> {
        self.commit.commit(org.clone(), writes).boxed()
    }

    fn commit_many(
        &self,
        writes: Vec<(OrgId, Vec<LedgerWrite>)>,
    ) -> futures_util::future::BoxFuture<'static, Vec<StoreResult<()>>> {
        answers(writes.len(), self.commit.commit_many(writes))
    }

    fn commit_consumed(
        &self,
        writes: Vec<(OrgId, Vec<LedgerWrite>)>,
    ) -> futures_util::future::BoxFuture<'static, Vec<StoreResult<()>>> {
        answers(writes.len(), self.commit.commit_consumed(writes))
    }

    fn states_page(
        &self,
        after: Option<&OrgId>,
        limit: usize,
    ) -> StoreFuture<Vec<(OrgId, OrgState)>> {
        let (inner, after) = (self.inner.clone(), after.cloned());
        blocking(move || ledger::states_page(&inner.ledger, after.as_ref(), limit)).boxed()
    }

    fn purge_requests(&self, cutoff_ms: i64) -> StoreFuture<Purged> {
        let inner = self.inner.clone();
        blocking(move || {
            let legacy = ledger::purge_idem_before(&inner.ledger, cutoff_ms)?;
            let runs = inner.idem.purge(cutoff_ms)?;
            Ok(Purged {
                purged: legacy.purged + runs.purged,
                kept: legacy.kept + runs.kept,
            })
        })
        .boxed()
    }

    fn requests_ready(&self) -> bool {
        self.inner.filter.is_ready()
    }
}

/// The writer's answers to a hand-over of `orgs` orgs' writes (each failed if the writer
/// stopped first).
fn answers<T: Send + 'static>(
    count: usize,
    rx: tokio::sync::oneshot::Receiver<Vec<StoreResult<T>>>,
) -> futures_util::future::BoxFuture<'static, Vec<StoreResult<T>>> {
    async move {
        rx.await
            .unwrap_or_else(|_| (0..count).map(|_| Err(StoreError::WriterGone)).collect())
    }
    .boxed()
}
