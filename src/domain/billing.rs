//! The local mirror of an org's Stripe billing: its customer, its subscription (plan,
//! status, period, trial) and a scheduled plan change — and the one rule that turns that
//! mirror into the plan in force, which the org's quota follows.
//!
//! The record is owned by the org's actor and stored next to its quota state, so a
//! subscription change and the plan the quota follows are persisted in one batch.

use super::plans::{status_keeps_plan, PlanCode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingRecord {
    pub customer_id: Option<String>,
    /// The billing email the customer was created with.
    pub email: Option<String>,
    pub subscription: Option<SubscriptionRecord>,
    /// The payment method last set as the customer's default.
    pub default_payment_method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: String,
    /// The subscription item whose price is swapped on plan changes.
    pub item_id: String,
    pub price_id: String,
    /// The plan the current price maps to (through the catalogue's lookup keys).
    pub plan: PlanCode,
    /// Stripe's status string (`trialing`, `active`, `past_due`, `canceled`, ...).
    pub status: String,
    pub trial_end_unix: Option<i64>,
    pub period_start_unix: i64,
    pub period_end_unix: i64,
    pub cancel_at_period_end: bool,
    pub pending: Option<PendingChange>,
}

/// A plan change that takes effect later (a downgrade at period end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChange {
    pub plan: PlanCode,
    pub effective_unix: i64,
    /// The subscription schedule carrying the change (none for a cancellation at period
    /// end, i.e. a downgrade to the free plan).
    pub schedule_id: Option<String>,
}

impl SubscriptionRecord {
    /// Whether Stripe still bills this subscription (a new one must not be created).
    pub fn is_live(&self) -> bool {
        !matches!(self.status.as_str(), "canceled" | "incomplete_expired")
    }
}

impl BillingRecord {
    /// The plan the org's quota follows at `now_unix`: the subscribed plan while the
    /// status keeps it (`trialing`, `active`, `past_due`), the pending plan once its
    /// effective time has passed, and the free plan otherwise.
    pub fn plan_in_force(&self, now_unix: i64) -> PlanCode {
        match &self.subscription {
            Some(sub) if status_keeps_plan(&sub.status) => match &sub.pending {
                Some(p) if now_unix >= p.effective_unix => p.plan.clone(),
                _ => sub.plan.clone(),
            },
            _ => PlanCode::free(),
        }
    }

    /// When the plan in force will next change by itself (a pending change not yet due).
    pub fn next_change_unix(&self, now_unix: i64) -> Option<i64> {
        let sub = self.subscription.as_ref()?;
        let p = sub.pending.as_ref()?;
        (p.effective_unix > now_unix && status_keeps_plan(&sub.status)).then_some(p.effective_unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(status: &str, pending: Option<PendingChange>) -> BillingRecord {
        BillingRecord {
            customer_id: Some("cus_1".into()),
            email: None,
            subscription: Some(SubscriptionRecord {
                id: "sub_1".into(),
                item_id: "si_1".into(),
                price_id: "price_pro".into(),
                plan: PlanCode::new("plan_pro_m"),
                status: status.into(),
                trial_end_unix: None,
                period_start_unix: 0,
                period_end_unix: 100,
                cancel_at_period_end: false,
                pending,
            }),
            default_payment_method: None,
        }
    }

    #[test]
    fn statuses_that_keep_the_plan_and_those_that_fall_back_to_free() {
        for s in ["trialing", "active", "past_due"] {
            assert_eq!(sub(s, None).plan_in_force(0).as_str(), "plan_pro_m", "{s}");
        }
        for s in [
            "canceled",
            "unpaid",
            "paused",
            "incomplete_expired",
            "incomplete",
        ] {
            assert_eq!(sub(s, None).plan_in_force(0), PlanCode::free(), "{s}");
        }
        assert_eq!(BillingRecord::default().plan_in_force(0), PlanCode::free());
    }

    #[test]
    fn a_pending_downgrade_applies_from_its_effective_time() {
        let rec = sub(
            "active",
            Some(PendingChange {
                plan: PlanCode::new("plan_starter_m"),
                effective_unix: 100,
                schedule_id: Some("sub_sched_1".into()),
            }),
        );
        assert_eq!(rec.plan_in_force(99).as_str(), "plan_pro_m");
        assert_eq!(rec.next_change_unix(99), Some(100));
        assert_eq!(rec.plan_in_force(100).as_str(), "plan_starter_m");
        assert_eq!(rec.next_change_unix(100), None);
    }
}
