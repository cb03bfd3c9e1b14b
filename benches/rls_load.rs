//! A load client for Envoy's rate limit service: `CONCURRENCY` unary calls in flight
//! over `CHANNELS` HTTP/2 connections, each for a random org of `ORGS_FILE`, for
//! `DURATION` seconds. Prints one line: `RESULT rls <decisions/s> <p50 µs> <p99 µs>
//! <non-OK answers> <errors> <total>` (the format benches/load.sh reads).
//!
//! Run by `benches/grpc.sh` (which starts the server); by hand:
//! `ADDR=127.0.0.1:8081 TOKEN=… ORGS_FILE=orgs.txt cargo bench --bench rls_load`.

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn main() {
    // `cargo bench` passes `--bench`; this client takes its settings from the
    // environment only, and does nothing without a server to talk to.
    let Ok(addr) = std::env::var("ADDR") else {
        eprintln!("rls_load: set ADDR (and TOKEN, ORGS_FILE); benches/grpc.sh does");
        return;
    };
    let token = env_or("TOKEN", "");
    let orgs: Vec<String> = std::fs::read_to_string(env_or("ORGS_FILE", "orgs.txt"))
        .expect("ORGS_FILE")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let duration = Duration::from_secs(env_or("DURATION", "10").parse().expect("DURATION"));
    let concurrency: usize = env_or("CONCURRENCY", "64").parse().expect("CONCURRENCY");
    let channels: usize = env_or("CHANNELS", "4").parse().expect("CHANNELS");
    let threads: usize = env_or("CLIENT_THREADS", "2")
        .parse()
        .expect("CLIENT_THREADS");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..channels.max(1) {
            let c = RateLimitServiceClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            clients.push(c);
        }
        let auth: tonic::metadata::MetadataValue<_> =
            format!("Bearer {token}").parse().expect("token");
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = (0..concurrency)
            .map(|i| {
                let mut client = clients[i % clients.len()].clone();
                let (orgs, auth) = (orgs.clone(), auth.clone());
                tokio::spawn(async move {
                    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
                    let (mut lat, mut bad, mut errs) = (Vec::new(), 0u64, 0u64);
                    while Instant::now() < deadline {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let org = &orgs[(seed % orgs.len() as u64) as usize];
                        let msg = RateLimitRequest {
                            domain: "edgequota".into(),
                            descriptors: vec![RateLimitDescriptor {
                                entries: vec![Entry {
                                    key: "org_id".into(),
                                    value: org.clone(),
                                }],
                                ..Default::default()
                            }],
                            hits_addend: 1,
                        };
                        let mut req = tonic::Request::new(msg);
                        req.metadata_mut().insert("authorization", auth.clone());
                        let t = Instant::now();
                        match client.should_rate_limit(req).await {
                            Ok(res) if res.get_ref().overall_code() == Code::Ok => {}
                            Ok(_) => bad += 1,
                            Err(_) => errs += 1,
                        }
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    (lat, bad, errs)
                })
            })
            .collect();
        let (mut lat, mut bad, mut errs) = (Vec::new(), 0, 0);
        for t in tasks {
            let (l, b, e) = t.await.expect("task");
            lat.extend(l);
            bad += b;
            errs += e;
        }
        let secs = started.elapsed().as_secs_f64();
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or(0)
        };
        println!(
            "RESULT rls {:.1} {} {} {} {} {}",
            lat.len() as f64 / secs,
            pct(0.50),
            pct(0.99),
            bad,
            errs,
            lat.len()
        );
    });
}
