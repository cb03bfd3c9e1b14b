//! The org-wide period sweep behind the rollover supervisor and the admin quota reset:
//! every org whose stored period is older than the target moves into it (with `force`,
//! orgs already in it are zeroed too).
//!
//! The stored states are read a page at a time, and an org with no running actor gets
//! one only for its roll, retired right after unless a request came to it meanwhile: so
//! a sweep over a million orgs holds at most a page's worth of ids and
//! `SWEEP_CONCURRENCY` actors it started, never one actor per org.
//!
//! The supervisor's sweep runs under the store's sweep lease: of several nodes sharing
//! a store, one sweeps each period and the others skip it (`supervised_rollover`).

use super::engine::QuotaEngine;
use super::messages::{EngineError, Rollover};
use crate::domain::{OrgId, PeriodKey};
use crate::store::SweepLease;
use futures_util::stream::{self, StreamExt};
use std::time::Duration;

/// How many orgs a sweep rolls at once (bounds actor starts and store reads in flight).
const SWEEP_CONCURRENCY: usize = 64;
/// Stored org states read per page.
const PAGE: usize = 1_000;
/// The supervisor's sweep lease; renewed every third of it while the sweep runs, so
/// only a node that stopped (died, or lost Redis) lets it run out.
const SWEEP_LEASE_MS: u64 = 30_000;

/// Who made the supervisor's sweep into a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swept {
    /// This node, moving this many orgs.
    Here(u64),
    /// Another node sharing the store.
    Elsewhere,
    /// Another node is sweeping now: ask again later.
    Busy,
}

impl QuotaEngine {
    /// Moves every org whose current period is older than `period` into it (with
    /// `force`, also zeroes orgs already in it). Returns how many orgs changed. A period
    /// after the clock's is refused: no org may be moved out of the clock's period.
    pub async fn rollover(
        &self,
        period: PeriodKey,
        force: bool,
        trigger: &'static str,
    ) -> Result<u64, EngineError> {
        let current = self.context().current_period();
        if period > current {
            return Err(EngineError::Conflict(format!(
                "period {period} is after the current period {current}; nothing was reset"
            )));
        }
        let live = self.registry().live_orgs();
        let mut after: Option<OrgId> = None;
        let mut updated = 0;
        let mut first_error = None;
        loop {
            let page = self
                .backend()
                .ledger
                .states_page(after.as_ref(), PAGE)
                .await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            let done = page.len() < PAGE;
            let targets = page
                .into_iter()
                .filter(|(_, s)| s.period < period || (force && s.period == period))
                .map(|(org, _)| org);
            let results: Vec<Result<bool, EngineError>> = stream::iter(targets)
                .map(|org| {
                    let release = !live.contains(&org);
                    async move {
                        let msg = Rollover {
                            period,
                            force,
                            release,
                        };
                        match self.registry().send(&org, msg).await {
                            Err(EngineError::OrgNotFound) => Ok(false),
                            other => other,
                        }
                    }
                })
                .buffer_unordered(SWEEP_CONCURRENCY)
                .collect()
                .await;
            for r in results {
                match r {
                    Ok(true) => updated += 1,
                    Ok(false) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if done {
                break;
            }
        }
        let m = &self.context().metrics;
        m.rollover_runs.with_label_values(&[trigger]).inc();
        m.rollover_orgs.inc_by(updated);
        tracing::info!(%period, force, trigger, updated, failed = first_error.is_some(), "rollover sweep");
        match first_error {
            Some(e) => Err(e),
            None => Ok(updated),
        }
    }

    /// The rollover supervisor's sweep into `period`, under the store's sweep lease (a
    /// store one process opens always grants it).
    pub async fn supervised_rollover(&self, period: PeriodKey) -> Result<Swept, EngineError> {
        let ledger = self.backend().ledger.clone();
        let token = match ledger.sweep_lease(period, None, SWEEP_LEASE_MS).await? {
            SweepLease::Done => return Ok(Swept::Elsewhere),
            SweepLease::Busy => return Ok(Swept::Busy),
            SweepLease::Held(token) => token,
        };
        let renew = async {
            loop {
                tokio::time::sleep(Duration::from_millis(SWEEP_LEASE_MS / 3)).await;
                match ledger
                    .sweep_lease(period, Some(token.clone()), SWEEP_LEASE_MS)
                    .await
                {
                    Ok(SweepLease::Held(_)) => {}
                    // Going on is safe (the sweep is idempotent); another node may now
                    // sweep beside this one.
                    lost => {
                        tracing::warn!(%period, answer = ?lost, "the sweep lease could not be renewed");
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let updated = tokio::select! {
            result = self.rollover(period, false, "supervisor") => result?,
            () = renew => unreachable!("the renewal loop never ends"),
        };
        if let Err(e) = ledger.sweep_done(period, token).await {
            // The lease runs out instead; the next node's sweep then finds nothing to move.
            tracing::warn!(%period, error = %crate::errors::chain(&e), "marking the sweep done failed");
        }
        Ok(Swept::Here(updated))
    }
}
