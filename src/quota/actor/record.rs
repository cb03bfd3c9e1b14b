//! Recording usage: the actor remembers the requests it sent to the store, so a
//! duplicate that arrives while the first is in flight (or soon after) shares its answer
//! instead of going to the store again. The store counts each request id exactly once;
//! the actor only orders and caches.

use super::{Known, OrgActor};
use crate::domain::{PeriodKey, RequestId};
use crate::quota::messages::{
    Answer, Answers, EngineError, PendingRecord, Record, RetireAfterFailure,
};
use crate::store::{Recorded, UsageRecord};
use actix::prelude::*;
use futures_util::FutureExt;
use std::sync::Arc;

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
        if matches!(
            known.answer.settled(),
            Some(Err(_)) | Some(Ok(Recorded::Conflict))
        ) {
            return None;
        }
        Some(self.pending(known.answer.clone(), true, None))
    }

    fn pending(
        &self,
        answer: Answer,
        replayed: bool,
        slot: Option<(usize, PeriodKey, u64)>,
    ) -> PendingRecord {
        PendingRecord {
            answer,
            replayed,
            view: self.view.clone(),
            slot,
            generation: self.generation,
        }
    }

    /// Records `msgs` in order, each as if alone: a request this actor knows is answered
    /// from memory (so is a duplicate of an earlier record of the same message); the
    /// rest go to the store in one submission.
    pub(super) fn record_many(
        &mut self,
        msgs: Vec<Record>,
        ctx: &mut Context<Self>,
    ) -> Vec<PendingRecord> {
        let mut from = Vec::with_capacity(msgs.len());
        // Positions in `msgs` of the records the store decides; their slot is their
        // place in this list.
        let mut fresh: Vec<usize> = Vec::with_capacity(msgs.len());
        {
            // The latest slot of each request id of this message, as `recent` will hold it.
            let mut latest: foldhash::HashMap<&RequestId, usize> = Default::default();
            for (i, msg) in msgs.iter().enumerate() {
                match latest.get(&msg.request) {
                    Some(&slot) if msgs[fresh[slot]].fingerprint == msg.fingerprint => {
                        from.push(From::Earlier(slot));
                        continue;
                    }
                    Some(_) => {}
                    None => {
                        if let Some(pending) = self.known_answer(msg) {
                            from.push(From::Memory(pending));
                            continue;
                        }
                    }
                }
                if msgs.len() > 1 {
                    latest.insert(&msg.request, fresh.len());
                }
                from.push(From::Store(fresh.len()));
                fresh.push(i);
            }
        }
        let answers = (!fresh.is_empty()).then(|| self.submit(&msgs, &fresh, ctx));
        let period = self.view.period();
        let mut out = Vec::with_capacity(msgs.len());
        for (msg, from) in msgs.into_iter().zip(from) {
            let pending = match (from, &answers) {
                (From::Memory(pending), _) => pending,
                (From::Store(slot), Some(answers)) => {
                    let answer = Answer::new(answers.clone(), slot);
                    // Only a record of the view's own period moves the view.
                    let view_slot = self
                        .shared
                        .catalogue
                        .metric_index(&msg.metric)
                        .and_then(|i| Some((i, period, self.view.epoch(i)?)))
                        .filter(|_| msg.period == period);
                    self.remember(
                        msg.request,
                        Known {
                            fingerprint: msg.fingerprint,
                            answer: answer.clone(),
                        },
                    );
                    self.pending(answer, false, view_slot)
                }
                (From::Earlier(slot), Some(answers)) => {
                    self.pending(Answer::new(answers.clone(), slot), true, None)
                }
                // `answers` exists whenever a record went to the store.
                (From::Store(_) | From::Earlier(_), None) => self.pending(
                    Answer::new(
                        futures_util::future::ready(Arc::from([])).boxed().shared(),
                        0,
                    ),
                    false,
                    None,
                ),
            };
            out.push(pending);
        }
        out
    }

    /// Hands the records at `fresh` to the store in one submission. A failed write may
    /// still have been applied (its flush failed), so the view can be behind the store:
    /// the answer itself, once it arrives, tells the actor to retire. Whoever awaits it
    /// drives it there — the callers, or the task a caller that gave up leaves behind —
    /// so the actor's thread is not woken for every answer to watch it.
    fn submit(&self, msgs: &[Record], fresh: &[usize], ctx: &mut Context<Self>) -> Answers {
        let usages = fresh
            .iter()
            .map(|&i| {
                let msg = &msgs[i];
                UsageRecord {
                    period: msg.period,
                    metric: msg.metric.clone(),
                    delta: msg.value,
                    request: msg.request.clone(),
                    fingerprint: msg.fingerprint,
                    included: self.plan.included(&msg.metric),
                    now_ms: msg.now_ms,
                }
            })
            .collect();
        let stored = self.shared.backend.ledger.record_many(&self.org, usages);
        let (actor, generation) = (ctx.address(), self.generation);
        async move {
            let each: Vec<_> = stored
                .await
                .into_iter()
                .map(|r| r.map_err(EngineError::from))
                .collect();
            let failed = each.iter().find_map(|r| match r {
                Err(e) if !e.is_unreachable() => Some(e.clone()),
                _ => None,
            });
            if let Some(e) = failed {
                actor.do_send(RetireAfterFailure {
                    generation,
                    error: Some(e),
                });
            }
            Arc::<[_]>::from(each)
        }
        .boxed()
        .shared()
    }
}

/// Where one record of a message gets its answer.
enum From {
    /// From an earlier message's record of the same request.
    Memory(PendingRecord),
    /// From the store: this slot of the submission.
    Store(usize),
    /// From an earlier record of this message with the same request and payload.
    Earlier(usize),
}
