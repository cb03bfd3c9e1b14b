//! The Stigg outbox's job payload: the latest desired provisioning of one org (the job
//! id is the org id, so a newer request replaces an older one), and the progress an
//! attempt made (the customer step is not repeated once done).

use super::jobs::Job;
use serde::{Deserialize, Serialize};

/// Schema version of a stored Stigg job.
pub const VERSION: u8 = 1;
pub const TREE: &str = "stigg_jobs";

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
pub struct StiggPayload {
    pub org: String,
    pub name: String,
    pub email: Option<String>,
    pub stripe_customer_id: String,
    pub stripe_subscription_id: String,
    pub plan_code: String,
    pub stigg_plan_id: String,
    pub strategy: Strategy,
    /// Bumped by every new request for the org.
    pub version: u64,
    /// The Stigg customer exists (provisionCustomer succeeded or reported a duplicate).
    pub customer_done: bool,
    pub stigg_customer_id: Option<String>,
    /// The correlation id of the request that asked for this job (for the logs).
    pub correlation_id: String,
    pub updated_ms: i64,
}

pub type StiggJob = Job<StiggPayload>;
