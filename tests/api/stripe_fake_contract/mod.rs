//! Contract tests of the fake Stripe server: driven through async-stripe's own typed
//! request builders, so every object the fake returns is proven to parse into the
//! types the service uses, and the form parameters those builders send are the
//! ones the fake understands.

use crate::fake_stripe::{objects, FailRule, FakeStripe, API_KEY};
use std::collections::HashMap;
use std::time::Duration;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::{
    CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
    CreatePreviewInvoiceSubscriptionDetailsItems,
    CreatePreviewInvoiceSubscriptionDetailsProrationBehavior, ListInvoice,
};
use stripe_billing::subscription::{
    CreateSubscription, CreateSubscriptionItems, CreateSubscriptionPaymentBehavior,
    RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionProrationBehavior,
};
use stripe_billing::subscription_schedule::{
    CreateSubscriptionSchedule, UpdateSubscriptionSchedule, UpdateSubscriptionSchedulePhases,
    UpdateSubscriptionSchedulePhasesDuration, UpdateSubscriptionSchedulePhasesDurationInterval,
    UpdateSubscriptionSchedulePhasesEndDate, UpdateSubscriptionSchedulePhasesItems,
    UpdateSubscriptionSchedulePhasesProrationBehavior, UpdateSubscriptionSchedulePhasesStartDate,
};
use stripe_core::customer::{
    CreateCustomer, RetrieveCustomer, RetrieveCustomerReturned, UpdateCustomer,
    UpdateCustomerInvoiceSettings,
};
use stripe_core::event::RetrieveEvent;
use stripe_core::setup_intent::{CreateSetupIntent, CreateSetupIntentUsage};
use stripe_payment::payment_method::AttachPaymentMethod;
use stripe_product::price::ListPrice;
use stripe_shared::{
    ApiErrors, ApiErrorsCode, ApiErrorsType, Customer, EventType, InvoiceLineItem, InvoiceStatus,
    SetupIntentStatus, Subscription, SubscriptionScheduleEndBehavior, SubscriptionScheduleStatus,
    SubscriptionStatus,
};
use stripe_types::miniserde_helpers::FromValueOpt;

/// 2026-03-14 12:00 UTC, the service tests' default instant.
const T0: i64 = 1_773_489_600;
const DAY: i64 = 86_400;

fn client(fake: &FakeStripe) -> Client {
    client_with_key(fake, API_KEY)
}

fn client_with_key(fake: &FakeStripe, key: &str) -> Client {
    ClientBuilder::new(key)
        .url(fake.url())
        .build()
        .expect("stripe client")
}

fn api_error(result: Result<impl std::fmt::Debug, StripeError>) -> (Box<ApiErrors>, u16) {
    match result {
        Err(StripeError::Stripe(e, status)) => (e, status),
        other => panic!("expected a Stripe API error, got {other:?}"),
    }
}

fn org_meta(org: &str) -> HashMap<String, String> {
    HashMap::from([("org_id".to_string(), org.to_string())])
}

async fn new_customer(client: &Client) -> Customer {
    CreateCustomer::new()
        .email("ops@acme.test")
        .name("Acme")
        .metadata(org_meta("org_1"))
        .send(client)
        .await
        .expect("create customer")
}

async fn subscribe(
    client: &Client,
    customer: &str,
    price: &str,
    trial_days: Option<u32>,
) -> Subscription {
    let mut item = CreateSubscriptionItems::new();
    item.price = Some(price.to_string());
    let mut req = CreateSubscription::new()
        .customer(customer)
        .items(vec![item])
        .metadata(org_meta("org_1"))
        .payment_behavior(CreateSubscriptionPaymentBehavior::DefaultIncomplete)
        .expand(vec!["latest_invoice".to_string()]);
    if let Some(days) = trial_days {
        req = req.trial_period_days(days);
    }
    req.send(client).await.expect("create subscription")
}

fn proration(line: &InvoiceLineItem) -> bool {
    let parent = line.parent.as_ref().expect("line parent");
    let details = parent
        .subscription_item_details
        .as_ref()
        .expect("item details");
    details.proration
}

mod events_and_requests;
mod schedules_and_cards;
mod subscriptions;
