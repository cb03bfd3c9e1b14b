//! Convergence with Stripe (story 2.4): which org an event's customer belongs to, and
//! making the org's mirror (and so its quota) match Stripe's current subscription —
//! re-read from Stripe, since events arrive late, twice and out of order. A
//! subscription changes an org's plan only if its customer is the org's own.

use super::error::{state, BillingError};
use super::stripe::{StripeFailure, SubscriptionSnapshot};
use super::BillingService;
use crate::domain::{OrgId, PendingChange, PlanCode, SubscriptionRecord, SubscriptionStatus};
use crate::quota::EngineError;
use crate::store::stigg_jobs::Strategy;

/// What convergence did to the org's mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Converged {
    /// The mirror now matches Stripe's subscription (or its deletion).
    Updated,
    /// The event's subscription is not the org's (the org has another live one).
    NotTheOrgs,
}

impl BillingService {
    /// The org a Stripe customer belongs to (the index written by customer.ensure), or the
    /// `org_id` Stripe carries in metadata — if that org exists.
    pub async fn org_for(
        &self,
        customer: Option<&str>,
        hint: Option<&str>,
    ) -> Result<Option<OrgId>, BillingError> {
        if let Some(customer) = customer {
            let found = self
                .engine
                .backend()
                .orgs
                .org_of_customer(customer)
                .await
                .map_err(EngineError::from)?;
            if found.is_some() {
                return Ok(found);
            }
        }
        let Some(org) = hint.and_then(|h| OrgId::parse(h).ok()) else {
            return Ok(None);
        };
        match self.engine.billing(&org).await {
            Ok(_) => Ok(Some(org)),
            Err(EngineError::OrgNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stripe's subscription, or `None` if Stripe no longer has it (deleted).
    async fn fetch(&self, id: &str) -> Result<Option<SubscriptionSnapshot>, BillingError> {
        match self.stripe()?.retrieve_subscription(id).await {
            Ok(snap) => Ok(Some(snap)),
            Err(StripeFailure::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(state(e)),
        }
    }

    /// Re-reads `subscription_id` from Stripe and makes the org's mirror (and so its
    /// quota) match it: status, price → plan, period, trial, cancellation, pending change.
    /// Safe to repeat and independent of event order, since only Stripe's current state
    /// is used.
    pub async fn converge(
        &self,
        org: &OrgId,
        subscription_id: &str,
    ) -> Result<Converged, BillingError> {
        let lock = self.lock(org).await?;
        let mut rec = self.engine.billing(org).await?;
        let local = rec.subscription.clone();
        let theirs = local.as_ref().filter(|l| l.id == subscription_id);
        if let (Some(l), None) = (local.as_ref(), theirs) {
            // Another subscription is on record: switch only if that one is over.
            if l.is_live() && self.fetch(&l.id).await?.is_some_and(|s| s.status.is_live()) {
                tracing::warn!(%org, kept = %l.id, ignored = subscription_id, "event for a subscription other than the org's live one");
                return Ok(Converged::NotTheOrgs);
            }
        }
        let fetched = self.fetch(subscription_id).await?;
        if let Some(snap) = &fetched {
            // Only a subscription of the org's own Stripe customer may change its plan:
            // metadata naming an org proves nothing.
            if rec.customer_id.as_deref() != Some(snap.customer.as_str()) {
                tracing::warn!(%org, subscription = subscription_id, customer = %snap.customer, "subscription of another customer ignored");
                return Ok(Converged::NotTheOrgs);
            }
        }
        let Some(snap) = fetched else {
            // Deleted in Stripe: canceled, whatever the events said before.
            if let Some(sub) = rec
                .subscription
                .as_mut()
                .filter(|s| s.id == subscription_id)
            {
                let was_live = sub.is_live();
                sub.status = SubscriptionStatus::Canceled;
                sub.pending = None;
                sub.cancel_at_period_end = false;
                self.engine.apply_billing(org, rec, lock.fence()).await?;
                if was_live {
                    self.plan_changed(org, PlanCode::free(), Strategy::Immediate)
                        .await;
                }
            }
            return Ok(Converged::Updated);
        };
        let fallback = theirs.map_or_else(PlanCode::free, |l| l.plan.clone());
        let mut mirrored = self.mirror(snap.clone(), &fallback, None);
        mirrored.pending = if snap.status == SubscriptionStatus::Canceled {
            None
        } else if snap.cancel_at_period_end {
            Some(PendingChange {
                plan: PlanCode::free(),
                effective_unix: snap.period_end,
                schedule_id: None,
            })
        } else {
            // A scheduled change stands while Stripe still has its schedule and has not
            // yet switched the price; once Stripe shows the new plan it is simply the plan.
            theirs
                .and_then(|l| l.pending.clone())
                .filter(|p| p.schedule_id.is_some() && p.schedule_id == snap.schedule_id)
                .filter(|p| p.plan != mirrored.plan)
        };
        // The plan Stripe bills now (ignoring a pending change), before and after.
        let billed = |s: Option<&SubscriptionRecord>| {
            s.filter(|s| s.status.keeps_plan())
                .map_or_else(PlanCode::free, |s| s.plan.clone())
        };
        let before = billed(theirs);
        let after = billed(Some(&mirrored));
        rec.subscription = Some(mirrored);
        self.engine.apply_billing(org, rec, lock.fence()).await?;
        if before != after {
            self.plan_changed(org, after, Strategy::Immediate).await;
        }
        Ok(Converged::Updated)
    }

    /// An event from Stripe's events API as raw JSON; `None` if Stripe has none by `id`.
    pub async fn retrieve_event(&self, id: &str) -> Result<Option<Vec<u8>>, BillingError> {
        self.stripe()?.retrieve_event(id).await.map_err(state)
    }
}
