//! The Stripe objects reduced to the fields the service keeps, and the conversions from
//! async-stripe's types.

use super::StripeFailure;
use crate::domain::SubscriptionStatus;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSnapshot {
    pub id: String,
    pub customer: String,
    pub status: SubscriptionStatus,
    pub item_id: String,
    pub price_id: String,
    pub lookup_key: Option<String>,
    pub trial_end: Option<i64>,
    pub period_start: i64,
    pub period_end: i64,
    pub cancel_at_period_end: bool,
    pub schedule_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewLine {
    pub description: String,
    pub amount: i64,
    pub proration: bool,
    pub period_start: i64,
    pub period_end: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub amount_due: i64,
    pub currency: String,
    pub lines: Vec<PreviewLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceSummary {
    pub id: String,
    pub total: i64,
    pub currency: String,
    pub status: Option<String>,
    pub url: Option<String>,
    pub created: i64,
}

/// A subscription's schedule after it was set to change price at period end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledChange {
    pub schedule_id: String,
    pub effective_at: i64,
}

/// The one item a Stripe object must carry (a subscription's single price).
pub(super) fn one_item<'a, T>(items: &'a [T], what: &str) -> Result<&'a T, StripeFailure> {
    items
        .first()
        .ok_or_else(|| StripeFailure::Broken(format!("Stripe returned a {what} without items")))
}

pub(super) fn snapshot(
    sub: stripe_shared::Subscription,
) -> Result<SubscriptionSnapshot, StripeFailure> {
    let item = one_item(&sub.items.data, "subscription")?;
    Ok(SubscriptionSnapshot {
        id: sub.id.to_string(),
        customer: sub.customer.id().to_string(),
        status: SubscriptionStatus::parse(sub.status.as_str()),
        item_id: item.id.to_string(),
        price_id: item.price.id.to_string(),
        lookup_key: item.price.lookup_key.clone(),
        trial_end: sub.trial_end,
        period_start: item.current_period_start,
        period_end: item.current_period_end,
        cancel_at_period_end: sub.cancel_at_period_end,
        schedule_id: sub.schedule.as_ref().map(|s| s.id().to_string()),
    })
}

pub(super) fn metadata(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
