//! Three real edgequota nodes on one real Redis Cluster (six servers, one replica per
//! master, records acknowledged after WAIT 1): what one node writes, the others see.

use super::servers::Redis;
use crate::binary::{client, create_org, entitlements, post, record, Server, MID_MONTH};
use crate::helpers::eventually;
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
    crate::binary::start_nodes(dirs, &settings)
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
    eventually(
        "every node to report the 10 units recorded across the nodes",
        Duration::from_secs(2),
        || async {
            for node in &nodes {
                if entitlements(&c, &node.base, &org).await["used"] != 10 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
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
    eventually(
        "a key minted on A to work on C within 1 s",
        Duration::from_secs(1),
        || async { (check_on_c().await.unwrap().status() == 200).then_some(()) },
    )
    .await;
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
    eventually(
        "C to refuse a key revoked on A within 1 s",
        Duration::from_secs(1),
        || async { (check_on_c().await.unwrap().status() == 401).then_some(()) },
    )
    .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_node_under_record_load_loses_no_acknowledged_record() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let Some(redis) = Redis::start(6, true) else {
        return;
    };
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = start_nodes(&redis, &dirs);
    let c = client();
    let org = create_org(&c, &nodes[0].base).await;
    // Every request id sent to the node about to die, and whether its 200 came back.
    let sent: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
    let victim = nodes[0].base.clone();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (c, base, org, sent) = (c.clone(), victim.clone(), org.clone(), sent.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let id = format!("req_{t}_{n}");
                    let res = post(
                        &c,
                        &base,
                        "/api/usage/record",
                        &record(&org, &id, 1, MID_MONTH),
                    )
                    .await;
                    let acked = matches!(&res, Ok(r) if r.status() == 200);
                    sent.lock().unwrap().insert(id, acked);
                    if res.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    // Load flowing before the kill: waited for, not timed (the suite shares two cores).
    eventually(
        "more than 20 records acknowledged before the kill",
        Duration::from_secs(15),
        || async {
            let acked = sent.lock().unwrap().values().filter(|a| **a).count();
            (acked > 20).then_some(())
        },
    )
    .await;
    nodes[0].kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let acked = sent.values().filter(|a| **a).count() as u64;
    assert!(acked > 20, "the load ran: {acked} acknowledged");
    // The surviving node sees every acknowledged record...
    let survivor = &nodes[1];
    let used = entitlements(&c, &survivor.base, &org).await["used"]
        .as_u64()
        .unwrap();
    assert!(used >= acked, "{used} counted, {acked} acknowledged");
    // ...and replaying every request through it counts each exactly once.
    for id in sent.keys() {
        let res = post(
            &c,
            &survivor.base,
            "/api/usage/record",
            &record(&org, id, 1, MID_MONTH),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 200, "{id}");
    }
    let ids = sent.len() as u64;
    eventually(
        "the survivor to count each of the request ids exactly once",
        Duration::from_secs(2),
        || async {
            let used = entitlements(&c, &survivor.base, &org).await["used"].clone();
            (used == ids).then_some(())
        },
    )
    .await;
}
