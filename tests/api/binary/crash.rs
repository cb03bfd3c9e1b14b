//! Crash safety of the real binary: every acknowledged record survives `kill -9` exactly
//! once, and state survives a SIGTERM restart.

use super::{client, create_org, entitlements, post, Server, MID_MONTH};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn used(c: &reqwest::Client, base: &str, org: &str) -> Value {
    entitlements(c, base, org).await
}

#[derive(Clone)]
struct Event {
    org: String,
    id: String,
    value: u64,
    at: String,
}

impl Event {
    fn body(&self) -> Value {
        json!({"orgId": self.org, "metric": "api_call", "value": self.value,
               "occurredAt": self.at, "request_id": self.id})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_record_survives_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = [("EDGEQUOTA__CLOCK__START_AT", MID_MONTH)];
    let mut server = Server::start(dir.path(), &pinned);
    let c = client();
    let mut orgs = Vec::new();
    for _ in 0..4 {
        orgs.push(create_org(&c, &server.base).await);
    }
    let at = MID_MONTH.to_owned();
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 800;
    let events: Vec<Vec<Event>> = (0..CLIENTS)
        .map(|k| {
            (0..PER_CLIENT)
                .map(|i| Event {
                    org: orgs[(k + i) % orgs.len()].clone(),
                    id: format!("c{k}-e{i}"),
                    value: 1 + (i % 5) as u64,
                    at: at.clone(),
                })
                .collect()
        })
        .collect();
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for batch in events.clone() {
        let (c, base, acked) = (c.clone(), server.base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut answered: HashMap<String, String> = HashMap::new();
            for e in batch {
                match post(&c, &base, "/api/usage/record", &e.body()).await {
                    Ok(res) if res.status() == 200 => match res.text().await {
                        Ok(body) => {
                            answered.insert(e.id.clone(), body);
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        // The body was cut off by the kill: not an acknowledgement.
                        Err(_) => break,
                    },
                    Ok(res) => panic!("unexpected status {}", res.status()),
                    Err(_) => break, // the server died under us
                }
            }
            answered
        }));
    }
    crate::helpers::eventually(
        "half the records acknowledged",
        Duration::from_secs(120),
        || async { (acked.load(Ordering::SeqCst) >= CLIENTS * PER_CLIENT / 2).then_some(()) },
    )
    .await;
    server.kill9();
    let mut first_bodies: HashMap<String, String> = HashMap::new();
    for t in tasks {
        first_bodies.extend(t.await.unwrap());
    }
    let total = CLIENTS * PER_CLIENT;
    assert!(
        first_bodies.len() >= total / 2 && first_bodies.len() < total,
        "killed mid-stream: {}",
        first_bodies.len()
    );

    let server = Server::start(dir.path(), &pinned);
    // Replay every event (acknowledged or not), concurrently per client.
    let mut tasks = Vec::new();
    for batch in events.clone() {
        let (c, base) = (c.clone(), server.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut bodies = HashMap::new();
            for e in batch {
                let res = post(&c, &base, "/api/usage/record", &e.body())
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200, "replay of {}", e.id);
                bodies.insert(e.id.clone(), res.text().await.unwrap());
            }
            bodies
        }));
    }
    let mut second: HashMap<String, String> = HashMap::new();
    for t in tasks {
        second.extend(t.await.unwrap());
    }
    for (id, body) in &first_bodies {
        assert_eq!(&second[id], body, "replay of acknowledged {id} differs");
    }
    let mut expected: HashMap<&str, u64> = HashMap::new();
    for e in events.iter().flatten() {
        *expected.entry(e.org.as_str()).or_default() += e.value;
    }
    for org in &orgs {
        assert_eq!(
            used(&c, &server.base, org).await["used"],
            expected[org.as_str()],
            "org {org}"
        );
    }
    // A third pass changes nothing and answers the same bodies.
    for e in events.iter().flatten().step_by(7) {
        let res = post(&c, &server.base, "/api/usage/record", &e.body())
            .await
            .unwrap();
        assert_eq!(res.text().await.unwrap(), second[&e.id]);
    }
    for org in &orgs {
        assert_eq!(
            used(&c, &server.base, org).await["used"],
            expected[org.as_str()]
        );
    }
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_sigterm_restart_and_the_exit_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = [("EDGEQUOTA__CLOCK__START_AT", MID_MONTH)];
    let server = Server::start(dir.path(), &pinned);
    let c = client();
    let org = create_org(&c, &server.base).await;
    let res = post(
        &c,
        &server.base,
        "/api/orgs/api-keys.create",
        &json!({"orgId": org}),
    )
    .await
    .unwrap();
    let key = res.json::<Value>().await.unwrap()["apiKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = Event {
        org: org.clone(),
        id: "keep".into(),
        value: 33,
        at: MID_MONTH.into(),
    };
    let first = post(&c, &server.base, "/api/usage/record", &event.body())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let period = used(&c, &server.base, &org).await["periodKey"].clone();
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");

    let server = Server::start(dir.path(), &pinned);
    let e = used(&c, &server.base, &org).await;
    assert_eq!(e["used"], 33);
    assert_eq!(e["periodKey"], period);
    let replay = post(&c, &server.base, "/api/usage/record", &event.body())
        .await
        .unwrap();
    assert_eq!(replay.text().await.unwrap(), first);
    let res = c
        .post(format!("{}/api/quota/check", server.base))
        .bearer_auth(&key)
        .json(&json!({"orgId": org, "metric": "api_call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"allow": true, "remaining": 967})
    );
    assert_eq!(used(&c, &server.base, &org).await["used"], 33);
    assert!(server.terminate().success());
}

/// An org (and an API key) acknowledged just before a `kill -9` is there after it: the
/// writes outside the ledger (the `orgs` and `api_keys` trees) are flushed before their
/// 200, not left to sled's background flusher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_and_key_acknowledged_just_before_kill_9_survive() {
    let dir = tempfile::tempdir().unwrap();
    let pinned = [("EDGEQUOTA__CLOCK__START_AT", MID_MONTH)];
    let mut server = Server::start(dir.path(), &pinned);
    let c = client();
    let mut orgs = vec![create_org(&c, &server.base).await];
    let key = super::json_of(
        c.post(format!("{}/api/orgs/api-keys.create", server.base))
            .bearer_auth(super::SERVICE)
            .json(&json!({"orgId": orgs[0]})),
    )
    .await["apiKey"]
        .as_str()
        .expect("key")
        .to_owned();
    // The last writes before the kill are org creations alone.
    for _ in 0..5 {
        orgs.push(create_org(&c, &server.base).await);
    }
    server.kill9();

    let server = Server::start(dir.path(), &pinned);
    for org in &orgs {
        // The org's record itself (not only its ledger state) must be there.
        let url = format!(
            "{}/api/admin/usage.read?orgId={org}&periodKey=2026-03",
            server.base
        );
        let res = c
            .get(url)
            .bearer_auth(crate::helpers::ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{org} is known after the kill");
    }
    let res = c
        .post(format!("{}/api/quota/check", server.base))
        .bearer_auth(&key)
        .json(&json!({"orgId": orgs[0], "metric": "api_call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the key survived");
    assert!(server.terminate().success());
}
