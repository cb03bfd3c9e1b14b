//! Messages an org actor answers, their replies, and the engine's error type.

use crate::domain::{Metric, PeriodKey, Plan, RequestId};
use crate::quota::Decision;
use crate::store::StoreError;
use actix::Message;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("org not found")]
    OrgNotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The actor is stopping; the registry retries on a fresh one.
    #[error("org actor retired")]
    Retired,
    #[error("the quota engine is unavailable: {0}")]
    Unavailable(String),
}

/// May the org spend `cost` of `metric` now? Answered from memory.
#[derive(Debug, Clone)]
pub struct Check {
    pub metric: Metric,
    pub cost: u64,
}

#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub decision: Decision,
    pub included: u64,
    pub used: u64,
    pub period: PeriodKey,
}

impl Message for Check {
    type Result = Result<CheckOutcome, EngineError>;
}

/// Record `value` of `metric` in `period`, once per `request`.
#[derive(Debug, Clone)]
pub struct Record {
    pub request: RequestId,
    pub fingerprint: [u8; 16],
    pub metric: Metric,
    pub value: u64,
    pub period: PeriodKey,
    pub now_ms: i64,
}

/// The exact JSON body answered for a record (first time and every replay).
#[derive(Debug, Clone)]
pub struct RecordReply {
    pub body: Arc<[u8]>,
    pub replayed: bool,
}

impl Message for Record {
    type Result = Result<RecordReply, EngineError>;
}

/// Ensure the org's counter for `period` exists (rolling forward to it if newer).
#[derive(Debug, Clone)]
pub struct Seed {
    pub period: PeriodKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedReply {
    pub used: u64,
    pub remaining: u64,
    pub period: PeriodKey,
}

impl Message for Seed {
    type Result = Result<SeedReply, EngineError>;
}

/// Move to `period` with fresh counters if the org is in an older one; with `force`,
/// also zero the counters of an org already in it. Replies whether anything changed.
#[derive(Debug, Clone)]
pub struct Rollover {
    pub period: PeriodKey,
    pub force: bool,
}

impl Message for Rollover {
    type Result = Result<bool, EngineError>;
}

/// The org's plan and usage of every metric in the current period.
#[derive(Debug, Clone)]
pub struct Entitlements;

#[derive(Debug, Clone)]
pub struct EntitlementsView {
    pub plan: Arc<Plan>,
    pub period: PeriodKey,
    pub used: BTreeMap<Metric, u64>,
}

impl Message for Entitlements {
    type Result = Result<EntitlementsView, EngineError>;
}

/// A round trip through an actor's mailbox (smoke diagnostics).
#[derive(Debug, Clone)]
pub struct Ping;

impl Message for Ping {
    type Result = Result<(), EngineError>;
}
