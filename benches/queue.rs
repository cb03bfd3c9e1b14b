//! The durable job queue under a backlog: one supervisor poll (`due`) with 100,000
//! queued webhook events of which 32 are due, against what a poll cost before the due
//! index (scanning and decoding up to 10,000 queued events, bodies included, to find the
//! due ones), and the gauges' read (counts in memory plus the oldest queued event).
//!
//! Run: cargo bench --bench queue

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgequota::store::jobs::{Job, JobState};
use edgequota::store::webhook_jobs::WebhookPayload;
use edgequota::store::{OpenOptions, Store};

const QUEUED: u64 = 100_000;
const DUE: u64 = 32;
const NOW_MS: i64 = 1_800_000_000_000;

fn payload(i: u64) -> WebhookPayload {
    // A typical subscription event is a few kilobytes.
    WebhookPayload {
        event_type: "customer.subscription.updated".into(),
        raw: format!("{{\"id\":\"evt_{i}\",\"pad\":\"{}\"}}", "x".repeat(3_000)).into_bytes(),
    }
}

fn filled() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = OpenOptions {
        cache_capacity_bytes: 256 * 1024 * 1024,
        fdatasync: false,
    };
    let store = Store::open(dir.path(), options).expect("open store");
    let queue = &store.webhook_queue;
    for i in 0..QUEUED {
        let mut job = Job::queued(format!("evt_{i:08}"), i, payload(i), NOW_MS);
        // All but the last DUE are waiting out a backoff.
        if i < QUEUED - DUE {
            job.next_attempt_ms = NOW_MS + 60_000 + i as i64;
        }
        queue.insert_new(&job).expect("insert");
    }
    store.db.flush().expect("flush");
    (dir, store)
}

fn bench(c: &mut Criterion) {
    let (_dir, store) = filled();
    let queue = store.webhook_queue.clone();
    assert_eq!(queue.count(JobState::Queued), QUEUED);
    assert_eq!(queue.due(NOW_MS, 32).expect("due").len(), DUE as usize);
    let mut group = c.benchmark_group("queue_100k");
    group.sample_size(20);
    group.bench_function("poll_due_index", |b| {
        b.iter(|| black_box(queue.due(NOW_MS, 32).expect("due")))
    });
    group.bench_function("gauges", |b| {
        b.iter(|| {
            black_box(queue.count(JobState::Queued));
            black_box(queue.count(JobState::Dead));
            black_box(queue.oldest(JobState::Queued).expect("oldest"))
        })
    });
    // The poll as it was: read the first 10,000 queued events in arrival order, decoded,
    // and keep the due ones (which, here, are not among them at all).
    group.bench_function("poll_scan_10k_before", |b| {
        b.iter(|| {
            let all = queue.list(JobState::Queued, None, 10_000).expect("list");
            black_box(
                all.into_iter()
                    .filter(|j| j.next_attempt_ms <= NOW_MS)
                    .take(32)
                    .count(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
