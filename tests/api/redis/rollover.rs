//! Two real nodes on one Redis cross a month boundary with injected clocks: the
//! supervisors' sweeps run under the store's sweep lease, so each period is swept by
//! exactly one node and the other counts it as made elsewhere — and the orgs move.

use super::servers::Redis;
use crate::binary::{client, create_org, json_of, metrics_scrape, post, record, start_nodes};
use crate::helpers::{eventually, ADMIN};
use serde_json::Value;
use std::time::Duration;

async fn count(c: &reqwest::Client, base: &str, series: &str) -> u64 {
    metrics_scrape(c, base).await.get(series) as u64
}

/// (sweeps made here, sweeps left to another node) on `base`.
async fn sweeps(c: &reqwest::Client, base: &str) -> (u64, u64) {
    (
        count(
            c,
            base,
            "edgequota_rollover_runs_total{trigger=\"supervisor\"}",
        )
        .await,
        count(c, base, "edgequota_rollover_sweeps_elsewhere_total").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_nodes_one_sweeps_each_period_and_the_orgs_move() {
    let Some(redis) = Redis::start(1, false) else {
        return;
    };
    let start = "2027-02-28T23:59:45Z";
    let url = redis.urls()[0].clone();
    let settings = [
        ("EDGEQUOTA__CLOCK__START_AT", start),
        ("EDGEQUOTA__STORE__BACKEND", "redis"),
        ("EDGEQUOTA__STORE__REDIS_URLS", url.as_str()),
        ("EDGEQUOTA__STORE__REDIS_WAIT_REPLICAS", "0"),
    ];
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = start_nodes(&dirs, &settings);
    let c = client();
    let org = create_org(&c, &nodes[0].base).await;
    let res = post(
        &c,
        &nodes[0].base,
        "/api/usage/record",
        &record(&org, "r", 3, start),
    )
    .await
    .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["periodKey"], "2027-02");

    // Reads through usage.read do not roll the org: only a sweep moves its stored period.
    let stored = |base: String| {
        let (c, org) = (c.clone(), org.clone());
        async move {
            let url = format!("{base}/api/admin/usage.read?orgId={org}&periodKey=2027-02");
            json_of(c.get(url).bearer_auth(ADMIN)).await["storedPeriodKey"].clone()
        }
    };
    assert_eq!(
        stored(nodes[1].base.clone()).await,
        "2027-02",
        "started too late"
    );
    eventually(
        "a sweep to move the org into March",
        Duration::from_secs(40),
        || {
            let probe = stored(nodes[1].base.clone());
            async move { (probe.await == "2027-03").then_some(()) }
        },
    )
    .await;

    // Both periods (February at start, March at the boundary) settled on both nodes:
    // each swept it or saw it swept.
    let settled = eventually(
        "both nodes to settle both periods",
        Duration::from_secs(30),
        || {
            let c = c.clone();
            let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
            async move {
                let mut all = Vec::new();
                for base in &bases {
                    all.push(sweeps(&c, base).await);
                }
                all.iter()
                    .all(|(here, away)| here + away == 2)
                    .then_some(all)
            }
        },
    )
    .await;
    let made: u64 = settled.iter().map(|(here, _)| here).sum();
    let skipped: u64 = settled.iter().map(|(_, away)| away).sum();
    assert_eq!(
        made, 2,
        "one sweep per period across the nodes: {settled:?}"
    );
    assert_eq!(skipped, 2, "the other node skipped each: {settled:?}");
}
