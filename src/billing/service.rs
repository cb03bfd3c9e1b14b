//! `BillingService`: what every billing operation shares — the Stripe client, the quota
//! engine (which owns each org's billing mirror), per-org locks, and the Stigg
//! provisioning it tells about plan changes. The operations are in the modules named for
//! their story area.
//!
//! Operations that change an org's billing hold that org's lock (`org_lock.rs`):
//! concurrent calls for one org (20 customer.ensure at once, say, on one node or on
//! several) run one after another, and each later one finds what the first stored. The lock is per org, so orgs never wait on each other.
//! Stripe is called first and the mirror written only after Stripe succeeded, so a
//! failure leaves local state as it was.

use super::error::BillingError;
use super::locks::KeyedLocks;
use super::stigg::Provisioning;
use super::stripe::{StripeApi, SubscriptionSnapshot};
use crate::domain::{BillingRecord, OrgId, PendingChange, PlanCode, SubscriptionRecord};
use crate::quota::QuotaEngine;
use crate::store::stigg_jobs::Strategy;
use std::sync::Arc;

pub struct BillingService {
    pub(super) stripe: Option<StripeApi>,
    pub(super) engine: Arc<QuotaEngine>,
    pub(super) locks: KeyedLocks<OrgId>,
    pub(super) portal_return_url: String,
    /// Told about plan changes made through Stripe (re-provisioning in Stigg).
    pub(super) provisioning: Arc<Provisioning>,
}

impl BillingService {
    pub fn new(
        stripe: Option<StripeApi>,
        engine: Arc<QuotaEngine>,
        provisioning: Arc<Provisioning>,
        portal_return_url: String,
    ) -> Self {
        Self {
            stripe,
            engine,
            locks: KeyedLocks::default(),
            portal_return_url,
            provisioning,
        }
    }

    /// Re-provisions the org in Stigg after its plan changed in Stripe.
    pub(super) async fn plan_changed(&self, org: &OrgId, plan: PlanCode, strategy: Strategy) {
        self.provisioning.plan_changed(org, &plan, strategy).await;
    }

    pub fn is_configured(&self) -> bool {
        self.stripe.is_some()
    }

    pub(super) fn stripe(&self) -> Result<&StripeApi, BillingError> {
        self.stripe.as_ref().ok_or(BillingError::NotConfigured)
    }

    pub(super) fn now_unix(&self) -> i64 {
        self.engine.clock().now().timestamp()
    }

    /// The local record of a Stripe subscription; the plan comes from the price's lookup
    /// key (`fallback` when Stripe's price has none the catalogue knows).
    pub(super) fn mirror(
        &self,
        snap: SubscriptionSnapshot,
        fallback: &PlanCode,
        pending: Option<PendingChange>,
    ) -> SubscriptionRecord {
        let plan = snap
            .lookup_key
            .as_deref()
            .and_then(|k| self.plan_for_lookup_key(k))
            .map_or_else(|| fallback.clone(), |p| p.code.clone());
        SubscriptionRecord {
            id: snap.id,
            item_id: snap.item_id,
            price_id: snap.price_id,
            plan,
            status: snap.status,
            trial_end_unix: snap.trial_end,
            period_start_unix: snap.period_start,
            period_end_unix: snap.period_end,
            cancel_at_period_end: snap.cancel_at_period_end,
            pending,
        }
    }

    pub(super) fn live(rec: &BillingRecord) -> Result<(&str, &SubscriptionRecord), BillingError> {
        let customer = rec
            .customer_id
            .as_deref()
            .ok_or_else(BillingError::no_customer)?;
        let sub = rec
            .subscription
            .as_ref()
            .filter(|s| s.is_live())
            .ok_or_else(BillingError::no_subscription)?;
        Ok((customer, sub))
    }
}
