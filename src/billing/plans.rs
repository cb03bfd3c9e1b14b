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
        let catalogue = self.engine.catalogue();
        catalogue
            .get(&PlanCode::new(code))
            .or_else(|| catalogue.by_lookup_key(code))
            .cloned()
            .ok_or_else(|| BillingError::invalid(field, format!("is not a known plan ({code:?})")))
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
