//! Criterion benches of the quota engine's three hot paths (issue 2, "Performance").
//!
//! | bench                                   | what one iteration is                              | target   |
//! |-----------------------------------------|----------------------------------------------------|----------|
//! | `decide`                                | the pure decision fn `quota::decide`               | ≤ 100 ns |
//! | `actor_check/one_at_a_time`             | `QuotaEngine::check` on a random org of 10,000     | median   |
//! |                                         | live org actors: registry lookup + a read of the   | ≤ 5 µs   |
//! |                                         | state the org's actor publishes (the real path)    |          |
//! | `actor_check/actor_round_trip_other_..` | a `Ping` message to a random org's actor on its    | (for     |
//! |                                         | arbiter thread and back (two thread wake-ups)      | contrast)|
//! | `actor_check/actor_round_trip_same_..`  | the same to an `OrgActor` on the bench thread      | (baseline)|
//! | `actor_check/noop_actor_other_thread`   | a no-op actor on another arbiter: the machine's    | (baseline)|
//! |                                         | floor for any cross-thread round trip              |          |
//! | `actor_check/in_flight_64`              | `check` with 64 in flight (cost per check)         | —        |
//! | `store_record/one_at_a_time`            | one `LedgerStore::record` on sled: idempotency     | —        |
//! |                                         | look-up, increment, group commit + fdatasync       |          |
//! | `store_record/in_flight_256`            | per-record cost with 256 submitters in flight      | —        |
//! | `record_via_actor/in_flight_256`        | `QuotaEngine::record` (the actor's cache, then     | ≥ 20k/s  |
//! |                                         | `store_record`, the view raised, the reply)        |          |
//!
//! Run: `cargo bench --bench engine` (one group: `cargo bench --bench engine -- actor_check`).
//! Criterion prints the mean; the median of each bench is in
//! `target/criterion/<group>/<bench>/new/estimates.json` (`median.point_estimate`, ns).
//! `actor_check` additionally prints the per-call latency percentiles of `check`, measured
//! call by call, because criterion's own statistics are over batches of calls.
//!
//! Everything runs in-process: an actix `System` on the bench thread (the caller, like an
//! actix-web worker), the engine's arbiters on their own threads (one per core, as in the
//! server), the sled backend (its group-commit writer on its thread) on a temporary
//! directory, opened through the storage interface as the service opens it.

mod actor_check;

use actix::prelude::*;
use actix_rt::{System, SystemRunner};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use edgequota::clock::{SharedClock, SystemClock};
use edgequota::config::DEFAULT_PLANS_TOML;
use edgequota::domain::{Catalogue, Metric, OrgId, PeriodKey, PlanCode, RequestId};
use edgequota::metrics::Metrics;
use edgequota::quota::actor::{OrgActor, Snapshot};
use edgequota::quota::context::ActorSlots;
use edgequota::quota::engine::EngineConfig;
use edgequota::quota::messages::Ping;
use edgequota::quota::{decide, Created, NewOrg, OrgView, QuotaEngine, RecordRequest};
use edgequota::store::{Backend, OrgState, UsageRecord};
use futures::stream::{self, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Orgs created (and made live) for the actor benches.
const ORGS: usize = 10_000;
/// Submitters in flight for the throughput variants.
const IN_FLIGHT_CHECKS: usize = 64;
const IN_FLIGHT_RECORDS: usize = 256;

/// A tiny xorshift so that "a random org" costs a few ns, not a `rand` call.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A bench actor registered nowhere.
struct Unregistered;

impl ActorSlots for Unregistered {
    fn release(&self, _: &OrgId, _: u64) {}
}

/// The cheapest possible actor: the floor of any mailbox round trip.
struct Noop;

impl Actor for Noop {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Echo(u64);

impl Handler<Echo> for Noop {
    type Result = u64;
    fn handle(&mut self, msg: Echo, _: &mut Context<Self>) -> u64 {
        msg.0
    }
}

/// The sled backend as the service opens it by default (fdatasync on).
fn open_backend(dir: &std::path::Path) -> Backend {
    let options = edgequota::store::sled::OpenOptions {
        cache_capacity_bytes: 256 * 1024 * 1024,
        fdatasync: true,
        commit_max_batch: 4096,
        debug_log_capacity: 10_000,
        idempotency_filter_bits_log2: 27,
        wal_cap_bytes: edgequota::store::sled::WAL_CAP_BYTES,
    };
    edgequota::store::sled::open(dir, options, Metrics::new()).expect("open store")
}

/// An engine on a temporary sled directory, as `Application::build` wires it.
struct Fixture {
    _dir: tempfile::TempDir,
    backend: Backend,
    engine: Arc<QuotaEngine>,
    orgs: Vec<OrgId>,
}

impl Fixture {
    /// Must run inside the actix `System` (the engine starts arbiters).
    async fn start(orgs: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = open_backend(dir.path());
        let metrics = Metrics::new();
        let catalogue = Arc::new(Catalogue::from_toml(DEFAULT_PLANS_TOML).expect("catalogue"));
        let clock: SharedClock = Arc::new(SystemClock);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let engine = Arc::new(QuotaEngine::start(
            backend.clone(),
            catalogue,
            clock,
            metrics,
            EngineConfig {
                arbiters: cores,
                idle_ttl: Duration::from_secs(3600),
                recent_capacity: 64,
                consume_flush: Duration::from_millis(10),
            },
        ));
        let ids: Vec<OrgId> = stream::iter(0..orgs)
            .map(|i| {
                let engine = engine.clone();
                async move {
                    let new = NewOrg {
                        name: format!("bench org {i}"),
                        owner_user_id: format!("user_{i}"),
                        idempotency_key: None,
                    };
                    match engine
                        .create_org(new, chrono::Utc::now())
                        .await
                        .expect("create org")
                    {
                        Created::New(id, _) => id,
                        Created::Replayed(_) => unreachable!("no idempotency key given"),
                    }
                }
            })
            .buffer_unordered(256)
            .collect()
            .await;
        // Touch every org once so the measured checks hit live actors (the steady state).
        let metric = Metric::api_call();
        stream::iter(&ids)
            .for_each_concurrent(256, |org| {
                let engine = engine.clone();
                let metric = metric.clone();
                async move {
                    engine
                        .check(org, &metric, 1, chrono::Utc::now())
                        .await
                        .expect("warm-up check");
                }
            })
            .await;
        assert_eq!(engine.live_actors(), orgs);
        Self {
            _dir: dir,
            backend,
            engine,
            orgs: ids,
        }
    }

    fn stop(self) {
        self.engine.stop();
        self.backend.health.close();
    }
}

fn bench_decide(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    // Inputs vary per iteration (and pass through black_box) so nothing is folded away.
    let inputs: Vec<(u64, u64, u64)> = {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        (0..1024)
            .map(|_| (rng.next() % 2_000, 1_000, 1 + rng.next() % 3))
            .collect()
    };
    let mut i = 0usize;
    group.bench_function("decide", |b| {
        b.iter(|| {
            let (used, included, cost) = inputs[i & 1023];
            i = i.wrapping_add(1);
            decide(black_box(used), black_box(included), black_box(cost))
        })
    });
    group.finish();
}

/// Records straight into the sled backend (no actor): what the store itself costs.
fn bench_store_record(c: &mut Criterion) {
    let system = System::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = open_backend(dir.path());
    let ledger = backend.ledger.clone();
    let orgs: Vec<OrgId> = (0..ORGS).map(|_| OrgId::generate()).collect();
    let period = PeriodKey::containing(chrono::Utc::now());
    let metric = Metric::api_call();
    let mut seq = 0u64;
    let mut next = move || {
        seq += 1;
        let org = orgs[(seq as usize) % ORGS].clone();
        let usage = UsageRecord {
            period,
            metric: metric.clone(),
            delta: 1,
            request: RequestId::parse(&format!("bench-{seq}")).expect("request id"),
            fingerprint: seq.to_le_bytes().repeat(2).try_into().expect("16 bytes"),
            included: 1_000_000,
            now_ms: 0,
        };
        (org, usage)
    };

    let mut group = c.benchmark_group("store_record");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("one_at_a_time", |b| {
        b.iter_batched(
            &mut next,
            |(org, usage)| system.block_on(ledger.record(&org, usage)).expect("record"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function(format!("in_flight_{IN_FLIGHT_RECORDS}"), |b| {
        b.iter_custom(|iters| {
            let records: Vec<_> = (0..iters).map(|_| next()).collect();
            system.block_on(async {
                let started = Instant::now();
                stream::iter(records)
                    .map(|(org, usage)| ledger.record(&org, usage))
                    .buffer_unordered(IN_FLIGHT_RECORDS)
                    .for_each(|r| {
                        r.expect("record");
                        futures::future::ready(())
                    })
                    .await;
                started.elapsed()
            })
        })
    });
    group.finish();
    backend.health.close();
}

criterion_group!(
    benches,
    bench_decide,
    actor_check::bench_actor_check,
    bench_store_record
);
criterion_main!(benches);
