//! The fake Stripe as a server: events carrying every object it builds, idempotency
//! keys, API keys, injected failures, malformed requests and strict query parameters.

use super::*;

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
