//! The `actor_check` group: `QuotaEngine::check` one at a time and in flight, against
//! actor round trips on other and on the same thread, with per-call percentiles.

use super::*;

/// Per-call latency percentiles (each call timed on its own), printed next to
/// criterion's batch statistics.
fn check_percentiles(system: &SystemRunner, fixture: &Fixture, calls: usize) {
    let metric = Metric::api_call();
    let mut rng = Rng(42);
    let mut samples: Vec<u64> = system.block_on(async {
        let mut out = Vec::with_capacity(calls);
        for _ in 0..calls {
            let org = &fixture.orgs[rng.below(fixture.orgs.len())];
            let started = Instant::now();
            let outcome = fixture
                .engine
                .check(org, &metric, 1, chrono::Utc::now())
                .await;
            out.push(started.elapsed().as_nanos() as u64);
            black_box(outcome.expect("check"));
        }
        out
    });
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize] as f64 / 1e3;
    println!(
        "actor_check per-call latency over {calls} calls on {} live orgs: \
         p50 {:.2} µs, p90 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs",
        fixture.orgs.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
    );
}

/// Criterion's options that take a value as the next argument (`--opt value`): that
/// value is not the name filter.
const VALUED: &[&str] = &[
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--save-baseline",
    "--baseline",
    "--load-baseline",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--nresamples",
    "--profile-time",
    "--output-format",
    "--color",
    "--plotting-backend",
];

/// Whether criterion's name filter (the first free argument, a regex; matched here as a
/// plain substring) can select any of `groups`: spares the 10,000-org set-up otherwise.
fn selected(groups: &[&str]) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value_of_an_option = |i: usize| i > 0 && VALUED.contains(&args[i - 1].as_str());
    let filter = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with('-') && !value_of_an_option(*i))
        .map(|(_, a)| a.clone());
    match filter {
        None => true,
        Some(f) => groups
            .iter()
            .any(|g| g.contains(f.as_str()) || f.contains(g)),
    }
}

pub(super) fn bench_actor_check(c: &mut Criterion) {
    if !selected(&["actor_check", "record_via_actor"]) {
        return;
    }
    let system = System::new();
    let fixture = system.block_on(Fixture::start(ORGS));
    check_percentiles(&system, &fixture, 200_000);

    let mut group = c.benchmark_group("actor_check");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(8));
    let metric = Metric::api_call();

    let mut rng = Rng(7);
    group.bench_function("one_at_a_time", |b| {
        b.iter_custom(|iters| {
            let picks: Vec<usize> = (0..iters).map(|_| rng.below(fixture.orgs.len())).collect();
            system.block_on(async {
                let started = Instant::now();
                for &i in &picks {
                    let outcome = fixture
                        .engine
                        .check(&fixture.orgs[i], &metric, 1, chrono::Utc::now())
                        .await;
                    black_box(outcome.expect("check"));
                }
                started.elapsed()
            })
        })
    });

    // Message round trips, for comparison with the check above (which reads the state
    // the org's actor publishes instead of sending it a message).
    // (1) `Ping` to the org's own actor on its arbiter thread: registry lookup plus a
    //     mailbox round trip (two thread wake-ups).
    let addrs: Vec<Addr<OrgActor>> = system.block_on(async {
        let mut out = Vec::with_capacity(fixture.orgs.len());
        for org in &fixture.orgs {
            out.push(fixture.engine.actor(org).await.expect("actor"));
        }
        out
    });
    group.bench_function("actor_round_trip_other_thread", |b| {
        b.iter_custom(|iters| {
            let picks: Vec<usize> = (0..iters).map(|_| rng.below(addrs.len())).collect();
            system.block_on(async {
                let started = Instant::now();
                for &i in &picks {
                    addrs[i].send(Ping).await.expect("mailbox").expect("ping");
                }
                started.elapsed()
            })
        })
    });
    // (2) The same to an OrgActor started on the bench thread: the actor's own cost
    //     without a thread hop.
    let local = system.block_on(async {
        let org = fixture.orgs[0].clone();
        let snapshot = Snapshot {
            rolled_from: None,
            org,
            state: OrgState {
                plan: PlanCode::free(),
                period: PeriodKey::containing(chrono::Utc::now()),
            },
            state_dirty: false,
            counters: Default::default(),
            billing: Default::default(),
        };
        let ctx = fixture.engine.context().clone();
        let view = Arc::new(OrgView::new(&ctx.catalogue));
        OrgActor::new(snapshot, u64::MAX, view, ctx, Arc::new(Unregistered)).start()
    });
    group.bench_function("actor_round_trip_same_thread", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    local.send(Ping).await.expect("mailbox").expect("ping");
                }
                started.elapsed()
            })
        })
    });
    // (3) A no-op actor on another arbiter thread: the floor of any cross-thread round
    //     trip on this machine (two thread wake-ups), whatever the actor does.
    let noop_arbiter = Arbiter::new();
    let noop = system.block_on(async { Noop::start_in_arbiter(&noop_arbiter.handle(), |_| Noop) });
    group.bench_function("noop_actor_other_thread", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let started = Instant::now();
                for i in 0..iters {
                    black_box(noop.send(Echo(i)).await.expect("mailbox"));
                }
                started.elapsed()
            })
        })
    });
    noop_arbiter.stop();

    group.bench_function(format!("in_flight_{IN_FLIGHT_CHECKS}"), |b| {
        b.iter_custom(|iters| {
            let picks: Vec<usize> = (0..iters).map(|_| rng.below(fixture.orgs.len())).collect();
            system.block_on(async {
                let started = Instant::now();
                stream::iter(&picks)
                    .map(|&i| {
                        fixture
                            .engine
                            .check(&fixture.orgs[i], &metric, 1, chrono::Utc::now())
                    })
                    .buffer_unordered(IN_FLIGHT_CHECKS)
                    .for_each(|outcome| {
                        black_box(outcome.expect("check"));
                        futures::future::ready(())
                    })
                    .await;
                started.elapsed()
            })
        })
    });
    group.finish();

    // Records through the actor: unique request ids, 256 in flight, per-record cost.
    let mut group = c.benchmark_group("record_via_actor");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    let mut seq = 0u64;
    group.bench_function(format!("in_flight_{IN_FLIGHT_RECORDS}"), |b| {
        b.iter_custom(|iters| {
            let now = chrono::Utc::now();
            let msgs: Vec<(usize, RecordRequest)> = (0..iters)
                .map(|_| {
                    seq += 1;
                    let record = RecordRequest {
                        request: RequestId::parse(&format!("bench-{seq}")).expect("request id"),
                        metric: metric.clone(),
                        value: 1,
                        occurred_at: now,
                    };
                    (rng.below(fixture.orgs.len()), record)
                })
                .collect();
            system.block_on(async {
                let started = Instant::now();
                stream::iter(msgs)
                    .map(|(i, record)| fixture.engine.record(&fixture.orgs[i], record, now))
                    .buffer_unordered(IN_FLIGHT_RECORDS)
                    .for_each(|reply| {
                        assert!(!reply.expect("record").replayed);
                        futures::future::ready(())
                    })
                    .await;
                started.elapsed()
            })
        })
    });
    group.finish();

    system.block_on(async move { fixture.stop() });
}
