//! Stories 1.2, 2.1, 2.2 and 6.2: the org's Stripe customer (created once), a
//! SetupIntent for collecting a card, the default payment method, the customer portal.

use super::error::{caller, request_key, state, BillingError};
use super::BillingService;
use crate::domain::OrgId;
use crate::quota::EngineError;

impl BillingService {
    /// Story 1.2: the org's Stripe customer, created once.
    pub async fn ensure_customer(&self, org: &OrgId, email: &str) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let lock = self.lock(org).await?;
        let mut rec = self.engine.billing(org).await?;
        if let Some(id) = rec.customer_id {
            return Ok(id);
        }
        let name = self.engine.org(org).await?.name;
        // Derived from the org alone: a retry after a lost answer (ours or Stripe's)
        // finds the customer the first attempt created.
        let key = format!("edgequota:customer:{org}");
        let id = stripe
            .create_customer(org.as_str(), email, &name, &key)
            .await
            .map_err(caller("email"))?;
        self.engine
            .backend()
            .orgs
            .link_customer(&id, org)
            .await
            .map_err(EngineError::from)?;
        rec.customer_id = Some(id.clone());
        rec.email = Some(email.to_owned());
        self.engine.apply_billing(org, rec, lock.fence()).await?;
        Ok(id)
    }

    /// Story 2.1: a SetupIntent for collecting a card for later (off-session) charges.
    pub async fn setup_intent(&self, org: &OrgId) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let rec = self.engine.billing(org).await?;
        let customer = rec.customer_id.ok_or_else(BillingError::no_customer)?;
        stripe
            .create_setup_intent(&customer, &request_key("setup_intent", org))
            .await
            .map_err(state)
    }

    /// Story 2.2: attach `payment_method` and make it the default for invoices and for the
    /// live subscription.
    pub async fn set_default_method(
        &self,
        org: &OrgId,
        payment_method: &str,
    ) -> Result<(), BillingError> {
        let stripe = self.stripe()?;
        let lock = self.lock(org).await?;
        let mut rec = self.engine.billing(org).await?;
        let customer = rec
            .customer_id
            .clone()
            .ok_or_else(BillingError::no_customer)?;
        let attached = stripe
            .attach_payment_method(payment_method, &customer, &request_key("attach", org))
            .await
            .map_err(caller("paymentMethodId"))?;
        // A test token such as pm_card_visa is attached as a new method: use that one.
        let payment_method = attached.as_str();
        stripe
            .set_customer_default_method(
                &customer,
                payment_method,
                &request_key("default_method", org),
            )
            .await
            .map_err(caller("paymentMethodId"))?;
        if let Some(sub) = rec.subscription.clone().filter(|s| s.is_live()) {
            let snap = stripe
                .set_subscription_default_method(
                    &sub.id,
                    payment_method,
                    &request_key("sub_default_method", org),
                )
                .await
                .map_err(caller("paymentMethodId"))?;
            rec.subscription = Some(self.mirror(snap, &sub.plan, sub.pending.clone()));
        }
        self.engine.apply_billing(org, rec, lock.fence()).await?;
        Ok(())
    }

    /// Story 6.2: a Stripe customer-portal session URL.
    pub async fn portal(&self, org: &OrgId) -> Result<String, BillingError> {
        let stripe = self.stripe()?;
        let rec = self.engine.billing(org).await?;
        let customer = rec.customer_id.ok_or_else(BillingError::no_customer)?;
        stripe
            .create_portal_session(
                &customer,
                &self.portal_return_url,
                &request_key("portal", org),
            )
            .await
            .map_err(state)
    }
}
