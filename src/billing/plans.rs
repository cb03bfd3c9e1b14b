//! The one plan lookup: a code or Stripe lookup key → the catalogue's plan, the paid
//! plans (every plan but the free one has a Stripe price), and a plan's price in Stripe.

use super::error::{state, BillingError};
use super::BillingService;
use crate::domain::{Plan, PlanCode};
use std::sync::Arc;

impl BillingService {
    /// A plan that has a Stripe price (every plan but the free one).
    pub(super) fn known_plan(
        &self,
        field: &'static str,
        code: &str,
    ) -> Result<Arc<Plan>, BillingError> {
        self.engine
            .catalogue()
            .get(&PlanCode::new(code))
            .cloned()
            .or_else(|| self.plan_for_lookup_key(code))
            .ok_or_else(|| BillingError::invalid(field, format!("is not a known plan ({code:?})")))
    }

    /// The plan a Stripe price's lookup key stands for, if the catalogue has it.
    pub(super) fn plan_for_lookup_key(&self, lookup_key: &str) -> Option<Arc<Plan>> {
        self.engine.catalogue().by_lookup_key(lookup_key).cloned()
    }

    pub(super) fn paid_plan(
        &self,
        field: &'static str,
        code: &str,
    ) -> Result<Arc<Plan>, BillingError> {
        let plan = self.known_plan(field, code)?;
        if plan.code == PlanCode::free() {
            return Err(BillingError::invalid(
                field,
                "is the free plan, which has no Stripe price",
            ));
        }
        Ok(plan)
    }

    pub(super) async fn price_id(
        &self,
        field: &'static str,
        plan: &Plan,
    ) -> Result<String, BillingError> {
        self.stripe()?
            .price_by_lookup_key(&plan.stripe_lookup_key)
            .await
            .map_err(state)?
            .ok_or_else(|| {
                BillingError::invalid(
                    field,
                    format!(
                        "has no active Stripe price with lookup key {:?}",
                        plan.stripe_lookup_key
                    ),
                )
            })
    }
}
