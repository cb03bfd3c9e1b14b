//! Three real edgequota nodes on one real Redis Cluster (six servers, one replica per
//! master, records acknowledged after WAIT 1): what one node writes, the others see.

use super::servers::Redis;
use crate::binary::{client, create_org, entitlements, post, record, Server, MID_MONTH};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn start_nodes(redis: &Redis, dirs: &[tempfile::TempDir]) -> Vec<Server> {
    let seed = redis.urls()[0].clone();
    let settings = [
        ("EDGEQUOTA__CLOCK__START_AT", MID_MONTH),
        ("EDGEQUOTA__STORE__BACKEND", "redis"),
        // Generous: the whole suite shares two cores with six Redis servers.
        ("EDGEQUOTA__STORE__REDIS_TIMEOUT_MS", "10000"),
        ("EDGEQUOTA__STORE__REDIS_WAIT_TIMEOUT_MS", "5000"),
        ("EDGEQUOTA__STORE__REDIS_URLS", seed.as_str()),
        ("EDGEQUOTA__STORE__REDIS_WAIT_REPLICAS", "1"),
    ];
    dirs.iter()
        .map(|d| Server::start(d.path(), &settings))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_orgs_records_keys_and_usage() {
    let Some(redis) = Redis::start(6, true) else {
        return;
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = start_nodes(&redis, &dirs);
    let c = client();
    // An org created on A is usable on B and C.
    let org = create_org(&c, &nodes[0].base).await;
    for node in &nodes[1..] {
        assert_eq!(entitlements(&c, &node.base, &org).await["used"], 0);
    }
    // The same request id sent to all three at once counts once, with one answer.
    let body = record(&org, "req_everywhere", 7, MID_MONTH);
    let sends = nodes
        .iter()
        .map(|n| post(&c, &n.base, "/api/usage/record", &body));
    let mut answers = Vec::new();
    for res in futures_util::future::join_all(sends).await {
        let res = res.unwrap();
        assert_eq!(res.status(), 200);
        answers.push(res.json::<Value>().await.unwrap());
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0]["used"], 7);
    // Usage sums across nodes: records on each node, then every node reports the sum.
    for (i, node) in nodes.iter().enumerate() {
        let body = record(&org, &format!("req_node_{i}"), 1, MID_MONTH);
        let res = post(&c, &node.base, "/api/usage/record", &body)
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for node in &nodes {
        loop {
            let used = entitlements(&c, &node.base, &org).await["used"].clone();
            if used == 10 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} sees {used}, not 10",
                node.base
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A key minted on A works on C; revoked on A, C refuses it within a second.
    let minted: Value = post(
        &c,
        &nodes[0].base,
        "/api/orgs/api-keys.create",
        &json!({"orgId": org}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = minted["apiKey"].as_str().unwrap().to_owned();
    let check_on_c = || {
        c.post(format!("{}/api/quota/check", nodes[2].base))
            .bearer_auth(&key)
            .json(&json!({"orgId": org, "metric": "api_call"}))
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    while check_on_c().await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "a new key reached C within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let revoked = post(
        &c,
        &nodes[0].base,
        "/api/orgs/api-keys.revoke",
        &json!({"keyId": minted["keyId"]}),
    )
    .await
    .unwrap();
    assert_eq!(revoked.status(), 200);
    let revoked_at = Instant::now();
    while check_on_c().await.unwrap().status() != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "C still accepts a key revoked on A after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("revocation reached C after {:?}", revoked_at.elapsed());
    // Consumes on every node count into the one shared counter.
    for node in &nodes {
        for _ in 0..5 {
            let res = post(
                &c,
                &node.base,
                "/api/quota/consume",
                &json!({"orgId": org, "metric": "api_call"}),
            )
            .await
            .unwrap();
            assert_eq!(res.status(), 200);
        }
    }
    for node in nodes {
        assert!(node.terminate().success());
    }
    // After every node stopped cleanly, the store holds everything: a fresh node sees it.
    let fresh = tempfile::tempdir().unwrap();
    let node = start_nodes(&redis, std::slice::from_ref(&fresh)).remove(0);
    assert_eq!(entitlements(&c, &node.base, &org).await["used"], 25);
}
