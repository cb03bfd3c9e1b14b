//! The durable job queue (the sled backend, through the `JobQueue` interface) under a
//! backlog: one supervisor poll (`claim_due`) with 100,000 queued webhook events of which
//! 32 are due, against what a poll cost before the due index (scanning and decoding up to
//! 10,000 queued events, bodies included, to find the due ones), and the gauges' read
//! (counts in memory plus the oldest queued event).
//!
//! Run: cargo bench --bench queue

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use edgequota::metrics::Metrics;
use edgequota::store::jobs::{Job, JobState};
use edgequota::store::webhook_jobs::WebhookPayload;
use edgequota::store::Backend;
use futures::StreamExt;

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

fn filled(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = edgequota::store::sled::OpenOptions {
        cache_capacity_bytes: 256 * 1024 * 1024,
        fdatasync: false,
        commit_max_batch: 4096,
        debug_log_capacity: 100,
        idempotency_filter_bits_log2: 16,
        wal_cap_bytes: edgequota::store::sled::WAL_CAP_BYTES,
    };
    let backend =
        edgequota::store::sled::open(dir.path(), options, Metrics::new()).expect("open store");
    let queue = backend.webhooks.clone();
    // Many inserts in flight, so their flushes share the disk's syncs.
    rt.block_on(
        futures::stream::iter(0..QUEUED)
            .map(|i| {
                let mut job = Job::queued(format!("evt_{i:08}"), i, payload(i), NOW_MS);
                // All but the last DUE are waiting out a backoff.
                if i < QUEUED - DUE {
                    job.next_attempt_ms = NOW_MS + 60_000 + i as i64;
                }
                queue.insert_new(job)
            })
            .buffer_unordered(512)
            .for_each(|r| {
                r.expect("insert");
                futures::future::ready(())
            }),
    );
    (dir, backend)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (_dir, backend) = filled(&rt);
    let queue = backend.webhooks.clone();
    let count = |state| rt.block_on(queue.count(state)).expect("count");
    // A zero lease lapses at once: every poll claims the same due events again.
    let poll = || rt.block_on(queue.claim_due(NOW_MS, 32, 0)).expect("claim");
    assert_eq!(count(JobState::Queued), QUEUED);
    assert_eq!(poll().len(), DUE as usize);
    let mut group = c.benchmark_group("queue_100k");
    group.sample_size(20);
    group.bench_function("poll_due_index", |b| b.iter(|| black_box(poll())));
    group.bench_function("gauges", |b| {
        b.iter(|| {
            black_box(count(JobState::Queued));
            black_box(count(JobState::Dead));
            black_box(rt.block_on(queue.oldest(JobState::Queued)).expect("oldest"))
        })
    });
    // The poll as it was: read the first 10,000 queued events in arrival order, decoded,
    // and keep the due ones (which, here, are not among them at all).
    group.bench_function("poll_scan_10k_before", |b| {
        b.iter(|| {
            let all = rt
                .block_on(queue.list(JobState::Queued, None, 10_000))
                .expect("list");
            black_box(
                all.into_iter()
                    .filter(|j| j.next_attempt_ms <= NOW_MS)
                    .take(32)
                    .count(),
            )
        })
    });
    group.finish();
    backend.health.close();
}

criterion_group!(benches, bench);
criterion_main!(benches);
