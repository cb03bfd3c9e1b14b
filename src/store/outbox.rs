//! The `stigg_outbox` tree: the durable outbox of Stigg provisioning — one job per org
//! (the latest desired state wins), plus an index of the pending ones, so a request
//! acknowledged or enqueued survives a crash and the supervisor finds what is left.
//!
//! Keys: `j\0{org}` → [`ProvisionJob`]; `p\0{org}` → empty (pending index).
//! A job and its index entry change in one transaction; an outcome is stored only if the
//! job is still the version that was worked on (a newer request is never overwritten by
//! the result of an older one).

use super::codec::{decode, encode};
use super::{transaction_result, StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;

const TREE: &str = "stigg_outbox";
const JOB_V: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Pending,
    Provisioned,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Provisioned => "provisioned",
            JobState::Failed => "failed",
        }
    }
}

/// When a provisioned plan change takes effect in Stigg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    Immediate,
    EndOfBillingPeriod,
}

impl Strategy {
    pub fn as_graphql(self) -> &'static str {
        match self {
            Strategy::Immediate => "IMMEDIATE",
            Strategy::EndOfBillingPeriod => "END_OF_BILLING_PERIOD",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionJob {
    pub org: String,
    pub name: String,
    pub email: Option<String>,
    pub stripe_customer_id: String,
    pub stripe_subscription_id: String,
    pub plan_code: String,
    pub stigg_plan_id: String,
    pub strategy: Strategy,
    pub state: JobState,
    /// Bumped by every new request for the org.
    pub version: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_ms: i64,
    /// The Stigg customer exists (provisionCustomer succeeded or reported a duplicate).
    pub customer_done: bool,
    pub stigg_customer_id: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The correlation id of the request that asked for this job (for the logs).
    pub correlation_id: String,
}

fn job_key(org: &str) -> Vec<u8> {
    let mut k = b"j\0".to_vec();
    k.extend_from_slice(org.as_bytes());
    k
}

fn pending_key(org: &str) -> Vec<u8> {
    let mut k = b"p\0".to_vec();
    k.extend_from_slice(org.as_bytes());
    k
}

pub fn get(tree: &sled::Tree, org: &str) -> StoreResult<Option<ProvisionJob>> {
    tree.get(job_key(org))?
        .map(|v| decode(TREE, JOB_V, &v))
        .transpose()
}

/// Stores `job` if the stored job's version is `expected` (`None`: no job stored yet);
/// returns whether it did.
pub fn put_if_version(
    tree: &sled::Tree,
    expected: Option<u64>,
    job: &ProvisionJob,
) -> StoreResult<bool> {
    let key = job_key(&job.org);
    let value = encode(JOB_V, job);
    transaction_result(tree.transaction(|t| {
        let current = match t.get(&key)? {
            Some(v) => Some(
                decode::<ProvisionJob>(TREE, JOB_V, &v)
                    .map_err(ConflictableTransactionError::Abort)?
                    .version,
            ),
            None => None,
        };
        if current != expected {
            return Ok(false);
        }
        t.insert(key.as_slice(), value.as_slice())?;
        if job.state == JobState::Pending {
            t.insert(pending_key(&job.org), &[][..])?;
        } else {
            t.remove(pending_key(&job.org))?;
        }
        Ok(true)
    }))
}

/// Pending jobs (any order; at most `limit`).
pub fn pending(tree: &sled::Tree, limit: usize) -> StoreResult<Vec<ProvisionJob>> {
    let mut out = Vec::new();
    for key in tree.scan_prefix(b"p\0").keys().take(limit) {
        let key = key?;
        let org = std::str::from_utf8(&key[2..]).map_err(|e| StoreError::Corrupt {
            tree: TREE,
            problem: e.to_string(),
        })?;
        if let Some(job) = get(tree, org)? {
            out.push(job);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(version: u64, state: JobState) -> ProvisionJob {
        ProvisionJob {
            org: "org_1".into(),
            name: "Acme".into(),
            email: None,
            stripe_customer_id: "cus_1".into(),
            stripe_subscription_id: "sub_1".into(),
            plan_code: "plan_pro_m".into(),
            stigg_plan_id: "plan-pro".into(),
            strategy: Strategy::Immediate,
            state,
            version,
            attempts: 0,
            last_error: None,
            next_attempt_ms: 0,
            customer_done: false,
            stigg_customer_id: None,
            created_ms: 0,
            updated_ms: 0,
            correlation_id: "c".into(),
        }
    }

    #[test]
    fn versions_guard_outcomes_and_the_pending_index_follows_the_state() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = db.open_tree(TREE).unwrap();
        assert!(put_if_version(&t, None, &job(1, JobState::Pending)).unwrap());
        assert!(!put_if_version(&t, None, &job(1, JobState::Pending)).unwrap());
        assert_eq!(pending(&t, 10).unwrap().len(), 1);
        // A newer request replaces the job; the old attempt's outcome is refused.
        assert!(put_if_version(&t, Some(1), &job(2, JobState::Pending)).unwrap());
        assert!(!put_if_version(&t, Some(1), &job(1, JobState::Provisioned)).unwrap());
        assert!(put_if_version(&t, Some(2), &job(2, JobState::Provisioned)).unwrap());
        assert!(pending(&t, 10).unwrap().is_empty());
        assert_eq!(
            get(&t, "org_1").unwrap().unwrap().state,
            JobState::Provisioned
        );
    }
}
