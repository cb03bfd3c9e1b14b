//! The fake Stripe's subscription schedules, SetupIntents and cards (attached,
//! made the default, declined).

use super::*;

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
