//! Prices and subscriptions: finding a plan's price, creating, listing, reading and
//! updating subscriptions.

use super::types::{metadata, snapshot};
use super::{StripeApi, StripeFailure, SubscriptionSnapshot};
use stripe_billing::subscription::{
    CreateSubscription, CreateSubscriptionItems, CreateSubscriptionPaymentBehavior,
    ListSubscription, RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionProrationBehavior,
};
use stripe_product::price::ListPrice;

impl StripeApi {
    /// The id of the active recurring price with `lookup_key`, if Stripe has one.
    pub async fn price_by_lookup_key(
        &self,
        lookup_key: &str,
    ) -> Result<Option<String>, StripeFailure> {
        let req = ListPrice::new()
            .lookup_keys(vec![lookup_key.to_owned()])
            .active(true)
            .limit(1);
        let list = self.send("prices.list", &req, None).await?;
        Ok(list
            .data
            .into_iter()
            .find(|p| p.lookup_key.as_deref() == Some(lookup_key))
            .map(|p| p.id.to_string()))
    }

    pub async fn create_subscription(
        &self,
        customer: &str,
        price_id: &str,
        trial_days: u32,
        meta: &[(&str, &str)],
        key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let mut item = CreateSubscriptionItems::new();
        item.price = Some(price_id.to_owned());
        let mut req = CreateSubscription::new()
            .customer(customer)
            .items(vec![item])
            .metadata(metadata(meta))
            // Without a trial, the first invoice waits for a payment method instead of
            // failing the create.
            .payment_behavior(CreateSubscriptionPaymentBehavior::DefaultIncomplete);
        if trial_days > 0 {
            req = req.trial_period_days(trial_days);
        }
        snapshot(self.send("subscriptions.create", &req, Some(key)).await?)
    }

    /// The customer's subscriptions Stripe still bills (not canceled, not expired), newest
    /// first.
    pub async fn live_subscriptions(
        &self,
        customer: &str,
    ) -> Result<Vec<SubscriptionSnapshot>, StripeFailure> {
        let req = ListSubscription::new().customer(customer).limit(10);
        let list = self.send("subscriptions.list", &req, None).await?;
        list.data
            .into_iter()
            .map(snapshot)
            .filter(|s| s.as_ref().map_or(true, |s| s.status.is_live()))
            .collect()
    }

    pub async fn retrieve_subscription(
        &self,
        id: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let req = RetrieveSubscription::new(id);
        snapshot(self.send("subscriptions.retrieve", &req, None).await?)
    }

    pub async fn set_subscription_default_method(
        &self,
        subscription: &str,
        payment_method: &str,
        key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let req = UpdateSubscription::new(subscription).default_payment_method(payment_method);
        snapshot(self.send("subscriptions.update", &req, Some(key)).await?)
    }

    /// Moves `item` to `new_price` now, invoicing the proration immediately.
    pub async fn swap_price_now(
        &self,
        subscription: &str,
        item: &str,
        new_price: &str,
        proration_date: Option<i64>,
        key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let mut line = UpdateSubscriptionItems::new();
        line.id = Some(item.to_owned());
        line.price = Some(new_price.to_owned());
        let mut req = UpdateSubscription::new(subscription)
            .items(vec![line])
            .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice);
        if let Some(date) = proration_date {
            req = req.proration_date(date);
        }
        snapshot(self.send("subscriptions.update", &req, Some(key)).await?)
    }

    pub async fn set_cancel_at_period_end(
        &self,
        subscription: &str,
        cancel: bool,
        key: &str,
    ) -> Result<SubscriptionSnapshot, StripeFailure> {
        let req = UpdateSubscription::new(subscription).cancel_at_period_end(cancel);
        snapshot(self.send("subscriptions.update", &req, Some(key)).await?)
    }
}
