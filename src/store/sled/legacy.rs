//! Upgrades data written by earlier releases, once, when the store opens.
//!
//! Release 0.1's webhook queue (`webhooks` tree) and Stigg outbox (`stigg_outbox` tree)
//! had one layout each; both are now [`super::jobs`] queues. Every stored event and job
//! is moved into its new tree with its state, attempts and timing, then the old tree is
//! dropped, all before the service starts serving. A crash halfway is safe: moving is
//! an insert-if-absent, and the old tree is dropped only after everything moved.

use super::codec::decode;
use super::jobs::JobTree;
use crate::store::jobs::{Inserted, Job, JobState};
use crate::store::stigg_jobs::{self, StiggPayload, Strategy};
use crate::store::webhook_jobs::{self, WebhookPayload};
use crate::store::StoreResult;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Deserialize)]
enum OldEventState {
    Queued,
    Processed,
    Dead,
    Ignored,
}

#[derive(Deserialize)]
struct OldWebhookEvent {
    id: String,
    event_type: String,
    raw: Vec<u8>,
    seq: u64,
    received_ms: i64,
    state: OldEventState,
    attempts: u32,
    last_error: Option<String>,
    next_attempt_ms: i64,
    done_ms: Option<i64>,
}

#[derive(Deserialize)]
enum OldJobState {
    Pending,
    Provisioned,
    Failed,
}

#[derive(Deserialize)]
struct OldProvisionJob {
    org: String,
    name: String,
    email: Option<String>,
    stripe_customer_id: String,
    stripe_subscription_id: String,
    plan_code: String,
    stigg_plan_id: String,
    strategy: Strategy,
    state: OldJobState,
    version: u64,
    attempts: u32,
    last_error: Option<String>,
    next_attempt_ms: i64,
    customer_done: bool,
    stigg_customer_id: Option<String>,
    created_ms: i64,
    updated_ms: i64,
    correlation_id: String,
}

fn old_values<T: DeserializeOwned>(
    tree: &sled::Tree,
    prefix: &[u8],
    name: &'static str,
) -> impl Iterator<Item = StoreResult<T>> {
    tree.scan_prefix(prefix)
        .values()
        .map(move |v| decode(name, 1, &v?))
}

fn move_all<P: Serialize + DeserializeOwned>(
    jobs: impl Iterator<Item = StoreResult<Job<P>>>,
    into: &JobTree<P>,
) -> StoreResult<u64> {
    let mut moved = 0;
    for job in jobs {
        if let Inserted::New = into.insert_new(&job?)? {
            moved += 1;
        }
    }
    Ok(moved)
}

/// Moves release 0.1's queues into the job trees; a no-op once done.
pub fn migrate(
    db: &sled::Db,
    webhook_tree: &sled::Tree,
    stigg_tree: &sled::Tree,
) -> StoreResult<()> {
    let names = db.tree_names();
    let has = |n: &str| names.iter().any(|t| t.as_ref() == n.as_bytes());
    if has("webhooks") {
        let old = db.open_tree("webhooks")?;
        let queue = JobTree::bare(
            webhook_tree.clone(),
            webhook_jobs::TREE,
            webhook_jobs::VERSION,
        )?;
        let jobs = old_values::<OldWebhookEvent>(&old, b"e\0", "webhooks").map(|e| {
            e.map(|e| Job {
                id: e.id,
                seq: e.seq,
                state: match e.state {
                    OldEventState::Queued => JobState::Queued,
                    OldEventState::Processed => JobState::Done,
                    OldEventState::Dead => JobState::Dead,
                    OldEventState::Ignored => JobState::Ignored,
                },
                payload: WebhookPayload {
                    event_type: e.event_type,
                    raw: e.raw,
                },
                attempts: e.attempts,
                failures: e.attempts,
                outage_since_ms: None,
                last_error: e.last_error,
                next_attempt_ms: e.next_attempt_ms,
                created_ms: e.received_ms,
                done_ms: e.done_ms,
            })
        });
        let moved = move_all(jobs, &queue)?;
        db.flush()?;
        db.drop_tree("webhooks")?;
        tracing::info!(moved, "webhook queue upgraded to the job-queue layout");
    }
    if has("stigg_outbox") {
        let old = db.open_tree("stigg_outbox")?;
        let queue = JobTree::bare(stigg_tree.clone(), stigg_jobs::TREE, stigg_jobs::VERSION)?;
        let mut seq = 0;
        let jobs = old_values::<OldProvisionJob>(&old, b"j\0", "stigg_outbox").map(|j| {
            seq += 1;
            j.map(|j| Job {
                id: j.org.clone(),
                seq,
                state: match j.state {
                    OldJobState::Pending => JobState::Queued,
                    OldJobState::Provisioned => JobState::Done,
                    OldJobState::Failed => JobState::Dead,
                },
                attempts: j.attempts,
                failures: 0,
                outage_since_ms: None,
                last_error: j.last_error,
                next_attempt_ms: j.next_attempt_ms,
                created_ms: j.created_ms,
                done_ms: None,
                payload: StiggPayload {
                    org: j.org,
                    name: j.name,
                    email: j.email,
                    stripe_customer_id: j.stripe_customer_id,
                    stripe_subscription_id: j.stripe_subscription_id,
                    plan_code: j.plan_code,
                    stigg_plan_id: j.stigg_plan_id,
                    strategy: j.strategy,
                    version: j.version,
                    customer_done: j.customer_done,
                    stigg_customer_id: j.stigg_customer_id,
                    correlation_id: j.correlation_id,
                    updated_ms: j.updated_ms,
                },
            })
        });
        let moved = move_all(jobs, &queue)?;
        db.flush()?;
        db.drop_tree("stigg_outbox")?;
        tracing::info!(moved, "Stigg outbox upgraded to the job-queue layout");
    }
    Ok(())
}
