//! `JobQueue` in memory: jobs by id in one ordered map.

use super::{done, lock};
use crate::store::jobs::{Inserted, Job, JobState};
use crate::store::{JobQueue, StoreFuture};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct MemoryJobs<P> {
    jobs: Mutex<HashMap<String, Job<P>>>,
    seq: Mutex<u64>,
}

impl<P> Default for MemoryJobs<P> {
    fn default() -> Self {
        Self {
            jobs: Mutex::default(),
            seq: Mutex::new(0),
        }
    }
}

impl<P> MemoryJobs<P>
where
    P: Clone + PartialEq + Send + 'static,
{
    fn sorted(&self, keep: impl Fn(&Job<P>) -> bool) -> Vec<Job<P>> {
        let mut out: Vec<Job<P>> = lock(&self.jobs)
            .values()
            .filter(|j| keep(j))
            .cloned()
            .collect();
        out.sort_by_key(|j| j.seq);
        out
    }
}

impl<P> JobQueue<P> for MemoryJobs<P>
where
    P: Clone + PartialEq + Send + Sync + 'static,
{
    fn next_seq(&self) -> StoreFuture<u64> {
        let mut seq = lock(&self.seq);
        *seq += 1;
        done(*seq)
    }

    fn insert_new(&self, job: Job<P>) -> StoreFuture<Inserted<P>> {
        let mut jobs = lock(&self.jobs);
        if let Some(existing) = jobs.get(&job.id) {
            return done(Inserted::Existing(Box::new(existing.clone())));
        }
        jobs.insert(job.id.clone(), job);
        done(Inserted::New)
    }

    fn get(&self, id: &str) -> StoreFuture<Option<Job<P>>> {
        done(lock(&self.jobs).get(id).cloned())
    }

    fn replace(&self, expected: Job<P>, new: Job<P>) -> StoreFuture<bool> {
        let mut jobs = lock(&self.jobs);
        if jobs.get(&expected.id) != Some(&expected) {
            return done(false);
        }
        jobs.insert(new.id.clone(), new);
        done(true)
    }

    fn claim_due(&self, now_ms: i64, limit: usize, lease_ms: i64) -> StoreFuture<Vec<Job<P>>> {
        let mut due = self.sorted(|j| j.state == JobState::Queued && j.next_attempt_ms <= now_ms);
        due.sort_by_key(|j| (j.next_attempt_ms, j.seq));
        due.truncate(limit);
        let mut jobs = lock(&self.jobs);
        for job in &mut due {
            job.next_attempt_ms = now_ms.saturating_add(lease_ms);
            jobs.insert(job.id.clone(), job.clone());
        }
        done(due)
    }

    fn list(
        &self,
        state: JobState,
        after_seq: Option<u64>,
        limit: usize,
    ) -> StoreFuture<Vec<Job<P>>> {
        let mut out = self.sorted(|j| j.state == state && after_seq.is_none_or(|a| j.seq > a));
        out.truncate(limit);
        done(out)
    }

    fn oldest(&self, state: JobState) -> StoreFuture<Option<Job<P>>> {
        done(self.sorted(|j| j.state == state).into_iter().next())
    }

    fn count(&self, state: JobState) -> StoreFuture<u64> {
        done(
            lock(&self.jobs)
                .values()
                .filter(|j| j.state == state)
                .count() as u64,
        )
    }

    fn purge_finished_before(&self, state: JobState, cutoff_ms: i64) -> StoreFuture<u64> {
        let mut jobs = lock(&self.jobs);
        let before = jobs.len();
        jobs.retain(|_, j| !(j.state == state && j.done_ms.is_some_and(|ms| ms < cutoff_ms)));
        done((before - jobs.len()) as u64)
    }
}
