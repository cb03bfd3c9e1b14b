//! The fake Stripe's customers, prices, subscriptions, prorations, previews and
//! invoice pages, through async-stripe's typed builders.

use super::*;

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
