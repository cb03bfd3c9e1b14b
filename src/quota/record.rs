//! Recording usage (stories 4.2 and 4.7): one record, or a batch of them. The org's actor
//! orders an org's records and hands them to the store without waiting; the caller
//! awaits the store's answer on its own thread, so every record queued at the same time
//! — a whole batch, across orgs — shares one group commit.

use super::engine::QuotaEngine;
use super::messages::{EngineError, PendingRecord, Record, RecordBatch, RecordReply};
use crate::domain::{Metric, OrgId, PeriodKey, RequestId};
use crate::store::Recorded;
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
    let digest = Sha256::digest(format!("{metric}\0{value}\0{nanos}"));
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

fn message(req: &RecordRequest, now: DateTime<Utc>) -> Record {
    Record {
        fingerprint: record_fingerprint(&req.metric, req.value, req.occurred_at),
        period: PeriodKey::containing(req.occurred_at),
        request: req.request.clone(),
        metric: req.metric.clone(),
        value: req.value,
        now_ms: now.timestamp_millis(),
    }
}

impl QuotaEngine {
    /// Records usage once per request id; returns once the record is durable (and the
    /// org's view shows it).
    pub async fn record(
        &self,
        org: &OrgId,
        req: RecordRequest,
        now: DateTime<Utc>,
    ) -> Result<RecordReply, EngineError> {
        let pending = self.registry().send(org, message(&req, now)).await?;
        self.settle(org, pending, &req).await
    }

    /// Records several events of one org, in order, each exactly as `record` would;
    /// the outer error is the org's (unknown, store unavailable), the inner ones each
    /// event's. One message to the org's actor carries them all, and one submission to
    /// the store.
    pub async fn record_batch(
        &self,
        org: &OrgId,
        reqs: &[RecordRequest],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<RecordReply, EngineError>>, EngineError> {
        let batch = RecordBatch(reqs.iter().map(|r| message(r, now)).collect());
        let pending = self.registry().send(org, batch).await?;
        let mut out = Vec::with_capacity(reqs.len());
        // One after the other: they share one answer, so the first wait is the only one.
        for (p, req) in pending.into_iter().zip(reqs) {
            out.push(self.settle(org, p, req).await);
        }
        Ok(out)
    }

    /// Awaits the store's answer to one record and publishes what it changed.
    async fn settle(
        &self,
        org: &OrgId,
        pending: PendingRecord,
        req: &RecordRequest,
    ) -> Result<RecordReply, EngineError> {
        let m = &self.context().metrics;
        let answer = match pending.answer.get().await {
            Ok(answer) => answer,
            Err(e) => {
                m.usage_records.with_label_values(&["failed"]).inc();
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
                    "duplicate"
                } else {
                    m.idempotency_entries.inc();
                    m.usage_units
                        .with_label_values(&[req.metric.as_str()])
                        .inc_by(req.value);
                    "recorded"
                };
                m.usage_records.with_label_values(&[outcome]).inc();
                Ok(RecordReply {
                    body,
                    replayed: pending.replayed,
                })
            }
            Recorded::Replayed { body } => {
                m.usage_records.with_label_values(&["duplicate"]).inc();
                Ok(RecordReply {
                    body,
                    replayed: true,
                })
            }
            Recorded::Conflict => {
                m.usage_records.with_label_values(&["conflict"]).inc();
                Err(EngineError::Conflict(
                    "request_id was already used with a different payload".into(),
                ))
            }
        }
    }
}
