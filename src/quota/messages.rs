//! Messages an org actor answers, their replies, and the engine's error type.

use super::view::OrgView;
use crate::domain::{BillingRecord, Metric, PeriodKey, Plan, PlanCode, RequestId};
use crate::store::{Recorded, StoreError};
use actix::Message;
use futures_util::future::{BoxFuture, Shared};
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
    /// A bug or an impossible state (never the caller's fault).
    #[error("quota engine: {0}")]
    Internal(String),
    /// The engine's own data could not be encoded (a bug, like `Internal`).
    #[error("quota engine: {what}: {cause}")]
    Encode {
        what: &'static str,
        #[source]
        cause: Arc<serde_json::Error>,
    },
    /// The actor system is stopping (shutdown).
    #[error("the quota engine is shutting down")]
    ShuttingDown,
}

impl EngineError {
    /// The store did not answer (a network store in an outage). A record that failed
    /// so may or may not have been applied; the next sync from the shared store tells,
    /// so the org's actor keeps serving from memory instead of retiring.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EngineError::Store(s) if s.is_unreachable())
    }
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

/// What the store answered for one submission of an org's records (a record, or a
/// batch's records of that org), once durable, in order: shared by the callers, the
/// actor's failure watch and every duplicate that arrives while it is in flight. One per
/// submission, not per record: a batch's hundred records cost one hand-over, one future
/// and one wake-up of the actor.
pub type Answers = Shared<BoxFuture<'static, Arc<[Result<Recorded, EngineError>]>>>;

/// One record's answer: its place in a submission's answers.
#[derive(Clone)]
pub struct Answer {
    answers: Answers,
    index: usize,
}

impl Answer {
    pub fn new(answers: Answers, index: usize) -> Self {
        Self { answers, index }
    }

    /// The store's answer, once durable.
    pub async fn get(self) -> Result<Recorded, EngineError> {
        // A clone is awaited, so this one can still tell (`peek`) that it was answered.
        pick(&self.answers.clone().await, self.index)
    }

    /// The answer, if it has arrived (without polling: an answer dropped unanswered
    /// leaves a task to drive the submission to its end, see `Drop`).
    pub fn settled(&self) -> Option<Result<Recorded, EngineError>> {
        Some(pick(self.answers.peek()?, self.index))
    }
}

/// A submission's answer is what retires the actor after a failed write, and what lets
/// the actor forget the request (one never driven to its end would stay "in flight" in
/// its memory for good). So one dropped before it was answered — its caller cancelled,
/// or the actor's reply never received — leaves a task to drive it.
impl Drop for Answer {
    fn drop(&mut self) {
        if self.answers.peek().is_some() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let answers = self.answers.clone();
            runtime.spawn(async move {
                let _ = answers.await;
            });
        }
    }
}

/// Record `index` of a submission's answers.
fn pick(all: &[Result<Recorded, EngineError>], index: usize) -> Result<Recorded, EngineError> {
    all.get(index).cloned().unwrap_or_else(|| {
        Err(EngineError::Internal(format!(
            "the store answered {} records of a submission, not record {index}",
            all.len()
        )))
    })
}

/// Resolves once a commit is durable.
pub type Durable = Shared<BoxFuture<'static, Result<(), EngineError>>>;

/// The actor's answer to a record: the store's answer to await (on the caller's own
/// thread, so the acknowledgement goes from the store straight to the request), and
/// where to publish the new total.
#[derive(Clone)]
pub struct PendingRecord {
    pub answer: Answer,
    /// Answered from the actor's memory of recent requests (a duplicate).
    pub replayed: bool,
    pub view: Arc<OrgView>,
    /// The metric's view slot, the period the view was in, and the slot's epoch.
    pub slot: Option<(usize, PeriodKey, u64)>,
    /// The answering actor's generation (to retire it if the store failed).
    pub generation: u64,
}

/// The store failed a write this actor sent: its memory may be behind what the store
/// applied, so it retires (the next request loads the org afresh). Answered once done,
/// so the failing request's caller cannot reach the old actor again.
#[derive(Debug, Clone)]
pub struct RetireAfterFailure {
    pub generation: u64,
    /// What failed, to log once (the caller that asks after its own failure has it).
    pub error: Option<EngineError>,
}

impl Message for RetireAfterFailure {
    type Result = ();
}

/// A record's reply once durable.
#[derive(Debug, Clone)]
pub struct RecordReply {
    pub body: Arc<[u8]>,
    pub replayed: bool,
}

impl Message for Record {
    type Result = Result<PendingRecord, EngineError>;
}

/// Several records of one org (a `record.batch`), handled in order in one message.
#[derive(Debug, Clone)]
pub struct RecordBatch(pub Vec<Record>);

impl Message for RecordBatch {
    type Result = Result<Vec<PendingRecord>, EngineError>;
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
/// `release`: the sweep started this actor only for this; retire it afterwards.
#[derive(Debug, Clone)]
pub struct Rollover {
    pub period: PeriodKey,
    pub force: bool,
    pub release: bool,
}

/// Bring the org into the clock's period if it is still in an older one (a check found
/// its view lagging).
#[derive(Debug, Clone)]
pub struct CatchUp;

impl Message for CatchUp {
    type Result = Result<(), EngineError>;
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

/// The org's billing mirror as the actor holds it (including writes still in flight).
#[derive(Debug, Clone)]
pub struct ReadBilling;

impl Message for ReadBilling {
    type Result = Result<BillingRecord, EngineError>;
}

/// Replace the org's billing mirror; the plan in force follows at once (memory and the
/// published view), and both are written in one batch.
#[derive(Debug, Clone)]
pub struct ApplyBilling {
    pub record: BillingRecord,
    /// The billing lease's token the write is fenced with (`LedgerWrite::Fence`).
    pub fence: Option<String>,
}

/// The plan in force after an [`ApplyBilling`], to be trusted once `durable` resolves.
#[derive(Clone)]
pub struct BillingApplied {
    pub plan: PlanCode,
    pub durable: Durable,
}

impl Message for ApplyBilling {
    type Result = Result<BillingApplied, EngineError>;
}

/// The billing mirror as another node stored it (a shared store): taken as the actor's
/// own, with the plan it implies; the mirror itself is not written back.
#[derive(Debug, Clone)]
pub struct AdoptBilling(pub BillingRecord);

impl Message for AdoptBilling {
    type Result = Result<(), EngineError>;
}
