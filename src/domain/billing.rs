//! The local mirror of an org's Stripe billing: its customer, its subscription (plan,
//! status, period, trial) and a scheduled plan change — and the one rule that turns that
//! mirror into the plan in force, which the org's quota follows.
//!
//! The record is owned by the org's actor and stored next to its quota state, so a
//! subscription change and the plan the quota follows are persisted in one batch.

use super::plans::PlanCode;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingRecord {
    pub customer_id: Option<String>,
    /// The billing email the customer was created with.
    pub email: Option<String>,
    pub subscription: Option<SubscriptionRecord>,
}

/// A Stripe subscription's status. Stored as Stripe's string, so a status Stripe adds
/// later is kept (as `Other`) rather than refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Canceled,
    Unpaid,
    Incomplete,
    IncompleteExpired,
    Paused,
    Other(String),
}

impl SubscriptionStatus {
    pub fn parse(raw: &str) -> Self {
        use SubscriptionStatus::*;
        match raw {
            "trialing" => Trialing,
            "active" => Active,
            "past_due" => PastDue,
            "canceled" => Canceled,
            "unpaid" => Unpaid,
            "incomplete" => Incomplete,
            "incomplete_expired" => IncompleteExpired,
            "paused" => Paused,
            other => Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        use SubscriptionStatus::*;
        match self {
            Trialing => "trialing",
            Active => "active",
            PastDue => "past_due",
            Canceled => "canceled",
            Unpaid => "unpaid",
            Incomplete => "incomplete",
            IncompleteExpired => "incomplete_expired",
            Paused => "paused",
            Other(s) => s,
        }
    }

    /// Whether the subscribed plan is in force (`trialing`, `active`, `past_due`); every
    /// other status falls back to the free plan.
    pub fn keeps_plan(&self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Trialing | SubscriptionStatus::Active | SubscriptionStatus::PastDue
        )
    }

    /// Whether Stripe still bills the subscription (a new one must not be created).
    pub fn is_live(&self) -> bool {
        !matches!(
            self,
            SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
        )
    }
}

impl From<String> for SubscriptionStatus {
    fn from(raw: String) -> Self {
        Self::parse(&raw)
    }
}

impl From<SubscriptionStatus> for String {
    fn from(s: SubscriptionStatus) -> Self {
        s.as_str().to_owned()
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: String,
    /// The subscription item whose price is swapped on plan changes.
    pub item_id: String,
    pub price_id: String,
    /// The plan the current price maps to (through the catalogue's lookup keys).
    pub plan: PlanCode,
    pub status: SubscriptionStatus,
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
        self.status.is_live()
    }
}

impl BillingRecord {
    /// The plan the org's quota follows at `now_unix`: the subscribed plan while the
    /// status keeps it (`trialing`, `active`, `past_due`), the pending plan once its
    /// effective time has passed, and the free plan otherwise.
    pub fn plan_in_force(&self, now_unix: i64) -> PlanCode {
        match &self.subscription {
            Some(sub) if sub.status.keeps_plan() => match &sub.pending {
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
        (p.effective_unix > now_unix && sub.status.keeps_plan()).then_some(p.effective_unix)
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
                status: SubscriptionStatus::parse(status),
                trial_end_unix: None,
                period_start_unix: 0,
                period_end_unix: 100,
                cancel_at_period_end: false,
                pending,
            }),
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
