//! Recording usage once per request id: the idempotency look-up (memory, then the filter,
//! then the store), the count, and the writes submitted to the group commit.
//!
//! The store look-up reads sled on this arbiter, and only when the in-memory filter says
//! the id may have been stored: a read of a cached page, and since checks never queue
//! behind it (they read the view) a slow read delays only records.

use super::{ready_durable, Known, OrgActor};
use crate::domain::{Metric, PeriodKey, RequestId};
use crate::quota::messages::{EngineError, PendingRecord, Record};
use crate::store::ledger::{self, IdemEntry};
use crate::store::StoreError;
use actix::prelude::*;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordBody {
    period_key: String,
    used: u64,
    remaining: u64,
}

impl OrgActor {
    /// The counter of `metric` in `period`, reading the store for a period not in memory.
    pub(super) fn counter(
        &mut self,
        period: PeriodKey,
        metric: &Metric,
    ) -> Result<u64, StoreError> {
        if period == self.state.period {
            return Ok(self.current.get(metric).copied().unwrap_or(0));
        }
        let key = (period, metric.clone());
        if let Some(used) = self.other.get(&key) {
            return Ok(*used);
        }
        self.shared.store.barrier()?;
        let used = ledger::get_counter(&self.shared.store.ledger, &self.org, period, metric)?;
        self.other.insert(key, used);
        Ok(used)
    }

    fn set_counter(&mut self, period: PeriodKey, metric: &Metric, used: u64) {
        if period == self.state.period {
            self.current.insert(metric.clone(), used);
            if let Some(i) = self.shared.catalogue.metric_index(metric) {
                self.view.publish_used(i, used);
            }
        } else {
            self.other.insert((period, metric.clone()), used);
        }
    }

    /// Keeps at most the configured number of answered ids, never dropping one whose
    /// write is still in flight (a duplicate must find it in memory until it is durable).
    fn remember(&mut self, request: RequestId, known: Known) {
        if self.recent.insert(request.clone(), known).is_none() {
            self.recent_order.push_back(request);
        }
        let cap = self.shared.recent_capacity;
        while self.recent_order.len() > cap {
            let Some(oldest) = self.recent_order.front() else {
                break;
            };
            if self.recent.get(oldest).is_some_and(Known::in_flight) {
                break;
            }
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    fn reply(
        known: &Known,
        fingerprint: &[u8; 16],
        replayed: bool,
    ) -> Result<PendingRecord, EngineError> {
        if &known.fingerprint != fingerprint {
            return Err(EngineError::Conflict(
                "request_id was already used with a different payload".into(),
            ));
        }
        Ok(PendingRecord {
            body: known.body.clone(),
            replayed,
            durable: known.durable.clone(),
        })
    }

    pub(super) fn record(
        &mut self,
        msg: Record,
        ctx: &mut Context<Self>,
    ) -> Result<PendingRecord, EngineError> {
        if let Some(known) = self.recent.get(&msg.request) {
            return Self::reply(known, &msg.fingerprint, true);
        }
        let key = ledger::idem_key(&self.org, &msg.request);
        let stored = match self.shared.idem_filter.may_contain(&key) {
            true => {
                // Never answer from writes no successful flush covered.
                self.shared.store.barrier()?;
                ledger::get_idem(&self.shared.store.ledger, &self.org, &msg.request)?
            }
            false => None,
        };
        if let Some(stored) = stored {
            let known = Known {
                fingerprint: stored.fingerprint,
                body: stored.body.into(),
                durable: ready_durable(),
            };
            let reply = Self::reply(&known, &msg.fingerprint, true);
            self.remember(msg.request, known);
            return reply;
        }
        let used = self
            .counter(msg.period, &msg.metric)?
            .saturating_add(msg.value);
        self.set_counter(msg.period, &msg.metric, used);
        let body = RecordBody {
            period_key: msg.period.to_string(),
            used,
            remaining: self.plan.included(&msg.metric).saturating_sub(used),
        };
        let entry = IdemEntry {
            fingerprint: msg.fingerprint,
            body: serde_json::to_vec(&body)
                .map_err(|e| EngineError::Internal(format!("record body: {e}")))?,
            created_ms: msg.now_ms,
        };
        // Into the filter before the write is submitted: a duplicate that arrives after
        // this actor retires must find it through the store.
        self.shared.idem_filter.insert(&key);
        let mut ops = vec![
            ledger::put_counter(&self.org, msg.period, &msg.metric, used),
            ledger::put_idem(&self.org, &msg.request, &entry),
        ];
        if self.state_dirty {
            ops.extend(self.state_op());
        }
        let known = Known {
            fingerprint: entry.fingerprint,
            body: entry.body.into(),
            durable: self.submit(ctx, ops),
        };
        let reply = Self::reply(&known, &msg.fingerprint, false);
        self.remember(msg.request, known);
        reply
    }
}
