//! Durable job queues: the Stripe webhook events and the Stigg provisioning jobs are
//! both jobs — stored before they are acknowledged, tried when due, retried with backoff,
//! parked as dead letters when they keep failing — so both use this one queue.
//!
//! The retry rule is the part operators depend on during an outage: a failure that says
//! "the upstream is unreachable" (connection errors, timeouts, 5xx, 429, a refused key)
//! backs off, capped at `outage_retry_max`, and does not use up `max_attempts` until the
//! outage has lasted `outage_budget`; only other failures count. So a 72-hour Stripe
//! outage parks nothing, and the queue drains within one capped backoff of its end.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting to be tried (now or after its backoff).
    Queued,
    /// Finished successfully.
    Done,
    /// Parked after its last counted attempt (or refused for good); replayable.
    Dead,
    /// Nothing to do (e.g. a webhook event type that is not tracked).
    Ignored,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Queued,
        JobState::Done,
        JobState::Dead,
        JobState::Ignored,
    ];

    /// A one-byte tag (index keys).
    pub fn tag(self) -> u8 {
        match self {
            JobState::Queued => b'q',
            JobState::Done => b'p',
            JobState::Dead => b'd',
            JobState::Ignored => b'i',
        }
    }

    /// 0..4, for per-state counts.
    pub fn index(self) -> usize {
        match self {
            JobState::Queued => 0,
            JobState::Done => 1,
            JobState::Dead => 2,
            JobState::Ignored => 3,
        }
    }
}

/// What inserting a job did.
#[derive(Debug)]
pub enum Inserted<P> {
    New,
    /// A job with this id was already stored; here it is.
    Existing(Box<Job<P>>),
}

/// One job and its processing state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job<P> {
    pub id: String,
    /// Arrival order (listing, oldest-first processing).
    pub seq: u64,
    pub state: JobState,
    pub payload: P,
    /// Every try, counted or not.
    pub attempts: u32,
    /// Tries that count toward `max_attempts`.
    pub failures: u32,
    /// When the current run of outage failures began.
    pub outage_since_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Not to be tried before this instant.
    pub next_attempt_ms: i64,
    pub created_ms: i64,
    pub done_ms: Option<i64>,
}

impl<P> Job<P> {
    /// A job to try now.
    pub fn queued(id: String, seq: u64, payload: P, now_ms: i64) -> Self {
        Self {
            id,
            seq,
            state: JobState::Queued,
            payload,
            attempts: 0,
            failures: 0,
            outage_since_ms: None,
            last_error: None,
            next_attempt_ms: now_ms,
            created_ms: now_ms,
            done_ms: None,
        }
    }

    /// Finished by a try (`Done` or `Ignored`), with an optional note.
    pub fn finished(&self, state: JobState, note: Option<String>, now_ms: i64) -> Self
    where
        P: Clone,
    {
        let mut next = self.clone();
        next.state = state;
        next.attempts += 1;
        next.last_error = note;
        next.outage_since_ms = None;
        next.done_ms = Some(now_ms);
        next
    }

    /// Queued again from scratch (replay, or a newer request for the same job).
    pub fn requeued(&self, payload: P, now_ms: i64) -> Self
    where
        P: Clone,
    {
        let mut next = self.clone();
        next.state = JobState::Queued;
        next.payload = payload;
        next.attempts = 0;
        next.failures = 0;
        next.outage_since_ms = None;
        next.last_error = None;
        next.next_attempt_ms = now_ms;
        next.done_ms = None;
        next
    }
}

/// Why a try failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The upstream is unreachable or refusing everyone: wait it out.
    Outage,
    /// Something else went wrong; counts toward `max_attempts`.
    Transient,
    /// Retrying cannot help: park it now.
    Permanent,
}

/// How a queue retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
    pub outage_budget: Duration,
    pub outage_retry_max: Duration,
}

impl RetryPolicy {
    /// The job after a failed try at `now_ms`: queued again after a backoff, or dead.
    pub fn after_failure<P: Clone>(
        &self,
        job: &Job<P>,
        kind: FailureKind,
        error: &str,
        now_ms: i64,
    ) -> Job<P> {
        let mut next = job.clone();
        next.attempts += 1;
        next.last_error = Some(error.to_owned());
        let within_budget = |since: i64| {
            now_ms.saturating_sub(since)
                < i64::try_from(self.outage_budget.as_millis()).unwrap_or(i64::MAX)
        };
        let delay = match kind {
            FailureKind::Outage if within_budget(*next.outage_since_ms.get_or_insert(now_ms)) => {
                backoff(
                    self.base,
                    next.attempts,
                    self.max.min(self.outage_retry_max),
                )
            }
            FailureKind::Permanent => {
                next.failures += 1;
                return Self::dead(next, now_ms);
            }
            // A transient failure, or an outage that outlasted its budget.
            _ => {
                if kind != FailureKind::Outage {
                    next.outage_since_ms = None;
                }
                next.failures += 1;
                if next.failures >= self.max_attempts {
                    return Self::dead(next, now_ms);
                }
                backoff(self.base, next.failures, self.max)
            }
        };
        next.state = JobState::Queued;
        next.next_attempt_ms =
            now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        next
    }

    fn dead<P>(mut job: Job<P>, now_ms: i64) -> Job<P> {
        job.state = JobState::Dead;
        job.done_ms = Some(now_ms);
        job
    }
}

/// Jittered exponential backoff after `tries` failures: `base` doubled per try after the
/// first, capped at `max`, plus up to 20 % so retries do not align.
pub fn backoff(base: Duration, tries: u32, max: Duration) -> Duration {
    let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX).max(1);
    let exp = base_ms.saturating_mul(1u64 << tries.saturating_sub(1).min(30));
    let capped = exp.min(max_ms);
    let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=capped / 5);
    Duration::from_millis(capped + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            outage_budget: Duration::from_secs(72 * 3600),
            outage_retry_max: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let ms = Duration::from_millis;
        for (tries, low) in [(1, 100), (2, 200), (3, 400), (10, 1_000)] {
            let d = backoff(ms(100), tries, ms(1_000)).as_millis() as u64;
            assert!((low..=low + low / 5).contains(&d), "{tries}: {d}");
        }
    }

    #[test]
    fn an_outage_uses_no_attempts_until_its_budget_is_spent() {
        let p = policy();
        let mut job = Job::queued("e".into(), 1, (), 0);
        let mut now = 0;
        // 70 hours of outage, retried every 30 s at most: never dead, nothing counted.
        while now < 70 * HOUR {
            job = p.after_failure(&job, FailureKind::Outage, "down", now);
            assert_eq!(job.state, JobState::Queued);
            assert!(job.next_attempt_ms - now <= 36_000, "capped backoff");
            now = job.next_attempt_ms;
        }
        assert_eq!(job.failures, 0);
        assert!(job.attempts > 3);
        // Past 72 hours the outage counts like any failure.
        now = 73 * HOUR;
        for _ in 0..3 {
            job = p.after_failure(&job, FailureKind::Outage, "still down", now);
        }
        assert_eq!(job.state, JobState::Dead);
        assert_eq!(job.failures, 3);
    }

    #[test]
    fn other_failures_count_and_a_permanent_one_parks_at_once() {
        let p = policy();
        let job = Job::queued("e".into(), 1, (), 0);
        let once = p.after_failure(&job, FailureKind::Transient, "boom", 0);
        assert_eq!(
            (once.state, once.failures, once.attempts),
            (JobState::Queued, 1, 1)
        );
        let twice = p.after_failure(&once, FailureKind::Transient, "boom", 0);
        let thrice = p.after_failure(&twice, FailureKind::Transient, "boom", 0);
        assert_eq!(thrice.state, JobState::Dead);
        let refused = p.after_failure(&job, FailureKind::Permanent, "no", 5);
        assert_eq!((refused.state, refused.done_ms), (JobState::Dead, Some(5)));
    }

    #[test]
    fn a_transient_failure_ends_an_outage_run() {
        let p = policy();
        let job = Job::queued("e".into(), 1, (), 0);
        let out = p.after_failure(&job, FailureKind::Outage, "down", 0);
        assert_eq!(out.outage_since_ms, Some(0));
        let other = p.after_failure(&out, FailureKind::Transient, "bad", 10);
        assert_eq!(other.outage_since_ms, None);
        // A later outage starts its own budget.
        let again = p.after_failure(&other, FailureKind::Outage, "down", 80 * HOUR);
        assert_eq!(again.outage_since_ms, Some(80 * HOUR));
        assert_eq!(again.state, JobState::Queued);
    }
}
