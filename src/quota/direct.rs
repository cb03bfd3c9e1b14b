//! A batch's records handed to the store without passing through the org actors
//! (story 4.7). A batch of random orgs used to cost one actor message, mailbox wake-up,
//! reply and store submission per org — most of a batch's CPU on a small machine. Here
//! the caller's thread hands every event of a live org to the store in one submission
//! and publishes the new totals in the orgs' views itself, as the actor's callers do.
//!
//! Why skipping the actor keeps the view exact: the actor replaces an org's counters
//! (a roll, a reset) only after publishing a new epoch in the view, and marks the view
//! retired before it leaves the registry (after which a fresh actor loads the org from
//! the store) — both before it submits anything. The caller reads the view's stamp
//! before submitting and again after (`OrgView::stamp`). The same stamp both times
//! means the records reached the store ahead of any such move: they count in the view's
//! epoch, or a later move replaces them with what the store holds. A changed stamp means
//! the order is unknown, so the org's current actor is retired once the records are
//! durable, and the next request loads the org from the store, which has them.
//!
//! (That order is the store's queue on sled. On a Redis Cluster, whose connections order
//! nothing across each other for the actors' own writes either, the periodic sync
//! resets each view to the shared totals.)
//!
//! An org with no live actor, and an org with an event its view cannot place (another
//! period, a metric outside the catalogue), goes through its actor with all of its
//! events of the batch, so one org's events keep their order whichever way they go.

use super::engine::QuotaEngine;
use super::messages::{Answer, Answers, EngineError, PendingRecord, RecordReply};
use super::record::{counted, usage_record, Counted, RecordRequest};
use super::registry::OrgHandle;
use super::view::OrgView;
use crate::domain::{OrgId, PeriodKey};
use crate::store::{in_input_order, Recorded, StoreResult, UsageRecord};
use chrono::{DateTime, Utc};
use futures_util::future::{BoxFuture, FutureExt};
use std::sync::Arc;

/// An org whose events go to the store directly: its actor and the stamp read before.
struct Placed {
    org: OrgId,
    handle: OrgHandle,
    stamp: u64,
    /// The stamp changed while the records were submitted.
    unsure: bool,
}

impl Placed {
    fn period(&self) -> PeriodKey {
        PeriodKey::from_index(self.stamp as u32)
    }

    fn epoch(&self) -> u64 {
        self.stamp >> 32
    }
}

/// One org of a batch: placed, or its events for its actor.
enum Group {
    Direct(Placed),
    Actor {
        org: OrgId,
        positions: Vec<usize>,
        events: Vec<RecordRequest>,
    },
}

impl Group {
    fn actor(org: &OrgId) -> Self {
        Group::Actor {
            org: org.clone(),
            positions: Vec::new(),
            events: Vec::new(),
        }
    }
}

/// A directly submitted event: where its answer goes, its org's group, what settling needs.
struct Sent {
    position: usize,
    group: usize,
    counted: Counted,
}

type Answered = Vec<(usize, Result<RecordReply, EngineError>)>;

/// A batch placed and built, not yet submitted (`QuotaEngine::prepare_events`).
pub struct PreparedEvents {
    n: usize,
    now: DateTime<Utc>,
    groups: Vec<Group>,
    direct: Vec<(OrgId, UsageRecord)>,
    sent: Vec<Sent>,
}

impl QuotaEngine {
    /// Records a batch of events of any orgs, each as `record` would; answers in order.
    /// Events of live orgs go to the store in one submission (see the module's doc);
    /// the rest through their orgs' actors, all at once.
    pub async fn record_events(
        self: &Arc<Self>,
        events: Vec<(OrgId, RecordRequest)>,
        now: DateTime<Utc>,
    ) -> Vec<Result<RecordReply, EngineError>> {
        let prepared = self.prepare_events(events, now);
        self.submit_events(prepared).await
    }

    /// The first half of `record_events`: decides each org's way, reads the stamps of
    /// the direct ones and builds their records. (Apart so that a test can move an org
    /// between the two halves.)
    pub fn prepare_events(
        &self,
        events: Vec<(OrgId, RecordRequest)>,
        now: DateTime<Utc>,
    ) -> PreparedEvents {
        let n = events.len();
        let (mut groups, group_of) = self.place(&events);
        let mut direct: Vec<(OrgId, UsageRecord)> = Vec::new();
        let mut sent: Vec<Sent> = Vec::new();
        for (position, ((org, req), g)) in events.into_iter().zip(group_of).enumerate() {
            match &mut groups[g] {
                Group::Direct(p) => {
                    let counted = counted(self.catalogue(), &req);
                    let included = counted
                        .metric_index
                        .map_or(0, |i| p.handle.view.included(i));
                    direct.push((org, usage_record(req, included, now)));
                    sent.push(Sent {
                        position,
                        group: g,
                        counted,
                    });
                }
                Group::Actor {
                    positions, events, ..
                } => {
                    positions.push(position);
                    events.push(req);
                }
            }
        }
        PreparedEvents {
            n,
            now,
            groups,
            direct,
            sent,
        }
    }

    /// The second half of `record_events`: submits, checks the stamps again, settles.
    pub async fn submit_events(
        self: &Arc<Self>,
        prepared: PreparedEvents,
    ) -> Vec<Result<RecordReply, EngineError>> {
        let PreparedEvents {
            n,
            now,
            mut groups,
            direct,
            sent,
        } = prepared;
        let settled = (!direct.is_empty()).then(|| {
            let stored = self.backend().ledger.record_across(direct);
            for group in &mut groups {
                if let Group::Direct(p) = group {
                    p.unsure = p.handle.view.stamp() != Some(p.stamp);
                }
            }
            self.settle_direct(stored, sent, &groups)
        });
        let by_actor = groups.into_iter().filter_map(|g| match g {
            Group::Direct(_) => None,
            Group::Actor {
                org,
                positions,
                events,
            } => Some(async move {
                let count = events.len();
                let answers = match self.record_batch(&org, events, now).await {
                    Ok(answers) => answers,
                    Err(e) => (0..count).map(|_| Err(e.clone())).collect(),
                };
                positions.into_iter().zip(answers).collect::<Answered>()
            }),
        });
        let by_actor = futures_util::future::join_all(by_actor);
        let (direct, by_actor) = match settled {
            Some(settled) => futures_util::future::join(settled, by_actor).await,
            None => (Vec::new(), by_actor.await),
        };
        in_input_order(
            n,
            direct.into_iter().chain(by_actor.into_iter().flatten()),
            || Err(EngineError::Internal("event not answered".into())),
        )
    }

    /// Groups `events` by org, in order of first appearance, and decides each org's way.
    fn place(&self, events: &[(OrgId, RecordRequest)]) -> (Vec<Group>, Vec<usize>) {
        let mut groups: Vec<Group> = Vec::new();
        let mut group_of = Vec::with_capacity(events.len());
        let mut index: foldhash::HashMap<&OrgId, usize> = Default::default();
        for (org, req) in events {
            let g = *index.entry(org).or_insert_with(|| {
                groups.push(
                    self.placed(org)
                        .map_or_else(|| Group::actor(org), Group::Direct),
                );
                groups.len() - 1
            });
            if let Some(Group::Direct(p)) = groups.get(g) {
                let fits = self.catalogue().metric_index(&req.metric).is_some()
                    && PeriodKey::containing(req.occurred_at) == p.period();
                if !fits {
                    groups[g] = Group::actor(org);
                }
            }
            group_of.push(g);
        }
        (groups, group_of)
    }

    /// The org's live actor and its view's stamp, if it has a live, unretired one.
    fn placed(&self, org: &OrgId) -> Option<Placed> {
        let handle = self.registry().live(org)?;
        let stamp = handle.view.stamp()?;
        // Records keep an org in use as the actor's own messages would.
        handle.view.touch();
        Some(Placed {
            org: org.clone(),
            handle,
            stamp,
            unsure: false,
        })
    }

    /// Settles the direct submission's answers on a task of its own, so that a caller
    /// that goes away (a client hanging up) cannot leave durable records out of the
    /// views; then retires the actor of each org whose stamp changed.
    fn settle_direct(
        self: &Arc<Self>,
        stored: BoxFuture<'static, Vec<StoreResult<Recorded>>>,
        sent: Vec<Sent>,
        groups: &[Group],
    ) -> impl std::future::Future<Output = Answered> {
        let answers: Answers = async move {
            let each: Vec<_> = stored
                .await
                .into_iter()
                .map(|r| r.map_err(EngineError::from))
                .collect();
            Arc::<[_]>::from(each)
        }
        .boxed()
        .shared();
        let orgs: Vec<Option<Settling>> = groups
            .iter()
            .map(|g| match g {
                Group::Direct(p) => Some(Settling {
                    org: p.org.clone(),
                    view: p.handle.view.clone(),
                    generation: p.handle.generation,
                    at: (!p.unsure).then(|| (p.period(), p.epoch())),
                }),
                Group::Actor { .. } => None,
            })
            .collect();
        let engine = self.clone();
        let task = actix_rt::spawn(async move {
            let mut out = Vec::with_capacity(sent.len());
            // One after the other: they share one answer, so the first wait is the only one.
            for (k, s) in sent.into_iter().enumerate() {
                let Some(Some(o)) = orgs.get(s.group) else {
                    continue;
                };
                let pending = PendingRecord {
                    answer: Answer::new(answers.clone(), k),
                    replayed: false,
                    view: o.view.clone(),
                    slot: o
                        .at
                        .zip(s.counted.metric_index)
                        .map(|((period, epoch), index)| (index, period, epoch)),
                    generation: o.generation,
                };
                out.push((s.position, engine.settle(&o.org, pending, s.counted).await));
            }
            drop(answers);
            for o in orgs.iter().flatten().filter(|o| o.at.is_none()) {
                if let Some(live) = engine.registry().live(&o.org) {
                    tracing::debug!(org = %o.org, "org moved while a batch skipped its actor; reloading it from the store");
                    engine
                        .registry()
                        .retire_after_failure(&o.org, live.generation)
                        .await;
                }
            }
            out
        });
        async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "settling a batch's records failed");
                Vec::new()
            })
        }
    }
}

/// What settling a direct org's records needs.
struct Settling {
    org: OrgId,
    view: Arc<OrgView>,
    generation: u64,
    /// The view's period and epoch, when the stamp held (the records may move the view).
    at: Option<(PeriodKey, u64)>,
}
