//! `JobQueue` on a sled job tree: every call runs on the blocking pool (never on an
//! async worker), and a call that changed the tree is made durable through the writer
//! thread's flush before it answers.

use super::JobTree;
use crate::store::jobs::{Inserted, Job, JobState};
use crate::store::{blocking, JobQueue, StoreError, StoreFuture, StoreResult};
use futures_util::FutureExt;
use serde::{de::DeserializeOwned, Serialize};
use std::sync::Arc;

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
                crate::store::sled::flush(inner).await?;
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
                crate::store::sled::flush(inner).await?;
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
            None => Err(StoreError::Unsupported(format!(
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
