//! Recording usage (stories 4.2 and 4.7): one record, or a batch of them. The org's actor
//! orders an org's records and hands them to the store without waiting; the caller
//! awaits the store's answer on its own thread, so every record queued at the same time
//! — a whole batch, across orgs — shares one group commit.

use super::context::RecordOutcome;
use super::engine::QuotaEngine;
use super::messages::{EngineError, PendingRecord, Record, RecordBatch, RecordReply};
use crate::domain::{Catalogue, Metric, OrgId, PeriodKey, RequestId};
use crate::store::{Recorded, UsageRecord};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// A usage record as a caller states it.
#[derive(Debug, Clone)]
pub struct RecordRequest {
    pub metric: Metric,
    pub value: u64,
    pub occurred_at: DateTime<Utc>,
    pub request: RequestId,
}

/// What makes two records "the same payload" for idempotency: the metric, the value and
/// the instant (not its spelling).
fn record_fingerprint(metric: &Metric, value: u64, at: DateTime<Utc>) -> [u8; 16] {
    let nanos = at.timestamp_nanos_opt().unwrap_or(at.timestamp_millis());
    // The bytes of `"{metric}\0{value}\0{nanos}"` (stored fingerprints depend on them),
    // fed to the hash without formatting a string for every event of a batch.
    let (mut v, mut n) = (itoa::Buffer::new(), itoa::Buffer::new());
    let digest = Sha256::new()
        .chain_update(metric.as_str())
        .chain_update(b"\0")
        .chain_update(v.format(value))
        .chain_update(b"\0")
        .chain_update(n.format(nanos))
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// What settling a record needs of it once the record itself went on its way.
#[derive(Clone, Copy)]
pub(super) struct Counted {
    pub(super) value: u64,
    pub(super) metric_index: Option<usize>,
}

pub(super) fn counted(catalogue: &Catalogue, req: &RecordRequest) -> Counted {
    Counted {
        value: req.value,
        metric_index: catalogue.metric_index(&req.metric),
    }
}

/// The store's record for `req`, for a caller that skips the org's actor (`direct.rs`):
/// what the actor would send, with the plan's `included` read from the org's view.
pub(super) fn usage_record(req: RecordRequest, included: u64, now: DateTime<Utc>) -> UsageRecord {
    UsageRecord {
        fingerprint: record_fingerprint(&req.metric, req.value, req.occurred_at),
        period: PeriodKey::containing(req.occurred_at),
        request: req.request,
        metric: req.metric,
        delta: req.value,
        included,
        now_ms: now.timestamp_millis(),
    }
}

/// The actor's message for `req`, taking its ids rather than copying them (a batch's
/// events were copied three times on their way to the store).
fn message(req: RecordRequest, now: DateTime<Utc>) -> Record {
    Record {
        fingerprint: record_fingerprint(&req.metric, req.value, req.occurred_at),
        period: PeriodKey::containing(req.occurred_at),
        request: req.request,
        metric: req.metric,
        value: req.value,
        now_ms: now.timestamp_millis(),
    }
}

impl QuotaEngine {
    fn counted(&self, req: &RecordRequest) -> Counted {
        counted(self.catalogue(), req)
    }

    /// Records usage once per request id; returns once the record is durable (and the
    /// org's view shows it).
    pub async fn record(
        &self,
        org: &OrgId,
        req: RecordRequest,
        now: DateTime<Utc>,
    ) -> Result<RecordReply, EngineError> {
        let counted = self.counted(&req);
        let pending = self.registry().send(org, message(req, now)).await?;
        self.settle(org, pending, counted).await
    }

    /// Records several events of one org, in order, each exactly as `record` would;
    /// the outer error is the org's (unknown, store unavailable), the inner ones each
    /// event's. One message to the org's actor carries them all, and one submission to
    /// the store.
    pub async fn record_batch(
        &self,
        org: &OrgId,
        reqs: Vec<RecordRequest>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<RecordReply, EngineError>>, EngineError> {
        let counted: Vec<Counted> = reqs.iter().map(|r| self.counted(r)).collect();
        let batch = RecordBatch(reqs.into_iter().map(|r| message(r, now)).collect());
        let pending = self.registry().send(org, batch).await?;
        let mut out = Vec::with_capacity(counted.len());
        // One after the other: they share one answer, so the first wait is the only one.
        for (p, c) in pending.into_iter().zip(counted) {
            out.push(self.settle(org, p, c).await);
        }
        Ok(out)
    }

    /// Awaits the store's answer to one record and publishes what it changed.
    pub(super) async fn settle(
        &self,
        org: &OrgId,
        pending: PendingRecord,
        req: Counted,
    ) -> Result<RecordReply, EngineError> {
        let ctx = self.context();
        let (m, counters) = (&ctx.metrics, &ctx.records);
        let answer = match pending.answer.get().await {
            Ok(answer) => answer,
            Err(e) => {
                counters.outcome(RecordOutcome::Failed);
                if !e.is_unreachable() {
                    self.registry()
                        .retire_after_failure(org, pending.generation)
                        .await;
                }
                return Err(e);
            }
        };
        match answer {
            Recorded::New { body, .. } => {
                // A duplicate answered from the actor's memory has no slot: the first
                // one moves the view.
                if let Some((index, _, epoch)) = pending.slot {
                    pending.view.add_used(index, epoch, req.value);
                }
                let outcome = if pending.replayed {
                    RecordOutcome::Duplicate
                } else {
                    m.idempotency_entries.inc();
                    counters.units(req.metric_index, req.value);
                    RecordOutcome::Recorded
                };
                counters.outcome(outcome);
                Ok(RecordReply {
                    body,
                    replayed: pending.replayed,
                })
            }
            Recorded::Replayed { body } => {
                counters.outcome(RecordOutcome::Duplicate);
                Ok(RecordReply {
                    body,
                    replayed: true,
                })
            }
            Recorded::Conflict => {
                counters.outcome(RecordOutcome::Conflict);
                Err(EngineError::Conflict(
                    "request_id was already used with a different payload".into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Fingerprints are stored with every idempotency entry: a record replayed after an
    /// upgrade must hash to what the older build stored, or it would count as a conflict.
    #[test]
    fn fingerprint_hashes_the_same_bytes_as_before() {
        let metric = Metric::parse("api_call").unwrap();
        for (value, at) in [
            (1, Utc.with_ymd_and_hms(2026, 12, 3, 7, 0, 0).unwrap()),
            (u64::MAX, Utc.timestamp_opt(-86_400, 5).unwrap()),
        ] {
            let nanos = at.timestamp_nanos_opt().unwrap();
            let before = Sha256::digest(format!("{metric}\0{value}\0{nanos}"));
            assert_eq!(record_fingerprint(&metric, value, at), before[..16]);
        }
    }
}
