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

#[actix_web::test]
async fn customers_are_created_read_and_recorded() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    let c = new_customer(&client).await;
    assert!(c.id.as_str().starts_with("cus_"));
    assert_eq!(c.email.as_deref(), Some("ops@acme.test"));
    assert_eq!(c.metadata.as_ref().unwrap()["org_id"], "org_1");

    match RetrieveCustomer::new(c.id.clone())
        .send(&client)
        .await
        .unwrap()
    {
        RetrieveCustomerReturned::Customer(read) => assert_eq!(read.id, c.id),
        other => panic!("expected a customer, got {other:?}"),
    }
    let created = &fake.requests_to("POST", "/v1/customers")[0];
    assert_eq!(created.param("metadata[org_id]"), Some("org_1"));
    assert_eq!(created.param("email"), Some("ops@acme.test"));
    assert_eq!(
        created.header("Authorization"),
        Some("Bearer sk_test_edgequota_fake")
    );
    assert_eq!(fake.customers().len(), 1);
    assert_eq!(fake.customer(c.id.as_str()).unwrap()["name"], "Acme");

    let (e, status) = api_error(RetrieveCustomer::new("cus_nope").send(&client).await);
    assert_eq!(status, 404);
    assert_eq!(e.type_, ApiErrorsType::InvalidRequestError);
    assert_eq!(e.code, Some(ApiErrorsCode::ResourceMissing));
    assert_eq!(e.message.as_deref(), Some("No such customer: 'cus_nope'"));
}

#[actix_web::test]
async fn prices_are_found_by_lookup_key() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    let keys = vec!["plan_pro_m".to_string(), "plan_scale_m".to_string()];
    let prices = ListPrice::new()
        .lookup_keys(keys)
        .active(true)
        .limit(10)
        .send(&client)
        .await
        .unwrap();
    assert!(!prices.has_more);
    assert_eq!(prices.url, "/v1/prices");
    let mut found: Vec<(String, i64)> = prices
        .data
        .iter()
        .map(|p| (p.lookup_key.clone().unwrap(), p.unit_amount.unwrap()))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [("plan_pro_m".into(), 4900), ("plan_scale_m".into(), 19900)]
    );
    let pro = prices
        .data
        .iter()
        .find(|p| p.unit_amount == Some(4900))
        .unwrap();
    assert_eq!(Some(pro.id.to_string()), fake.price_id("plan_pro_m"));
    assert_eq!(
        pro.recurring.as_ref().unwrap().interval,
        stripe_shared::RecurringInterval::Month
    );

    let req = &fake.requests_to("GET", "/v1/prices")[0];
    assert_eq!(req.param("lookup_keys[0]"), Some("plan_pro_m"));
    assert_eq!(req.param("lookup_keys[1]"), Some("plan_scale_m"));
    let free = ListPrice::new()
        .lookup_keys(vec!["plan_free".to_string()])
        .send(&client)
        .await
        .unwrap();
    assert!(free.data.is_empty());
    assert_eq!(fake.price_id("plan_free"), None);
}

#[actix_web::test]
async fn subscriptions_start_trialing_or_active_with_the_period_on_the_item() {
    let fake = FakeStripe::start().await;
    fake.set_now(T0);
    let client = client(&fake);
    let c = new_customer(&client).await;
    let pro = fake.price_id("plan_pro_m").unwrap();

    let trial = subscribe(&client, c.id.as_str(), &pro, Some(14)).await;
    assert_eq!(trial.status, SubscriptionStatus::Trialing);
    assert_eq!(
        (trial.trial_start, trial.trial_end),
        (Some(T0), Some(T0 + 14 * DAY))
    );
    let item = &trial.items.data[0];
    assert_eq!(item.price.id.as_str(), pro);
    assert_eq!(
        (item.current_period_start, item.current_period_end),
        (T0, T0 + 14 * DAY)
    );
    assert_eq!(trial.metadata["org_id"], "org_1");
    let sent = &fake.requests_to("POST", "/v1/subscriptions")[0];
    assert_eq!(sent.param("items[0][price]"), Some(pro.as_str()));
    assert_eq!(sent.param("trial_period_days"), Some("14"));
    assert_eq!(sent.param("metadata[org_id]"), Some("org_1"));
    assert_eq!(sent.param("payment_behavior"), Some("default_incomplete"));

    let paid = subscribe(&client, c.id.as_str(), &pro, None).await;
    assert_eq!(paid.status, SubscriptionStatus::Active);
    assert_eq!(paid.trial_end, None);
    assert_eq!(paid.items.data[0].current_period_end, T0 + 30 * DAY);
    let read = RetrieveSubscription::new(paid.id.clone())
        .send(&client)
        .await
        .unwrap();
    assert_eq!(read.id, paid.id);
    assert_eq!(fake.subscriptions().len(), 2);

    fake.update_subscription(paid.id.as_str(), |s| {
        s["status"] = "canceled".into();
        s["ended_at"] = T0.into();
    });
    let read = RetrieveSubscription::new(paid.id.clone())
        .send(&client)
        .await
        .unwrap();
    assert_eq!(
        (read.status, read.ended_at),
        (SubscriptionStatus::Canceled, Some(T0))
    );

    let mut bad = CreateSubscriptionItems::new();
    bad.price = Some("price_nope".into());
    let req = CreateSubscription::new()
        .customer(c.id.as_str())
        .items(vec![bad]);
    let (e, status) = api_error(req.send(&client).await);
    assert_eq!(
        (status, e.code),
        (400, Some(ApiErrorsCode::ResourceMissing))
    );
    assert_eq!(e.param.as_deref(), Some("items[0][price]"));
}

async fn upgrade_at_mid_period(fake: &FakeStripe, client: &Client) -> (Subscription, String) {
    fake.set_now(T0);
    let c = new_customer(client).await;
    let sub = subscribe(
        client,
        c.id.as_str(),
        &fake.price_id("plan_pro_m").unwrap(),
        None,
    )
    .await;
    fake.set_now(T0 + 15 * DAY);
    (sub, fake.price_id("plan_scale_m").unwrap())
}

#[actix_web::test]
async fn a_price_change_with_always_invoice_bills_the_prorations() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    let (sub, scale) = upgrade_at_mid_period(&fake, &client).await;
    let mut item = UpdateSubscriptionItems::new();
    item.id = Some(sub.items.data[0].id.to_string());
    item.price = Some(scale.clone());
    let updated = UpdateSubscription::new(sub.id.clone())
        .items(vec![item])
        .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
        .proration_date(T0 + 15 * DAY)
        .send(&client)
        .await
        .unwrap();
    assert_eq!(updated.items.data[0].price.id.as_str(), scale);
    let sent = &fake.requests_to("POST", &format!("/v1/subscriptions/{}", sub.id))[0];
    assert_eq!(
        sent.param("items[0][id]"),
        Some(sub.items.data[0].id.as_str())
    );
    assert_eq!(sent.param("items[0][price]"), Some(scale.as_str()));
    assert_eq!(sent.param("proration_behavior"), Some("always_invoice"));
    assert_eq!(
        sent.param("proration_date"),
        Some((T0 + 15 * DAY).to_string().as_str())
    );

    let customer = match &sub.customer {
        stripe_types::Expandable::Id(id) => id.to_string(),
        other => other.id().to_string(),
    };
    let invoices = ListInvoice::new()
        .customer(customer)
        .send(&client)
        .await
        .unwrap();
    assert_eq!(invoices.data.len(), 1);
    let inv = &invoices.data[0];
    assert_eq!(inv.status, Some(InvoiceStatus::Paid));
    let amounts: Vec<i64> = inv.lines.data.iter().map(|l| l.amount).collect();
    assert_eq!(amounts, [-2450, 9950]);
    assert!(inv.lines.data.iter().all(proration));
    assert_eq!(inv.total, 7500);
    assert_eq!(
        updated.latest_invoice.as_ref().map(|i| i.id().clone()),
        Some(inv.id.clone())
    );
}

#[actix_web::test]
async fn the_preview_shows_both_prorations_and_the_next_period() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    let (sub, scale) = upgrade_at_mid_period(&fake, &client).await;
    let mut item = CreatePreviewInvoiceSubscriptionDetailsItems::new();
    item.id = Some(sub.items.data[0].id.to_string());
    item.price = Some(scale.clone());
    let mut details = CreatePreviewInvoiceSubscriptionDetails::new();
    details.items = Some(vec![item]);
    details.proration_behavior =
        Some(CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::AlwaysInvoice);
    details.proration_date = Some(T0 + 15 * DAY);
    let preview = CreatePreviewInvoice::new()
        .customer(sub.customer.id().as_str())
        .subscription(sub.id.as_str())
        .subscription_details(details)
        .send(&client)
        .await
        .unwrap();
    let lines = &preview.lines.data;
    let amounts: Vec<i64> = lines.iter().map(|l| l.amount).collect();
    assert_eq!(amounts, [-2450, 9950, 19900]);
    assert_eq!(
        lines.iter().map(proration).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(
        (preview.amount_due, preview.total, preview.subtotal),
        (27400, 27400, 27400)
    );
    assert!(lines[0]
        .description
        .as_deref()
        .unwrap()
        .starts_with("Unused time on Pro"));
    assert_eq!(lines[2].period.start, T0 + 30 * DAY);
    assert_eq!(lines[2].period.end, T0 + 60 * DAY);

    let sent = &fake.requests_to("POST", "/v1/invoices/create_preview")[0];
    assert_eq!(
        sent.param("subscription_details[items][0][price]"),
        Some(scale.as_str())
    );
    assert_eq!(
        sent.param("subscription_details[proration_date]"),
        Some((T0 + 15 * DAY).to_string().as_str())
    );
    assert_eq!(
        sent.param("subscription_details[proration_behavior]"),
        Some("always_invoice")
    );
    // A preview bills nothing.
    let sub_now = fake.subscription(sub.id.as_str()).unwrap();
    assert_eq!(
        sub_now["items"]["data"][0]["price"]["lookup_key"],
        "plan_pro_m"
    );
}

#[actix_web::test]
async fn invoices_page_newest_first() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    let c = new_customer(&client).await;
    let ids = fake.add_invoices(c.id.as_str(), 5);
    let page = |after: Option<&str>| {
        let mut req = ListInvoice::new().customer(c.id.as_str()).limit(2);
        if let Some(a) = after {
            req = req.starting_after(a);
        }
        req
    };
    let id = |i: &stripe_shared::Invoice| i.id.as_ref().unwrap().to_string();
    let first = page(None).send(&client).await.unwrap();
    assert_eq!(
        first.data.iter().map(id).collect::<Vec<_>>(),
        [ids[4].as_str(), ids[3].as_str()]
    );
    assert!(first.has_more);
    let second = page(Some(&ids[3])).send(&client).await.unwrap();
    assert_eq!(
        second.data.iter().map(id).collect::<Vec<_>>(),
        [ids[2].as_str(), ids[1].as_str()]
    );
    assert!(second.has_more);
    let last = page(Some(&ids[1])).send(&client).await.unwrap();
    assert_eq!(
        last.data.iter().map(id).collect::<Vec<_>>(),
        [ids[0].as_str()]
    );
    assert!(!last.has_more);
    let inv = &last.data[0];
    assert!(inv
        .hosted_invoice_url
        .as_deref()
        .unwrap()
        .starts_with("https://"));
    assert_eq!(
        (inv.status.clone(), inv.total),
        (Some(InvoiceStatus::Paid), 4900)
    );
    assert!(first.data[0].created > first.data[1].created);
    let sent = fake.requests_to("GET", "/v1/invoices");
    assert_eq!(sent[1].param("starting_after"), Some(ids[3].as_str()));
    assert_eq!(sent[1].param("limit"), Some("2"));
}

#[actix_web::test]
async fn a_schedule_books_the_next_phase() {
    let fake = FakeStripe::start().await;
    fake.set_now(T0);
    let client = client(&fake);
    let c = new_customer(&client).await;
    let (pro, starter) = (
        fake.price_id("plan_pro_m").unwrap(),
        fake.price_id("plan_starter_m").unwrap(),
    );
    let sub = subscribe(&client, c.id.as_str(), &pro, None).await;
    let created = CreateSubscriptionSchedule::new()
        .from_subscription(sub.id.as_str())
        .send(&client)
        .await
        .unwrap();
    assert!(created.id.as_str().starts_with("sub_sched_"));
    assert_eq!(created.status, SubscriptionScheduleStatus::Active);
    assert_eq!(
        created.end_behavior,
        SubscriptionScheduleEndBehavior::Release
    );
    assert_eq!(created.subscription.as_ref().unwrap().id(), &sub.id);
    assert_eq!(created.phases.len(), 1);
    assert_eq!(created.phases[0].items[0].price.id().as_str(), pro);
    assert_eq!(
        (created.phases[0].start_date, created.phases[0].end_date),
        (T0, T0 + 30 * DAY)
    );
    assert_eq!(
        fake.subscription(sub.id.as_str()).unwrap()["schedule"],
        created.id.as_str()
    );
    let again = CreateSubscriptionSchedule::new().from_subscription(sub.id.as_str());
    let (e, status) = api_error(again.send(&client).await);
    assert_eq!((status, e.type_), (400, ApiErrorsType::InvalidRequestError));

    let item = |price: &str| {
        let mut i = UpdateSubscriptionSchedulePhasesItems::new();
        i.price = Some(price.to_string());
        i
    };
    let mut current = UpdateSubscriptionSchedulePhases::new(vec![item(&pro)]);
    current.start_date = Some(UpdateSubscriptionSchedulePhasesStartDate::Timestamp(T0));
    current.end_date = Some(UpdateSubscriptionSchedulePhasesEndDate::Timestamp(
        T0 + 30 * DAY,
    ));
    let mut next = UpdateSubscriptionSchedulePhases::new(vec![item(&starter)]);
    next.proration_behavior = Some(UpdateSubscriptionSchedulePhasesProrationBehavior::None);
    next.duration = Some(UpdateSubscriptionSchedulePhasesDuration::new(
        UpdateSubscriptionSchedulePhasesDurationInterval::Month,
    ));
    let updated = UpdateSubscriptionSchedule::new(created.id.clone())
        .end_behavior(SubscriptionScheduleEndBehavior::Release)
        .phases(vec![current, next])
        .send(&client)
        .await
        .unwrap();
    assert_eq!(updated.phases.len(), 2);
    assert_eq!(updated.phases[1].items[0].price.id().as_str(), starter);
    assert_eq!(updated.phases[1].start_date, T0 + 30 * DAY);
    assert!(updated.phases[1].end_date > updated.phases[1].start_date + 27 * DAY);
    assert_eq!(
        updated.current_phase.as_ref().unwrap().end_date,
        T0 + 30 * DAY
    );
    let sent = &fake.requests_to(
        "POST",
        &format!("/v1/subscription_schedules/{}", created.id),
    )[0];
    assert_eq!(
        sent.param("phases[1][items][0][price]"),
        Some(starter.as_str())
    );
    assert_eq!(
        sent.param("phases[0][start_date]"),
        Some(T0.to_string().as_str())
    );
    assert_eq!(sent.param("phases[1][duration][interval]"), Some("month"));
    assert_eq!(sent.param("phases[1][proration_behavior]"), Some("none"));
    assert_eq!(sent.param("end_behavior"), Some("release"));
    assert_eq!(
        fake.schedule(created.id.as_str()).unwrap()["phases"][1]["items"][0]["price"],
        starter.as_str()
    );
}

#[actix_web::test]
async fn cards_are_set_up_attached_and_made_the_default() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    let c = new_customer(&client).await;
    let si = CreateSetupIntent::new()
        .customer(c.id.as_str())
        .usage(CreateSetupIntentUsage::OffSession)
        .send(&client)
        .await
        .unwrap();
    assert_eq!(si.status, SetupIntentStatus::RequiresPaymentMethod);
    let secret = si.client_secret.unwrap();
    assert!(
        secret.starts_with(&format!("{}_secret_", si.id)),
        "{secret}"
    );
    assert_eq!(
        fake.requests_to("POST", "/v1/setup_intents")[0].param("usage"),
        Some("off_session")
    );

    let pm = AttachPaymentMethod::new("pm_card_visa")
        .customer(c.id.as_str())
        .send(&client)
        .await
        .unwrap();
    let card = pm.card.as_ref().unwrap();
    assert_eq!((card.brand.as_str(), card.last4.as_str()), ("visa", "4242"));
    assert_eq!(pm.customer.as_ref().unwrap().id(), &c.id);
    let settings = UpdateCustomerInvoiceSettings {
        default_payment_method: Some(pm.id.to_string()),
        ..UpdateCustomerInvoiceSettings::new()
    };
    let updated = UpdateCustomer::new(c.id.clone())
        .invoice_settings(settings)
        .send(&client)
        .await
        .unwrap();
    let default = updated
        .invoice_settings
        .unwrap()
        .default_payment_method
        .unwrap();
    assert_eq!(default.id(), &pm.id);

    // A card that belongs to someone else cannot become this customer's default.
    let other = new_customer(&client).await;
    let theirs = AttachPaymentMethod::new("pm_card_mastercard")
        .customer(other.id.as_str())
        .send(&client)
        .await
        .unwrap();
    let settings = UpdateCustomerInvoiceSettings {
        default_payment_method: Some(theirs.id.to_string()),
        ..UpdateCustomerInvoiceSettings::new()
    };
    let (e, status) = api_error(
        UpdateCustomer::new(c.id.clone())
            .invoice_settings(settings)
            .send(&client)
            .await,
    );
    assert_eq!(
        (status, e.code),
        (400, Some(ApiErrorsCode::ResourceMissing))
    );
    assert_eq!(
        e.param.as_deref(),
        Some("invoice_settings[default_payment_method]")
    );

    let session = CreateBillingPortalSession::new()
        .customer(c.id.as_str())
        .return_url("https://app.edgequota.test/billing")
        .send(&client)
        .await
        .unwrap();
    assert!(session.id.as_str().starts_with("bps_"));
    assert!(session.url.starts_with("https://"));
    assert_eq!(
        session.return_url.as_deref(),
        Some("https://app.edgequota.test/billing")
    );
}

#[actix_web::test]
async fn declined_and_unknown_cards_are_stripe_errors() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    let c = new_customer(&client).await;
    let declined = AttachPaymentMethod::new("pm_card_chargeDeclined").customer(c.id.as_str());
    let (e, status) = api_error(declined.send(&client).await);
    assert_eq!(status, 402);
    assert_eq!(
        (e.type_, e.code),
        (ApiErrorsType::CardError, Some(ApiErrorsCode::CardDeclined))
    );
    assert_eq!(e.decline_code.as_deref(), Some("generic_decline"));
    assert_eq!(e.message.as_deref(), Some("Your card was declined."));

    let unknown = AttachPaymentMethod::new("pm_nope").customer(c.id.as_str());
    let (e, status) = api_error(unknown.send(&client).await);
    assert_eq!(
        (status, e.code),
        (400, Some(ApiErrorsCode::ResourceMissing))
    );
    assert_eq!(
        e.message.as_deref(),
        Some("No such PaymentMethod: 'pm_nope'")
    );
}

/// Every builder's output parses as its async-stripe type, and each can travel
/// as an event's `data.object` through `GET /v1/events/{id}`.
#[actix_web::test]
async fn events_carry_every_object_the_fake_builds() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    let c = new_customer(&client).await;
    let sub = subscribe(
        &client,
        c.id.as_str(),
        &fake.price_id("plan_pro_m").unwrap(),
        Some(7),
    )
    .await;
    fake.add_invoices(c.id.as_str(), 1);
    let sched = CreateSubscriptionSchedule::new()
        .from_subscription(sub.id.as_str())
        .send(&client)
        .await
        .unwrap();
    let pm = AttachPaymentMethod::new("pm_card_amex")
        .customer(c.id.as_str())
        .send(&client)
        .await
        .unwrap();
    let invoice = ListInvoice::new()
        .customer(c.id.as_str())
        .send(&client)
        .await
        .unwrap()
        .data
        .remove(0);
    let sub_json = fake.subscription(sub.id.as_str()).unwrap();
    let invoice_json = objects::invoice(objects::NewInvoice {
        id: invoice.id.as_ref().unwrap().as_str(),
        customer: &fake.customer(c.id.as_str()).unwrap(),
        subscription: Some(sub.id.as_str()),
        lines: vec![objects::line_item(
            "il_1",
            objects::Line {
                invoice: invoice.id.as_ref().map(|i| i.as_str()),
                amount: -2450,
                description: "Unused time on Pro after 29 Mar 2026".into(),
                period: (T0 + 15 * DAY, T0 + 30 * DAY),
                price: &sub_json["items"]["data"][0]["price"],
                proration: true,
                subscription: Some(sub.id.as_str()),
                item: Some(sub.items.data[0].id.as_str()),
            },
        )],
        status: "paid",
        billing_reason: "subscription_cycle",
        period: (T0, T0 + 30 * DAY),
        number: None,
        now: T0,
    });
    let samples = [
        ("customer.updated", fake.customer(c.id.as_str()).unwrap()),
        ("customer.subscription.updated", sub_json.clone()),
        ("customer.subscription.deleted", sub_json),
        ("invoice.paid", invoice_json),
        (
            "subscription_schedule.updated",
            fake.schedule(sched.id.as_str()).unwrap(),
        ),
        (
            "payment_method.attached",
            objects::card_payment_method(pm.id.as_str(), "pm_card_visa", c.id.as_str(), T0),
        ),
        (
            "setup_intent.succeeded",
            objects::setup_intent(
                "seti_1",
                Some(c.id.as_str()),
                "off_session",
                serde_json::json!({}),
                T0,
            ),
        ),
        (
            "billing_portal.session.created",
            objects::portal_session("bps_1", c.id.as_str(), None, T0),
        ),
        (
            "price.updated",
            objects::price("price_1", "prod_1", "plan_pro_m", "Pro", 4900, T0),
        ),
    ];
    for (kind, object) in samples {
        let event = objects::event(kind, object);
        let id = event["id"].as_str().unwrap().to_string();
        fake.put_event(event);
        let read = RetrieveEvent::new(id.as_str())
            .send(&client)
            .await
            .expect(kind);
        assert_eq!(read.id.as_str(), id);
        assert_eq!(read.type_.as_str(), kind);
        assert!(!matches!(read.type_, EventType::Unknown(_)), "{kind}");
        let obj = read.data.object;
        let parsed = match kind.split('.').next().unwrap() {
            "customer" if kind.starts_with("customer.subscription") => {
                Subscription::from_value(obj).is_some()
            }
            "customer" => Customer::from_value(obj).is_some(),
            "invoice" => stripe_shared::Invoice::from_value(obj).is_some(),
            "subscription_schedule" => {
                stripe_shared::SubscriptionSchedule::from_value(obj).is_some()
            }
            "payment_method" => stripe_shared::PaymentMethod::from_value(obj).is_some(),
            "setup_intent" => stripe_shared::SetupIntent::from_value(obj).is_some(),
            "billing_portal" => stripe_billing::BillingPortalSession::from_value(obj).is_some(),
            _ => stripe_shared::Price::from_value(obj).is_some(),
        };
        assert!(parsed, "{kind}: data.object does not parse");
    }
    let (e, status) = api_error(RetrieveEvent::new("evt_nope").send(&client).await);
    assert_eq!(
        (status, e.code),
        (404, Some(ApiErrorsCode::ResourceMissing))
    );
}

fn idempotent(key: &str) -> RequestStrategy {
    RequestStrategy::Idempotent(IdempotencyKey::new(key).unwrap())
}

#[actix_web::test]
async fn an_idempotency_key_replays_the_first_result() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    let create = || {
        CreateCustomer::new()
            .email("a@acme.test")
            .metadata(org_meta("org_9"))
    };
    let first = create()
        .customize()
        .request_strategy(idempotent("k-1"))
        .send(&client)
        .await
        .unwrap();
    let again = create()
        .customize()
        .request_strategy(idempotent("k-1"))
        .send(&client)
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(fake.customers().len(), 1);
    assert_eq!(fake.requests()[1].header("idempotency-key"), Some("k-1"));

    let other = CreateCustomer::new()
        .email("b@acme.test")
        .customize()
        .request_strategy(idempotent("k-1"));
    let (e, status) = api_error(other.send(&client).await);
    assert_eq!((status, e.type_), (400, ApiErrorsType::IdempotencyError));
    assert_eq!(fake.customers().len(), 1);

    let racing = (0..20).map(|_| {
        let client = client.clone();
        async move {
            create()
                .customize()
                .request_strategy(idempotent("k-2"))
                .send(&client)
                .await
        }
    });
    let results = futures::future::join_all(racing).await;
    let ids: std::collections::HashSet<String> = results
        .into_iter()
        .map(|r| r.unwrap().id.to_string())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(fake.customers().len(), 2);
    assert_eq!(fake.requests_to("POST", "/v1/customers").len(), 23);
}

#[actix_web::test]
async fn a_wrong_api_key_is_refused_but_recorded() {
    let fake = FakeStripe::start().await;
    let bad = client_with_key(&fake, "sk_test_wrong_key");
    let (e, status) = api_error(new_customer_result(&bad).await);
    assert_eq!((status, e.type_), (401, ApiErrorsType::InvalidRequestError));
    assert!(e.message.unwrap().starts_with("Invalid API Key provided"));
    assert_eq!(fake.requests().len(), 1);
    assert!(fake.customers().is_empty());
}

async fn new_customer_result(client: &Client) -> Result<Customer, StripeError> {
    CreateCustomer::new()
        .email("x@acme.test")
        .send(client)
        .await
}

#[actix_web::test]
async fn injected_failures_fire_then_expire() {
    let fake = FakeStripe::start().await;
    let client = client(&fake);
    fake.fail(FailRule::server_error("/v1/customers", 2));
    for _ in 0..2 {
        let (e, status) = api_error(new_customer_result(&client).await);
        assert_eq!((status, e.type_), (500, ApiErrorsType::ApiError));
    }
    let c = new_customer_result(&client)
        .await
        .expect("rule expired after two failures");

    // async-stripe's own retry strategy rides over a transient 500; reads are untouched.
    fake.fail(FailRule::server_error("/v1/customers", 1).on("post"));
    let c = RetrieveCustomer::new(c.id.clone()).send(&client).await;
    assert!(c.is_ok(), "a POST-only rule must not fail a GET");
    let before = fake.requests_to("POST", "/v1/customers").len();
    let retried = CreateCustomer::new()
        .customize()
        .request_strategy(RequestStrategy::Retry(3));
    retried
        .send(&client)
        .await
        .expect("second attempt succeeds");
    assert_eq!(fake.requests_to("POST", "/v1/customers").len(), before + 2);

    fake.fail(FailRule::rate_limited("/v1/prices", 7, 1));
    let raw = reqwest::Client::new()
        .get(format!("{}v1/prices", fake.url()))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 429);
    assert_eq!(raw.headers()["retry-after"], "7");
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    fake.fail(FailRule::rate_limited("/v1/prices", 7, 1));
    let (_, status) = api_error(ListPrice::new().send(&client).await);
    assert_eq!(status, 429);

    fake.fail(FailRule::slow(
        "/v1/customers",
        Duration::from_millis(600),
        None,
    ));
    let slow = CreateCustomer::new()
        .customize()
        .timeout(Duration::from_millis(100));
    assert!(matches!(
        slow.send(&client).await,
        Err(StripeError::Timeout)
    ));
    fake.clear_failures();
    new_customer_result(&client).await.expect("no rules left");
    assert!(fake.now() > 1_700_000_000);
    fake.stop().await;
}

#[actix_web::test]
async fn malformed_requests_get_stripe_shaped_400s() {
    let fake = FakeStripe::start().await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: &str| {
        http.post(format!("{}v1/{path}", fake.url()))
            .bearer_auth(API_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
    };
    let cus: serde_json::Value = post("customers", "email=a%40b.test")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cus["email"], "a@b.test");
    let cases = [
        (
            "subscriptions",
            format!(
                "customer={}&items%5B0%5D%5Bprice%5D=x&trial_period_days=abc",
                cus["id"].as_str().unwrap()
            ),
            "trial_period_days",
        ),
        ("customers", "emial=a".to_string(), "emial"),
        ("subscriptions", "items[0][price]=x".to_string(), "customer"),
        (
            "subscription_schedules/sub_sched_nope",
            "end_behavior=release".to_string(),
            "",
        ),
    ];
    for (path, body, param) in cases {
        let res = post(path, &body).await.unwrap();
        let status = res.status().as_u16();
        let json: serde_json::Value = res.json().await.unwrap();
        assert!(status == 400 || status == 404, "{path} {body}: {status}");
        assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
        if !param.is_empty() {
            assert_eq!(json["error"]["param"], param, "{json}");
        }
    }
    let prices = http
        .get(format!(
            "{}v1/prices?lookup_keys%5B%5D=plan_scale_m&lookup_keys[]=plan_starter_m",
            fake.url()
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    let prices: serde_json::Value = prices.json().await.unwrap();
    assert_eq!(prices["data"].as_array().unwrap().len(), 2);
    let res = http
        .get(format!("{}v1/charges", fake.url()))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[actix_web::test]
async fn reads_refuse_unknown_query_parameters_as_strictly_as_writes() {
    let fake = FakeStripe::start().await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}v1/{path}", fake.url()))
            .bearer_auth(API_KEY)
            .send()
    };
    let cus: serde_json::Value = http
        .post(format!("{}v1/customers", fake.url()))
        .bearer_auth(API_KEY)
        .form(&[("email", "a@b.test")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = cus["id"].as_str().unwrap();
    let cases = [
        (format!("customers/{id}?emial=x"), "emial"),
        (format!("customers/{id}?limit=3"), "limit"),
        ("prices?lookup_key=plan_pro_m".to_owned(), "lookup_key"),
        (
            "prices?lookup_keys%5B0%5D=plan_pro_m&colour=red".to_owned(),
            "colour",
        ),
        ("invoices?customer_id=x".to_owned(), "customer_id"),
        ("subscriptions?customer=x&state=all".to_owned(), "state"),
        ("events/evt_x?page=2".to_owned(), "page"),
    ];
    for (path, param) in cases {
        let res = get(&path).await.unwrap();
        assert_eq!(res.status(), 400, "{path}");
        let b: serde_json::Value = res.json().await.unwrap();
        assert_eq!(b["error"]["param"], param, "{path}: {b}");
    }
    for path in [
        format!("customers/{id}?expand%5B%5D=default_source"),
        "prices?lookup_keys%5B0%5D=plan_pro_m&active=true&limit=1".to_owned(),
    ] {
        assert_eq!(get(&path).await.unwrap().status(), 200, "{path}");
    }
}
