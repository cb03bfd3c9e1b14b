//! The whole billing journey of one org, asserting both what the service answers and
//! what it sent to Stripe at each step.

use super::{spawn_billing_app, EMAIL};
use crate::helpers::{body, default_now, SERVICE};
use reqwest::StatusCode;
use serde_json::json;

const DAY: i64 = 86_400;

#[actix_web::test]
async fn create_org_to_portal_with_trial_upgrade_downgrade_and_invoices() {
    let t = spawn_billing_app().await;
    let now = default_now().timestamp();
    let org = t.app.create_org().await;

    // 1.2 the customer, created once with an org-derived idempotency key.
    let b = t
        .ok(
            "/api/stripe/customer.ensure",
            json!({"orgId": org, "email": EMAIL}),
        )
        .await;
    let customer = b["stripeCustomerId"].as_str().unwrap().to_owned();
    assert!(customer.starts_with("cus_"), "{b}");
    let sent = t.stripe.requests_to("POST", "/v1/customers");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].param("metadata[org_id]"), Some(org.as_str()));
    assert_eq!(sent[0].param("email"), Some(EMAIL));
    assert_eq!(
        sent[0].header("idempotency-key"),
        Some(format!("edgequota:customer:{org}").as_str())
    );

    // 1.3 a trial of the starter plan, found by lookup key; the quota follows at once.
    let b = t
        .ok(
            "/api/stripe/subscription.create",
            json!({"orgId": org, "priceLookup": "plan_starter_m"}),
        )
        .await;
    assert_eq!(b["status"], "trialing");
    let trial_end = now + 14 * DAY;
    assert_eq!(
        b["trialEndsAt"],
        chrono::DateTime::from_timestamp(trial_end, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let sub = b["subscriptionId"].as_str().unwrap().to_owned();
    let prices = t.stripe.requests_to("GET", "/v1/prices");
    assert_eq!(prices[0].param("lookup_keys[0]"), Some("plan_starter_m"));
    let sent = &t.stripe.requests_to("POST", "/v1/subscriptions")[0];
    let starter = t.stripe.price_id("plan_starter_m").unwrap();
    let pro = t.stripe.price_id("plan_pro_m").unwrap();
    assert_eq!(sent.param("customer"), Some(customer.as_str()));
    assert_eq!(sent.param("items[0][price]"), Some(starter.as_str()));
    assert_eq!(sent.param("trial_period_days"), Some("14"));
    assert_eq!(sent.param("metadata[org_id]"), Some(org.as_str()));
    assert!(sent.header("idempotency-key").is_some());
    assert_eq!(t.plan_of(&org).await, ("plan_starter_m".into(), 10_000));
    assert_eq!(t.app.record(&org, "journey-1", 250).await.status(), 200);

    // 2.1 a SetupIntent for off-session use.
    let b = t
        .ok("/api/payments/setup-intent.create", json!({"orgId": org}))
        .await;
    assert!(
        b["clientSecret"].as_str().unwrap().contains("_secret_"),
        "{b}"
    );
    let sent = &t.stripe.requests_to("POST", "/v1/setup_intents")[0];
    assert_eq!(sent.param("usage"), Some("off_session"));
    assert_eq!(sent.param("customer"), Some(customer.as_str()));

    // 2.2 the default payment method: attached, customer default, subscription default.
    let b = t
        .ok(
            "/api/payments/default-method.set",
            json!({"orgId": org, "paymentMethodId": "pm_card_visa"}),
        )
        .await;
    assert_eq!(b, json!({"ok": true}));
    let attach = t
        .stripe
        .requests_to("POST", "/v1/payment_methods/pm_card_visa/attach");
    assert_eq!(attach[0].param("customer"), Some(customer.as_str()));
    // Stripe turns the test token into a new attached method; that one is the default.
    let cus = t.stripe.customer(&customer).unwrap();
    let method = cus["invoice_settings"]["default_payment_method"]
        .as_str()
        .expect("a default method")
        .to_owned();
    assert!(
        method.starts_with("pm_") && method != "pm_card_visa",
        "{method}"
    );
    let s = t.stripe.subscription(&sub).unwrap();
    assert_eq!(s["default_payment_method"], method.as_str());

    // The trial converts (Stripe's doing; the webhook issue mirrors it): a paid period
    // from 16 days ago to 14 days ahead.
    t.stripe.update_subscription(&sub, |s| {
        s["status"] = "active".into();
        s["trial_end"] = (now - 16 * DAY).into();
        s["items"]["data"][0]["current_period_start"] = (now - 16 * DAY).into();
        s["items"]["data"][0]["current_period_end"] = (now + 14 * DAY).into();
    });

    // 5.1 preview of the upgrade, with the proration date the upgrade will reuse.
    let preview = t
        .ok(
            "/api/plans/preview",
            json!({"orgId": org, "newPlanCode": "plan_pro_m"}),
        )
        .await;
    assert_eq!(preview["prorationDateUnix"], now);
    assert_eq!(preview["currency"], "usd");
    let items = preview["items"].as_array().unwrap();
    assert!(items.iter().any(|i| i["proration"] == true), "{preview}");
    let prorated: i64 = items
        .iter()
        .filter(|i| i["proration"] == true)
        .map(|i| i["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(preview["proration"], prorated);
    let total: i64 = items.iter().map(|i| i["amount"].as_i64().unwrap()).sum();
    assert_eq!(preview["amount"], total);
    assert!(items[0]["periodStart"].as_str().unwrap().ends_with('Z'));
    let sent = &t.stripe.requests_to("POST", "/v1/invoices/create_preview")[0];
    assert_eq!(sent.param("subscription"), Some(sub.as_str()));
    assert_eq!(
        sent.param("subscription_details[items][0][price]"),
        Some(pro.as_str())
    );
    assert_eq!(
        sent.param("subscription_details[proration_behavior]"),
        Some("always_invoice")
    );
    assert_eq!(
        sent.param("subscription_details[proration_date]"),
        Some(now.to_string().as_str())
    );

    // 5.2 upgrade now: the item's price swapped with immediate proration; quota at once,
    // usage kept.
    let b = t
        .ok(
            "/api/plans/upgrade.now",
            json!({"orgId": org, "newPlanCode": "plan_pro_m",
                   "prorationDateUnix": preview["prorationDateUnix"]}),
        )
        .await;
    assert_eq!(
        b,
        json!({"planCode": "plan_pro_m", "effective": "immediate"})
    );
    let sent = t
        .stripe
        .requests_to("POST", &format!("/v1/subscriptions/{sub}"));
    let swap = sent.last().unwrap();
    assert_eq!(swap.param("items[0][price]"), Some(pro.as_str()));
    assert!(swap
        .param("items[0][id]")
        .is_some_and(|i| i.starts_with("si_")));
    assert_eq!(swap.param("proration_behavior"), Some("always_invoice"));
    assert_eq!(swap.param("proration_date"), Some(now.to_string().as_str()));
    let e = t.app.entitlements(&org).await;
    assert_eq!(e["planCode"], "plan_pro_m");
    assert_eq!(e["included"], 100_000);
    assert_eq!(e["used"], 250);
    let check = crate::helpers::body(t.app.check(&org).await).await;
    assert_eq!(check["remaining"], 99_750);

    // 5.3 downgrade at period end through a schedule; the quota is unchanged until then.
    let b = t
        .ok(
            "/api/plans/downgrade.schedule",
            json!({"orgId": org, "newPlanCode": "plan_starter_m"}),
        )
        .await;
    assert_eq!(b["pendingPlanCode"], "plan_starter_m");
    let period_end = t.stripe.subscription(&sub).unwrap()["items"]["data"][0]["current_period_end"]
        .as_i64()
        .unwrap();
    assert_eq!(
        b["effectiveAt"],
        chrono::DateTime::from_timestamp(period_end, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let created = &t.stripe.requests_to("POST", "/v1/subscription_schedules")[0];
    assert_eq!(created.param("from_subscription"), Some(sub.as_str()));
    let schedule = t.stripe.subscription(&sub).unwrap()["schedule"]
        .as_str()
        .unwrap()
        .to_owned();
    let update = &t
        .stripe
        .requests_to("POST", &format!("/v1/subscription_schedules/{schedule}"))[0];
    assert_eq!(update.param("end_behavior"), Some("release"));
    assert_eq!(
        update.param("phases[0][items][0][price]"),
        Some(pro.as_str())
    );
    assert_eq!(
        update.param("phases[0][end_date]"),
        Some(period_end.to_string().as_str())
    );
    assert_eq!(
        update.param("phases[1][items][0][price]"),
        Some(starter.as_str())
    );
    assert_eq!(t.plan_of(&org).await, ("plan_pro_m".into(), 100_000));

    // 6.1 invoices over two pages, newest first (the upgrade's proration invoice + 3).
    t.stripe.add_invoices(&customer, 3);
    let path = "/api/invoices.list?limit=3";
    let res = t.app.get_as_tenant(path, SERVICE, &org).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cursor = res
        .headers()
        .get("x-next-cursor")
        .expect("a next cursor")
        .to_str()
        .unwrap()
        .to_owned();
    let first = body(res).await;
    let first = first.as_array().unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(first[2]["id"], cursor.as_str());
    for w in first.windows(2) {
        assert!(
            w[0]["created"].as_str() >= w[1]["created"].as_str(),
            "{w:?}"
        );
    }
    for field in ["id", "total", "currency", "status", "url", "created"] {
        assert!(!first[0][field].is_null(), "{field} in {}", first[0]);
    }
    let path = format!("/api/invoices.list?limit=3&cursor={cursor}");
    let res = t.app.get_as_tenant(&path, SERVICE, &org).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("x-next-cursor").is_none());
    let second = body(res).await;
    let second = second.as_array().unwrap();
    assert_eq!(second.len(), 1);
    assert!(first.iter().all(|i| i["id"] != second[0]["id"]));

    // 6.2 the customer portal, returning to the configured URL.
    let b = t
        .ok("/api/payments/portal.create", json!({"orgId": org}))
        .await;
    assert!(b["url"].as_str().unwrap().starts_with("https://"), "{b}");
    let sent = &t.stripe.requests_to("POST", "/v1/billing_portal/sessions")[0];
    assert_eq!(sent.param("customer"), Some(customer.as_str()));
    assert_eq!(
        sent.param("return_url"),
        Some("http://localhost:8080/billing")
    );

    // Every write to Stripe carried an idempotency key.
    for r in t.stripe.requests() {
        if r.method == "POST" && r.path != "/v1/invoices/create_preview" {
            assert!(
                r.header("idempotency-key").is_some(),
                "{} {}",
                r.method,
                r.path
            );
        }
    }

    // The downgrade takes effect when the period ends.
    t.app
        .clock
        .advance(chrono::Duration::seconds(period_end - now + 1));
    // Reading the entitlements applies the change that came due.
    assert_eq!(t.plan_of(&org).await, ("plan_starter_m".into(), 10_000));
}
