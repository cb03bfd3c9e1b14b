//! `kill -9` of the real binary while batches are being recorded: every batch answered
//! 200 is counted, exactly once, after the restart (replaying it counts nothing), and a
//! batch whose answer the kill cut off is counted at most once when it is retried.

use super::{client, create_org, entitlements, post, record, Server, MID_MONTH};
use crate::helpers::eventually;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CLIENTS: usize = 4;
const EVENTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_batch_survives_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let settings = [("EDGEQUOTA__CLOCK__START_AT", MID_MONTH)];
    let mut server = Server::start(&data, &settings);
    let c = client();
    let orgs = [
        create_org(&c, &server.base).await,
        create_org(&c, &server.base).await,
    ];
    // Every batch sent, and whether its 200 arrived.
    let sent: Arc<Mutex<Vec<(Value, bool)>>> = Arc::default();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client_no| {
            let (c, base, orgs, sent) =
                (c.clone(), server.base.clone(), orgs.clone(), sent.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let events: Vec<Value> = (0..EVENTS)
                        .map(|i| {
                            let id = format!("req_{client_no}_{n}_{i}");
                            record(&orgs[i % 2], &id, 1, MID_MONTH)
                        })
                        .collect();
                    let body = json!({ "events": events });
                    let acked = match post(&c, &base, "/api/usage/record.batch", &body).await {
                        Ok(res) if res.status() == 200 => {
                            let b: Value = res.json().await.unwrap_or_default();
                            let results = b["results"].as_array().cloned().unwrap_or_default();
                            results.len() == EVENTS && results.iter().all(|r| r["status"] == 200)
                        }
                        _ => false,
                    };
                    sent.lock().unwrap().push((body, acked));
                    if !acked {
                        break;
                    }
                }
            })
        })
        .collect();
    // Load flowing before the kill: waited for, not timed (the suite shares two cores).
    eventually(
        "8 batches acknowledged before the kill",
        Duration::from_secs(15),
        || async {
            let acked = sent.lock().unwrap().iter().filter(|(_, a)| *a).count();
            (acked >= 8).then_some(())
        },
    )
    .await;
    server.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let acked = sent.iter().filter(|(_, a)| *a).count();
    assert!(acked >= 4, "the load ran: {acked} batches acknowledged");

    let server = Server::start(&data, &settings);
    let total = |c: reqwest::Client, base: String, orgs: [String; 2]| async move {
        let mut sum = 0;
        for org in &orgs {
            sum += entitlements(&c, &base, org).await["used"].as_u64().unwrap();
        }
        sum
    };
    let before = total(c.clone(), server.base.clone(), orgs.clone()).await;
    let acked_events = (acked * EVENTS) as u64;
    assert!(
        before >= acked_events,
        "{before} stored, {acked_events} acknowledged"
    );
    assert!(before <= (sent.len() * EVENTS) as u64);
    // Replaying every acknowledged batch: each event a replay, nothing counted again.
    for (body, _) in sent.iter().filter(|(_, a)| *a) {
        let res = post(&c, &server.base, "/api/usage/record.batch", body)
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(
        total(c.clone(), server.base.clone(), orgs.clone()).await,
        before
    );
    // Retrying the batches the kill cut off counts each of their events once at most.
    for (body, _) in sent.iter().filter(|(_, a)| !*a) {
        let res = post(&c, &server.base, "/api/usage/record.batch", body)
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let after = total(c.clone(), server.base.clone(), orgs.clone()).await;
    assert_eq!(
        after,
        (sent.len() * EVENTS) as u64,
        "every event counted exactly once"
    );
}
