//! The values the storage interface speaks in, the same for every backend: an org's
//! record and ledger state, the usage write (a delta, never an absolute value, so a
//! store shared by several nodes can apply it with an increment) and what recording it
//! answered, API keys, DebugLog entries.

use crate::domain::{BillingRecord, KeyId, Metric, OrgId, PeriodKey, PlanCode, RequestId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// An org's quota state: the plan in force and its current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgState {
    pub plan: PlanCode,
    pub period: PeriodKey,
}

/// What the store holds of an org's ledger: its state (if ever stored), its billing
/// mirror, and one period's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredLedger {
    pub state: Option<OrgState>,
    pub billing: Option<BillingRecord>,
    pub counters: HashMap<Metric, u64>,
}

/// One usage record to count once per (org, request id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub period: PeriodKey,
    pub metric: Metric,
    pub delta: u64,
    pub request: RequestId,
    /// What makes a retry "the same payload" (metric, value, instant).
    pub fingerprint: [u8; 16],
    /// The plan's included amount, for the answer's `remaining`.
    pub included: u64,
    /// When the record was made (the idempotency entry's age for the purge).
    pub now_ms: i64,
}

/// What recording answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Counted now: the exact answer body, and the counter's total after it.
    New { body: Arc<[u8]>, total: u64 },
    /// Counted before: the body answered the first time.
    Replayed { body: Arc<[u8]> },
    /// The request id was used before with another payload; nothing counted.
    Conflict,
}

/// The answer body of a usage record (`{periodKey, used, remaining}`), exactly as every
/// backend writes it, so a replay is byte-identical whichever node answers it.
pub fn record_body(period: PeriodKey, total: u64, included: u64) -> Arc<[u8]> {
    // Built from bytes: every record and every batch event writes one, and `format!`
    // was a twentieth of a batch's instructions. Same text as the format it replaced
    // (`{"periodKey":"YYYY-MM","used":N,"remaining":N}`); a test holds them equal.
    let (mut used, mut remaining) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (used, remaining) = (
        used.format(total),
        remaining.format(included.saturating_sub(total)),
    );
    let mut out = Vec::with_capacity(48 + used.len() + remaining.len());
    out.extend_from_slice(b"{\"periodKey\":\"");
    match period.digits() {
        Some(d) => out.extend_from_slice(&d),
        None => out.extend_from_slice(period.to_string().as_bytes()),
    }
    out.extend_from_slice(b"\",\"used\":");
    out.extend_from_slice(used.as_bytes());
    out.extend_from_slice(b",\"remaining\":");
    out.extend_from_slice(remaining.as_bytes());
    out.push(b'}');
    out.into()
}

/// One write of an org's ledger, committed with the others of its call atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerWrite {
    State(OrgState),
    Billing(Box<BillingRecord>),
    /// Adds `delta` to a counter: units consumed (records go through `record`), or
    /// given back when negative; a counter never goes below zero.
    Usage {
        period: PeriodKey,
        metric: Metric,
        delta: i64,
    },
    /// Set a counter to zero (a forced reset).
    Zero {
        period: PeriodKey,
        metric: Metric,
    },
    /// The call's other writes apply only while the org's billing lease
    /// (`OrgDirectory::lease`) is held with this token, checked atomically with them; a
    /// store whose leases are one process's own (sled, memory) has nothing to check.
    /// A node that lost its lease (paused past it, partitioned) cannot overwrite what the
    /// next holder wrote: the commit fails with `StoreError::Fenced`.
    Fence(String),
}

/// The answer to a request for the period sweep's lease (several nodes share a store:
/// one of them sweeps each period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepLease {
    /// The caller holds it (with this token) and sweeps.
    Held(String),
    /// Another node holds it and sweeps now.
    Busy,
    /// The sweep into that period is done.
    Done,
}

/// What a purge of old idempotency entries did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    pub purged: u64,
    pub kept: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub org_id: OrgId,
    pub name: String,
    pub owner_user_id: String,
    pub created_ms: i64,
}

/// What an org creation answered, kept under its `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateReplay {
    pub fingerprint: [u8; 32],
    pub body: Vec<u8>,
}

/// What creating an org did.
#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key was used before; here is what it answered then.
    Replayed(CreateReplay),
}

/// An org API key: only a SHA-256 of the secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: KeyId,
    pub org_id: OrgId,
    pub secret_sha256: [u8; 32],
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    /// The last four characters of the plaintext key.
    pub last4: String,
}

/// One request in the DebugLog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebugEntry {
    pub at_ms: i64,
    pub method: String,
    pub route: String,
    pub status: u16,
    pub latency_us: u64,
    pub correlation_id: String,
    pub request_id: String,
    pub org_id: Option<String>,
}

#[cfg(test)]
mod record_body_tests {
    use super::*;

    /// Stored answers are replayed byte for byte: the body must not change its text.
    #[test]
    fn record_body_is_the_text_it_always_was() {
        for (index, total, included) in [
            (2026 * 12 + 11, 0, 1_000),
            (2026 * 12, 1_500, 1_000),
            (7 * 12 + 8, u64::MAX, u64::MAX),
            (12_345 * 12 + 2, 42, 43),
        ] {
            let period = PeriodKey::from_index(index);
            let before = format!(
                "{{\"periodKey\":\"{period}\",\"used\":{total},\"remaining\":{}}}",
                included.saturating_sub(total)
            );
            assert_eq!(&*record_body(period, total, included), before.as_bytes());
        }
        assert_eq!(
            &*record_body(PeriodKey::from_index(2026 * 12 + 2), 7, 10),
            br#"{"periodKey":"2026-03","used":7,"remaining":3}"#
        );
    }
}
