//! Recording usage: the actor remembers the requests it sent to the store, so a
//! duplicate that arrives while the first is in flight (or soon after) shares its answer
//! instead of going to the store again. The store counts each request id exactly once;
//! the actor only orders and caches.

use super::{Known, OrgActor};
use crate::domain::RequestId;
use crate::quota::messages::{EngineError, PendingRecord, Record};
use crate::store::{Recorded, UsageRecord};
use actix::prelude::*;
use futures_util::FutureExt;

impl OrgActor {
    /// Keeps at most the configured number of answered ids, never dropping one whose
    /// answer is still in flight (a duplicate must find it in memory until it is
    /// durable).
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

    /// What a known request answers a duplicate: its answer, unless it is not a plain
    /// replay of the same payload (another payload, or a conflict or failure), which
    /// the store must decide afresh.
    fn known_answer(&self, msg: &Record) -> Option<PendingRecord> {
        let known = self.recent.get(&msg.request)?;
        if known.fingerprint != msg.fingerprint {
            return None;
        }
        let settled = known.answer.clone().now_or_never();
        if matches!(settled, Some(Err(_)) | Some(Ok(Recorded::Conflict))) {
            return None;
        }
        Some(PendingRecord {
            answer: known.answer.clone(),
            replayed: true,
            view: self.view.clone(),
            slot: None,
            generation: self.generation,
        })
    }

    pub(super) fn record(
        &mut self,
        msg: Record,
        ctx: &mut Context<Self>,
    ) -> Result<PendingRecord, EngineError> {
        if let Some(pending) = self.known_answer(&msg) {
            return Ok(pending);
        }
        let index = self.shared.catalogue.metric_index(&msg.metric);
        let period = self.view.period();
        let slot = index.and_then(|i| Some((i, period, self.view.epoch(i)?)));
        let usage = UsageRecord {
            period: msg.period,
            metric: msg.metric.clone(),
            delta: msg.value,
            request: msg.request.clone(),
            fingerprint: msg.fingerprint,
            included: self.plan.included(&msg.metric),
            now_ms: msg.now_ms,
        };
        let stored = self.shared.backend.ledger.record(&self.org, usage);
        let answer = async move { stored.await.map_err(EngineError::from) }
            .boxed()
            .shared();
        self.remember(
            msg.request.clone(),
            Known {
                fingerprint: msg.fingerprint,
                answer: answer.clone(),
            },
        );
        // A failed write may still have been applied (its flush failed): the view can
        // be behind the store, so the actor retires even if its caller has gone.
        ctx.spawn(
            answer
                .clone()
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Err(e) if !e.is_unreachable() => act.retire_after_failure(&e, ctx),
                    _ => {}
                }),
        );
        Ok(PendingRecord {
            answer,
            replayed: false,
            view: self.view.clone(),
            // Only a record of the view's own period moves the view.
            slot: slot.filter(|(_, p, _)| *p == msg.period),
            generation: self.generation,
        })
    }
}
