//! Consumes are write-behind (SPEC §5): `kill -9` of the real binary under consume load
//! loses at most the consumes of the last flush interval — measured here against a
//! bound derived from `engine.consume_flush_ms` — and never counts one that was not
//! admitted.

use super::{client, create_org, entitlements, post, Server, MID_MONTH};
use crate::helpers::eventually;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FLUSH_MS: u64 = 10;
/// Room for one group commit's flush and fdatasync on top of the interval (a slow CI
/// disk takes tens of milliseconds).
const COMMIT_SLACK_MS: u64 = 150;
const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_consume_load_loses_at_most_the_flush_window() {
    let dir = tempfile::tempdir().unwrap();
    // A plan large enough that nothing is denied: every admitted consume is a 200.
    let plans = dir.path().join("plans.toml");
    std::fs::write(
        &plans,
        "[plans.plan_free]\nstripe_lookup_key = \"plan_free\"\nstigg_plan_id = \"free\"\n\
         rank = 0\ntrial_days = 0\nincluded = { api_call = 100000000 }\n",
    )
    .unwrap();
    let plans = plans.display().to_string();
    let settings = [
        ("EDGEQUOTA__CLOCK__START_AT", MID_MONTH),
        ("EDGEQUOTA__PLANS__FILE", plans.as_str()),
        ("EDGEQUOTA__ENGINE__CONSUME_FLUSH_MS", "10"),
    ];
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &settings);
    let c = client();
    let org = create_org(&c, &server.base).await;
    let admitted = Arc::new(AtomicU64::new(0));
    let dead = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (c, base, org) = (c.clone(), server.base.clone(), org.clone());
            let (admitted, dead) = (admitted.clone(), dead.clone());
            tokio::spawn(async move {
                let body = json!({"orgId": org, "metric": "api_call"});
                while !dead.load(Ordering::SeqCst) {
                    match post(&c, &base, "/api/quota/consume", &body).await {
                        Ok(res) if res.status() == 200 => {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(res) => panic!("unexpected status {}", res.status()),
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Load flowing before the kill: waited for, not timed (the suite shares two cores).
    // Enough consumes that the rate below is not dominated by the clients' start.
    eventually(
        "2000 consumes admitted before the kill",
        Duration::from_secs(15),
        || async { (admitted.load(Ordering::SeqCst) >= 2000).then_some(()) },
    )
    .await;
    server.kill9();
    let elapsed = started.elapsed();
    dead.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let admitted = admitted.load(Ordering::SeqCst);
    assert!(admitted > 100, "the load ran: {admitted} consumes admitted");

    let server = Server::start(&data, &settings);
    let stored = entitlements(&c, &server.base, &org).await["used"]
        .as_u64()
        .expect("used");
    // Consumes counted but whose answer the kill cut off may be stored: at most one
    // per client in flight.
    assert!(
        stored <= admitted + CLIENTS as u64,
        "stored {stored} more than admitted {admitted}"
    );
    let rate = admitted as f64 / elapsed.as_secs_f64();
    let bound = (rate * (FLUSH_MS + COMMIT_SLACK_MS) as f64 / 1000.0).ceil() as u64;
    let lost = admitted.saturating_sub(stored);
    eprintln!(
        "consume kill -9: {admitted} admitted at {rate:.0}/s, {stored} stored, {lost} lost \
         (bound {bound} = rate x ({FLUSH_MS} + {COMMIT_SLACK_MS}) ms)"
    );
    assert!(lost <= bound, "lost {lost} consumes, more than {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_rate_limit_service_and_its_units_survive_a_restart() {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
    use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
    let dir = tempfile::tempdir().unwrap();
    let pinned = [("EDGEQUOTA__CLOCK__START_AT", MID_MONTH)];
    let server = Server::start(dir.path(), &pinned);
    let c = client();
    let org = create_org(&c, &server.base).await;
    let addr = server
        .grpc
        .clone()
        .expect("the binary logs its gRPC address");
    let mut rls = RateLimitServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("gRPC connects");
    let ask = |hits: u32| {
        let mut req = tonic::Request::new(RateLimitRequest {
            domain: "edgequota".into(),
            descriptors: vec![RateLimitDescriptor {
                entries: vec![Entry {
                    key: "org_id".into(),
                    value: org.clone(),
                }],
                ..Default::default()
            }],
            hits_addend: hits,
        });
        let token = format!("Bearer {}", crate::helpers::SERVICE);
        req.metadata_mut()
            .insert("authorization", token.parse().unwrap());
        req
    };
    let res = rls.should_rate_limit(ask(600)).await.unwrap().into_inner();
    assert_eq!(res.overall_code(), Code::Ok);
    let res = rls.should_rate_limit(ask(401)).await.unwrap().into_inner();
    assert_eq!(res.overall_code(), Code::OverLimit);
    // The same counter as the HTTP front's, kept across a clean restart.
    assert!(server.terminate().success());
    let server = Server::start(dir.path(), &pinned);
    assert_eq!(entitlements(&c, &server.base, &org).await["used"], 600);
}
