//! Stories 5.1–5.3: previewing a plan change, upgrading now with prorated invoicing, and
//! scheduling a downgrade for the end of the period (a downgrade to the free plan is a
//! cancellation at period end). Withdrawing a pending change is stored at once, so a
//! failure in a later step cannot leave a local pending change Stripe no longer has.

use super::error::{request_key, state, BillingError};
use super::BillingService;
use crate::domain::{BillingRecord, OrgId, PendingChange, PlanCode};
use crate::store::stigg_jobs::Strategy;

pub struct PreviewOut {
    pub amount: i64,
    pub currency: String,
    pub proration: i64,
    pub proration_date_unix: i64,
    pub items: Vec<super::stripe::PreviewLine>,
}

impl BillingService {
    /// Story 5.1: what moving to `new_plan` would invoice. An upgrade is previewed with
    /// immediate proration (as upgrade.now does it); a downgrade without (it happens at
    /// period end).
    pub async fn preview(&self, org: &OrgId, new_plan: &str) -> Result<PreviewOut, BillingError> {
        let stripe = self.stripe()?;
        let plan = self.paid_plan("newPlanCode", new_plan)?;
        let rec = self.engine.billing(org).await?;
        let (customer, sub) = Self::live(&rec)?;
        if plan.code == sub.plan {
            return Err(BillingError::Conflict(format!(
                "the org is already on {}",
                plan.code
            )));
        }
        let current_rank = self.engine.catalogue().get_or_free(&sub.plan).rank;
        let price = self.price_id("newPlanCode", &plan).await?;
        let proration_date = self.now_unix();
        let preview = stripe
            .preview_price_change(
                customer,
                &sub.id,
                &sub.item_id,
                &price,
                plan.rank > current_rank,
                proration_date,
            )
            .await
            .map_err(state)?;
        Ok(PreviewOut {
            amount: preview.amount_due,
            currency: preview.currency,
            proration: preview
                .lines
                .iter()
                .filter(|l| l.proration)
                .map(|l| l.amount)
                .sum(),
            proration_date_unix: proration_date,
            items: preview.lines,
        })
    }

    /// Story 5.2: swap to a higher plan now, invoicing the proration; the quota rises in
    /// the same write that stores the new subscription state.
    pub async fn upgrade_now(
        &self,
        org: &OrgId,
        new_plan: &str,
        proration_date: Option<i64>,
    ) -> Result<PlanCode, BillingError> {
        let stripe = self.stripe()?;
        // Any known plan: one that is not higher (the free plan included) is a 409.
        let plan = self.known_plan("newPlanCode", new_plan)?;
        let lock = self.lock(org).await?;
        let mut rec = self.engine.billing(org).await?;
        let (_, sub) = Self::live(&rec)?;
        let sub = sub.clone();
        let current = self.engine.catalogue().get_or_free(&sub.plan);
        if plan.rank <= current.rank || plan.code == PlanCode::free() {
            return Err(BillingError::Conflict(format!(
                "{} is not higher than the current plan {}; use /api/plans/downgrade.schedule",
                plan.code, current.code
            )));
        }
        if let Some(date) = proration_date {
            let now = self.now_unix();
            if date < sub.period_start_unix || date > now + 300 {
                return Err(BillingError::invalid(
                    "prorationDateUnix",
                    "must lie in the current billing period and not in the future",
                ));
            }
        }
        let price = self.price_id("newPlanCode", &plan).await?;
        // An upgrade supersedes a scheduled downgrade.
        self.cancel_pending(org, &mut rec, lock.fence()).await?;
        let snap = stripe
            .swap_price_now(
                &sub.id,
                &sub.item_id,
                &price,
                proration_date,
                &request_key("upgrade", org),
            )
            .await
            .map_err(state)?;
        rec.subscription = Some(self.mirror(snap, &plan.code, None));
        self.engine.apply_billing(org, rec, lock.fence()).await?;
        self.plan_changed(org, plan.code.clone(), Strategy::Immediate)
            .await;
        Ok(plan.code.clone())
    }

    /// Withdraws a pending change in Stripe (releases its schedule, or keeps a subscription
    /// that was to cancel at period end) and stores that at once, so a failure in a later
    /// step cannot leave a local pending change that Stripe no longer has.
    async fn cancel_pending(
        &self,
        org: &OrgId,
        rec: &mut BillingRecord,
        fence: Option<String>,
    ) -> Result<(), BillingError> {
        let stripe = self.stripe()?;
        let Some(sub) = rec.subscription.as_mut() else {
            return Ok(());
        };
        let Some(pending) = sub.pending.take() else {
            return Ok(());
        };
        match &pending.schedule_id {
            Some(schedule) => stripe
                .release_schedule(schedule, &request_key("release_schedule", org))
                .await
                .map_err(state)?,
            None => {
                let snap = stripe
                    .set_cancel_at_period_end(
                        &sub.id,
                        false,
                        &request_key("keep_subscription", org),
                    )
                    .await
                    .map_err(state)?;
                sub.cancel_at_period_end = snap.cancel_at_period_end;
            }
        }
        self.engine.apply_billing(org, rec.clone(), fence).await?;
        Ok(())
    }

    /// Story 5.3: move to a lower plan when the current period ends (the free plan:
    /// cancel at period end). The quota keeps the current plan until then.
    pub async fn schedule_downgrade(
        &self,
        org: &OrgId,
        new_plan: &str,
    ) -> Result<PendingChange, BillingError> {
        let stripe = self.stripe()?;
        let catalogue = self.engine.catalogue().clone();
        let plan = self.known_plan("newPlanCode", new_plan)?;
        let lock = self.lock(org).await?;
        let mut rec = self.engine.billing(org).await?;
        let (_, sub) = Self::live(&rec)?;
        let sub = sub.clone();
        let current = catalogue.get_or_free(&sub.plan);
        if plan.rank >= current.rank {
            return Err(BillingError::Conflict(format!(
                "{} is not lower than the current plan {}; use /api/plans/upgrade.now",
                plan.code, current.code
            )));
        }
        if let Some(p) = sub.pending.as_ref().filter(|p| p.plan == plan.code) {
            return Ok(p.clone());
        }
        let (snap, pending) = if plan.code == PlanCode::free() {
            self.cancel_pending(org, &mut rec, lock.fence()).await?;
            let snap = stripe
                .set_cancel_at_period_end(&sub.id, true, &request_key("cancel_at_period_end", org))
                .await
                .map_err(state)?;
            let pending = PendingChange {
                plan: plan.code.clone(),
                effective_unix: snap.period_end,
                schedule_id: None,
            };
            (snap, pending)
        } else {
            let price = self.price_id("newPlanCode", &plan).await?;
            if sub
                .pending
                .as_ref()
                .is_some_and(|p| p.schedule_id.is_none())
            {
                self.cancel_pending(org, &mut rec, lock.fence()).await?;
            }
            let mut snap = stripe.retrieve_subscription(&sub.id).await.map_err(state)?;
            if snap.cancel_at_period_end {
                snap = stripe
                    .set_cancel_at_period_end(
                        &sub.id,
                        false,
                        &request_key("keep_subscription", org),
                    )
                    .await
                    .map_err(state)?;
            }
            let change = stripe
                .schedule_price_change(
                    &snap,
                    &price,
                    (
                        &request_key("schedule_create", org),
                        &request_key("schedule_update", org),
                    ),
                )
                .await
                .map_err(state)?;
            snap.schedule_id = Some(change.schedule_id.clone());
            let pending = PendingChange {
                plan: plan.code.clone(),
                effective_unix: change.effective_at,
                schedule_id: Some(change.schedule_id),
            };
            (snap, pending)
        };
        rec.subscription = Some(self.mirror(snap, &sub.plan, Some(pending.clone())));
        self.engine.apply_billing(org, rec, lock.fence()).await?;
        self.plan_changed(org, pending.plan.clone(), Strategy::EndOfBillingPeriod)
            .await;
        Ok(pending)
    }
}
