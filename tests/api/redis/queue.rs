//! The job queues on Redis Streams across nodes: a job one node claimed and then
//! abandoned (the node died) is handed to another node's claim once it has been idle past
//! the lease, and never while the lease runs.

use super::servers::Redis;
use edgequota::store::jobs::{Job, JobState};
use edgequota::store::webhook_jobs::WebhookPayload;
use edgequota::store::Backend;
use std::time::Duration;

fn queued(id: &str, seq: u64) -> Job<WebhookPayload> {
    let payload = WebhookPayload {
        event_type: "invoice.paid".into(),
        raw: b"{}".to_vec(),
    };
    Job::queued(id.into(), seq, payload, 0)
}

/// What a claim on `node` takes now.
async fn claim(node: &Backend, now_ms: i64, lease_ms: i64) -> Vec<Job<WebhookPayload>> {
    node.webhooks
        .claim_due(now_ms, 10, lease_ms)
        .await
        .expect("claim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_claimed_job_goes_to_another_node_after_the_lease() {
    let Some(redis) = Redis::start(6, true) else {
        return;
    };
    // Two nodes: two connections, two consumers in the stream's group.
    let (a, b) = (redis.store().await, redis.store().await);
    let seq = a.webhooks.next_seq().await.expect("seq");
    a.webhooks
        .insert_new(queued("evt_abandoned", seq))
        .await
        .expect("insert");
    let lease_ms = 400;
    let now_ms = 1_000;

    let taken = a
        .webhooks
        .claim_due(now_ms, 10, lease_ms)
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1, "node A claims the job");
    assert!(
        b.webhooks
            .claim_due(now_ms, 10, lease_ms)
            .await
            .expect("claim")
            .is_empty(),
        "node B does not take it while A's lease runs"
    );

    // A dies holding it (it never answers); B's claim takes it once it is idle past
    // the lease, by Redis's clock.
    drop(a);
    tokio::time::sleep(Duration::from_millis(lease_ms as u64 + 150)).await;
    let rescued = b
        .webhooks
        .claim_due(now_ms, 10, lease_ms)
        .await
        .expect("claim");
    assert_eq!(
        rescued.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        vec!["evt_abandoned"],
        "node B takes the abandoned job"
    );
    let held = rescued.into_iter().next().expect("one job");
    let done = held.finished(JobState::Done, None, now_ms);
    assert!(b.webhooks.replace(held, done).await.expect("replace"));
    tokio::time::sleep(Duration::from_millis(lease_ms as u64 + 150)).await;
    assert!(
        claim(&b, now_ms, lease_ms).await.is_empty(),
        "a finished job leaves the stream: nothing comes back after another lease"
    );
    assert_eq!(b.webhooks.count(JobState::Done).await.expect("count"), 1);
}
