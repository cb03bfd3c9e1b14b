//! Story 1.3: a subscription to a plan with the plan's trial; the quota follows. A create
//! whose answer was lost never leaves two live subscriptions: the customer's live one is
//! adopted first, and the idempotency key is derived from the org and its predecessor.

use super::error::{state, BillingError};
use super::BillingService;
use crate::domain::{OrgId, SubscriptionStatus};

pub struct TrialOut {
    pub subscription_id: String,
    pub status: SubscriptionStatus,
    pub trial_end_unix: Option<i64>,
}

impl BillingService {
    /// Story 1.3: a subscription to `plan_code` with the plan's trial; the quota follows.
    pub async fn create_trial(
        &self,
        org: &OrgId,
        plan_code: &str,
    ) -> Result<TrialOut, BillingError> {
        self.stripe()?;
        let plan = self.paid_plan("priceLookup", plan_code)?;
        let lock = self.lock(org).await?;
        let mut rec = self.engine.billing(org).await?;
        let customer = rec
            .customer_id
            .clone()
            .ok_or_else(BillingError::no_customer)?;
        if let Some(sub) = rec.subscription.as_ref().filter(|s| s.is_live()) {
            return Ok(TrialOut {
                subscription_id: sub.id.clone(),
                status: sub.status.clone(),
                trial_end_unix: sub.trial_end_unix,
            });
        }
        let stripe = self.stripe()?;
        // A create whose answer was lost (a timeout) may have made a subscription: find
        // it before making another, so retries never leave two live subscriptions.
        let live = stripe
            .live_subscriptions(&customer)
            .await
            .map_err(state)?
            .into_iter()
            .next();
        let snap = match live {
            Some(existing) => {
                tracing::info!(%org, subscription = %existing.id, "adopting the customer's live subscription instead of creating one");
                existing
            }
            None => {
                let price = self.price_id("priceLookup", &plan).await?;
                let previous = rec.subscription.as_ref().map_or("none", |s| s.id.as_str());
                // Once per org and predecessor (not per plan): a retry, even with another
                // plan, returns what the first attempt created instead of a second one.
                let key = format!("edgequota:subscription:{org}:after:{previous}");
                stripe
                    .create_subscription(
                        &customer,
                        &price,
                        plan.trial_days,
                        &[("org_id", org.as_str()), ("plan_code", plan.code.as_str())],
                        &key,
                    )
                    .await
                    .map_err(state)?
            }
        };
        let sub = self.mirror(snap, &plan.code, None);
        let out = TrialOut {
            subscription_id: sub.id.clone(),
            status: sub.status.clone(),
            trial_end_unix: sub.trial_end_unix,
        };
        rec.subscription = Some(sub);
        self.engine.apply_billing(org, rec, lock.fence()).await?;
        Ok(out)
    }
}
